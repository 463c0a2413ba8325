"""``manage.py ensure_bucket`` against a real S3-compatible store (SeaweedFS, the
``object_store`` fixture) and against an address where no store answers."""

from __future__ import annotations

import uuid
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.object_store import (
    ACCESS_KEY,
    SECRET_KEY,
    SeaweedFS,
    client,
    free_port_pair,
    storage_settings,
)


def run(**opts) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("ensure_bucket", stdout=out, stderr=err, **opts)
    return out.getvalue(), err.getvalue()


def test_it_creates_a_missing_bucket_then_finds_it_there(settings, object_store):
    bucket = f"faceaudit-new-{uuid.uuid4().hex[:10]}"
    settings.STORAGES = storage_settings(object_store, bucket)

    out, _ = run()
    assert f"bucket '{bucket}'" in out and "created and writable" in out
    # (asked by name: SeaweedFS lists no buckets to a client when it has no identities)
    client(object_store).head_bucket(Bucket=bucket)

    out, _ = run()
    assert "exists and writable" in out
    # The probe object is gone again: the bucket holds only what the installation writes.
    assert client(object_store).list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_it_gives_up_with_a_clear_error_when_no_store_answers(settings):
    endpoint = f"http://127.0.0.1:{free_port_pair()}"  # nothing listens there
    settings.STORAGES = storage_settings(endpoint, "faceaudit-nowhere")

    with pytest.raises(CommandError) as failure:
        run(timeout=1.5, interval=0.5)
    message = str(failure.value)
    assert "bucket 'faceaudit-nowhere'" in message and endpoint in message
    assert "no answer after" in message and "FACEAUDIT_S3_ENDPOINT_URL" in message


def test_it_fails_at_once_when_the_store_refuses_the_credentials(settings, monkeypatch,
                                                                  tmp_path, object_store):
    # A store of its own that takes only one key pair (SeaweedFS reads its admin identity from
    # AWS_*, as docker-compose.yml sets it); ``object_store`` is asked for only to skip, saying
    # why, where SeaweedFS cannot start.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    server = SeaweedFS(tmp_path / "seaweedfs")
    server.start()
    try:
        options = storage_settings(server.endpoint, "faceaudit-refused")
        options["default"]["OPTIONS"]["secret_key"] = "not-the-secret"
        settings.STORAGES = options

        with pytest.raises(CommandError) as failure:
            run(timeout=60, interval=0.5)  # fails on the first answer, long before 60 s
        message = str(failure.value)
        assert "refused" in message and "FACEAUDIT_S3_SECRET_ACCESS_KEY" in message
        assert "no answer after" not in message
    finally:
        # Its data is thrown away: no need for weed's 30-second graceful stop.
        server.process.kill()
        server.process.wait(timeout=10)


def test_it_has_nothing_to_do_without_a_bucket_setting(settings, tmp_path):
    settings.STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    settings.MEDIA_ROOT = str(tmp_path)

    out, _ = run()
    assert "FACEAUDIT_S3_BUCKET is not set" in out
