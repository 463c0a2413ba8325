"""Data lifecycle: an audit's disk use is measured, and deleting it removes its rows and files."""

import os

import pytest

from exports.files import disk_usage
from generator.config import parse_config
from webapp.audits.models import (
    Audit,
    AuditResult,
    Embedding,
    FaceAnalysis,
    GeneratedImage,
    SyntheticIdentity,
)
from worker.pipeline import InlineRunner

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

CONFIG = {"name": "lifecycle", "seed": 4, "groups": {"perceived_gender": ["female", "male"]},
          "generator": "dcgan-digiface", "identities_per_group": 3, "factors": {"blur": [2.0]},
          "fr_models": ["mobilefacenet"], "target_fmr": [0.05]}


def run(owner):
    cfg = parse_config(CONFIG)
    audit = Audit.objects.create(owner=owner, name=cfg.name, config=cfg.to_dict(), seed=cfg.seed,
                                 n_images_planned=cfg.n_images)
    return InlineRunner().run(audit.pk)


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def test_disk_use_and_delete_remove_rows_and_files(alice, media_root, models_available,
                                                   django_capture_on_commit_callbacks):
    keep, audit = run(alice), run(alice)
    pk = audit.pk
    folder = media_root / "audits" / str(pk)
    assert audit.state == Audit.State.DONE and folder.is_dir()
    assert disk_usage(audit.pk) == folder_bytes(folder) > 0

    with django_capture_on_commit_callbacks(execute=True):
        audit.delete()
    assert not folder.exists()
    for model, field in ((SyntheticIdentity, "audit"), (GeneratedImage, "audit"),
                         (FaceAnalysis, "image__audit"), (Embedding, "image__audit"),
                         (AuditResult, "audit")):
        assert not model.objects.filter(**{f"{field}_id": pk}).exists(), model.__name__
    # another audit's rows and files are untouched
    assert (media_root / "audits" / str(keep.pk)).is_dir()
    assert GeneratedImage.objects.filter(audit=keep).count() == keep.n_images_planned
    assert disk_usage(keep.pk) == folder_bytes(media_root / "audits" / str(keep.pk))


def test_the_delete_button_removes_a_finished_audit_but_not_a_running_one(
        client, alice, bob, media_root, models_available, django_capture_on_commit_callbacks):
    from exports.files import audit_prefix

    audit = run(alice)
    folder = media_root / audit_prefix(audit.pk)
    url = f"/audits/{audit.pk}/delete/"
    client.force_login(bob)
    assert client.post(url).status_code == 404  # not bob's: not even confirmed to exist
    client.force_login(alice)
    page = client.get(f"/audits/{audit.pk}/").content.decode()
    assert 'id="delete-form"' in page and 'id="disk-use"' in page
    assert client.get(url).status_code == 405  # deleting needs a POST (with the CSRF token)

    running = Audit.objects.create(owner=alice, name="running", config=audit.config,
                                   seed=audit.seed, n_images_planned=1,
                                   state=Audit.State.SCORING)
    response = client.post(f"/audits/{running.pk}/delete/", follow=True)
    assert "Cancel the audit first" in response.content.decode()
    assert Audit.objects.filter(pk=running.pk).exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, follow=True)
    assert response.redirect_chain[-1][0] == "/"
    assert "Deleted audit" in response.content.decode()
    assert not Audit.objects.filter(pk=audit.pk).exists() and not folder.exists()


def _rows_left(pk):
    from webapp.audits.models import AuditTask

    return {model.__name__: model.objects.filter(**{f"{field}_id": pk}).count()
            for model, field in ((SyntheticIdentity, "audit"), (GeneratedImage, "audit"),
                                 (FaceAnalysis, "image__audit"), (Embedding, "image__audit"),
                                 (AuditResult, "audit"), (AuditTask, "audit"))}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stage", ["generate_images", "score_images"])
def test_a_batch_whose_audit_is_deleted_midway_stops_quietly_and_leaves_nothing(
        stage, alice, media_root, models_available, monkeypatch, caplog):
    """Cancel, then Delete while a generation or scoring batch is storing its output: the
    batch's next insert finds the audit gone; it stops without an error, and neither rows nor
    files of the audit are left behind."""
    from worker import generation, pipeline

    cfg = parse_config(CONFIG)
    audit = Audit.objects.create(owner=alice, name=cfg.name, config=cfg.to_dict(), seed=cfg.seed,
                                 n_images_planned=cfg.n_images)
    pk = audit.pk
    runner = InlineRunner()
    runner.dispatch("start_audit", pk)
    while runner.queue[0][0] != stage:  # every earlier stage runs as usual
        name, args = runner.queue.pop(0)
        pipeline.STAGES[name](*args, dispatch=runner.dispatch)
    _, args = runner.queue.pop(0)

    def delete_now():
        Audit.objects.filter(pk=pk).update(state=Audit.State.CANCELLED)
        Audit.objects.get(pk=pk).delete()  # its files go when the deletion commits

    calls = []
    if stage == "generate_images":
        save_file = generation.save_file

        def save_then_delete(name, data):  # the 2nd identity's first image: after a deletion
            calls.append(name)
            if len(calls) == 4:  # 3 images per identity: baseline, control, blur 2
                delete_now()
            return save_file(name, data)

        monkeypatch.setattr(generation, "save_file", save_then_delete)
    else:
        store = Embedding.objects.update_or_create

        def store_after_delete(*a, **kw):  # the 3rd image's embedding: after a deletion
            calls.append(kw["image"].pk)
            if len(calls) == 3:
                delete_now()
            return store(*a, **kw)

        monkeypatch.setattr(Embedding.objects, "update_or_create", store_after_delete)
    caplog.set_level("INFO", logger="worker")
    sent = []
    pipeline.STAGES[stage](*args, dispatch=lambda *a: sent.append(a))  # returns, no exception
    # the batch stopped at its first insert after the deletion, which came mid-batch
    in_batch = len(args[1]) * (3 if stage == "generate_images" else 1)  # images
    assert len(calls) == (4 if stage == "generate_images" else 3) < in_batch
    assert not Audit.objects.filter(pk=pk).exists() and sent == []
    assert [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")] == []
    assert _rows_left(pk) == dict.fromkeys(_rows_left(pk), 0)
    assert not (media_root / "audits" / str(pk)).exists()


@pytest.mark.django_db(transaction=True)
def test_delete_right_after_cancel_while_a_batch_inserts_redirects_and_leaves_no_rows(
        client, alice, media_root, monkeypatch):
    """The worker's batch stores an image row while the delete view is collecting the rows to
    delete: the view still redirects to the list (no 500), and no row of the audit is left."""
    import threading

    from django.db import connection
    from django.db.models import deletion

    from tests.webapp.factories import make_done_audit

    audit = make_done_audit(alice)
    Audit.objects.filter(pk=audit.pk).update(state=Audit.State.CANCELLED)
    identity = SyntheticIdentity.objects.filter(audit=audit).first()
    worker_result = []

    def worker_insert():  # what a batch still running after the cancel does
        try:
            GeneratedImage.objects.create(audit_id=audit.pk, identity_id=identity.pk,
                                          variant="late", factor="blur", level=3.0,
                                          file=f"audits/{audit.pk}/late.png", sha256="0" * 64,
                                          recipe={})
            worker_result.append("stored")
        except Exception as exc:  # the audit was gone by the time it could insert
            worker_result.append(type(exc).__name__)
        finally:
            connection.close()

    collector_delete = deletion.Collector.delete
    inserted = []

    def delete_with_a_batch_inserting(self):  # the audit's rows have been collected by now
        if Audit in self.data and not inserted:
            inserted.append(threading.Thread(target=worker_insert))
            inserted[0].start()
            inserted[0].join(timeout=2)  # it lands now unless the deletion holds it off
        return collector_delete(self)

    monkeypatch.setattr(deletion.Collector, "delete", delete_with_a_batch_inserting)
    client.force_login(alice)
    response = client.post(f"/audits/{audit.pk}/delete/")
    inserted[0].join(timeout=60)
    assert response.status_code == 302 and response["Location"] == "/"
    assert not Audit.objects.filter(pk=audit.pk).exists()
    assert worker_result == ["IntegrityError"]
    assert _rows_left(audit.pk) == dict.fromkeys(_rows_left(audit.pk), 0)
    assert not (media_root / "audits" / str(audit.pk)).exists()
