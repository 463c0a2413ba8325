"""The audit dashboard: figures built from stored results, and the pages that show them."""

from __future__ import annotations

import copy
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from tests.webapp.factories import make_done_audit
from webapp.audits import result_tables
from webapp.audits.charts import SIGNIFICANT_MARK
from webapp.audits.dashboard import FIGURE_KEYS, dashboard_figures
from webapp.audits.models import AuditResult, GeneratedImage

GROUPS = ["female", "male"]


# ----------------------------------------------------------------------------- hand-made results


def operating_point(target: float, threshold: float) -> dict:
    """A stored operating point: female has errors of both kinds, male no false match."""
    return {
        "target_fmr": target, "threshold": threshold, "achieved_fmr": target,
        "nonmated_used": 400, "label": f"FMR {target:g}",
        "overall": {"n_mated": 40, "false_non_matches": 6, "fnmr": 0.15, "n_nonmated": 400,
                    "false_matches": 2, "fmr": 0.005},
        "by_group": {
            "female": {"n_mated": 20, "false_non_matches": 4, "fnmr": 0.2, "fnmr_upper95": None,
                       "n_identities": 2, "n_nonmated": 100, "false_matches": 2, "fmr": 0.02,
                       "fmr_upper95": None},
            "male": {"n_mated": 20, "false_non_matches": 2, "fnmr": 0.1, "fnmr_upper95": None,
                     "n_identities": 2, "n_nonmated": 120, "false_matches": 0, "fmr": 0.0,
                     "fmr_upper95": 0.025},
        },
        "bootstrap": {"by_group": {
            "female": {"fnmr_lower": 0.05, "fnmr_upper": 0.35, "fmr_lower": 0.004,
                       "fmr_upper": 0.05},
            "male": {"fnmr_lower": 0.0, "fnmr_upper": 0.25},  # no FMR interval stored
        }},
        "cross_group": {"groups": GROUPS, "fmr": [[0.02, 0.01], [0.01, 0.0]],
                        "n_nonmated": [[100, 200], [200, 120]],
                        "false_matches": [[2, 2], [2, 0]]},
    }


def summary() -> dict:
    points = [operating_point(0.01, 0.30), operating_point(0.001, 0.55)]
    return {"fr_models": {"facenet-a": {"operating_points": points},
                          "facenet-b": {"operating_points": copy.deepcopy(points)}},
            "design": {"groups": GROUPS, "variants": ["baseline", "blur_2"]},
            "quality": {"low_quality_line": 0.2}}


def det_table() -> pd.DataFrame:
    rows = []
    for model, shift in (("facenet-a", 0.0), ("facenet-b", 0.1)):
        for g, k in (("female", 1.0), ("male", 2.0)):
            for t in np.linspace(-0.2, 0.9, 7):
                rows.append({"group": g, "threshold": t, "fmr": (1 - t) / (10 * k) + shift,
                             "fnmr": t / k, "fr_model": model})
    return pd.DataFrame(rows)


def histogram_table() -> pd.DataFrame:
    edges = np.linspace(-1, 1, 51)
    rows = []
    for model in ("facenet-a", "facenet-b"):
        for g in GROUPS:
            for kind, centre in (("mated", 0.7), ("nonmated", 0.1)):
                for left, right in zip(edges[:-1], edges[1:], strict=True):
                    count = int(100 * np.exp(-((left - centre) / 0.2) ** 2))
                    rows.append({"group": g, "kind": kind, "bin_left": left, "bin_right": right,
                                 "count": count, "fr_model": model})
    return pd.DataFrame(rows)


def factor_table() -> pd.DataFrame:
    rows = []
    for model in ("facenet-a", "facenet-b"):
        for target, sign in ((0.01, 1.0), (0.001, 2.0)):
            for g, change in (("female", -0.3), ("male", -0.1)):
                rows.append({"fr_model": model, "group": g, "factor": "blur", "level": 2.0,
                             "n_pairs": 2, "mean_control": 0.9, "mean_level": 0.9 + change,
                             "mean_change": change * sign, "wilcoxon_p_adjusted": 0.01,
                             "wilcoxon_significant": g == "female", "threshold": 0.3,
                             "fnmr_control": 0.0, "fnmr_level": 0.5, "fnmr_change": 0.5 * sign,
                             "mcnemar_p_adjusted": 0.2, "mcnemar_significant": False,
                             "target_fmr": target})
    return pd.DataFrame(rows)


def quality_table() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({"image_id": range(40), "group": ["female"] * 20 + ["male"] * 20,
                         "factor": "baseline", "quality": rng.uniform(0, 1, 40)})


def edc_table() -> pd.DataFrame:
    rows = [{"group": g, "fraction": f, "fnmr": 0.2 - f / 4, "n_mated": 20, "false_non_matches": 4,
             "fr_model": m, "threshold": 0.3}
            for m in ("facenet-a", "facenet-b") for g in GROUPS for f in (0.0, 0.1, 0.2)]
    return pd.DataFrame(rows)


def all_tables() -> dict[str, pd.DataFrame]:
    return {"det_curves.csv": det_table(), "score_histograms.csv": histogram_table(),
            "factor_effects.csv": factor_table(), "quality.csv": quality_table(),
            "edc_curves.csv": edc_table()}


def trace(fig, name):
    return next(t for t in fig.data if t.name == name)


# ----------------------------------------------------------------------------- figures


def test_every_chart_is_built_when_every_table_is_there():
    figures = dashboard_figures(summary(), all_tables(), "facenet-a", 0)
    assert list(figures) == list(FIGURE_KEYS)


def test_charts_whose_table_is_missing_are_left_out():
    figures = dashboard_figures(summary(), {"det_curves.csv": pd.DataFrame()}, "facenet-a", 0)
    assert list(figures) == ["group_rates", "cross_group"]


def test_det_curves_use_log_axes_and_plot_the_stored_rows_of_the_model():
    det = det_table()
    fig = dashboard_figures(summary(), {"det_curves.csv": det}, "facenet-b", 1)["det"]
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    for g in GROUPS:
        rows = det[(det["fr_model"] == "facenet-b") & (det["group"] == g)]
        line = trace(fig, g)
        assert list(line.x) == rows["fmr"].tolist() and list(line.y) == rows["fnmr"].tolist()
    # the operating point: female's rates; male's zero FMR drawn at its rule-of-three bound
    female, male = (next(t for t in fig.data if t.name == f"{g} at threshold") for g in GROUPS)
    assert (female.x[0], female.y[0]) == (0.02, 0.2)
    assert (male.x[0], male.y[0]) == (0.025, 0.1) and male.marker.symbol == "circle-open"
    assert "0.5500" in fig.layout.title.text


def test_rate_whiskers_are_the_stored_bootstrap_bounds_or_the_rule_of_three():
    fig = dashboard_figures(summary(), {}, "facenet-a", 0)["group_rates"]
    fnmr, fmr = trace(fig, "FNMR"), trace(fig, "FMR")
    boot = operating_point(0.01, 0.3)["bootstrap"]["by_group"]
    for i, g in enumerate(GROUPS):
        assert fnmr.y[i] + fnmr.error_y.array[i] == pytest.approx(boot[g]["fnmr_upper"])
        assert fnmr.y[i] - fnmr.error_y.arrayminus[i] == pytest.approx(boot[g]["fnmr_lower"])
    assert fmr.y[0] + fmr.error_y.array[0] == pytest.approx(0.05)
    assert fmr.y[0] - fmr.error_y.arrayminus[0] == pytest.approx(0.004)
    assert fmr.y[1] == 0 and fmr.error_y.array[1] == pytest.approx(0.025)  # 3/n, no bootstrap
    assert list(fmr.customdata[0][:2]) == [2, 100]  # counts in the hover


def test_factor_heat_map_cells_are_the_stored_rows_for_the_model_and_target():
    effects = factor_table()
    figures = dashboard_figures(summary(), {"factor_effects.csv": effects}, "facenet-a", 1)
    rows = effects[(effects["fr_model"] == "facenet-a") & (effects["target_fmr"] == 0.001)]
    similarity, fnmr = figures["factor_similarity"].data[0], figures["factor_fnmr"].data[0]
    assert list(similarity.y) == GROUPS and list(similarity.x) == ["blur 2"]
    for i, g in enumerate(GROUPS):
        row = rows[rows["group"] == g].iloc[0]
        assert similarity.z[i][0] == pytest.approx(row["mean_change"])
        assert fnmr.z[i][0] == pytest.approx(row["fnmr_change"])
        value_line, count_line = similarity.text[i][0].split("<br>")
        assert value_line.endswith(SIGNIFICANT_MARK) == bool(row["wilcoxon_significant"])
        assert count_line == "n=2"  # the number of pairs the cell rests on, a whole number
        assert not fnmr.text[i][0].split("<br>")[0].endswith(SIGNIFICANT_MARK)
        assert list(similarity.customdata[i][0][:4]) == [g, "blur", "2", "blur_2"]


def test_cross_group_hover_shows_intervals_only_when_stored():
    s = summary()
    plain = dashboard_figures(s, {}, "facenet-a", 0)["cross_group"].data[0]
    assert [list(r) for r in plain.z] == [[0.02, 0.01], [0.01, 0.0]]
    assert all(cell[2] == "" for row in plain.customdata for cell in row)
    cross = s["fr_models"]["facenet-a"]["operating_points"][0]["cross_group"]
    cross["lower"] = [[0.01, 0.002], [0.002, 0.0]]
    cross["upper"] = [[0.04, 0.03], [0.03, 0.025]]
    heat = dashboard_figures(s, {}, "facenet-a", 0)["cross_group"].data[0]
    assert "[0.01, 0.04]" in heat.customdata[0][0][2]


def test_histograms_draw_the_threshold_of_the_chosen_point():
    tables = {"score_histograms.csv": histogram_table()}
    for index, threshold in ((0, 0.30), (1, 0.55)):
        fig = dashboard_figures(summary(), tables, "facenet-a", index)["histograms"]
        lines = [s for s in fig.layout.shapes if s.type == "line"]
        assert len(lines) == 2 and all(s.x0 == threshold for s in lines)
        assert {t.name for t in fig.data} == {"mated", "non-mated"}
        assert sum(t.y.sum() for t in fig.data) == pytest.approx(4.0)  # shares per panel


def test_quality_boxes_are_the_group_quartiles():
    quality = quality_table()
    fig = dashboard_figures(summary(), {"quality.csv": quality}, "facenet-a", 0)["quality"]
    for box in fig.data:
        values = quality.loc[quality["group"] == box.name, "quality"]
        assert box.median[0] == pytest.approx(values.median())
        assert box.q1[0] == pytest.approx(values.quantile(0.25))
        assert box.q3[0] == pytest.approx(values.quantile(0.75))


def test_edc_curves_are_the_stored_rows_of_the_model():
    edc = edc_table()
    fig = dashboard_figures(summary(), {"edc_curves.csv": edc}, "facenet-a", 0)["edc"]
    assert list(trace(fig, "male").y) == edc[(edc["fr_model"] == "facenet-a")
                                             & (edc["group"] == "male")]["fnmr"].tolist()


# ----------------------------------------------------------------------------- stored results


def store_dashboard_results(audit, extra_point: bool = True) -> AuditResult:
    """Give a hand-made finished audit the stored tables and a mated comparisons file whose
    image ids are the audit's own (baseline vs blur_2 per identity)."""
    result = audit.result
    s = summary()
    s["fr_models"] = {"mobilefacenet": s["fr_models"]["facenet-a"]}
    s["acquisition"] = result.summary["acquisition"]
    tables = {}
    for name, df in all_tables().items():
        if "fr_model" in df.columns:
            df = df[df["fr_model"] == "facenet-a"].assign(fr_model="mobilefacenet")
        tables[name] = default_storage.save(f"audits/{audit.pk}/results/{name}",
                                            ContentFile(df.to_csv(index=False).encode()))
    rows = []
    for img in GeneratedImage.objects.filter(audit=audit, factor="blur"):
        base = GeneratedImage.objects.get(identity=img.identity, variant="baseline")
        rows.append({"fr_model": "mobilefacenet", "image_a": base.pk, "image_b": img.pk,
                     "identity_a": img.identity_id, "identity_b": img.identity_id,
                     "group_a": img.identity.group_name, "group_b": img.identity.group_name,
                     "mated": True, "score": 0.2 + 0.1 * img.identity.index_in_group})
    buf = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buf, index=False)
    cname = default_storage.save(f"audits/{audit.pk}/results/comparisons.parquet",
                                 ContentFile(buf.getvalue()))
    result.summary, result.tables, result.comparisons_file = s, tables, cname
    result.save()
    return result


@pytest.fixture
def dashboard_audit(alice, media_root):
    audit = make_done_audit(alice)
    store_dashboard_results(audit)
    return audit


def chart_data(page: str) -> dict:
    match = re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', page, re.S)
    assert match, "no chart data on the page"
    return json.loads(match.group(1))


def dashboard_urls(audit) -> dict[str, str]:
    image = GeneratedImage.objects.filter(audit=audit).first()
    return {"detail": reverse("audits:detail", args=[audit.pk]),
            "pairs": reverse("audits:pairs", args=[audit.pk]) + "?group=female&variant=blur_2",
            "image": reverse("audits:image", args=[audit.pk, image.pk])}


@pytest.mark.django_db
def test_the_owner_sees_every_chart_the_grids_and_the_summary(client, alice, dashboard_audit):
    client.force_login(alice)
    response = client.get(reverse("audits:detail", args=[dashboard_audit.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert list(chart_data(page)) == list(FIGURE_KEYS)
    for key in FIGURE_KEYS:
        assert f'data-figure="{key}"' in page
    assert 'id="summary-sentences"' in page and "overall FNMR" in page
    assert page.count('class="sample-grid"') == 2  # one grid per group
    for img in GeneratedImage.objects.filter(audit=dashboard_audit):
        assert reverse("audits:image", args=[dashboard_audit.pk, img.pk]) in page
    assert 'alt="female, identity 1, baseline"' in page
    assert "variant=blur_2" in page  # the factor cells link to their pairs


@pytest.mark.django_db
def test_the_operating_point_filter_changes_the_charts(client, alice, dashboard_audit):
    client.force_login(alice)
    url = reverse("audits:detail", args=[dashboard_audit.pk])
    first = chart_data(client.get(url).content.decode())
    second = chart_data(client.get(url, {"fmr": "FMR 0.001"}).content.decode())
    assert "0.3000" in first["histograms"]["layout"]["title"]["text"]
    assert "0.5500" in second["histograms"]["layout"]["title"]["text"]
    assert second["histograms"]["layout"]["shapes"][0]["x0"] == 0.55
    assert first["factor_similarity"]["data"][0]["z"] != second["factor_similarity"]["data"][0]["z"]


@pytest.mark.django_db
@pytest.mark.parametrize("query", [{"model": "no-such-model"}, {"fmr": "FMR 42"},
                                   {"model": "", "fmr": ""}, {"fmr": "<script>x</script>"},
                                   {"model": ["a", "b"]}])
def test_bad_filter_values_fall_back_to_the_defaults(client, alice, dashboard_audit, query):
    client.force_login(alice)
    response = client.get(reverse("audits:detail", args=[dashboard_audit.pk]), query)
    assert response.status_code == 200
    page = response.content.decode()
    assert '<option value="mobilefacenet" selected>' in page
    assert '<option value="FMR 0.01" selected>' in page
    assert "0.3000" in chart_data(page)["det"]["layout"]["title"]["text"]


@pytest.mark.django_db
def test_anonymous_visitors_are_sent_to_sign_in(client, dashboard_audit):
    for name, url in dashboard_urls(dashboard_audit).items():
        response = client.get(url)
        assert response.status_code == 302, name
        assert response["Location"].startswith(reverse("login")), name


@pytest.mark.django_db
def test_other_users_get_404_for_the_dashboard_pairs_and_images(client, bob, dashboard_audit):
    client.force_login(bob)
    for name, url in dashboard_urls(dashboard_audit).items():
        assert client.get(url).status_code == 404, name


@pytest.mark.django_db
def test_images_are_served_to_the_owner_and_staff_with_a_long_cache(
        client, alice, django_user_model, dashboard_audit):
    image = GeneratedImage.objects.filter(audit=dashboard_audit).first()
    url = reverse("audits:image", args=[dashboard_audit.pk, image.pk])
    staff = django_user_model.objects.create_user("carol", password="x", is_staff=True)
    for user in (alice, staff):
        client.force_login(user)
        response = client.get(url)
        assert response.status_code == 200
        assert response["Content-Type"] == "image/png"
        assert "max-age=31536000" in response["Cache-Control"]
        with default_storage.open(image.file, "rb") as f:
            assert b"".join(response.streaming_content) == f.read()
    # an image id of another audit is not found under this audit
    other = make_done_audit(alice, name="Other audit")
    foreign = GeneratedImage.objects.filter(audit=other).first()
    client.force_login(alice)
    assert client.get(reverse("audits:image", args=[dashboard_audit.pk, foreign.pk])
                      ).status_code == 404


@pytest.mark.django_db
def test_the_pairs_page_lists_each_identity_with_its_scores_and_decisions(
        client, alice, dashboard_audit):
    client.force_login(alice)
    url = reverse("audits:pairs", args=[dashboard_audit.pk])
    response = client.get(url, {"group": "female", "variant": "blur_2", "model": "mobilefacenet"})
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count("<tr data-identity=") == 2
    for img in GeneratedImage.objects.filter(audit=dashboard_audit, identity__group_name="female"):
        assert reverse("audits:image", args=[dashboard_audit.pk, img.pk]) in page
    # scores 0.2 and 0.3 against the threshold 0.3 stored with the factor effects
    assert "0.200" in page and "0.300" in page
    assert page.count('<span class="decision-nonmatch">non-match</span>') == 1
    assert page.count('<span class="decision-match">match</span>') == 1
    assert 'alt="female, identity 1, blur 2"' in page


@pytest.mark.django_db
@pytest.mark.parametrize("query", [{"group": "female", "variant": "nope_1"},
                                   {"group": "nobody", "variant": "blur_2"},
                                   {"group": "female", "variant": "baseline"}, {}])
def test_the_pairs_page_of_an_unknown_cell_is_not_found(client, alice, dashboard_audit, query):
    client.force_login(alice)
    assert client.get(reverse("audits:pairs", args=[dashboard_audit.pk]), query
                      ).status_code == 404


@pytest.mark.django_db
def test_load_table_reads_each_stored_table_once(alice, dashboard_audit, monkeypatch):
    result = AuditResult.objects.get(audit=dashboard_audit)
    opened = []
    real_open = default_storage.open
    monkeypatch.setattr(default_storage, "open",
                        lambda name, mode="rb": opened.append(name) or real_open(name, mode))
    result_tables._read_table.cache_clear()
    first = result_tables.load_table(result, "det_curves.csv")
    again = result_tables.load_table(result, "det_curves.csv")
    assert len(opened) == 1 and first.equals(again) and not first.empty
    assert result_tables.load_table(result, "no_such.csv").empty
    result.save()  # a stored-again result has a new created_at: read afresh
    result_tables.load_table(result, "det_curves.csv")
    assert len(opened) == 2


@pytest.mark.django_db
def test_figures_are_kept_beside_the_results_for_every_web_process(client, alice,
                                                                   dashboard_audit):
    from webapp.audits import views

    client.force_login(alice)
    url = reverse("audits:detail", args=[dashboard_audit.pk])
    first = chart_data(client.get(url).content.decode())
    folder = Path(default_storage.path(f"audits/{dashboard_audit.pk}/results/dashboard"))
    files = sorted(folder.glob("*.json"))
    assert len(files) == 1
    # Another process (empty memory cache) reads the stored file: a marker in it comes back.
    stored = json.loads(files[0].read_text())
    assert json.loads(stored["charts"]) == first
    stored["charts"] = json.dumps({"det": first["det"]})
    stored["keys"] = ["det"]
    files[0].write_text(json.dumps(stored))
    views._FIGURE_CACHE.clear()
    assert list(chart_data(client.get(url).content.decode())) == ["det"]
    # A damaged file is built again and replaced.
    files[0].write_text("{not json")
    views._FIGURE_CACHE.clear()
    assert list(chart_data(client.get(url).content.decode())) == list(FIGURE_KEYS)
    assert json.loads(files[0].read_text())["keys"] == list(FIGURE_KEYS)
    # A result stored again gets new files; the old ones are deleted.
    dashboard_audit.result.save()
    client.get(url)
    now = sorted(folder.glob("*.json"))
    assert len(now) == 1 and now[0] != files[0]
