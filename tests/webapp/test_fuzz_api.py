"""Hostile input never breaks audit creation: arbitrary JSON or bytes sent to ``POST
api/audits/`` and arbitrary values in the create form give an answer naming a field, never a
server error. Bounded (100 examples, derandomised) so that it runs in seconds."""

from __future__ import annotations

import json
import re

import pytest
from django.forms.forms import NON_FIELD_ERRORS
from django.urls import reverse
from django.utils.datastructures import MultiValueDict
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from generator.config import FACTORS, FIELDS, GROUP_AXES, prompt_factors
from webapp.audits.forms import AuditForm, axis_field, factor_field, prompt_field
from webapp.audits.models import Audit

pytestmark = pytest.mark.django_db

FUZZ = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# --- Strategies -------------------------------------------------------------------------------

LEVELS = [lv for levels in GROUP_AXES.values() for lv in levels]
WORDS = ["female", "male", "lighter", "darker", "mobilefacenet", "dcgan-digiface",
         "sd15-faceid", "blur", "0.001", "2", "1.5, 3", "-1", "1e400", "NaN", "\u00b2", "",
         " ", "\x00", "\ud800", "0x10"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
    st.sampled_from(WORDS + LEVELS + list(FACTORS)))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=10) | st.sampled_from(list(FACTORS) + list(GROUP_AXES)),
                      inner, max_size=4),
    max_leaves=12)
levels = st.lists(st.sampled_from(LEVELS) | scalars, max_size=4)
configs = st.fixed_dictionaries({}, optional={
    "name": st.text(max_size=30) | scalars,
    "seed": scalars,
    "groups": st.dictionaries(st.sampled_from(list(GROUP_AXES)) | st.text(max_size=5),
                              levels | scalars, max_size=3) | json_values,
    "identities_per_group": scalars,
    "factors": st.dictionaries(st.sampled_from(list(FACTORS) + list(prompt_factors()))
                               | st.text(max_size=5), json_values, max_size=3),
    "generator": scalars,
    "fr_models": st.lists(st.sampled_from(["mobilefacenet", "arcface"]) | scalars, max_size=3)
    | scalars,
    "target_fmr": json_values,
    "thresholds": json_values,
    "description": scalars,
}) | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), json_values, max_size=5)
bodies = st.one_of(
    configs.map(json.dumps),
    json_values.map(json.dumps),
    st.binary(max_size=200),
    st.text(max_size=200),
)

# Form data: every field of the form, some unknown ones, each with a few values.
FORM_FIELDS = (["name", "identities_per_group", "generator", "fr_models", "target_fmr", "seed",
                "action"] + [axis_field(a) for a in GROUP_AXES]
               + [factor_field(f) for f in FACTORS] + [prompt_field(f) for f in prompt_factors()])
form_values = st.lists(st.sampled_from(WORDS + LEVELS) | st.text(max_size=25)
                       | st.integers().map(str) | st.floats().map(str), min_size=1, max_size=3)
form_data = st.dictionaries(st.sampled_from(FORM_FIELDS) | st.text(max_size=8), form_values,
                            max_size=len(FORM_FIELDS))

#: A non-field form error still names the field in words, e.g. "Demographic groups: ...".
NAMED_MESSAGE = re.compile(r"^[\w .()'\-]+: \S")


# --- The API ----------------------------------------------------------------------------------

def assert_names_a_field(body: dict) -> None:
    """The 400 answer has a message and a non-empty ``errors`` of field -> [message]."""
    assert isinstance(body.get("error"), str) and body["error"]
    errors = body.get("errors")
    assert isinstance(errors, dict) and errors, body
    for field, messages in errors.items():
        assert isinstance(field, str) and field
        assert isinstance(messages, list) and messages
        assert all(isinstance(m, str) and m.strip() for m in messages), body


@FUZZ
@given(body=bodies)
@example(body=json.dumps({"name": "x", "seed": "\u00b2"}))
@example(body=json.dumps({"name": "x", "generator": "dcgan-digiface", "identities_per_group": 10**400}))
@example(body=json.dumps({"name": "x", "generator": ["dcgan-digiface"]}))
@example(body=json.dumps({"name": "a\x00", "description": "\ud800"}))
@example(body="[" * 20_000 + "]" * 20_000)
@example(body="1" * 5000)
def test_posting_anything_never_breaks_the_api(client, alice, body):
    client.force_login(alice)
    before = Audit.objects.count()
    response = client.post(reverse("audits:api-list"), body, content_type="application/json")
    assert response.status_code in (201, 400, 413, 415), response.content[:300]
    data = response.json()
    if response.status_code == 201:
        assert Audit.objects.get(pk=data["id"]).owner == alice
    else:
        assert Audit.objects.count() == before
        if response.status_code == 400:
            assert_names_a_field(data)


# --- The create form --------------------------------------------------------------------------

@FUZZ
@given(data=form_data)
@example(data={"name": ["a"], "generator": ["dcgan-digiface"], "seed": ["\u00b2"]})
def test_the_form_never_raises_and_names_the_field(data):
    form = AuditForm(MultiValueDict(data))
    if form.is_valid():
        assert form.config is not None and form.config.n_images > 0
        return
    assert form.errors
    for field, messages in form.errors.items():
        assert field == NON_FIELD_ERRORS or field in form.fields, field
        assert all(m.strip() for m in messages)
        if field == NON_FIELD_ERRORS:
            assert all(NAMED_MESSAGE.match(m) for m in messages), messages
