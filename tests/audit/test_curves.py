"""Tests for audit.curves: DET points against scikit-learn, per-group masks and error_rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_curve

from audit.curves import DET_COLUMNS, HISTOGRAM_COLUMNS, det_curve, det_curves, score_histograms
from audit.rates import error_rates
from tests.audit.test_uncertainty import small_comparisons


def test_det_curve_on_a_hand_example():
    # mated 0.9 0.6 0.4 | non-mated 0.5 0.3 0.6; match when score >= t.
    scores = [0.9, 0.6, 0.4, 0.5, 0.3, 0.6]
    mated = [True, True, True, False, False, False]
    curve = det_curve(scores, mated)
    assert list(curve.columns) == list(DET_COLUMNS)
    assert curve["threshold"].tolist() == [0.3, 0.4, 0.5, 0.6, 0.9]
    np.testing.assert_allclose(curve["fmr"], [1, 2 / 3, 2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(curve["fnmr"], [0, 0, 1 / 3, 1 / 3, 2 / 3])
    assert curve.attrs == {"n_mated": 3, "n_nonmated": 3}


@pytest.mark.parametrize("seed", range(4))
def test_det_curve_equals_sklearn_roc_curve_on_the_same_thresholds(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    mated = rng.random(n) < 0.2
    # Rounded scores: many ties, and ties between mated and non-mated scores.
    scores = np.round(rng.normal(size=n) + 1.5 * mated, 2)
    curve = det_curve(scores, mated)
    fpr, tpr, thresholds = roc_curve(mated, scores, drop_intermediate=False)
    # roc_curve runs from a +inf threshold down; drop that point and reverse.
    assert np.isinf(thresholds[0])
    np.testing.assert_array_equal(curve["threshold"], thresholds[1:][::-1])
    np.testing.assert_allclose(curve["fmr"], fpr[1:][::-1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(curve["fnmr"], 1 - tpr[1:][::-1], rtol=0, atol=1e-12)


def test_thinned_curve_keeps_the_ends_and_is_exact_where_it_keeps_points():
    rng = np.random.default_rng(9)
    n = 50_000
    mated = rng.random(n) < 0.1
    scores = rng.normal(size=n) + 3 * mated
    full = det_curve(scores, mated)
    thin = det_curve(scores, mated, max_points=200)
    assert 100 <= len(thin) <= 200 < len(full)
    assert thin["threshold"].iloc[0] == full["threshold"].iloc[0]
    assert thin["threshold"].iloc[-1] == full["threshold"].iloc[-1]
    merged = thin.merge(full, on="threshold", suffixes=("", "_full"), validate="one_to_one")
    assert len(merged) == len(thin)
    np.testing.assert_array_equal(merged["fmr"], merged["fmr_full"])
    np.testing.assert_array_equal(merged["fnmr"], merged["fnmr_full"])
    assert thin["fmr"].is_monotonic_decreasing and thin["fnmr"].is_monotonic_increasing
    # The low-FMR tail (<= 1e-3, where log axes stretch) keeps a fair share of points.
    assert (thin["fmr"].between(1e-5, 1e-3)).sum() >= 10
    # Short curves are returned whole.
    assert len(det_curve(scores[:50], mated[:50], max_points=200)) == len(
        det_curve(scores[:50], mated[:50])
    )


@pytest.mark.parametrize(
    "scores, mated, message",
    [
        ([0.1, 0.2], [True, True], "both kinds"),
        ([0.1, np.nan], [True, False], "NaN"),
        ([0.1, 0.2], [True], "same length"),
    ],
)
def test_det_curve_rejects_bad_input(scores, mated, message):
    with pytest.raises(ValueError, match=message):
        det_curve(scores, mated)


def big_comparisons(seed: int = 0) -> pd.DataFrame:
    """Random comparisons over groups A, B, C; group C has no mated rows."""
    rng = np.random.default_rng(seed)
    n = 6000
    group_of_identity = np.array(["A", "B", "C"])[np.arange(60) % 3]
    mated = rng.random(n) < 0.3
    ia = rng.integers(0, 60, n)
    ib = np.where(mated, ia, (ia + rng.integers(1, 60, n)) % 60)
    mated &= group_of_identity[ia] != "C"
    ib = np.where(~mated & (ia == ib), (ia + 1) % 60, ib)
    score = np.round(rng.normal(size=n) + 2 * mated, 2)
    return pd.DataFrame({
        "score": score, "mated": mated,
        "group_a": group_of_identity[ia], "group_b": group_of_identity[ib],
        "identity_a": ia, "identity_b": ib,
    })


def test_det_curves_per_group_use_within_group_non_mated_and_the_groups_mated_pairs():
    comparisons = big_comparisons()
    curves = det_curves(comparisons, max_points=None)
    assert list(curves.columns) == ["group", *DET_COLUMNS]
    assert sorted(curves["group"].unique()) == ["A", "B"]
    assert "C" in curves.attrs["skipped"] and "0 mated" in curves.attrs["skipped"]["C"]
    for g in ("A", "B"):
        rows = comparisons[(comparisons["group_a"] == g) & (comparisons["group_b"] == g)]
        fpr, tpr, thr = roc_curve(rows["mated"], rows["score"], drop_intermediate=False)
        mine = curves[curves["group"] == g]
        np.testing.assert_array_equal(mine["threshold"], thr[1:][::-1])
        np.testing.assert_allclose(mine["fmr"], fpr[1:][::-1], atol=1e-15)
        np.testing.assert_allclose(mine["fnmr"], 1 - tpr[1:][::-1], atol=1e-12)
        counts = curves.attrs["counts"][g]
        assert counts["n_mated"] == rows["mated"].sum()
        assert counts["n_nonmated"] == (~rows["mated"]).sum()
    # At any returned threshold the curve agrees with error_rates.
    t = float(curves.loc[curves["group"] == "A", "threshold"].iloc[40])
    rates = error_rates(comparisons, t).by_group
    point = curves[(curves["group"] == "A") & (curves["threshold"] == t)].iloc[0]
    assert point["fmr"] == pytest.approx(rates.at["A", "fmr"])
    assert point["fnmr"] == pytest.approx(rates.at["A", "fnmr"])


def test_det_curves_are_thinned_per_group_by_default():
    curves = det_curves(big_comparisons(), max_points=50)
    assert curves.groupby("group").size().max() <= 50


def test_score_histograms_count_on_shared_edges():
    comparisons = small_comparisons()
    hist = score_histograms(comparisons, bins=8)
    assert list(hist.columns) == list(HISTOGRAM_COLUMNS)
    edges = np.asarray(hist.attrs["edges"])
    assert edges[0] == comparisons["score"].min() and edges[-1] == comparisons["score"].max()
    for (g, kind), part in hist.groupby(["group", "kind"]):
        within = (comparisons["group_a"] == g) & (comparisons["group_b"] == g)
        wanted = comparisons["mated"] if kind == "mated" else ~comparisons["mated"]
        expected, _ = np.histogram(comparisons.loc[within & wanted, "score"], bins=edges)
        np.testing.assert_array_equal(part["count"], expected)
        np.testing.assert_array_equal(part["bin_left"], edges[:-1])
    within_all = (comparisons["group_a"] == comparisons["group_b"]).sum()
    assert hist["count"].sum() == within_all


def test_score_histograms_with_explicit_edges_drop_and_report_out_of_range_scores():
    comparisons = small_comparisons()
    edges = [0.3, 0.5, 0.7]
    hist = score_histograms(comparisons, edges, groups=["A", "B", "C", "D"])
    assert hist.groupby(["group", "kind"]).size().eq(2).all() and len(hist) == 4 * 2 * 2
    assert hist.loc[hist["group"] == "D", "count"].sum() == 0
    within = comparisons[comparisons["group_a"] == comparisons["group_b"]]
    inside = within["score"].between(0.3, 0.7)  # last bin closed on the right
    assert hist["count"].sum() == inside.sum()
    assert hist.attrs["out_of_range"] == (~inside).sum()
    with pytest.raises(ValueError, match="increasing"):
        score_histograms(comparisons, [0.5, 0.3])
    with pytest.raises(ValueError, match="not in `groups`"):
        score_histograms(comparisons, 5, groups=["A"])
