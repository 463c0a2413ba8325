"""Settings a shared lab service needs: secrets from the environment, DEBUG off unless asked
for, security headers on every response."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def settings_in_subprocess(env_overrides: dict[str, str], code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FACEAUDIT_") or k in ("FACEAUDIT_VAR_DIR", "FACEAUDIT_MODEL_DIR")}
    env.update(env_overrides)
    env["DJANGO_SETTINGS_MODULE"] = "webapp.settings"
    return subprocess.run([sys.executable, "-c", "import django; django.setup(); " + code],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    run = settings_in_subprocess({"FACEAUDIT_PRODUCTION": "1",
                                  "FACEAUDIT_VAR_DIR": str(tmp_path)}, "print('started')")
    assert run.returncode != 0
    assert "FACEAUDIT_SECRET_KEY must be set" in run.stderr
    assert not (tmp_path / "secret_key").exists()  # no fallback key was written


def test_production_takes_the_key_from_the_environment_and_debug_is_off(tmp_path):
    run = settings_in_subprocess(
        {"FACEAUDIT_PRODUCTION": "1", "FACEAUDIT_SECRET_KEY": "k" * 50,
         "FACEAUDIT_VAR_DIR": str(tmp_path)},
        "from django.conf import settings as s; "
        "print(s.SECRET_KEY == 'k' * 50, s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE)")
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["True", "False", "True", "True"]


def test_debug_is_only_on_when_asked_for(tmp_path):
    code = "from django.conf import settings as s; print(s.DEBUG)"
    assert settings_in_subprocess({"FACEAUDIT_VAR_DIR": str(tmp_path)}, code).stdout.strip() \
        == "False"
    assert settings_in_subprocess({"FACEAUDIT_VAR_DIR": str(tmp_path), "FACEAUDIT_DEBUG": "1"},
                                  code).stdout.strip() == "True"


@pytest.mark.django_db
def test_every_response_carries_the_security_headers(client, alice):
    for url, signed_in in (("/accounts/login/", False), ("/", True)):
        if signed_in:
            client.force_login(alice)
        response = client.get(url)
        assert response.status_code == 200
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["Cross-Origin-Opener-Policy"] == "same-origin"
        csp = response["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "http" not in csp  # nothing from another origin


@pytest.mark.django_db
def test_csrf_protects_the_forms(alice):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    response = client.post("/audits/new/", {"name": "x"})
    assert response.status_code == 403


@pytest.mark.django_db
def test_static_files_and_the_bad_host_answer_carry_the_security_headers_too(client):
    """Responses the middleware gives by itself, without reaching a view: a static file
    (whitenoise) and the 400 for a Host header not in ALLOWED_HOSTS."""
    static = client.get("/static/audits/app.css")
    bad_host = client.get("/accounts/login/", HTTP_HOST="attacker.example")
    assert static.status_code == 200 and bad_host.status_code == 400
    for response in (static, bad_host):
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
