"""Check on the create-audit form and the API's plan: what a design can and cannot show
(:mod:`audit.planner`), in plain words, with bad planning values named at their field."""

import json

import pytest
from django.urls import reverse

from webapp.audits.forms import AuditForm
from webapp.audits.models import Audit

pytestmark = pytest.mark.django_db

SMALL = {"name": "Plan audit", "axis_perceived_gender": ["female", "male"],
         "axis_skin_tone": ["lighter", "darker"], "identities_per_group": "8",
         "factor_blur": "1.5, 3", "factor_downscale": "24, 16", "generator": "dcgan-digiface",
         "fr_models": ["mobilefacenet"], "target_fmr": "0.001", "seed": "0",
         "planning_fnmr": "0.05", "planning_icc": "0.1", "action": "check"}


def default_form_data() -> dict:
    """What a user submits when they change nothing but the name (the form's initial values)."""
    form = AuditForm()
    data = {"name": "Defaults", "action": "check"}
    for name, field in form.fields.items():
        initial = form.get_initial_for_field(field, name)
        if initial not in (None, "", []):
            data[name] = initial
    return data


def test_the_defaults_can_rank_groups_and_finish_in_about_a_minute(client, alice):
    client.force_login(alice)
    data = default_form_data()
    assert data["identities_per_group"] == "30"
    page = client.post(reverse("audits:create"), data).content.decode()
    assert 'id="image-count">720<' in page and "about 1 min" in page
    assert 'data-status="ok"' in page
    assert "Every group can be ranked with 30 identities per group" in page
    assert "150 mated comparisons" in page and "±0.041" in page
    assert "Expected FNMR (for planning)" in page and "design effect" in page
    assert not Audit.objects.exists()


def test_check_says_a_small_design_cannot_rank_and_what_fixes_it(client, alice):
    client.force_login(alice)
    page = client.post(reverse("audits:create"), SMALL).content.decode()
    assert 'data-status="too_small"' in page
    assert "With 8 identities per group no group can be ranked" in page
    assert "8 identities &lt; 20" in page
    assert "no factor effect can be significant" in page
    assert "To rank groups: 25 identities per group (600 images, about 1 min)" in page
    assert not Audit.objects.exists()


def test_planning_values_change_the_forecast(client, alice):
    client.force_login(alice)
    page = client.post(reverse("audits:create"), {**SMALL, "identities_per_group": "30",
                                                  "planning_fnmr": "0.3",
                                                  "planning_icc": "0"}).content.decode()
    assert "If a group&#x27;s FNMR is 0.3" in page and "design effect 1.00" in page


@pytest.mark.parametrize("field,value,fragment", [
    ("planning_fnmr", "abc", "between 0 and 1"),
    ("planning_fnmr", "1", "between 0 and 1"),
    ("planning_icc", "2", "from 0 to 1"),
    ("planning_icc", "-", "from 0 to 1"),
])
def test_bad_planning_values_are_named_at_their_field(client, alice, field, value, fragment):
    client.force_login(alice)
    for action in ("check", "launch"):
        response = client.post(reverse("audits:create"), {**SMALL, field: value,
                                                          "action": action})
        assert response.status_code == 200
        page = response.content.decode()
        assert f'data-error-for="{field}">' in page and fragment in page
        assert 'id="plan"' not in page
    assert not Audit.objects.exists()


API_CONFIG = {"name": "API plan", "groups": {"perceived_gender": ["female", "male"],
                                             "skin_tone": ["lighter", "darker"]},
              "identities_per_group": 30, "factors": {"blur": [1.5, 3], "downscale": [24, 16]},
              "target_fmr": [0.01, 0.001]}


def post(client, body, query=""):
    return client.post(reverse("audits:api-list") + query, json.dumps(body),
                       content_type="application/json")


def test_api_check_plans_without_creating(client, alice):
    client.force_login(alice)
    response = post(client, API_CONFIG, "?check=1&planning_fnmr=0.1")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["valid"] is True and body["n_images_planned"] == 720
    plan = body["plan"]
    assert plan["assumptions"]["fnmr"] == 0.1 and plan["assumptions"]["icc"] == 0.1
    assert plan["rankable"] == {"rankable": True, "status": "ok", "reason": "",
                                "rule": {"min_identities": 20, "min_mated": 100,
                                         "min_nonmated_within": 1000}}
    assert [p["target_fmr"] for p in plan["operating_points"]] == [0.01, 0.001]
    assert plan["operating_points"][1]["nonmated_within_per_group"] == 4785
    assert plan["verdict"]["headline"].startswith("Every group can be ranked")
    assert not Audit.objects.exists()


@pytest.mark.parametrize("query,field", [
    ("?planning_fnmr=abc", "planning_fnmr"), ("?planning_icc=5", "planning_icc"),
    ("?check=maybe", "check"),
])
def test_api_bad_planning_parameters_get_400_naming_them(client, alice, query, field):
    client.force_login(alice)
    response = post(client, API_CONFIG, query)
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert not Audit.objects.exists()


def test_api_create_answers_with_the_plan(client, alice, django_capture_on_commit_callbacks):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=False):
        response = post(client, {**API_CONFIG, "identities_per_group": 8})
    assert response.status_code == 201
    plan = response.json()["plan"]
    assert plan["rankable"]["rankable"] is False
    assert "8 identities < 20" in plan["rankable"]["reason"]
    assert plan["suggestions"][0]["identities_per_group"] == 25
