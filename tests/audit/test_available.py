"""The identity judge is never a model under test nor the generator's conditioning model."""

from __future__ import annotations

import pytest

from audit.available import NoIdentityJudge, choose_identity_judge


def test_it_prefers_another_fr_family_than_the_models_under_test():
    judge, why = choose_identity_judge(["mobilefacenet"], ["mobilefacenet", "dlib_resnet"])
    assert judge == "dlib_resnet" and "not under test" in why
    judge, _ = choose_identity_judge(["dlib_resnet"], ["mobilefacenet", "dlib_resnet"])
    assert judge == "mobilefacenet"


def test_it_never_takes_the_model_that_conditions_the_generator():
    judge, why = choose_identity_judge(["mobilefacenet"], ["mobilefacenet", "buffalo_l", "antelopev2"],
                                       conditioning="antelopev2")
    assert judge == "buffalo_l" and why.endswith("does not condition the generator")


def test_a_preferred_judge_that_is_under_test_is_refused_with_the_reason():
    judge, why = choose_identity_judge(["dlib_resnet"], ["mobilefacenet", "dlib_resnet"],
                                       wanted="dlib_resnet")
    assert judge == "mobilefacenet"
    assert why.startswith("FACEAUDIT_DRIFT_MODEL=dlib_resnet is a model under test")


def test_it_names_the_fix_when_no_model_is_left():
    with pytest.raises(NoIdentityJudge, match="add another FR model"):
        choose_identity_judge(["mobilefacenet"], ["mobilefacenet"])

