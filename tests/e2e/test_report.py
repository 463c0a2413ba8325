"""In Chromium: download the fairness report, open it from a file with the network blocked and
check every chart is drawn; download the dataset zip and check it against the audit."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile

import pytest
from django.urls import reverse

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ALL_CHARTS_DRAWN = """() => {
  const charts = [...document.querySelectorAll('[data-figure]')];
  return charts.length > 0 && charts.every(d => d.querySelector('.main-svg'));
}"""


def download(page, url, target):
    """Click a link to ``url`` on the current page and save what it downloads to ``target``."""
    with page.expect_download() as info:
        page.evaluate("""url => { const a = document.createElement('a'); a.href = url;
                                  document.body.appendChild(a); a.click(); }""", url)
    dl = info.value
    assert dl.failure() is None, dl.failure()
    dl.save_as(target)
    return dl


def test_the_downloaded_report_draws_every_chart_offline(signed_in, tmp_path):
    page, base, audit = signed_in
    page.goto(base + reverse("audits:detail", args=[audit.pk]))
    target = tmp_path / "report.html"
    dl = download(page, base + reverse("audits:report", args=[audit.pk]), target)
    assert dl.suggested_filename == f"faceaudit-{audit.pk}-report.html"
    html = target.read_text(encoding="utf-8")
    assert html.count("plotly.js v") == 1

    context = page.context.browser.new_context()
    requests = []
    context.route("**/*", lambda r: (requests.append(r.request.url), r.abort())
                  if not r.request.url.startswith("file:") else r.continue_())
    offline = context.new_page()
    errors = []
    offline.on("console", lambda m: m.type == "error" and errors.append(m.text))
    offline.on("pageerror", lambda e: errors.append(str(e)))
    offline.goto(target.as_uri())
    offline.wait_for_function(ALL_CHARTS_DRAWN, timeout=60_000)
    n_charts = offline.locator("[data-figure]").count()
    assert n_charts >= 2 * len(audit.result.summary["fr_models"]["mobilefacenet"]
                               ["operating_points"])
    for i in range(n_charts):
        assert offline.locator("[data-figure]").nth(i).locator(".main-svg").count() > 0, i
    for group in audit.result.summary["design"]["groups"]:
        assert offline.locator("table.groups td", has_text=group).count() > 0, group
    assert errors == [] and requests == []
    context.close()
    assert page.console_errors == []


def test_the_dataset_zip_downloaded_in_the_browser_matches_the_audit(signed_in, tmp_path):
    from webapp.audits.models import GeneratedImage

    page, base, audit = signed_in
    page.goto(base + reverse("audits:detail", args=[audit.pk]))
    target = tmp_path / "dataset.zip"
    download(page, base + reverse("audits:download", args=[audit.pk]), target)
    zf = zipfile.ZipFile(target)
    assert zf.testzip() is None
    rows = list(csv.DictReader(io.StringIO(zf.read("manifest.csv").decode())))
    images = {img.sha256: img for img in GeneratedImage.objects.filter(audit=audit)}
    # exports number images 1, 2, ... in design order, not by database id
    assert sorted(int(r["image_id"]) for r in rows) == list(range(1, len(images) + 1))
    assert {r["image_path"] for r in rows} == {n for n in zf.namelist()
                                               if n.startswith("images/")}
    for r in rows:
        img = images[r["sha256"]]
        assert r["sha256"] == img.sha256 == hashlib.sha256(zf.read(r["image_path"])).hexdigest()
        assert r["variant"] == img.variant and r["group"] == img.identity.group_name
    for name in ("DATASET_CARD.md", "manifest.parquet", "pairs_mated.csv", "pairs_nonmated.csv",
                 "comparisons.parquet", "tables/factor_effects.json", "README.txt"):
        assert name in zf.namelist(), name
    assert page.console_errors == []
