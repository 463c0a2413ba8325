"""Broken models, a full disk and faceless images become clear audit errors or per-image flags,
never a crashed stage (each stage returns normally, so a worker loop carries on)."""

from __future__ import annotations

import errno
import os
import shutil

import pytest

from generator.config import parse_config
from webapp.audits.models import Audit, FaceAnalysis
from worker import runtime
from worker.pipeline import InlineRunner

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

CONFIG = {"name": "broken", "seed": 6, "groups": {"perceived_gender": ["female", "male"]},
          "generator": "dcgan-digiface", "identities_per_group": 2, "factors": {"blur": [2.0]},
          "fr_models": ["mobilefacenet"], "target_fmr": [0.05]}


def create(owner) -> Audit:
    cfg = parse_config(CONFIG)
    return Audit.objects.create(owner=owner, name=cfg.name, config=cfg.to_dict(), seed=cfg.seed,
                                n_images_planned=cfg.n_images)


@pytest.fixture
def model_copy(tmp_path, models_available, settings):
    """A model folder of links to the real models, used by the worker runtime for one test."""
    folder = tmp_path / "models"
    folder.mkdir()
    for f in models_available.iterdir():
        (folder / f.name).symlink_to(f)
    settings.FACEAUDIT_MODEL_DIR = folder
    runtime._analyzer.cache_clear()
    yield folder
    runtime._analyzer.cache_clear()


def test_a_missing_fr_model_fails_the_audit_with_a_message_naming_it(alice, media_root,
                                                                      model_copy):
    (model_copy / "mobilefacenet.onnx").unlink()
    audit = InlineRunner().run(create(alice).pk)  # returns: no stage raised
    assert audit.state == Audit.State.FAILED
    # (the identity-drift check of generation is the first to need it)
    assert "mobilefacenet" in audit.error and "set FACEAUDIT_MODEL_DIR" in audit.error


@pytest.mark.parametrize("damage", ["wrong bytes", "not an onnx file"])
def test_a_damaged_model_file_fails_the_audit_with_its_hash(alice, media_root, model_copy,
                                                            damage):
    target = model_copy / "mobilefacenet.onnx"
    real = os.path.realpath(target)
    target.unlink()
    if damage == "wrong bytes":
        data = bytearray(open(real, "rb").read())
        data[len(data) // 2] ^= 0xFF  # one flipped byte
        target.write_bytes(bytes(data))
    else:
        target.write_bytes(b"this is not a model")
    audit = InlineRunner().run(create(alice).pk)
    assert audit.state == Audit.State.FAILED
    assert "mobilefacenet" in audit.error and "sha256" in audit.error


def test_a_full_disk_fails_the_audit_with_what_to_do_and_keeps_what_was_made(
        alice, media_root, models_available, monkeypatch):
    from django.core.files.storage import default_storage

    real_save = default_storage.save
    saved = []

    def save(name, content, *args, **kwargs):
        if len(saved) >= 5:  # the sixth file does not fit
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
        saved.append(name)
        return real_save(name, content, *args, **kwargs)

    monkeypatch.setattr(default_storage, "save", save)
    audit = InlineRunner().run(create(alice).pk)
    assert audit.state == Audit.State.FAILED
    assert "the disk is full" in audit.error and "retry the audit" in audit.error
    assert all(default_storage.exists(n) for n in saved)  # nothing already made was lost


def test_images_without_a_face_are_flagged_and_left_out_not_errors(alice, media_root,
                                                                   models_available):
    """A blur this strong makes the detector miss most faces: those images are flagged
    face_found=False, counted as failures to acquire, and the audit still finishes."""
    cfg = parse_config({**CONFIG, "name": "faceless", "factors": {"blur": [9.0]}})
    audit = Audit.objects.create(owner=alice, name=cfg.name, config=cfg.to_dict(), seed=cfg.seed,
                                 n_images_planned=cfg.n_images)
    audit = InlineRunner().run(audit.pk)
    assert audit.state == Audit.State.DONE, audit.error
    missed = FaceAnalysis.objects.filter(image__audit=audit, face_found=False).count()
    assert missed > 0
    overall = audit.result.summary["acquisition"]["overall"]
    assert overall["images"] - overall["faces_found"] == missed


def test_a_missing_model_folder_fails_the_audit_with_a_message(alice, media_root, model_copy):
    shutil.rmtree(model_copy)
    audit = InlineRunner().run(create(alice).pk)
    assert audit.state == Audit.State.FAILED
    assert audit.error  # a message for the researcher, not an exception in the worker
