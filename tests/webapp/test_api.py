"""The JSON API (webapp/audits/api.py): ownership, validation, CSRF and the served results."""

import json

import pytest
from django.test import Client
from django.urls import reverse

from generator.config import parse_config
from tests.webapp.factories import make_done_audit
from webapp.audits.api import MAX_BODY_BYTES, PAGE_SIZE
from webapp.audits.models import Audit

pytestmark = pytest.mark.django_db

VALID = {"name": "API audit", "seed": 7, "groups": {"perceived_gender": ["female", "male"]},
         "identities_per_group": 3, "factors": {"blur": [1.5, 3], "downscale": [16]},
         "generator": "dcgan-digiface", "fr_models": ["mobilefacenet"], "target_fmr": [0.01]}

# endpoint -> (method, url name, audit-scoped)
ENDPOINTS = {
    "list": ("get", "audits:api-list", False),
    "create": ("post", "audits:api-list", False),
    "detail": ("get", "audits:api-detail", True),
    "progress": ("get", "audits:api-progress", True),
    "results": ("get", "audits:api-results", True),
    "cancel": ("post", "audits:api-cancel", True),
}
EXPECTED = {
    "owner": {"list": 200, "create": 201, "detail": 200, "progress": 200, "results": 200,
              "cancel": 409},  # the audit is done: nothing to cancel
    "other": {"list": 200, "create": 201, "detail": 404, "progress": 404, "results": 404,
              "cancel": 404},
    "anonymous": dict.fromkeys(ENDPOINTS, 401),
}


def post_json(client, url, body, **extra):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(url, data, content_type="application/json", **extra)


def call(client, endpoint, pk):
    method, name, scoped = ENDPOINTS[endpoint]
    url = reverse(name, args=[pk] if scoped else [])
    if method == "post":
        return post_json(client, url, VALID if endpoint == "create" else {})
    return client.get(url)


def assert_json_error(response, status):
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    return body


@pytest.fixture
def audit(alice, media_root):
    return make_done_audit(alice)


@pytest.fixture
def personas(alice, bob):
    return {"owner": alice, "other": bob, "anonymous": None}


@pytest.mark.parametrize("persona", list(EXPECTED))
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_every_endpoint_answers_each_persona(client, audit, personas, persona, endpoint,
                                             django_capture_on_commit_callbacks):
    if personas[persona] is not None:
        client.force_login(personas[persona])
    with django_capture_on_commit_callbacks(execute=False):
        response = call(client, endpoint, audit.pk)
    expected = EXPECTED[persona][endpoint]
    assert response.status_code == expected, (persona, endpoint, response.content[:300])
    assert response["Content-Type"] == "application/json"
    if expected >= 400:
        assert_json_error(response, expected)
    audit.refresh_from_db()
    assert audit.state == Audit.State.DONE


def test_anonymous_gets_401_json_not_a_login_redirect(client, audit):
    body = assert_json_error(client.get(reverse("audits:api-detail", args=[audit.pk])), 401)
    assert "sign in" in body["error"].lower() and body["login_url"] == reverse("login")


def test_other_users_do_not_learn_that_an_audit_exists(client, audit, bob):
    client.force_login(bob)
    missing = client.get(reverse("audits:api-detail", args=[audit.pk + 1000]))
    hidden = client.get(reverse("audits:api-detail", args=[audit.pk]))
    assert missing.status_code == hidden.status_code == 404
    assert missing.json() == hidden.json()


def test_the_list_shows_own_audits_only_and_staff_see_all(client, audit, bob,
                                                          django_user_model):
    make_done_audit(bob, name="Bob's audit")
    client.force_login(bob)
    names = [a["name"] for a in client.get(reverse("audits:api-list")).json()["results"]]
    assert names == ["Bob's audit"]
    staff = django_user_model.objects.create_user("carol", password="carol-pass-123",
                                                  is_staff=True)
    client.force_login(staff)
    data = client.get(reverse("audits:api-list")).json()
    assert data["count"] == 2
    assert client.get(reverse("audits:api-detail", args=[audit.pk])).status_code == 200


def test_list_items_carry_the_fields_and_links(client, audit, alice):
    client.force_login(alice)
    data = client.get(reverse("audits:api-list")).json()
    assert data["count"] == 1 and data["page"] == 1 and data["next"] is None
    item = data["results"][0]
    assert {k: item[k] for k in ("id", "name", "state", "n_images_planned")} == {
        "id": audit.pk, "name": "Hand-made audit", "state": "done", "n_images_planned": 8}
    assert item["created_at"] == audit.created_at.isoformat()
    for key, name in (("self", "api-detail"), ("progress", "api-progress"),
                      ("results", "api-results"), ("page", "detail")):
        assert item["urls"][key] == reverse(f"audits:{name}", args=[audit.pk])
        assert client.get(item["urls"][key]).status_code == 200


def test_the_list_is_paginated_by_50(client, alice):
    cfg = parse_config(VALID)
    Audit.objects.bulk_create([Audit(owner=alice, name=f"a{i}", config=cfg.to_dict(), seed=1)
                               for i in range(PAGE_SIZE + 1)])
    client.force_login(alice)
    first = client.get(reverse("audits:api-list")).json()
    assert (first["count"], first["pages"], len(first["results"])) == (51, 2, 50)
    second = client.get(first["next"]).json()
    assert len(second["results"]) == 1 and second["previous"].endswith("?page=1")
    ids = {a["id"] for a in first["results"]} | {a["id"] for a in second["results"]}
    assert len(ids) == 51
    assert "page" in assert_json_error(client.get(reverse("audits:api-list") + "?page=x"),
                                       400)["errors"]
    assert_json_error(client.get(reverse("audits:api-list") + "?page=3"), 404)
    assert_json_error(client.get(reverse("audits:api-list") + "?page=" + "9" * 5000), 400)


def test_create_stores_the_config_enqueues_once_and_answers_201(
        client, alice, django_capture_on_commit_callbacks):
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_json(client, reverse("audits:api-list"), VALID)
    assert response.status_code == 201, response.content
    audit = Audit.objects.get()
    assert len(callbacks) == 1
    assert response["Location"] == "http://testserver" + reverse("audits:api-detail",
                                                                 args=[audit.pk])
    assert audit.owner == alice and audit.state == Audit.State.QUEUED
    assert audit.config == parse_config(VALID).to_dict()
    assert audit.n_images_planned == 2 * 3 * 5
    body = response.json()
    plan = body.pop("plan")  # what the design can show (audit.planner); only on create
    assert plan["rankable"]["rankable"] is False and plan["per_group"]["mated"] == 3 * 4
    assert body == client.get(reverse("audits:api-detail", args=[audit.pk])).json()


@pytest.mark.parametrize("change,field,fragment", [
    ({"generator": "dcgan-digiface", "identities_per_group": 1}, "identities_per_group", "2 to 500"),
    ({"generator": "dcgan-digiface", "identities_per_group": 10**30}, "identities_per_group", "too large"),
    ({"factors": {"blur": ["abc"]}}, "factors.blur", "numbers"),
    ({"factors": {"downscale": [100]}}, "factors.downscale", "between 4 and 63"),
    ({"factors": {}}, "factors", "vary at least one factor"),
    ({"groups": {"hair": ["a", "b"]}}, "groups.hair", "unknown axis"),
    ({"groups": {"perceived_gender": ["female"]}}, "groups", "make 1 group"),
    ({"thresholds": [round(i / 1000, 3) for i in range(2000)]}, "thresholds",
     "2,000 thresholds; at most 10"),
    ({"target_fmr": [0.01 + i / 1000 for i in range(11)]}, "target_fmr", "at most 10"),
    ({"factors": {"blur": ["15", "abc"]}}, "factors.blur", "got 15, abc"),
    ({"target_fmr": [2]}, "target_fmr", "between 0 and 0.5"),
    ({"name": ""}, "name", "give the audit a name"),
    ({"name": "a\x00b"}, "name", "NUL"),
    ({"name": "\ud800"}, "name", "surrogate"),
    ({"seed": -1}, "seed", "whole number"),
    ({"generator": "sd15-faceid"}, "generator", "not set up"),
    ({"fr_models": ["nope"]}, "fr_models", "choose from mobilefacenet"),
    ({"colour": "red"}, "colour", "unknown field"),
    ({"seed": "\u00b2"}, "seed", "whole number"),  # "²".isdigit() is true in Python
    ({"generator": ["dcgan-digiface"]}, "generator", "a generator name"),
])
def test_invalid_configs_get_400_naming_the_field(client, alice, change, field, fragment):
    client.force_login(alice)
    body = assert_json_error(post_json(client, reverse("audits:api-list"), {**VALID, **change}),
                             400)
    assert field in body["errors"], body
    assert all(isinstance(m, str) for m in body["errors"][field])
    assert fragment in body["errors"][field][0]
    assert not Audit.objects.exists()


@pytest.mark.parametrize("payload,status,field", [
    ("{not json", 400, "body"),
    ("  ", 400, "body"),
    ('{"name": NaN}', 400, "body"),
    (b"\xff\xfe{}", 400, "body"),
    ("[1, 2]", 400, "config"),
    (json.dumps({**VALID, "description": "x" * MAX_BODY_BYTES}), 413, "body"),
])
def test_malformed_or_oversized_bodies_get_a_message(client, alice, payload, status, field):
    client.force_login(alice)
    body = assert_json_error(post_json(client, reverse("audits:api-list"), payload), status)
    assert field in body["errors"]
    assert not Audit.objects.exists()


def test_deeply_nested_json_is_a_400(client, alice):
    client.force_login(alice)
    nested = "[" * 30_000 + "]" * 30_000
    assert len(nested) <= MAX_BODY_BYTES
    body = assert_json_error(post_json(client, reverse("audits:api-list"), nested), 400)
    assert "body" in body["errors"]


def test_a_form_encoded_body_is_refused_with_the_content_type_to_use(client, alice):
    client.force_login(alice)
    body = assert_json_error(client.post(reverse("audits:api-list"), {"name": "x"}), 415)
    assert "application/json" in body["error"]


def test_csrf_is_enforced_for_session_posts(alice, audit, django_capture_on_commit_callbacks):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    url = reverse("audits:api-list")
    assert "CSRF" in assert_json_error(post_json(client, url, VALID), 403)["error"]
    assert_json_error(post_json(client, reverse("audits:api-cancel", args=[audit.pk]), {}), 403)
    assert Audit.objects.count() == 1
    client.get(reverse("audits:create"))  # a page with a form sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    with django_capture_on_commit_callbacks(execute=False):
        response = post_json(client, url, VALID, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201
    assert client.get(url).status_code == 200  # safe methods need no token


@pytest.mark.parametrize("method,name", [("delete", "api-detail"), ("get", "api-cancel"),
                                         ("put", "api-list"), ("post", "api-results"),
                                         ("patch", "api-progress")])
def test_a_wrong_method_is_a_405_with_allow(client, audit, alice, method, name):
    client.force_login(alice)
    args = [] if name == "api-list" else [audit.pk]
    response = getattr(client, method)(reverse(f"audits:{name}", args=args))
    body = assert_json_error(response, 405)
    assert response["Allow"] and response["Allow"] in body["error"]


def test_results_are_the_stored_summary(client, audit, alice):
    client.force_login(alice)
    url = reverse("audits:api-results", args=[audit.pk])
    assert client.get(url).json() == audit.result.summary
    block = client.get(url, {"fr_model": "mobilefacenet"}).json()
    assert block == {"fr_model": "mobilefacenet",
                     **audit.result.summary["fr_models"]["mobilefacenet"]}
    point = audit.result.summary["fr_models"]["mobilefacenet"]["operating_points"][0]
    for wanted in ("FMR 0.001", "0.001", "1e-3"):
        one = client.get(url, {"fr_model": "mobilefacenet", "operating_point": wanted}).json()
        assert one == {"fr_model": "mobilefacenet", "operating_point": point}, wanted
    every = client.get(url, {"operating_point": "FMR 0.001"}).json()
    assert every["fr_models"] == {"mobilefacenet": point}


@pytest.mark.parametrize("query,field", [({"fr_model": "arcface"}, "fr_model"),
                                         ({"operating_point": "FMR 0.5"}, "operating_point"),
                                         ({"fr_model": "mobilefacenet",
                                           "operating_point": "x"}, "operating_point")])
def test_unknown_result_selectors_are_400_naming_the_parameter(client, audit, alice, query,
                                                               field):
    client.force_login(alice)
    body = assert_json_error(client.get(reverse("audits:api-results", args=[audit.pk]), query),
                             400)
    assert list(body["errors"]) == [field] and "choose from" in body["errors"][field][0]


def test_results_are_409_until_the_audit_is_done(client, audit, alice):
    Audit.objects.filter(pk=audit.pk).update(state=Audit.State.SCORING)
    client.force_login(alice)
    body = assert_json_error(client.get(reverse("audits:api-results", args=[audit.pk])), 409)
    assert body["state"] == "scoring" and "no results yet" in body["error"]


def test_progress_is_the_same_json_as_progress_json(client, audit, alice):
    def timeless(progress):  # idle_seconds is a clock reading, taken at each request
        return {k: v for k, v in progress.items() if k != "idle_seconds"}

    client.force_login(alice)
    api = client.get(reverse("audits:api-progress", args=[audit.pk])).json()
    page = client.get(reverse("audits:progress", args=[audit.pk])).json()
    assert timeless(api) == timeless(page) and api["state"] == "done"
    assert {"idle_seconds", "disk_use", "disk_use_text"} <= set(api)
    detail = client.get(reverse("audits:api-detail", args=[audit.pk])).json()
    assert timeless(detail["progress"]) == timeless(page)
    assert detail["config"] == audit.config
    assert detail["has_results"] is True and detail["error"] == ""


def test_cancel_stops_an_unfinished_audit(client, audit, alice):
    Audit.objects.filter(pk=audit.pk).update(state=Audit.State.GENERATING)
    client.force_login(alice)
    response = post_json(client, reverse("audits:api-cancel", args=[audit.pk]), {})
    assert response.status_code == 200
    assert response.json()["cancelled"] is True
    assert response.json()["audit"]["state"] == "cancelled"
    audit.refresh_from_db()
    assert audit.state == Audit.State.CANCELLED and audit.images.count() == 8


def test_create_refuses_latent_edits_when_every_fr_model_is_under_test(client, alice,
                                                                      models_available):
    client.force_login(alice)
    body = {**VALID, "factors": {"yaw": [15]}, "fr_models": ["mobilefacenet", "dlib_resnet"]}
    response = post_json(client, reverse("audits:api-list"), body)
    assert response.status_code == 400
    assert "no FR model is left to judge" in response.json()["errors"]["fr_models"][0]
    assert not Audit.objects.exists()


def test_an_axis_with_one_level_restricts_every_group(client, alice,
                                                      django_capture_on_commit_callbacks):
    client.force_login(alice)
    body = {**VALID, "groups": {"perceived_gender": ["female"], "skin_tone": ["lighter", "darker"]}}
    with django_capture_on_commit_callbacks(execute=False):
        response = post_json(client, reverse("audits:api-list"), body)
    assert response.status_code == 201, response.content
    # 2 groups (female / lighter, female / darker) x 3 identities x (2 + 3 levels)
    assert Audit.objects.get().n_images_planned == 2 * 3 * 5


def test_long_values_are_cut_in_error_messages(client, alice):
    client.force_login(alice)
    body = {**VALID, "factors": {"blur": ["x" * 20_000]}, "generator": "g" * 20_000}
    response = post_json(client, reverse("audits:api-list"), body)
    assert response.status_code == 400
    assert len(response.content) < 2_000
    assert response.json()["errors"]["factors.blur"][0].endswith("got " + "x" * 80 + "...")


def test_queued_images_per_user_are_capped(client, alice, bob, settings,
                                           django_capture_on_commit_callbacks):
    settings.FACEAUDIT_MAX_QUEUED_IMAGES_PER_USER = 70  # VALID makes 2 x 3 x 5 = 30 images
    url = reverse("audits:api-list")
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert post_json(client, url, VALID).status_code == 201  # 30 queued
        assert post_json(client, url, VALID).status_code == 201  # 60 queued
        body = assert_json_error(post_json(client, url, VALID), 429)  # 90 > 70
    assert len(callbacks) == 2 and Audit.objects.count() == 2
    assert "already hold 60 images" in body["error"] and "limit of 70" in body["error"]
    assert body["errors"]["config"] == [body["error"]]
    assert (body["queued_images"], body["max_queued_images"]) == (60, 70)
    # checking a design is not queuing it
    assert post_json(client, url + "?check=1", VALID).status_code == 200
    # the cap is per account, and finished audits no longer count
    client.force_login(bob)
    with django_capture_on_commit_callbacks(execute=False):
        assert post_json(client, url, VALID).status_code == 201
    client.force_login(alice)
    first = Audit.objects.filter(owner=alice).first()
    Audit.objects.filter(pk=first.pk).update(state=Audit.State.DONE)
    with django_capture_on_commit_callbacks(execute=False):
        assert post_json(client, url, VALID).status_code == 201
    settings.FACEAUDIT_MAX_QUEUED_IMAGES_PER_USER = 20
    body = assert_json_error(post_json(client, url, VALID), 429)
    assert "makes 30 images, more than the 20" in body["error"]
