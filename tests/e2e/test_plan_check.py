"""In Chromium: Check on the create-audit form shows the image count and what the design can
show; a too-small design is told why and what would fix it, the defaults can rank groups, and a
bad planning value is named at its field. Nothing is created."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.e2e.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_check_reads_the_verdict_of_the_design(page, live_server, transactional_db, alice):
    from webapp.audits.models import Audit

    sign_in(page, live_server.url)
    page.goto(live_server.url + reverse("audits:create"))
    page.fill("#id_name", "Planned audit")
    assert page.input_value("#id_identities_per_group") == "30"
    assert page.input_value("#id_planning_fnmr") == "0.05"

    # The defaults: every group can be ranked, with the figures that say how well.
    page.click("button[value=check]")
    page.wait_for_selector("#plan")
    assert page.text_content("#image-count").strip() == "720"
    assert page.get_attribute("#plan", "data-status") == "ok"
    assert "Every group can be ranked" in page.text_content("#plan-verdict")
    details = page.text_content("#plan-details")
    assert "150 mated comparisons" in details and "±0.041" in details
    assert "Two groups' FNMRs must differ by a factor of about" in details
    assert page.is_hidden("#plan-stale")

    # A design too small to rank: the reason and the fix, in plain words.
    page.fill("#id_identities_per_group", "8")
    assert page.is_visible("#plan-stale")  # the shown verdict is marked out of date
    page.click("button[value=check]")
    page.wait_for_selector("#plan[data-status=too_small]")
    verdict = page.text_content("#plan-verdict")
    assert "With 8 identities per group no group can be ranked" in verdict
    assert "the rule needs at least 20 identities" in verdict
    details = page.text_content("#plan-details")
    assert "no factor effect can be significant" in details
    assert "To rank groups: 25 identities per group" in details

    # A planning value that is not a number: named at its field, no verdict, no audit.
    page.fill("#id_planning_fnmr", "abc")
    page.click("button[value=check]")
    error = page.text_content("[data-error-for=planning_fnmr]")
    assert "a number between 0 and 1" in error
    assert page.locator("#plan").count() == 0
    assert not Audit.objects.exists()
    assert page.console_errors == [], page.console_errors
