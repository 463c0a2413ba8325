"""Data lifecycle: an audit's disk use is measured, and deleting it removes its rows and files."""

import os

import pytest

from generator.config import parse_config
from webapp.audits.models import (
    Audit,
    AuditResult,
    Embedding,
    FaceAnalysis,
    GeneratedImage,
    SyntheticIdentity,
)
from webapp.audits.storage import disk_usage
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
    from webapp.audits.storage import audit_prefix

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
