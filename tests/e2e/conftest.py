"""Browser fixtures shared by the end-to-end tests.

* ``page``: a Playwright page in Debian's Chromium (skips when /usr/bin/chromium is missing) that
  records console errors, page errors and HTTP responses >= 400 in ``page.console_errors``.
* ``finished_audit``: a small audit run through the real pipeline in this process (real
  generator and models, in the test database), owned by ``alice``.
* ``signed_in``: ``(page, live_server_url, audit)``: Django's live server on the test database
  with ``alice`` signed in through the real sign-in form.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Playwright's sync API keeps an asyncio loop running in this thread, which makes Django refuse
# ORM calls from the test's own fixtures ("SynchronousOnlyOperation"). The tests never share a
# connection between threads, so the check can be relaxed here (Django's documented switch).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

SMALL_AUDIT = {"name": "Browser dashboard audit", "seed": 7,
               "groups": {"perceived_gender": ["female", "male"]},
               "generator": "dcgan-digiface", "identities_per_group": 6, "factors": {"blur": [1.5], "downscale": [24]},
               "fr_models": ["mobilefacenet"], "target_fmr": [0.05, 0.01]}


@pytest.fixture
def page():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(accept_downloads=True)
        pg = context.new_page()
        pg.console_errors = []
        pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))
        pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
        pg.on("response", lambda r: r.status >= 400 and pg.console_errors.append(
            f"HTTP {r.status} {r.url}"))
        yield pg
        browser.close()


@pytest.fixture
def finished_audit(transactional_db, alice, media_root, models_available):
    from generator.config import parse_config
    from webapp.audits.models import Audit
    from worker.pipeline import InlineRunner

    cfg = parse_config(SMALL_AUDIT, fr_models_available=["mobilefacenet", "dlib_resnet"])
    audit = Audit.objects.create(owner=alice, name=cfg.name, config=cfg.to_dict(), seed=cfg.seed,
                                 n_images_planned=cfg.n_images)
    audit = InlineRunner().run(audit.pk)
    assert audit.state == Audit.State.DONE, audit.error
    return audit


def sign_in(page, base_url: str, username: str = "alice", password: str = "alice-pass-123"):
    page.goto(base_url + "/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_selector("text=My audits")


@pytest.fixture
def signed_in(page, live_server, finished_audit):
    sign_in(page, live_server.url)
    return page, live_server.url, finished_audit
