"""A machine without its face models: every page says which files are missing and where they
come from, the form lists the FR models it cannot offer and why, and Launch (form and API) is
refused with the reason instead of failing in the worker."""

import json
import shutil

import pytest
from django.urls import reverse

from tests.webapp.test_views import FORM
from webapp.audits.models import Audit

pytestmark = pytest.mark.django_db


@pytest.fixture
def registry(models_available):
    from audit.registry import ModelRegistry

    return ModelRegistry(models_available)


@pytest.fixture
def empty_models(tmp_path, settings):
    settings.FACEAUDIT_MODEL_DIR = str(tmp_path / "models")
    return tmp_path / "models"


def test_every_page_shows_the_missing_models_with_where_they_go(client, alice, empty_models):
    client.force_login(alice)
    for url in (reverse("audits:list"), reverse("audits:create")):
        page = client.get(url).content.decode()
        assert "Face models missing" in page, url
        for filename in ("scrfd_500m_bnkps.onnx", "buffalo_s/genderage.onnx",
                         "mobilefacenet.onnx"):
            assert str(empty_models / filename) in page, (url, filename)
        assert "fetch_models" in page


def test_no_banner_when_the_models_are_there(client, alice, models_available):
    client.force_login(alice)
    assert "Face models missing" not in client.get(reverse("audits:list")).content.decode()


def test_the_form_says_why_an_fr_model_is_not_offered_and_refuses_launch(
        client, alice, empty_models):
    client.force_login(alice)
    page = client.get(reverse("audits:create")).content.decode()
    assert "mobilefacenet is not offered" in page and "foamliu/MobileFaceNet" in page
    for action in ("check", "launch"):
        data = {**FORM, "fr_models": ["dlib_resnet"], "action": action}
        page = client.post(reverse("audits:create"), data).content.decode()
        assert "Launch is refused" in page and "scrfd_500m_bnkps.onnx" in page, action
    assert not Audit.objects.exists()


def test_a_damaged_copy_is_named_as_such(client, alice, empty_models, registry):
    empty_models.mkdir()
    (empty_models / "mobilefacenet.onnx").write_bytes(
        registry.verify("mobilefacenet").read_bytes()[:-10])
    client.force_login(alice)
    page = client.get(reverse("audits:create")).content.decode()
    assert "mobilefacenet is not offered: its file differs from the pinned one" in page


def test_the_api_refuses_launch_with_409_naming_the_files(client, alice, empty_models):
    from tests.webapp.test_api import VALID

    client.force_login(alice)
    body = {**VALID, "fr_models": ["dlib_resnet"]}
    response = client.post(reverse("audits:api-list"), json.dumps(body),
                           content_type="application/json")
    assert response.status_code == 409, response.content[:500]
    assert "scrfd_500m_bnkps.onnx" in response.json()["error"]
    assert not Audit.objects.exists()


def test_launch_works_again_once_the_files_are_copied_in(client, alice, empty_models, registry,
                                                        django_capture_on_commit_callbacks):
    empty_models.mkdir()
    for name in ("scrfd_500m", "genderage", "mobilefacenet"):
        shutil.copy(registry.verify(name), empty_models / registry.spec(name).filename)
    client.force_login(alice)
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(reverse("audits:create"), FORM)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Audit.objects.count() == 1
