"""The compare page: two FR models on one audit (paired), or two audits of the same design."""

import pytest

from exports.comparison_store import read_comparisons
from generator.config import parse_config
from webapp.audits.models import Audit
from worker.pipeline import InlineRunner

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

CONFIG = {"name": "two models", "seed": 8, "groups": {"perceived_gender": ["female", "male"]},
          "generator": "dcgan-digiface", "identities_per_group": 4, "factors": {"blur": [2.0]},
          "fr_models": ["mobilefacenet", "dlib_resnet"], "target_fmr": [0.05]}


def run(owner, config=CONFIG):
    cfg = parse_config(config, fr_models_available=["mobilefacenet", "dlib_resnet"])
    audit = Audit.objects.create(owner=owner, name=cfg.name, config=cfg.to_dict(), seed=cfg.seed,
                                 n_images_planned=cfg.n_images)
    audit = InlineRunner().run(audit.pk)
    assert audit.state == Audit.State.DONE, audit.error
    return audit


def naive_fnmr(comp, model, group, threshold):
    rows = comp[(comp["fr_model"] == model) & comp["mated"] & (comp["group_a"] == group)]
    misses = sum(1 for s in rows["score"] if not s >= threshold)
    return misses / len(rows)


@pytest.fixture
def audit(alice, media_root, models_available):
    return run(alice)


def test_two_models_on_one_audit_side_by_side_with_paired_differences(client, alice, audit):
    client.force_login(alice)
    response = client.get("/audits/compare/", {"a": audit.pk})
    assert response.status_code == 200
    result = response.context["result"]
    first, second = list(audit.result.summary["fr_models"])
    assert {first, second} == {"mobilefacenet", "dlib_resnet"}
    assert response.context["model_a"] == first
    assert response.context["model_b"] == second  # the other model by default
    assert result["paired"] is True

    comp = read_comparisons(audit.result.comparisons_file)
    points = {m: audit.result.summary["fr_models"][m]["operating_points"][0]
              for m in (first, second)}
    for group in ("female", "male"):
        row = result["by_group"][group]
        a = naive_fnmr(comp, first, group, points[first]["threshold"])
        b = naive_fnmr(comp, second, group, points[second]["threshold"])
        assert row["fnmr_a"] == pytest.approx(a)
        assert row["fnmr_b"] == pytest.approx(b)
        assert row["fnmr_diff"] == pytest.approx(b - a)
        if row["fnmr_diff_lower"] is not None:
            assert row["fnmr_diff_lower"] <= row["fnmr_diff_upper"]
    html = response.content.decode()
    assert 'id="compare-table"' in html and 'id="compare-disparity"' in html
    assert "GARBE" in html


def test_bad_choices_are_named_at_their_field(client, alice, bob, audit):
    client.force_login(alice)
    same = client.get("/audits/compare/", {"a": audit.pk, "model_a": "mobilefacenet",
                                           "model_b": "mobilefacenet"})
    assert "choose another FR model" in same.context["errors"]["model_b"]
    unknown = client.get("/audits/compare/", {"a": audit.pk, "model_b": "nope"})
    assert "scored with" in unknown.context["errors"]["model_b"]
    assert "mobilefacenet" in unknown.context["errors"]["model_b"]
    point = client.get("/audits/compare/", {"a": audit.pk, "point": "FMR 0.5"})
    assert "choose one of: FMR 0.05" in point.context["errors"]["point"]
    assert client.get("/audits/compare/", {"a": "x"}).context["errors"]["a"]

    other_design = run(alice, {**CONFIG, "name": "bigger", "generator": "dcgan-digiface", "identities_per_group": 5,
                               "fr_models": ["mobilefacenet"]})
    response = client.get("/audits/compare/", {"a": audit.pk, "b": other_design.pk})
    assert "differ in their identities per group" in response.context["errors"]["b"]
    assert response.context["result"] is None

    # another user's audit cannot be picked (and is not confirmed to exist)
    client.force_login(bob)
    response = client.get("/audits/compare/", {"a": audit.pk})
    assert response.status_code == 200 and response.context["errors"]["a"]
    assert audit.name not in response.content.decode()


def test_two_audits_of_the_same_design_use_independent_draws(client, alice, audit):
    again = run(alice, {**CONFIG, "name": "same design, other seed", "seed": 99})
    client.force_login(alice)
    response = client.get("/audits/compare/", {"a": audit.pk, "b": again.pk,
                                               "model_a": "mobilefacenet",
                                               "model_b": "mobilefacenet"})
    result = response.context["result"]
    assert result is not None and result["paired"] is False


def test_anonymous_is_sent_to_sign_in(client):
    response = client.get("/audits/compare/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
