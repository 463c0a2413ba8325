"""The worker conditions each diffusion route on the embedding it was trained on: a route whose
identity model is wrong or missing fails the audit before any weights are loaded, with the file
and where it goes; the identity judge never is the route's own model."""

import os

import pytest

from generator.config import parse_config
from tests.audit.test_conditioning import arcface_graph
from webapp.audits.models import Audit
from worker import runtime
from worker.pipeline import InlineRunner

pytestmark = pytest.mark.django_db


@pytest.fixture
def model_dir(models_available, tmp_path, settings):
    """The shared models plus a buffalo_l pack (tiny recogniser, real SCRFD as its detector)."""
    root = tmp_path / "models"
    root.mkdir()
    for f in os.listdir(models_available):
        (root / f).symlink_to(models_available / f)
    arcface_graph(root / "buffalo_l" / "w600k_r50.onnx")
    (root / "buffalo_l" / "det_10g.onnx").symlink_to(models_available / "scrfd_2.5g_bnkps.onnx")
    settings.FACEAUDIT_MODEL_DIR = root
    runtime._backend.cache_clear()
    yield root
    runtime._backend.cache_clear()


def run(alice, generator: str):
    cfg = parse_config({"name": "d", "seed": 1, "groups": {"perceived_gender": ["female", "male"]},
                        "identities_per_group": 2, "generator": generator,
                        "factors": {"expression": ["smiling"]}},
                       generators_available=runtime.available_generators(),
                       fr_models_available=runtime.available_fr_models())
    audit = Audit.objects.create(owner=alice, name=cfg.name, config=cfg.to_dict(), seed=cfg.seed,
                                 n_images_planned=cfg.n_images)
    return cfg, InlineRunner().run(audit.pk)


def test_arc2face_without_its_recogniser_fails_naming_the_file_before_loading_weights(
        alice, media_root, settings, model_dir):
    settings.FACEAUDIT_DIFFUSION = {"arc2face": {"base_model": "/nowhere"}}
    cfg, audit = run(alice, "arc2face")
    assert runtime.conditioning_model(cfg) == "arc2face_arcface"  # its own, not buffalo_l
    assert audit.state == Audit.State.FAILED
    assert str(model_dir / "arc2face" / "arcface.onnx") in audit.error
    assert "huggingface.co/FoivosPar/Arc2Face" in audit.error
    assert "/nowhere" not in audit.error  # refused before the weights were looked for


def test_faceid_with_another_identity_model_fails_naming_buffalo_l(alice, media_root, settings,
                                                                   model_dir):
    settings.FACEAUDIT_DIFFUSION = {"sd15-faceid": {"base_model": "/nowhere", "adapter": "/x",
                                                    "identity_model": "antelopev2"}}
    _, audit = run(alice, "sd15-faceid")
    assert audit.state == Audit.State.FAILED
    assert "identity_model 'antelopev2' is refused" in audit.error
    assert '"identity_model": "buffalo_l"' in audit.error and "/nowhere" not in audit.error


def test_faceid_without_buffalo_l_detector_fails_naming_it(alice, media_root, settings,
                                                           model_dir):
    (model_dir / "buffalo_l" / "det_10g.onnx").unlink()
    settings.FACEAUDIT_DIFFUSION = {"sd15-faceid": {"base_model": "/nowhere", "adapter": "/x"}}
    cfg, audit = run(alice, "sd15-faceid")
    assert audit.state == Audit.State.FAILED
    assert str(model_dir / "buffalo_l" / "det_10g.onnx") in audit.error
    assert "buffalo_l.zip" in audit.error and "/nowhere" not in audit.error
    # the conditioning model does not judge identity drift
    judge, _ = runtime.identity_judge_for(cfg)
    assert judge != "buffalo_l"
