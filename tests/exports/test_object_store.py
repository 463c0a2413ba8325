"""An audit's files on an S3-compatible object store (a real SeaweedFS, ``tests.object_store``):
the same exports as on the local file system, disk use and deletion from the bucket listing,
the pages, downloads streamed from the store in bounded chunks, and a store outage retried
instead of failing the audit."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
import zlib
from pathlib import Path

import pandas as pd
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from exports import files as audit_files
from exports.dataset import export_to_dir, stream_zip
from exports.files import AuditFiles, disk_usage, open_stream
from generator.config import parse_config
from tests.object_store import client as client_for
from tests.object_store import keys
from webapp.audits.models import Audit, GeneratedImage

pytestmark = pytest.mark.django_db

CONFIG = {"name": "Object store audit", "seed": 7,
          "groups": {"perceived_gender": ["female", "male"]}, "generator": "dcgan-digiface",
          "identities_per_group": 2, "factors": {"blur": [1.5]},
          "fr_models": ["mobilefacenet"], "target_fmr": [0.05]}
LOCAL_STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}


def new_audit(owner) -> Audit:
    cfg = parse_config(CONFIG, fr_models_available=["mobilefacenet"])
    return Audit.objects.create(owner=owner, name=cfg.name, config=cfg.to_dict(), seed=cfg.seed,
                                n_images_planned=cfg.n_images)


def run(owner) -> Audit:
    from worker.pipeline import InlineRunner

    audit = InlineRunner().run(new_audit(owner).pk)
    assert audit.state == Audit.State.DONE, audit.error
    return audit


def folder_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def zip_members(data: bytes) -> dict[str, bytes]:
    zf = zipfile.ZipFile(io.BytesIO(data))
    assert zf.testzip() is None
    return {name: zf.read(name) for name in zf.namelist()}


def object_sizes(endpoint: str, bucket: str, prefix: str) -> dict[str, int]:
    """Every object below ``prefix`` with its size, listed with a client of our own."""
    s3, out = client_for(endpoint), {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
    return out


class ReadSpy:
    """Records every ``read(amt)`` on botocore's streaming bodies (what the store sent)."""

    def __init__(self, monkeypatch) -> None:
        from botocore.response import StreamingBody

        self.calls: list[tuple[int | None, int]] = []
        original = StreamingBody.read

        def read(body, amt=None):
            data = original(body, amt)
            self.calls.append((amt, len(data)))
            return data

        monkeypatch.setattr(StreamingBody, "read", read)

    @property
    def received(self) -> int:
        return sum(n for _, n in self.calls)


# --- storage helpers, fast ------------------------------------------------------------------------

def test_the_s3_backend_is_recognised_and_the_local_one_is_not(settings, s3_storage):
    _, bucket = s3_storage
    assert audit_files.s3_storage().bucket_name == bucket
    settings.STORAGES = LOCAL_STORAGES
    assert audit_files.s3_storage() is None


def test_disk_use_and_delete_work_below_the_storages_location_prefix(settings, s3_storage,
                                                                     monkeypatch):
    endpoint, bucket = s3_storage
    options = settings.STORAGES["default"]["OPTIONS"]
    settings.STORAGES = {**settings.STORAGES, "default": {
        **settings.STORAGES["default"], "OPTIONS": {**options, "location": "tenant-a"}}}
    files = AuditFiles(7)
    sizes = {files.image("female", 1, "baseline"): 10, files.result("summary.csv"): 2500,
             files.name("results/dashboard/x.json"): 1}
    for name, size in sizes.items():
        audit_files.save_file(name, b"x" * size)
    # a neighbour whose pk starts with the same digits, and a file outside the location
    audit_files.save_file("audits/70/images/a.png", b"neighbour")
    client_for(endpoint).put_object(Bucket=bucket, Key="audits/7/outside.bin", Body=b"o" * 99)

    assert sorted(audit_files.audit_files(7)) == sorted(sizes)
    assert keys(endpoint, bucket, "tenant-a/audits/7/") == sorted(f"tenant-a/{n}" for n in sizes)
    assert disk_usage(7) == sum(sizes.values()) == 2511

    monkeypatch.setattr(audit_files, "DELETE_BATCH", 2)  # several delete_objects requests
    assert files.delete() == 3
    assert keys(endpoint, bucket, "tenant-a/audits/7/") == []
    assert keys(endpoint, bucket, "tenant-a/audits/70/") == ["tenant-a/audits/70/images/a.png"]
    assert keys(endpoint, bucket, "audits/7/") == ["audits/7/outside.bin"]
    assert disk_usage(7) == 0


def test_a_rewrite_of_the_same_name_leaves_one_object_with_the_new_bytes(s3_storage):
    endpoint, bucket = s3_storage
    name = AuditFiles(3).image("male", 0, "baseline")
    audit_files.save_file(name, b"first")
    audit_files.save_file(name, b"second, longer")  # a retried batch writes the cell again
    audit_files.write_atomically(AuditFiles(3).result("report-1.html"), b"<html>")
    audit_files.write_atomically(AuditFiles(3).result("report-1.html"), b"<html>2")
    assert keys(endpoint, bucket, "audits/3/") == [
        "audits/3/images/male/id000/baseline.png", "audits/3/results/report-1.html"]
    with open_stream(name) as f:
        assert f.read() == b"second, longer"
    with open_stream(AuditFiles(3).result("report-1.html")) as f:
        assert f.read() == b"<html>2"
    with pytest.raises(FileNotFoundError):
        with open_stream(AuditFiles(3).result("missing.csv")):
            pass


def test_a_seekable_copy_of_an_object_reads_like_the_object(s3_storage):
    data = os.urandom(3 * audit_files.CHUNK_SIZE + 17)
    default_storage.save("audits/4/results/blob.bin", ContentFile(data))
    with audit_files.open_seekable("audits/4/results/blob.bin") as f:
        f.seek(-17, io.SEEK_END)
        assert f.read() == data[-17:]
        f.seek(0)
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()


def test_a_large_zip_member_is_streamed_from_the_store_in_bounded_chunks(s3_storage,
                                                                         monkeypatch):
    """A member (here a 5 MiB deflated export-cache file) reaches the client while most of the
    object is still on the store: reads of at most CHUNK_SIZE, never one read of it all."""
    from exports.export_cache import Precompressed
    from exports.zip_stream import ExportFile, stream_files_zip

    raw = os.urandom(5 * audit_files.CHUNK_SIZE)  # incompressible: the deflate is as large
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    deflated = packer.compress(raw) + packer.flush()
    name = "audits/5/results/export/big.csv.deflate"
    default_storage.save(name, ContentFile(deflated))
    member = Precompressed(name, zlib.crc32(raw), len(raw), len(deflated))
    spy = ReadSpy(monkeypatch)

    stream = stream_files_zip([ExportFile("big.csv", lambda: [], precompressed=member)])
    sent = next(stream)  # the local header
    while len(sent) < 2 * audit_files.CHUNK_SIZE:
        sent += next(stream)
    assert spy.received < len(deflated) // 2  # the client has data; most is still unread
    sent += b"".join(stream)
    assert spy.received == len(deflated)
    assert all(amt is not None and amt <= audit_files.CHUNK_SIZE for amt, _ in spy.calls)
    assert zipfile.ZipFile(io.BytesIO(sent)).read("big.csv") == raw


def test_a_hand_made_audits_pages_and_downloads_work_from_the_store(client, alice, s3_storage,
                                                                    media_root):
    """Every page and download of a finished audit, with a gzip CSV comparisons table (older
    audits) read as a stream; nothing lands in MEDIA_ROOT."""
    from tests.webapp.factories import make_done_audit

    audit = make_done_audit(alice)
    client.force_login(alice)
    assert client.get(f"/audits/{audit.pk}/").status_code == 200
    image = GeneratedImage.objects.filter(audit=audit).first()
    response = client.get(f"/audits/{audit.pk}/images/{image.pk}.png")
    assert response.status_code == 200
    assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() == image.sha256
    response = client.get(f"/audits/{audit.pk}/download.zip")
    members = zip_members(b"".join(response.streaming_content))
    assert b"fr_model" in members["comparisons.csv"].splitlines()[0]
    assert len(members["comparisons.csv"].splitlines()) == 3  # header and the two rows
    assert sum(n.startswith("images/") for n in members) == 8
    assert not any(media_root.rglob("*"))


# --- a real audit on the store (generator, detector, FR model), slow ------------------------------

@pytest.mark.slow
def test_an_audit_on_the_store_exports_the_same_bytes_as_on_the_local_file_system(
        alice, settings, s3_storage, media_root, models_available, tmp_path):
    from exports.export_cache import load_export_cache

    on_store = run(alice)
    assert not any(media_root.rglob("*"))  # no file went to the local disk
    assert len(load_export_cache(on_store)) == 6  # the deflated members are used from the store
    export_to_dir(on_store, tmp_path / "store")
    store_zip = b"".join(stream_zip(on_store))

    settings.STORAGES = LOCAL_STORAGES
    local = run(alice)
    assert (media_root / "audits" / str(local.pk)).is_dir()
    export_to_dir(local, tmp_path / "local")
    local_zip = b"".join(stream_zip(local))

    store_files, local_files = folder_files(tmp_path / "store"), folder_files(tmp_path / "local")
    assert sorted(store_files) == sorted(local_files)
    assert [n for n in local_files if store_files[n] != local_files[n]] == []
    assert any(n.startswith("images/") for n in local_files)
    # the zips hold the folder's files, byte for byte, and are themselves identical
    assert zip_members(store_zip) == zip_members(local_zip) == local_files
    assert store_zip == local_zip


@pytest.mark.slow
def test_disk_use_is_the_sum_of_the_listed_objects_and_delete_leaves_none(
        client, alice, s3_storage, models_available, django_capture_on_commit_callbacks):
    endpoint, bucket = s3_storage
    audit = run(alice)
    prefix = f"audits/{audit.pk}/"
    listed = object_sizes(endpoint, bucket, prefix)
    assert any("/images/" in k for k in listed) and any("/results/" in k for k in listed)
    assert len(listed) > audit.n_images_planned
    assert disk_usage(audit.pk) == sum(listed.values()) > 0
    assert sorted(AuditFiles(audit.pk).names()) == sorted(listed)
    stored = set(GeneratedImage.objects.filter(audit=audit).values_list("file", flat=True))
    assert stored <= set(listed)

    client.force_login(alice)
    assert client.get(f"/audits/{audit.pk}/progress.json").json()["disk_use"] == disk_usage(
        audit.pk)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/audits/{audit.pk}/delete/", follow=True)
    assert "Deleted audit" in response.content.decode()
    assert keys(endpoint, bucket, prefix) == []
    assert not Audit.objects.filter(pk=audit.pk).exists()


@pytest.mark.slow
def test_the_dashboard_report_images_and_tables_are_served_from_the_store(
        client, alice, s3_storage, media_root, models_available, monkeypatch):
    endpoint, bucket = s3_storage
    audit = run(alice)
    client.force_login(alice)

    page = client.get(f"/audits/{audit.pk}/")
    assert page.status_code == 200 and b"Object store audit" in page.content
    built = keys(endpoint, bucket, f"audits/{audit.pk}/results/dashboard/")
    assert len(built) == 1 and built[0].endswith(".json")  # the figures, kept for every process
    assert client.get(f"/audits/{audit.pk}/").status_code == 200  # read back from the store

    report = client.get(f"/audits/{audit.pk}/report.html")
    assert report.status_code == 200 and b"<html" in report.content.lower()
    assert any(k.split("/")[-1].startswith("report-")
               for k in keys(endpoint, bucket, f"audits/{audit.pk}/results/"))

    image = GeneratedImage.objects.filter(audit=audit).order_by("pk").first()
    response = client.get(f"/audits/{audit.pk}/images/{image.pk}.png")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() == image.sha256

    from exports.tables import result_tables

    tables = result_tables(audit)
    assert tables
    s3 = client_for(endpoint)
    for stem, stored in tables:  # each table as the store holds it (read with our own client)
        table = s3.get_object(Bucket=bucket, Key=stored)["Body"].read()
        response = client.get(f"/audits/{audit.pk}/tables/{stem}.csv")
        assert b"".join(response.streaming_content) == table, stem
        response = client.get(f"/audits/{audit.pk}/tables/{stem}.json")
        records = json.loads(b"".join(response.streaming_content))
        rows = len(pd.read_csv(io.BytesIO(table))) if table.strip() else 0
        assert isinstance(records, list) and len(records) == rows, stem
    response = client.get(f"/audits/{audit.pk}/tables.zip")
    tables_zip = zip_members(b"".join(response.streaming_content))
    assert set(tables_zip) == {"summary.json"} | {f"tables/{stem}.{ext}" for stem, _ in tables
                                                  for ext in ("csv", "json")}

    spy = ReadSpy(monkeypatch)
    response = client.get(f"/audits/{audit.pk}/download.zip")
    assert response.streaming
    members = zip_members(b"".join(response.streaming_content))
    assert members["manifest.csv"].startswith(b"image_path,")
    # the images and cached members came off the store in reads of at most CHUNK_SIZE (the
    # cache's small index.json is the one file read whole)
    chunked = [n for amt, n in spy.calls if amt == audit_files.CHUNK_SIZE]
    assert len(chunked) >= 2 * audit.n_images_planned  # a read with data, then the empty one
    assert max(n for _, n in spy.calls) <= audit_files.CHUNK_SIZE
    assert not any(media_root.rglob("*"))


@pytest.mark.slow
def test_a_store_outage_mid_batch_is_retried_and_leaves_each_file_once(alice, s3_storage,
                                                                       models_available,
                                                                       monkeypatch):
    """The store goes away while a generation batch writes: the stage re-raises the connection
    error (the task would be retried by Celery), the audit is not failed, and running the
    batch again stores every image once under its own name."""
    from botocore.exceptions import EndpointConnectionError

    from worker import generation
    from worker.pipeline import InlineRunner
    from worker.state import TRANSIENT_ERRORS

    endpoint, bucket = s3_storage
    save_file, writes = generation.save_file, []

    def flaky_save(name, data):
        writes.append(name)
        if len(writes) == 3:
            raise EndpointConnectionError(endpoint_url=endpoint)
        return save_file(name, data)

    monkeypatch.setattr(generation, "save_file", flaky_save)
    runner, current = InlineRunner(), []
    runner.on_stage = lambda name, args: current.append((name, args))
    audit = new_audit(alice)
    with pytest.raises(EndpointConnectionError) as raised:
        runner.run(audit.pk)
    assert isinstance(raised.value, TRANSIENT_ERRORS)
    audit.refresh_from_db()
    assert audit.state == Audit.State.GENERATING and not audit.error

    runner.queue.insert(0, current[-1])  # Celery's retry: the same task again
    audit = runner.drain(audit.pk)
    assert audit.state == Audit.State.DONE, audit.error
    images = keys(endpoint, bucket, f"audits/{audit.pk}/images/")
    stored = sorted(GeneratedImage.objects.filter(audit=audit).values_list("file", flat=True))
    assert len(stored) == audit.n_images_planned and images == stored


# --- transient errors in the worker, fast ---------------------------------------------------------

def test_an_unreachable_store_inside_a_stage_is_retried_not_failed(alice):
    from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

    from worker import tasks
    from worker.state import TRANSIENT_ERRORS, stage_errors

    audit = new_audit(alice)
    for error in (EndpointConnectionError(endpoint_url="http://store:8333"),
                  ReadTimeoutError(endpoint_url="http://store:8333")):
        with pytest.raises(type(error)):
            with stage_errors(audit.pk, "generating images"):
                raise error
        audit.refresh_from_db()
        assert audit.state == Audit.State.QUEUED and not audit.error
    assert EndpointConnectionError in TRANSIENT_ERRORS
    assert set(TRANSIENT_ERRORS) <= set(tasks.generate_images.autoretry_for)


def test_a_busy_store_is_retried_and_a_refusal_fails_the_audit(alice):
    from botocore.exceptions import ClientError

    from worker.state import ObjectStoreBusy, stage_errors

    def answer(status: int, code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": "m"},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")

    audit = new_audit(alice)
    for status, code in ((503, "SlowDown"), (500, "InternalError"), (503, "ServiceUnavailable")):
        with pytest.raises(ObjectStoreBusy):
            with stage_errors(audit.pk, "scoring images"):
                raise answer(status, code)
        audit.refresh_from_db()
        assert audit.state == Audit.State.QUEUED
    with stage_errors(audit.pk, "scoring images"):
        raise answer(403, "AccessDenied")  # not transient: a misconfigured bucket
    audit.refresh_from_db()
    assert audit.state == Audit.State.FAILED and "AccessDenied" in audit.error
