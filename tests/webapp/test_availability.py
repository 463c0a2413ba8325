"""What this installation offers an audit, read from the settings: the form, the API,
``run_audit`` and the workers share one rule (webapp.audits.availability, over the
framework-free audit.available and generator.available)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.conftest import model_dir
from webapp.audits import availability


def test_the_workers_use_the_same_rule():
    from worker import runtime

    for name in ("available_generators", "available_fr_models", "identity_judge_for",
                 "choose_identity_judge", "conditioning_model", "NoIdentityJudge"):
        assert getattr(runtime, name) is getattr(availability, name)


def test_configured_diffusion_routes_are_offered(settings):
    settings.FACEAUDIT_DIFFUSION = {}
    offline = availability.available_generators()
    assert "dcgan-digiface" in offline and "arc2face" not in offline
    settings.FACEAUDIT_DIFFUSION = {"arc2face": {}}
    assert "arc2face" in availability.available_generators()


def test_the_judge_follows_the_drift_setting_and_never_judges_itself(settings):
    settings.FACEAUDIT_MODEL_DIR = str(model_dir())
    if not {"mobilefacenet", "dlib_resnet"} <= set(availability.available_fr_models()):
        pytest.skip("needs mobilefacenet and dlib_resnet in the model directory")
    edit = SimpleNamespace(generator="dcgan-digiface", factors={"age": [10]},
                           fr_models=["mobilefacenet"])
    blur = SimpleNamespace(generator="dcgan-digiface", factors={"blur": [1.5]},
                           fr_models=["mobilefacenet"])
    settings.FACEAUDIT_DRIFT_MODEL = "auto"
    assert availability.identity_judge_for(blur) is None  # image factors keep the face
    assert availability.identity_judge_for(edit)[0] == "dlib_resnet"
    settings.FACEAUDIT_DRIFT_MODEL = "mobilefacenet"  # under test: refused, the next one used
    judge, why = availability.identity_judge_for(edit)
    assert judge == "dlib_resnet" and "is a model under test" in why
    both = SimpleNamespace(generator="dcgan-digiface", factors={"age": [10]},
                           fr_models=["mobilefacenet", "dlib_resnet"])
    settings.FACEAUDIT_DRIFT_MODEL = "auto"
    with pytest.raises(availability.NoIdentityJudge, match="no FR model is left"):
        availability.identity_judge_for(both)
