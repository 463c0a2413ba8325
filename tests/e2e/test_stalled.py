"""In Chromium: the stalled notice of an audit no worker has advanced appears with its Retry
button, and the page's progress poll hides it once a worker stores progress again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.e2e.conftest import SMALL_AUDIT, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_stalled_notice_appears_and_goes_away(page, live_server, transactional_db, alice,
                                                  settings):
    from generator.config import parse_config
    from webapp.audits.models import Audit

    settings.FACEAUDIT_STALLED_AFTER = 600
    cfg = parse_config(SMALL_AUDIT)
    audit = Audit.objects.create(owner=alice, name=cfg.name, config=cfg.to_dict(), seed=cfg.seed,
                                 n_images_planned=cfg.n_images, state=Audit.State.GENERATING)
    Audit.objects.filter(pk=audit.pk).update(updated_at=timezone.now() - timedelta(minutes=30))
    sign_in(page, live_server.url)
    page.goto(live_server.url + reverse("audits:detail", args=[audit.pk]))
    notice = page.locator("#stalled")
    assert notice.is_visible()
    assert "No worker has stored progress for this audit for 30 minutes" in notice.inner_text()
    assert page.locator("#stalled-retry-form button").is_visible()
    # A worker stores progress: the next poll (every second) hides the notice.
    Audit.objects.filter(pk=audit.pk).update(updated_at=timezone.now())
    page.wait_for_selector("#stalled", state="hidden", timeout=10_000)
    assert page.console_errors == []
