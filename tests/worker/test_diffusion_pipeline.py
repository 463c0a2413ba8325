"""The worker's diffusion branch through the real loading path: settings -> runtime ->
``from_pretrained`` + ``load_ip_adapter`` (tiny random weights in the real layout) -> anchors
rendered and sensed by the real face models. Random weights draw noise, not faces, so the real
sensors find no face and the audit must fail with a plain group-fill message (the route from a
configured generator to that message is what is tested; faces need real weights and a GPU)."""

import os

import pytest

from generator.config import parse_config
from tests.audit.test_insightface_pack import tiny_arcface
from tests.generator.test_diffusion import ID_DIM, faceid_state_dict, save_adapter, tiny_sd_pipeline
from webapp.audits.models import Audit
from worker import runtime
from worker.pipeline import InlineRunner

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def clean_caches():
    runtime._backend.cache_clear()
    runtime._analyzer.cache_clear()
    yield
    runtime._backend.cache_clear()
    runtime._analyzer.cache_clear()


def test_a_configured_diffusion_generator_runs_the_sampling_stage(
        alice, media_root, models_available, settings, tmp_path, monkeypatch, clean_caches):
    pipe = tiny_sd_pipeline()
    pipe.save_pretrained(tmp_path / "sd")
    save_adapter(faceid_state_dict(pipe.unet, ID_DIM), tmp_path / "faceid", "faceid_tiny.bin")
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    for f in os.listdir(models_available):  # the real detector and sensors, in place
        (model_dir / f).symlink_to(models_available / f)
    tiny_arcface(model_dir / "buffalo_l" / "w600k_r50.onnx", dim=ID_DIM)
    # buffalo_l's detector (the real SCRFD-2.5GF under its name): FaceID's identity is taken
    # as its authors took it, FaceAnalysis' detector at 640 and then the ArcFace
    (model_dir / "buffalo_l" / "det_10g.onnx").symlink_to(
        models_available / "scrfd_2.5g_bnkps.onnx")
    settings.FACEAUDIT_MODEL_DIR = model_dir
    settings.FACEAUDIT_DIFFUSION = {"sd15-faceid": {
        "base_model": str(tmp_path / "sd"), "adapter": str(tmp_path / "faceid"),
        "weight_name": "faceid_tiny.bin", "identity_model": "buffalo_l", "steps": 2,
        "size": 64}}
    import generator.diffusion.audit as diffusion_audit

    monkeypatch.setattr(diffusion_audit, "ANCHORS_PER_IDENTITY", 2)  # keep the test quick
    cfg = parse_config({"name": "diffusion", "seed": 4,
                        "groups": {"perceived_gender": ["female", "male"]},
                        "identities_per_group": 2, "generator": "sd15-faceid",
                        "factors": {"expression": ["smiling"], "blur": [1.0]}},
                       generators_available=runtime.available_generators())
    audit = Audit.objects.create(owner=alice, name=cfg.name, config=cfg.to_dict(),
                                 seed=cfg.seed, n_images_planned=cfg.n_images)
    audit = InlineRunner().run(audit.pk)
    assert audit.state == Audit.State.FAILED
    assert "still short" in audit.error and "Traceback" not in audit.error
    assert audit.stage_progress["sampling"]["candidates"] >= 2  # anchors were rendered


def test_the_identity_model_may_not_judge_its_own_drift(alice, media_root, settings,
                                                        clean_caches):
    """The conditioning model (mobilefacenet) may not judge identity and dlib's ResNet is under
    test: no judge is left, so the audit is refused before any weights are loaded."""
    settings.FACEAUDIT_DIFFUSION = {"sd15-faceid": {"base_model": "/nowhere", "adapter": "/x",
                                                    "identity_model": "mobilefacenet"}}
    cfg = parse_config({"name": "d", "seed": 1, "groups": {"perceived_gender": ["female", "male"]},
                        "identities_per_group": 2, "generator": "sd15-faceid",
                        "factors": {"blur": [1.0]}, "fr_models": ["dlib_resnet"]},
                       generators_available=runtime.available_generators(),
                       fr_models_available=["mobilefacenet", "dlib_resnet"])
    audit = Audit.objects.create(owner=alice, name=cfg.name, config=cfg.to_dict(),
                                 seed=cfg.seed, n_images_planned=cfg.n_images)
    audit = InlineRunner().run(audit.pk)
    assert audit.state == Audit.State.FAILED
    assert "conditions the generator" in audit.error  # said before any weights are loaded


def test_prompt_factors_are_not_mistaken_for_latent_edits():
    from worker.state import latent_factors

    cfg = parse_config({"name": "d", "seed": 1, "groups": {"perceived_gender": ["female", "male"]},
                        "identities_per_group": 2, "generator": "sd15-faceid",
                        "factors": {"expression": ["smiling"], "blur": [1.0]}},
                       generators_available=["sd15-faceid"])
    assert latent_factors(cfg) == []
    latent = parse_config({"name": "l", "seed": 1,
                           "groups": {"perceived_gender": ["female", "male"]},
                           "generator": "dcgan-digiface", "identities_per_group": 2, "factors": {"yaw": [10], "blur": [1.0]}})
    assert latent_factors(latent) == ["yaw"]
