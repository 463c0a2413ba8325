"""The multi-machine shape on one machine: a web app, a generation worker and a scoring worker,
each with its own private working folder and no shared media folder, talking only through
Redis, PostgreSQL and an S3-compatible object store (a real SeaweedFS).

The audit is launched through the web app's JSON API and its dataset zip downloaded from the
web app; it must equal, member for member, the same config and seed run on the embedded
default (local file system, in-process). The object store is killed (SIGKILL) while images are
being written and started again a few seconds later: the batches retry and the audit finishes
with every image stored exactly once.
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import pytest
from django.db import connection

from generator.config import parse_config
from tests.conftest import (
    WorkerProcess,
    database_url_for_subprocess,
    fresh_dir,
    redis_unavailable,
    wait_for,
)
from tests.object_store import SeaweedFS, keys, new_bucket, storage_env
from tests.webapp.test_serve import RUNNING, Serve
from webapp.audits.models import Audit, GeneratedImage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.slow]

CONFIG = {"name": "several machines", "seed": 21, "groups": {"perceived_gender": ["female", "male"]},
          "generator": "dcgan-digiface", "identities_per_group": 4,
          "factors": {"blur": [2.0], "jpeg": [15]}, "fr_models": ["mobilefacenet"],
          "target_fmr": [0.05]}
BROKER = "redis://127.0.0.1:6379/13"
OUTAGE_SECONDS = 4  # plus the ~15 s SeaweedFS takes to answer again


@pytest.fixture
def store(tmp_path):
    """A SeaweedFS of this test's own (it is stopped and started again mid-audit)."""
    server = SeaweedFS(tmp_path / "seaweedfs")
    try:
        server.start()
    except RuntimeError as exc:
        pytest.skip(f"no S3-compatible object store: {exc}")
    yield server
    server.stop()


def _shared_services() -> str | None:
    if connection.vendor != "postgresql":
        return ("the machines share a PostgreSQL database; this run's test database is "
                f"{connection.vendor} (a file on one disk)")
    return redis_unavailable()


def _embedded_zip(owner, tmp_path: Path) -> dict[str, bytes]:
    """The same config and seed on the embedded default: local files, in-process."""
    from django.test import override_settings

    from exports.dataset import stream_zip
    from webapp.audits.launch import create_audit
    from worker.pipeline import InlineRunner

    media = fresh_dir(tmp_path / "embedded-media")
    with override_settings(MEDIA_ROOT=media, STORAGES={
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}):
        audit = create_audit(owner, parse_config(CONFIG))
        audit = InlineRunner().run(audit.pk)
        assert audit.state == Audit.State.DONE, audit.error
        data = b"".join(stream_zip(audit))
    return _members(data)


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {name: z.read(name) for name in z.namelist()}


def _signed_in(url: str, username: str, password: str):
    import requests

    session = requests.Session()
    session.get(f"{url}/accounts/login/", timeout=30)
    response = session.post(f"{url}/accounts/login/", timeout=30, data={
        "username": username, "password": password,
        "csrfmiddlewaretoken": session.cookies["csrftoken"]}, allow_redirects=False)
    assert response.status_code == 302, response.text[:500]
    return session


def test_web_app_and_workers_on_separate_folders_share_only_database_broker_and_object_store(
        django_user_model, models_available, store, tmp_path):
    reason = _shared_services()
    if reason:
        pytest.skip(reason)
    import redis

    redis.Redis(host="127.0.0.1", port=6379, db=13).flushdb()
    bucket = new_bucket(store.endpoint)
    shared = {**storage_env(store.endpoint, bucket), "CELERY_BROKER_URL": BROKER,
              "DATABASE_URL": database_url_for_subprocess(),
              "FACEAUDIT_MODEL_DIR": str(models_available), "FACEAUDIT_GENERATE_BATCH": "2"}
    django_user_model.objects.create_user("lab", password="lab-pass-12345")

    web = Serve(tmp_path, "web", args=("--no-worker",), env={
        **shared, "FACEAUDIT_MEDIA_ROOT": str(fresh_dir(tmp_path / "web-media"))})
    workers = [WorkerProcess(BROKER, fresh_dir(tmp_path / f"{q}-media"),
                             fresh_dir(tmp_path / f"{q}-var"), tmp_path / f"{q}.log",
                             queues=q, env=shared)
               for q in ("gpu", "cpu")]
    try:
        web.wait_for_output(RUNNING)
        session = _signed_in(web.url, "lab", "lab-pass-12345")
        response = session.post(f"{web.url}/api/audits/", json=CONFIG, timeout=60,
                                headers={"X-CSRFToken": session.cookies["csrftoken"]})
        assert response.status_code == 201, response.text[:1000]
        audit = Audit.objects.get(pk=response.json()["id"])

        # Outage: once images are being written, stop the object store for a few seconds.
        def writing():
            for w in workers:
                assert w.proc.poll() is None, "worker died:\n" + w.tail()
            return GeneratedImage.objects.filter(audit=audit).exists()

        wait_for(writing, timeout=300, interval=0.05, what="the first stored image")
        store.kill()
        audit.refresh_from_db()
        stored_before = GeneratedImage.objects.filter(audit=audit).count()
        assert not audit.is_final and stored_before < audit.n_images_planned  # mid-audit
        time.sleep(OUTAGE_SECONDS)
        store.start()

        def finished():
            audit.refresh_from_db()
            for w in workers:
                assert w.proc.poll() is None, "worker died:\n" + w.tail()
            return audit.is_final

        wait_for(finished, timeout=600, interval=1,
                 what="the audit to finish; logs:\n" + "\n".join(w.tail() for w in workers))
        assert audit.state == Audit.State.DONE, (
            audit.error + "\n" + "\n".join(w.tail(120) for w in workers))

        # Every image is stored once, under its own name, and nothing else was left beside it.
        images = list(GeneratedImage.objects.filter(audit=audit).values_list("file", flat=True))
        assert len(images) == audit.n_images_planned
        stored = keys(store.endpoint, bucket, f"audits/{audit.pk}/images/")
        assert sorted(images) == stored

        # The web app serves the results from the store.
        assert session.get(f"{web.url}/audits/{audit.pk}/", timeout=120).status_code == 200
        download = session.get(f"{web.url}/audits/{audit.pk}/download.zip", timeout=300)
        assert download.status_code == 200
        remote = _members(download.content)
    finally:
        for w in workers:
            w.stop()
        web.stop()

    # No process wrote into its own media folder: every file went to the object store.
    for folder in ("web-media", "gpu-media", "cpu-media"):
        assert not any(p.is_file() for p in (tmp_path / folder).rglob("*")), folder

    embedded = _embedded_zip(audit.owner, tmp_path)
    assert sorted(remote) == sorted(embedded)
    differing = [name for name in remote if remote[name] != embedded[name]]
    assert not differing, f"members differ from the embedded default: {differing[:10]}"
