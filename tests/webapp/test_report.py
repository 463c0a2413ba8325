"""The HTML fairness report and the table downloads: content, self-containment, access."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pandas as pd
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from tests.webapp.factories import make_done_audit
from webapp.audits.report import DEFINITIONS, build_report

pytestmark = pytest.mark.django_db

EFFECTS = pd.DataFrame({
    "fr_model": ["mobilefacenet"] * 2, "group": ["female", "male"], "factor": ["blur"] * 2,
    "level": [2.0, 2.0], "n_pairs": [2, 2], "mean_change": [-0.21, -0.05],
    "mean_change_ci_low": [-0.3, -0.1], "mean_change_ci_high": [-0.12, 0.0],
    "wilcoxon_p_adjusted": [0.01, 0.5], "fnmr_control": [0.0, 0.0], "fnmr_level": [0.5, 0.0],
    "mcnemar_lost": [1, 0], "mcnemar_gained": [0, 0], "mcnemar_p_adjusted": [1.0, 1.0],
    "fnmr_change": [0.5, 0.0], "wilcoxon_significant": [True, False],
    "mcnemar_significant": [False, False],
    "significant": [True, False], "threshold": [0.42, 0.42], "target_fmr": [0.001, 0.001]})
HOSTILE = '<script>alert("x")</script> & "quotes"'


def done_audit(owner, name="Hand-made audit"):
    """The factory's finished audit plus a stored factor-effects table and model licences."""
    audit = make_done_audit(owner, name=name)
    stored = default_storage.save(f"audits/{audit.pk}/results/factor_effects.csv",
                                  ContentFile(EFFECTS.to_csv(index=False).encode()))
    result = audit.result
    result.tables = {"factor_effects.csv": stored}
    result.summary["models"] = {
        "generator": {"name": "dcgan-digiface", "weights_sha256": "cd" * 32,
                      "licence": "generator research licence"},
        "mobilefacenet": {"role": "recognition", "file": "mobilefacenet.onnx",
                          "weights_sha256": "ab" * 32, "licence": "Apache-2.0 test"}}
    result.save()
    return audit


def report_urls(pk):
    return {
        "report": reverse("audits:report", args=[pk]),
        "report_inline": reverse("audits:report", args=[pk]) + "?inline=1",
        "tables_zip": reverse("audits:tables_zip", args=[pk]),
        "table_csv": reverse("audits:table", args=[pk, "factor_effects", "csv"]),
        "table_json": reverse("audits:table", args=[pk, "factor_effects", "json"]),
        "download": reverse("audits:download", args=[pk]),
    }


def test_the_report_is_self_contained_with_plotly_once(alice, media_root):
    html = build_report(done_audit(alice))
    assert html.count("plotly.js v") == 1 and "Plotly.newPlot" in html
    tags = re.findall(r"<(?:script|link|img|iframe|source)\b[^>]*>", html, flags=re.I)
    assert tags and not [t for t in tags if re.search(r"(?:src|href)\s*=", t, flags=re.I)]
    assert not re.search(r"@import|url\(\s*['\"]?https?:", html)
    assert "<link" not in html
    charts = re.findall(r'<div id="([^"]+)" class="chart" data-figure>', html)
    assert charts, "no figure embedded"
    for chart in charts:
        data = re.search(rf'<script type="application/json" id="{chart}-data">(.*?)</script>',
                         html, flags=re.S)
        assert data and "data" in json.loads(data.group(1)), chart


def test_the_report_names_every_group_measure_and_licence(alice, media_root):
    html = build_report(done_audit(alice))
    for group in ("female", "male"):
        assert f"<td>{group}</td>" in html
    assert "0.42" in html and "mobilefacenet" in html
    assert "0 (0/2; 95% upper bound 1.5)" in html  # zero errors with the rule-of-three bound
    assert "[0.125, 0.375]" in html  # bootstrap interval of the female FMR
    assert "too small to rank: 2 identities &lt; 20" in html
    assert "Fairness Discrepancy Rate" in html and "[0.8, 0.95]" in html
    assert "no error observed in male" in html
    assert "Apache-2.0 test" in html and "generator research licence" in html
    assert "ab" * 32 in html
    assert "-0.21" in html and "[-0.3, -0.12]" in html  # the factor effect and its interval
    for term, _ in DEFINITIONS:
        assert term.replace("&", "&amp;") in html
    for word in ("FNMR", "FMR", "FTA", "Rule of three", "GARBE", "n / (n - 1)", "Wilcoxon",
                 "McNemar", "Holm", "Benjamini-Hochberg", "EDC", "floor"):
        assert word in html, word
    for heading in ("Summary", "Methods", "Generator accountability", "Limitations",
                    "Definitions", "Quality by group"):
        assert f">{heading}</h2>" in html


def test_the_report_escapes_user_text(alice, media_root):
    audit = done_audit(alice, name=HOSTILE)
    audit.config = {**audit.config, "description": "<img src=x onerror=alert(1)>"}
    audit.save()
    html = build_report(audit)
    assert HOSTILE not in html and "<img" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;quotes&quot;" in html


def test_the_report_view_downloads_or_shows_inline(client, alice, media_root):
    audit = done_audit(alice)
    client.force_login(alice)
    response = client.get(reverse("audits:report", args=[audit.pk]))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert response["Content-Disposition"] == (
        f'attachment; filename="faceaudit-{audit.pk}-report.html"')
    assert response.content.decode().count("plotly.js v") == 1
    inline = client.get(reverse("audits:report", args=[audit.pk]), {"inline": "1"})
    assert inline["Content-Disposition"].startswith("inline;")


def test_tables_download_as_csv_json_and_zip(client, alice, media_root):
    audit = done_audit(alice)
    client.force_login(alice)
    urls = report_urls(audit.pk)
    csv_text = b"".join(client.get(urls["table_csv"]).streaming_content).decode()
    assert pd.read_csv(io.StringIO(csv_text)).equals(EFFECTS)
    records = json.loads(b"".join(client.get(urls["table_json"]).streaming_content))
    assert len(records) == 2 and records[0]["group"] == "female"
    assert records[0]["mean_change"] == -0.21 and records[0]["significant"] is True
    zf = zipfile.ZipFile(io.BytesIO(b"".join(client.get(urls["tables_zip"]).streaming_content)))
    assert set(zf.namelist()) == {"summary.json", "tables/factor_effects.csv",
                                  "tables/factor_effects.json"}
    # only the names the audit stored: anything else is a 404
    for name, fmt in (("quality", "csv"), ("factor_effects", "xml"), ("comparisons", "csv"),
                      ("summary", "json")):
        assert client.get(reverse("audits:table", args=[audit.pk, name, fmt])).status_code == 404
    for raw in (f"/audits/{audit.pk}/tables/..%2F..%2Fsettings.csv",
                f"/audits/{audit.pk}/tables/factor_effects.csv.json"):
        assert client.get(raw).status_code == 404, raw


def test_every_new_url_needs_sign_in_and_ownership(client, alice, bob, django_user_model,
                                                   media_root):
    audit = done_audit(alice)
    urls = report_urls(audit.pk)
    for name, url in urls.items():
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(
            reverse("login")), name
    client.force_login(bob)
    for name, url in urls.items():
        assert client.get(url).status_code == 404, name
    staff = django_user_model.objects.create_user("carol", password="carol-pass-123",
                                                  is_staff=True)
    for user in (alice, staff):
        client.force_login(user)
        for name, url in urls.items():
            response = client.get(url)
            assert response.status_code == 200, (user.username, name)
            if response.streaming:
                b"".join(response.streaming_content)


def test_unfinished_audits_have_no_report(client, alice, media_root):
    from webapp.audits.models import Audit

    audit = done_audit(alice)
    Audit.objects.filter(pk=audit.pk).update(state=Audit.State.SCORING)
    client.force_login(alice)
    assert client.get(reverse("audits:report", args=[audit.pk])).status_code == 404
    assert client.get(report_urls(audit.pk)["table_csv"]).status_code == 404


def test_the_report_is_built_once_per_stored_result_and_then_served_from_storage(
        client, alice, media_root):
    audit = done_audit(alice)
    client.force_login(alice)
    url = reverse("audits:report", args=[audit.pk])
    first = client.get(url).content
    folder = media_root / "audits" / str(audit.pk) / "results"
    stored = sorted(folder.glob("report-*.html"))
    assert len(stored) == 1 and stored[0].read_bytes() == first
    # Served from the stored file: a marker written into it comes back as it is.
    stored[0].write_bytes(b"<!doctype html><p>stored copy</p>")
    assert client.get(url).content == b"<!doctype html><p>stored copy</p>"
    # The result is stored again (new created_at): a fresh report replaces the old file.
    audit.result.save()
    fresh = client.get(url).content
    assert b"stored copy" not in fresh and fresh.decode().count("plotly.js v") == 1
    now = sorted(folder.glob("report-*.html"))
    assert len(now) == 1 and now[0] != stored[0]


@pytest.mark.django_db(transaction=True)
def test_two_first_requests_at_once_both_get_the_report_and_one_file_stays(
        alice, media_root, monkeypatch):
    """Two requests for a report nobody has asked for yet, at the same moment: both get it, it
    is built once, exactly one file ``report-<stamp>.html`` stays, and later requests are
    served from it."""
    import threading
    import time

    from django.db import connection
    from django.test import Client

    from exports.files import result_stamp
    from webapp.audits import report

    audit = done_audit(alice)
    builds = []
    original = report.build_report

    def slow_build(a):
        builds.append(threading.get_ident())
        time.sleep(0.5)  # both requests are past their "does the file exist?" check by now
        return original(a)

    monkeypatch.setattr(report, "build_report", slow_build)
    url = reverse("audits:report", args=[audit.pk])
    start = threading.Barrier(2)
    answers = [None, None]

    def fetch(i):
        try:
            client = Client(raise_request_exception=False)
            client.force_login(alice)
            start.wait(timeout=10)
            response = client.get(url)
            answers[i] = (response.status_code, response.content)
        finally:
            connection.close()

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [a[0] for a in answers] == [200, 200]
    assert answers[0][1] == answers[1][1] and answers[0][1].decode().count("plotly.js v") == 1
    folder = media_root / "audits" / str(audit.pk) / "results"
    expected = f"report-{result_stamp(audit.result)}.html"
    assert sorted(p.name for p in folder.iterdir() if "report" in p.name or p.name.startswith(".")) \
        == [expected]
    assert (folder / expected).read_bytes() == answers[0][1]
    assert len(builds) == 1
    client = Client()
    client.force_login(alice)
    assert client.get(url).content == answers[0][1]
    assert len(builds) == 1  # served from the file, not built again
