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
          "identities_per_group": 3, "factors": {"blur": [2.0]},
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
