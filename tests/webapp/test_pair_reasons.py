"""Why an image took no part in a comparison (webapp.audits.pair_reasons), over checks dicts
shaped like generator.editing.check_image's."""

from __future__ import annotations

import pytest

from webapp.audits.pair_reasons import pair_reasons


def latent_checks(**changes) -> dict:
    """A latent yaw edit that passed every check; ``changes`` override keys."""
    checks = {"face_found": True, "target_sensor": "yaw", "requested": 15.0, "achieved": 14.1,
              "on_target": True, "deltas": {"yaw": 14.1, "age": 1.2, "brightness": -3.0},
              "broken": [], "others_held": True, "identity_similarity": 0.71,
              "identity_threshold": 0.52, "identity_kept": True, "identity_judge": "dlib_resnet",
              "edit_ok": True, "passed": True}
    checks.update(changes)
    return checks


def texts(reasons) -> list[str]:
    return [r.text for r in reasons]


def test_a_compared_image_that_passed_everything_has_no_reason_and_no_note():
    out = pair_reasons(latent_checks(), True, scored=True)
    assert out.excluded == () and out.notes == ()


def test_no_face_found_by_the_scoring_detector():
    out = pair_reasons({"face_found": True, "passed": True}, False, scored=False)
    assert texts(out.excluded) == ["no face found in the image by the scoring detector"]
    assert out.excluded[0].kind == "no_face"


def test_no_face_found_by_the_generation_check():
    checks = {"face_found": False, "target_sensor": None, "on_target": None, "deltas": {},
              "broken": [], "identity_kept": None, "others_held": None, "passed": False}
    out = pair_reasons(checks, None, scored=False)
    assert texts(out.excluded) == [
        "no face found in the image when it was made (generation check)"]


def test_no_face_by_both():
    out = pair_reasons({"face_found": False}, False, scored=False)
    assert texts(out.excluded) == ["no face found in the image when it was made (generation "
                                   "check) and by the scoring detector"]


def test_no_face_in_the_baseline_is_named_and_not_blamed_on_the_image():
    # check_image marks the variant face_found False whenever its baseline had none
    out = pair_reasons({"face_found": False, "passed": False}, True, scored=False,
                       baseline_checks={"face_found": False, "passed": False},
                       baseline_face_found=True)
    assert texts(out.excluded) == [
        "no face found in the baseline image when it was made (generation check)"]
    assert out.excluded[0].kind == "baseline_no_face"
    out = pair_reasons({}, True, scored=False, baseline_face_found=False)
    assert texts(out.excluded) == ["no face found in the baseline image by the scoring detector"]


def test_an_edit_that_missed_its_target_shows_sensor_requested_and_achieved():
    out = pair_reasons(latent_checks(achieved=4.2, on_target=False, passed=False), True,
                       scored=False)
    assert texts(out.excluded) == ["edit missed its target: yaw changed by +4.2 (+15 requested)"]
    assert out.excluded[0].kind == "off_target"


def test_an_unmeasurable_change_and_a_prompt_target_rule():
    out = pair_reasons(latent_checks(achieved=None, on_target=False), True, scored=False)
    assert texts(out.excluded) == [
        "edit missed its target: the change in yaw could not be measured (+15 requested)"]
    prompt = {"face_found": True, "prompt_factor": "expression", "prompt_level": "smiling",
              "target_sensor": "mouth_open", "requested": 0.1, "target_rule": "change >= +0.1",
              "achieved": 0.02, "on_target": False, "deltas": {}, "broken": [],
              "others_held": True, "passed": False}
    assert texts(pair_reasons(prompt, True, scored=False).excluded) == [
        "edit missed its target: mouth_open changed by +0.02 (target: change >= +0.1)"]


def test_another_attribute_moved_lists_each_broken_sensor_with_its_change():
    checks = latent_checks(broken=["age", "brightness"], others_held=False, passed=False,
                           deltas={"yaw": 14.1, "age": 12.3, "brightness": -30.0})
    out = pair_reasons(checks, True, scored=False)
    assert texts(out.excluded) == [
        "another attribute moved beyond its tolerance: age +12.3, brightness -30"]
    assert out.excluded[0].kind == "others_moved"


def test_every_reason_that_applies_is_given_in_order():
    checks = latent_checks(achieved=3.0, on_target=False, broken=["age"], others_held=False,
                           deltas={"age": 11.0}, passed=False)
    out = pair_reasons(checks, False, scored=False)
    assert [r.kind for r in out.excluded] == ["no_face", "off_target", "others_moved"]


def test_the_identity_judge_only_adds_a_note_to_a_compared_image():
    checks = latent_checks(identity_similarity=0.41, identity_kept=False, identity_judge="dlib")
    out = pair_reasons(checks, True, scored=True)
    assert out.excluded == ()
    assert texts(out.notes) == [
        "judged a different person by dlib (0.41 < cut-off 0.52): left out of the judged-same "
        "results, still in the headline comparisons"]


def test_the_judge_verdict_is_a_note_beside_a_real_reason():
    checks = latent_checks(identity_similarity=0.3, identity_kept=False, on_target=False,
                           achieved=2.0, passed=False)
    out = pair_reasons(checks, True, scored=False)
    assert [r.kind for r in out.excluded] == ["off_target"]
    assert texts(out.notes) == ["judged a different person by dlib_resnet (0.30 < cut-off 0.52)"]


def test_an_uncompared_image_whose_only_failed_check_is_the_judge():
    # results made before the judge's verdict stopped removing images from the headline set
    # (no edit_ok key): the verdict was the reason
    checks = latent_checks(identity_similarity=0.41, identity_kept=False, passed=False)
    del checks["identity_judge"], checks["edit_ok"]
    out = pair_reasons(checks, True, scored=False)
    assert texts(out.excluded) == [
        "judged a different person by the identity judge (0.41 < cut-off 0.52)"]


def test_the_judge_is_not_blamed_when_the_edit_was_usable():
    # edit_ok: the image belongs in the headline comparisons; a missing score has another cause
    checks = latent_checks(identity_similarity=0.41, identity_kept=False, passed=False)
    out = pair_reasons(checks, True, scored=False)
    assert texts(out.excluded) == ["no score stored for this comparison"]
    assert texts(out.notes) == ["judged a different person by dlib_resnet (0.41 < cut-off 0.52)"]


def test_image_factors_are_not_excluded_for_sensor_drift():
    # blur moves sharpness-like sensors; check_image passes image factors whatever they move
    checks = {"face_found": True, "target_sensor": None, "on_target": None,
              "deltas": {"age": 9.0}, "broken": ["age"], "others_held": False,
              "identity_kept": None, "passed": True}
    assert pair_reasons(checks, True, scored=True).excluded == ()
    assert texts(pair_reasons(checks, True, scored=False).excluded) == [
        "no score stored for this comparison"]


@pytest.mark.parametrize("checks, expected", [
    (None, "no score stored for this comparison"),
    ({"passed": False}, "failed the generator's checks"),
    ({"edit_ok": False, "passed": False}, "failed the generator's checks"),
    ({"edit_ok": True, "passed": False}, "no score stored for this comparison"),
])
def test_fallbacks(checks, expected):
    assert texts(pair_reasons(checks, None, scored=False).excluded) == [expected]
