"""The dashboard of a real finished audit in Debian's Chromium: every chart draws, the filters
redraw them, and a factor cell leads to its image pairs with images that load."""

from __future__ import annotations

import pytest

from webapp.audits.dashboard import FIGURE_KEYS

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def wait_for_charts(page) -> list[str]:
    keys = page.eval_on_selector_all("[data-figure]", "els => els.map(e => e.dataset.figure)")
    for key in keys:
        page.wait_for_selector(f'[data-figure="{key}"] .main-svg', timeout=20_000)
    return keys


def chart_title(page, key: str) -> str:
    return page.eval_on_selector(f'[data-figure="{key}"]', "el => el.layout.title.text")


def images_loaded(page) -> list[int]:
    """naturalWidth of every image on the page, after each has finished loading (lazy images
    load once scrolled into view)."""
    images = page.locator("img")
    for i in range(images.count()):
        images.nth(i).scroll_into_view_if_needed()
    page.wait_for_function("Array.from(document.images).every(i => i.complete)")
    return page.eval_on_selector_all("img", "els => els.map(i => i.naturalWidth)")


def test_every_chart_draws_and_the_filters_redraw_them(signed_in):
    page, base_url, audit = signed_in
    page.goto(f"{base_url}/audits/{audit.pk}/")
    keys = wait_for_charts(page)
    assert sorted(keys) == sorted(FIGURE_KEYS)  # the audit has every table the charts need
    for key in keys:  # each chart has drawn data, not just axes
        assert page.eval_on_selector(f'[data-figure="{key}"]', "el => el.data.length") > 0, key
    assert page.is_visible("#summary-sentences li")
    assert page.locator("#sample-grids img").count() > 0
    assert all(w > 0 for w in images_loaded(page))

    threshold_before = page.eval_on_selector(
        '[data-figure="histograms"]', "el => el.layout.shapes[0].x0")
    title_before = chart_title(page, "det")
    page.select_option("#filter-fmr", "FMR 0.01")
    page.wait_for_url("**fmr=FMR+0.01**")
    wait_for_charts(page)
    assert page.eval_on_selector("#filter-fmr", "el => el.value") == "FMR 0.01"
    threshold_after = page.eval_on_selector(
        '[data-figure="histograms"]', "el => el.layout.shapes[0].x0")
    assert threshold_after > threshold_before  # a lower target FMR needs a higher threshold
    assert chart_title(page, "det") != title_before
    assert "FMR 0.01" in chart_title(page, "group_rates")
    assert page.console_errors == [], page.console_errors


def test_a_factor_cell_opens_its_image_pairs(signed_in):
    page, base_url, audit = signed_in
    page.goto(f"{base_url}/audits/{audit.pk}/")
    wait_for_charts(page)
    # click the top-left cell of the similarity heat map (plotly's drag surface over the plot
    # area receives the mouse; a hover first lets plotly pick the cell)
    surface = page.locator('[data-figure="factor_similarity"] .nsewdrag').first
    surface.scroll_into_view_if_needed()
    box = surface.bounding_box()
    page.mouse.move(box["x"] + 8, box["y"] + 8)
    page.wait_for_selector('[data-figure="factor_similarity"] .hovertext')
    with page.expect_navigation():
        page.mouse.click(box["x"] + 8, box["y"] + 8)
    assert "/pairs/" in page.url and "group=" in page.url and "variant=" in page.url
    page.wait_for_selector("#pairs-table")
    rows = page.locator("#pairs-table tbody tr").count()
    assert rows > 0
    widths = images_loaded(page)
    assert len(widths) >= 2 * rows and all(w > 0 for w in widths)
    assert page.locator("#pairs-table img[alt]").count() == len(widths)
    page.click("text=Back to the dashboard")
    wait_for_charts(page)
    assert page.console_errors == [], page.console_errors
