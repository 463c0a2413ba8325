"""In Chromium: the factor heat maps write each cell's number of pairs, and the pairs page says
why an image took no part in a comparison (and notes the identity judge's verdict on one that
did)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.e2e.conftest import sign_in
from tests.webapp.test_dashboard import store_dashboard_results
from tests.webapp.test_numbers_rest_on import make_reasons_audit

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def reasons_site(page, live_server, transactional_db, alice, media_root):
    audit = make_reasons_audit(alice)
    sign_in(page, live_server.url)
    return page, live_server.url, audit


def test_the_pairs_page_shows_each_reason(reasons_site):
    page, base, audit = reasons_site
    url = base + reverse("audits:pairs", args=[audit.pk])
    page.goto(url + "?group=female&variant=blur_2")
    page.wait_for_selector("#pairs-table")
    judged = page.locator('#pairs-table tr[data-identity="1"]')
    assert judged.locator(".decision-match").is_visible()
    assert "judged a different person by dlib (0.41 < cut-off 0.52): left out of the " \
           "judged-same results" in judged.locator(".note").inner_text()
    missed = page.locator('#pairs-table tr[data-identity="2"] td.decision')
    text = missed.inner_text()
    assert "not compared" in text
    assert "edit missed its target: yaw changed by +4.2 (+15 requested)" in text
    assert "another attribute moved beyond its tolerance: age +12.3" in text

    page.goto(url + "?group=male&variant=blur_2")
    page.wait_for_selector("#pairs-table")
    assert "no face found in the image by the scoring detector" in page.locator(
        '#pairs-table tr[data-identity="1"] td.decision').inner_text()
    assert "no face found in the baseline image when it was made" in page.locator(
        '#pairs-table tr[data-identity="2"] td.decision').inner_text()
    assert page.console_errors == [], page.console_errors


def test_heat_map_cells_show_their_number_of_pairs(reasons_site):
    page, base, audit = reasons_site
    store_dashboard_results(audit)
    page.goto(base + reverse("audits:detail", args=[audit.pk]))
    for key in ("factor_similarity", "factor_fnmr"):
        page.wait_for_selector(f'[data-figure="{key}"] .main-svg', timeout=20_000)
        cells = page.eval_on_selector_all(f'[data-figure="{key}"] .main-svg text',
                                          "els => els.map(e => e.textContent)")
        # one per group, drawn in the cell as a second line (a tspan) under the value
        assert sum(t.endswith("n=2") and t != "n=2" for t in cells) == 2, cells
        lines = page.eval_on_selector_all(f'[data-figure="{key}"] .main-svg text tspan',
                                          "els => els.map(e => e.textContent)")
        assert lines.count("n=2") == 2, lines
    table = page.locator("#factor-cells table").text_content()  # inside a closed <details>
    assert table.count("(n=2)") == 2
    assert page.console_errors == [], page.console_errors
