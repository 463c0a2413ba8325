"""End to end in Debian's Chromium: the embedded default exactly as a new user runs it.

Starts ``manage.py serve`` (SQLite, kombu's filesystem broker, a real Celery worker, gunicorn) in
a fresh folder, then signs in, creates an audit, watches it finish, reads the per-group table and
downloads the zip.
"""

from __future__ import annotations

import csv
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile

import pytest

from tests.conftest import ROOT, fresh_dir

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path, models_available):
    var_dir = fresh_dir(tmp_path / "var")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "FACEAUDIT_MEDIA_ROOT")}
    env.update({"FACEAUDIT_VAR_DIR": str(var_dir), "FACEAUDIT_ADMIN_USER": "researcher",
                "FACEAUDIT_ADMIN_PASSWORD": "a-long-test-password", "PYTHONUNBUFFERED": "1"})
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url + "/accounts/login/", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("serve did not start:\n" + log.read_text(errors="replace")[-4000:])
            time.sleep(0.5)
    yield url, log
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


def test_a_researcher_runs_an_audit_in_the_browser(server, page, tmp_path):
    url, log = server
    page.goto(url + "/")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", "researcher")
    page.fill("#id_password", "a-long-test-password")
    page.click("button[type=submit]")
    page.wait_for_selector("text=My audits")

    page.click("text=New audit")
    page.fill("#id_name", "Browser audit")
    # groups: perceived gender only (skin tone is ticked by default)
    for box in page.query_selector_all("input[name=axis_skin_tone]:checked"):
        box.uncheck()
    page.fill("#id_identities_per_group", "1")
    page.click("button[value=check]")
    error = page.text_content("[data-error-for=identities_per_group]")
    assert "2 to 500" in error  # the field is named, with the fix

    page.fill("#id_identities_per_group", "3")
    page.fill("#id_factor_blur", "2")
    page.fill("#id_factor_downscale", "16")
    page.fill("#id_target_fmr", "0.05")
    page.click("button[value=check]")
    assert page.text_content("#image-count").strip() == "24"  # 2 groups x 3 x (2 + 2)

    page.click("button[value=launch]")
    page.wait_for_selector("text=Audit queued")
    assert page.is_visible("[data-stage=generating] progress")
    page.wait_for_selector("#state[data-state=done]", timeout=240_000)
    page.wait_for_selector("#group-table")
    rows = page.query_selector_all("#group-table tbody tr[data-group]")
    assert [r.get_attribute("data-group") for r in rows] == ["female", "male"]
    # 3 identities per group: flagged, with intervals and the disparity table shown
    assert page.locator("#group-table >> text=too small to rank").count() == 2
    assert page.is_visible("#disparity-table")
    page.wait_for_selector("#chart .main-svg")  # plotly drew the chart from the local bundle

    with page.expect_download() as info:
        page.click("#download")
    path = tmp_path / "audit.zip"
    info.value.save_as(path)
    with zipfile.ZipFile(path) as zf:
        manifest = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
        assert len(manifest) == 24
        assert all(r["image_path"] in zf.namelist() for r in manifest)
        assert {r["factor"] for r in manifest} == {"baseline", "control", "blur", "downscale"}
        assert "comparisons.csv" in zf.namelist() and "summary.json" in zf.namelist()
    assert page.console_errors == [], page.console_errors
