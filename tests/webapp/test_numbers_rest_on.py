"""Every number shows what it rests on: pair counts on the factor cells (heat maps, table,
pairs page, report) as whole numbers, failure to acquire in the plain-language summary, and the
reason an image took no part in a comparison on the pairs page."""

from __future__ import annotations

import html
import io
import json
import re

import numpy as np
import pandas as pd
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from tests.webapp.factories import make_done_audit
from tests.webapp.test_dashboard import chart_data, factor_table, store_dashboard_results
from webapp.audits.charts import factor_heatmap
from webapp.audits.dashboard import dashboard_figures
from webapp.audits.models import FaceAnalysis, GeneratedImage
from webapp.audits.report import build_report

pytestmark = pytest.mark.django_db

#: "10.0"-style counts: a digit, ".0", and no further digit.
FLOAT_COUNT = re.compile(r"\b\d+\.0\b(?!\d)")


def _store(audit, name: str, df: pd.DataFrame) -> None:
    result = audit.result
    tables = dict(result.tables or {})
    tables[name] = default_storage.save(f"audits/{audit.pk}/results/{name}",
                                        ContentFile(df.to_csv(index=False).encode()))
    result.tables = tables
    result.save()


def fta_quality_table() -> pd.DataFrame:
    """Per image rows for 7 identities of female (each loses 2 of its 4 images) and 7 of male
    (none lost): female 14 of 28 = 50.0%, male 0 of 28. Only the 2 of C(14, 7) = 3,432
    relabellings that keep the losing identities together reach the observed split, so the
    exact p is 2/3432 = 0.00058."""
    rows = []
    for g, lost in (("female", 2), ("male", 0)):
        for k in range(7):
            for i in range(4):
                rows.append({"image_id": len(rows) + 1, "identity_id": f"{g}-{k}", "group": g,
                             "factor": "baseline" if i == 0 else "blur", "face_found": i >= lost,
                             "quality": 0.5})
    return pd.DataFrame(rows)


FTA_SUMMARY = {"overall": {"images": 56, "faces_found": 42},
               "by_group": {"female": {"images": 28, "faces_found": 14,
                                       "failure_to_acquire_rate": 0.5},
                            "male": {"images": 28, "faces_found": 28,
                                     "failure_to_acquire_rate": 0.0}}}
FTA_SENTENCE = ("Failure to acquire differs between groups: no face was found in 50.0% of the "
                "images of female (14 of 28) against 0% of the images of male (0 of 28) "
                "(exact identity-level permutation test over 14 identities, p < 0.001). FNMR is "
                "measured only on images where a face was found, so it "
                "understates female's total failure to verify.")


@pytest.fixture
def dashboard_audit(alice, media_root):
    audit = make_done_audit(alice)
    store_dashboard_results(audit)
    return audit


# --- factor cells ---------------------------------------------------------------------------


def test_heat_map_cells_show_their_pairs_as_whole_numbers_even_from_floats():
    rows = factor_table()
    rows = rows[(rows["fr_model"] == "facenet-a") & (rows["target_fmr"] == 0.01)].copy()
    rows["n_pairs"] = [25.0, float("nan")]  # as read back from a CSV with an empty cell
    fig = factor_heatmap(rows, ["female", "male"], "mean_change", "wilcoxon_significant",
                         "wilcoxon_p_adjusted", "t", "mean change", "+.3f")
    heat = fig.data[0]
    assert heat.text[0][0] == "-0.300*<br>n=25"
    assert heat.text[1][0] == "-0.100<br>n=?"
    assert heat.customdata[0][0][4] == 25 and isinstance(heat.customdata[0][0][4], int)
    assert "pairs" in heat.hovertemplate
    assert not FLOAT_COUNT.search(json.dumps(fig.to_plotly_json()["data"][0]["text"]))


def test_a_cell_without_pairs_still_says_n_0():
    rows = factor_table()
    rows = rows[(rows["fr_model"] == "facenet-a") & (rows["target_fmr"] == 0.01)].copy()
    rows.loc[rows["group"] == "male", ["n_pairs", "mean_change"]] = [0, np.nan]
    heat = factor_heatmap(rows, ["female", "male"], "mean_change", "wilcoxon_significant",
                          "wilcoxon_p_adjusted", "t", "mean change", "+.3f").data[0]
    assert heat.text[1][0] == "–<br>n=0" and heat.z[1][0] is None


def test_both_heat_maps_and_curve_hovers_carry_integer_counts():
    from tests.webapp.test_dashboard import all_tables, summary

    tables = {name: pd.read_csv(io.StringIO(df.to_csv(index=False)))
              for name, df in all_tables().items()}
    from webapp.audits.result_tables import check_table

    tables = {name: check_table(name, df)[0] for name, df in tables.items()}  # as the pages
    figures = dashboard_figures(summary(), tables, "facenet-a", 0)
    for key in ("factor_similarity", "factor_fnmr"):
        heat = figures[key].data[0]
        assert all(t.endswith("n=2") for row in heat.text for t in row), key
    edc = figures["edc"].data[0]
    assert list(edc.customdata[0]) == [20, 4] and isinstance(edc.customdata[0][0], int)
    hist = figures["histograms"].data[0]
    assert all(isinstance(c[0], int) for c in hist.customdata)


def test_the_factor_table_and_the_pairs_page_show_whole_pair_counts(client, alice,
                                                                    dashboard_audit):
    client.force_login(alice)
    page = client.get(reverse("audits:detail", args=[dashboard_audit.pk])).content.decode()
    table = page[page.index('id="factor-cells"'):page.index("</details>")]
    assert table.count("(n=2)") == 2 and "n=2.0" not in table
    data = chart_data(page)
    assert data["factor_similarity"]["data"][0]["text"][0][0].endswith("<br>n=2")

    pairs = client.get(reverse("audits:pairs", args=[dashboard_audit.pk]),
                       {"group": "female", "variant": "blur_2"}).content.decode()
    effect = pairs[pairs.index('id="effect-table"'):pairs.index("</table>")]
    assert re.search(r"Pairs \(identities with both images\)</th><td class=\"num\">2</td>",
                     effect), effect
    assert not FLOAT_COUNT.search(effect.split("Mean similarity")[0])


# --- failure to acquire in the summary ------------------------------------------------------


def test_the_dashboard_says_when_failure_to_acquire_differs(client, alice, dashboard_audit):
    result = dashboard_audit.result
    result.summary = {**result.summary, "acquisition": FTA_SUMMARY}
    result.save()
    _store(dashboard_audit, "quality.csv", fta_quality_table())
    client.force_login(alice)
    page = client.get(reverse("audits:detail", args=[dashboard_audit.pk])).content.decode()
    sentences = page[page.index('id="summary-sentences"'):]
    sentences = html.unescape(sentences[:sentences.index("</section>")])
    assert f"<li>{FTA_SENTENCE}</li>" in sentences


def test_the_dashboard_states_an_unresolved_rate_without_a_claim(client, alice,
                                                                  dashboard_audit):
    # the factory: female 3 of 4 images with a face (identity 1 lost one), male 4 of 4
    images = pd.DataFrame({"identity_id": [1, 1, 2, 2, 3, 3, 4, 4],
                           "group": ["female"] * 4 + ["male"] * 4,
                           "face_found": [True, False] + [True] * 6, "quality": 0.5})
    _store(dashboard_audit, "quality.csv", images)
    client.force_login(alice)
    page = html.unescape(client.get(reverse("audits:detail", args=[dashboard_audit.pk]))
                         .content.decode())
    assert ("No face was found in 12.5% of all images (1 of 8), from 0% of the images of male "
            "(0 of 4) to 25.0% of the images of female (1 of 4); the audit does not show that "
            "failure to acquire differs between groups (exact identity-level permutation test "
            "over 4 identities, p = 1).") in page


def test_the_report_says_it_too_and_writes_counts_as_whole_numbers(alice, media_root):
    audit = make_done_audit(alice)
    effects = factor_table()
    effects = effects[(effects["fr_model"] == "facenet-a") & (effects["target_fmr"] == 0.001)]
    effects = effects.assign(fr_model="mobilefacenet", n_pairs=[np.nan, 2.0],
                             mcnemar_lost=[1.0, np.nan], mcnemar_gained=0)
    # empty cells: pandas reads these count columns back as floats
    _store(audit, "factor_effects.csv", effects)
    _store(audit, "quality.csv", fta_quality_table())
    result = audit.result
    result.summary = {**result.summary, "acquisition": FTA_SUMMARY,
                      "quality": {"by_group": {"female": {"n": 12.0, "n_missing": 4.0,
                                                          "below": 7.0, "share_below": 0.58}}}}
    result.save()
    report = build_report(audit)
    assert FTA_SENTENCE in html.unescape(report)
    factors = report[report.index('class="factors"'):]
    factors = factors[:factors.index("</table>")]
    cells = re.findall(r'<td class="num">([^<]*)</td>', factors)
    assert "2" in cells and not any(FLOAT_COUNT.fullmatch(c) for c in cells), cells
    assert "1 / 0" in cells and " / 0" in cells
    assert '<td>female</td><td class="num">12</td><td class="num">4</td>' in report
    assert "7 (58.0%)" in report


# --- reasons on the pairs page --------------------------------------------------------------


def _mated_scores(audit, scored: dict[int, float]) -> None:
    """Store a comparisons file whose mated rows are ``image id -> score`` (against each
    image's baseline)."""
    rows = []
    for image_id, score in scored.items():
        img = GeneratedImage.objects.get(pk=image_id)
        base = GeneratedImage.objects.get(identity=img.identity, variant="baseline")
        rows.append({"fr_model": "mobilefacenet", "image_a": base.pk, "image_b": img.pk,
                     "identity_a": img.identity_id, "identity_b": img.identity_id,
                     "group_a": img.identity.group_name, "group_b": img.identity.group_name,
                     "mated": True, "score": score})
    buf = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buf, index=False)
    result = audit.result
    result.comparisons_file = default_storage.save(
        f"audits/{audit.pk}/results/comparisons.parquet", ContentFile(buf.getvalue()))
    result.save()


def make_reasons_audit(owner):
    """A finished hand-made audit whose blur_2 images carry every kind of reason. female
    identity 1: compared, but the identity judge called it a different person; female identity
    2: its edit missed the target and moved age; male identity 1: the scoring detector found no
    face; male identity 2: its baseline had no face."""
    audit = make_done_audit(owner)

    def image(group, index, variant="blur_2"):
        return GeneratedImage.objects.get(audit=audit, identity__group_name=group,
                                          identity__index_in_group=index, variant=variant)

    judged = image("female", 0)
    judged.checks = {"face_found": True, "target_sensor": "yaw", "requested": 15.0,
                     "achieved": 14.0, "on_target": True, "others_held": True, "broken": [],
                     "deltas": {"yaw": 14.0}, "identity_similarity": 0.41,
                     "identity_threshold": 0.52, "identity_kept": False,
                     "identity_judge": "dlib", "passed": True}
    judged.save()
    missed = image("female", 1)
    missed.checks = {"face_found": True, "target_sensor": "yaw", "requested": 15.0,
                     "achieved": 4.2, "on_target": False, "others_held": False,
                     "broken": ["age"], "deltas": {"yaw": 4.2, "age": 12.3},
                     "identity_similarity": 0.8, "identity_threshold": 0.52,
                     "identity_kept": True, "passed": False}
    missed.save()
    FaceAnalysis.objects.filter(image=image("male", 0)).update(face_found=False)
    no_base = image("male", 1, "baseline")
    no_base.checks = {"face_found": False, "passed": False}
    no_base.save()
    # check_image marks a variant whose baseline had no face as without a face too
    GeneratedImage.objects.filter(pk=image("male", 1).pk).update(
        checks={"face_found": False, "passed": False})
    _mated_scores(audit, {judged.pk: 0.61})
    return audit


@pytest.fixture
def reasons_audit(alice, media_root):
    return make_reasons_audit(alice)


def _rows(page: str) -> dict[str, str]:
    body = page[page.index('id="pairs-table"'):]
    return {m.group(1): html.unescape(m.group(2)) for m in re.finditer(
        r'<tr data-identity="(\d+)">(.*?)</tr>', body, re.S)}


def test_the_pairs_page_says_why_each_image_took_no_part(client, alice, reasons_audit):
    client.force_login(alice)
    url = reverse("audits:pairs", args=[reasons_audit.pk])
    female = _rows(client.get(url, {"group": "female", "variant": "blur_2"}).content.decode())
    assert "0.610" in female["1"] and "decision-match" in female["1"]  # 0.61 >= 0.42
    assert ("judged a different person by dlib (0.41 < cut-off 0.52): left out of the "
            "judged-same results, still in the headline comparisons") in female["1"]
    assert "not compared" not in female["1"]  # the verdict is a note, not an exclusion
    assert "edit missed its target: yaw changed by +4.2 (+15 requested)" in female["2"]
    assert "another attribute moved beyond its tolerance: age +12.3" in female["2"]
    assert "judged a different person" not in female["2"]

    page = client.get(url, {"group": "male", "variant": "blur_2"}).content.decode()
    male = _rows(page)
    assert "no face found in the image by the scoring detector" in male["1"]
    assert "no face found in the baseline image when it was made (generation check)" \
        in male["2"]
    assert "no face was found\n    in one of the two images" not in page
    assert "0 of 0 compared" in html.unescape(page)


def test_a_compared_image_with_no_verdict_has_no_note(client, alice, dashboard_audit):
    client.force_login(alice)
    page = client.get(reverse("audits:pairs", args=[dashboard_audit.pk]),
                      {"group": "female", "variant": "blur_2"}).content.decode()
    assert 'class="hint note"' not in page and 'class="hint reason"' not in page
