"""Tests for audit.disparity: hand-worked values, naive double loops, and the summary object."""

from __future__ import annotations

import json
import math
from itertools import product

import numpy as np
import pandas as pd
import pytest

from audit.disparity import (
    DEFINITIONS,
    MEASURES,
    DisparitySummary,
    MaxMinRatio,
    fairness_discrepancy_rate,
    garbe,
    gini,
    max_min_ratio,
    rankable_groups,
    summarize_disparity,
)
from audit.rates import error_rates
from audit.uncertainty import bootstrap_group_rates
from tests.audit.test_uncertainty import small_comparisons

# Hand-worked example: three groups.
#   FMR  = (0.01, 0.02, 0.03)   FNMR = (0.1, 0.2, 0.4)
# FDR: A = 0.03 - 0.01 = 0.02, B = 0.4 - 0.1 = 0.3
#   alpha 0.5: 1 - (0.01 + 0.15) = 0.84;  alpha 1: 0.98;  alpha 0: 0.7
# Gini with n/(n-1) = 3/2:
#   FMR:  sum_i sum_j |x_i - x_j| = 2 * (0.01 + 0.02 + 0.01) = 0.08; 2 n^2 mean = 18 * 0.02
#         = 0.36; 0.08 / 0.36 = 2/9; * 3/2 = 1/3
#   FNMR: 2 * (0.1 + 0.3 + 0.2) = 1.2; 18 * (0.7 / 3) = 4.2; 1.2 / 4.2 = 2/7; * 3/2 = 3/7
# GARBE alpha 0.5 = (1/3 + 3/7) / 2 = 8/21; alpha 0.25 = 0.25/3 + 0.75 * 3/7 = 1/12 + 9/28
FMR = pd.Series({"A": 0.01, "B": 0.02, "C": 0.03})
FNMR = pd.Series({"A": 0.1, "B": 0.2, "C": 0.4})


def naive_gini(x) -> float:
    x = list(x)
    n = len(x)
    total = sum(abs(a - b) for a, b in product(x, x))
    return n / (n - 1) * total / (2 * n * n * (sum(x) / n))


# --- FDR, Gini, GARBE ------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha, expected", [(0.5, 0.84), (1.0, 0.98), (0.0, 0.7)])
def test_fdr_on_the_hand_example(alpha, expected):
    assert fairness_discrepancy_rate(FMR, FNMR, alpha) == pytest.approx(expected)


def test_gini_and_garbe_on_the_hand_example():
    assert gini(FMR) == pytest.approx(1 / 3)
    assert gini(FNMR) == pytest.approx(3 / 7)
    assert garbe(FMR, FNMR, 0.5) == pytest.approx(8 / 21)
    assert garbe(FMR, FNMR, 0.25) == pytest.approx(1 / 12 + 9 / 28)


def test_gini_small_sample_correction_on_two_groups():
    # (0.1, 0.3): sum |diffs| = 0.4, 2 n^2 mean = 8 * 0.2 = 1.6, 0.25 uncorrected, * 2 = 0.5.
    assert gini([0.1, 0.3]) == pytest.approx(0.5)
    # One group carries every error: 1 with the correction (n - 1)/n without.
    assert gini([0.0, 0.0, 0.0, 0.2]) == pytest.approx(1.0)
    assert gini([0.05, 0.05, 0.05]) == 0.0
    assert gini([0.0, 0.0]) == 0.0  # 0/0 taken as "no inequality"


@pytest.mark.parametrize("seed", range(5))
def test_gini_and_fdr_match_naive_double_loops_on_random_rates(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 9))
    fmr = rng.uniform(0, 0.01, n)
    fnmr = rng.uniform(0, 0.3, n)
    alpha = float(rng.uniform())
    assert gini(fmr) == pytest.approx(naive_gini(fmr), rel=1e-12)
    a = max(abs(x - y) for x, y in product(fmr, fmr))
    b = max(abs(x - y) for x, y in product(fnmr, fnmr))
    assert fairness_discrepancy_rate(fmr, fnmr, alpha) == pytest.approx(
        1 - (alpha * a + (1 - alpha) * b), rel=1e-12
    )
    assert garbe(fmr, fnmr, alpha) == pytest.approx(
        alpha * naive_gini(fmr) + (1 - alpha) * naive_gini(fnmr), rel=1e-12
    )


def test_series_are_matched_by_group_label_not_position():
    shuffled = FNMR.loc[["C", "A", "B"]]
    assert fairness_discrepancy_rate(FMR, shuffled, 0.5) == pytest.approx(0.84)
    assert garbe(dict(FMR), shuffled, 0.5) == pytest.approx(8 / 21)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: fairness_discrepancy_rate(FMR, FNMR, 1.5), "alpha"),
        (lambda: garbe(FMR, FNMR, None), "alpha"),
        (lambda: garbe(FMR.iloc[:1], FNMR.iloc[:1], 0.5), "at least 2"),
        (lambda: garbe(FMR, FNMR.rename({"C": "D"}), 0.5), "same groups"),
        (lambda: fairness_discrepancy_rate(FMR.replace(0.02, np.nan), FNMR, 0.5), "undefined"),
        (lambda: gini([0.1, -0.1]), r"\[0, 1\]"),
    ],
)
def test_it_rejects_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- max/min ratio ----------------------------------------------------------------------------------


def test_ratio_floors_a_zero_rate_at_its_rule_of_three_bound():
    rates = {"A": 0.02, "B": 0.0, "C": 0.05}
    trials = {"A": 100, "B": 300, "C": 200}
    r = max_min_ratio(rates, trials=trials)
    # B: 0 errors in 300 -> 3/300 = 0.01; ratio 0.05 / 0.01 = 5.
    assert isinstance(r, MaxMinRatio)
    assert r.value == pytest.approx(5.0)
    assert (r.max_group, r.min_group, r.floored) == ("C", "B", ("B",))
    assert r.floor_rule == "rule_of_three" and r.floors == {"B": pytest.approx(0.01)}
    assert "B" in r.note and "3/n" in r.note


def test_ratio_with_a_fixed_floor_raises_every_rate_below_it():
    r = max_min_ratio({"A": 0.02, "B": 0.0, "C": 0.05}, 0.025)
    assert r.value == pytest.approx(2.0)
    assert r.floored == ("A", "B") and r.floor_rule == "fixed"
    assert r.rates == {"A": 0.025, "B": 0.025, "C": 0.05}


def test_ratio_without_zeros_is_the_plain_ratio_and_all_zero_is_undefined():
    r = max_min_ratio(FNMR)
    assert r.value == pytest.approx(4.0) and r.floored == () and r.note == "no rate was floored"
    none = max_min_ratio({"A": 0.0, "B": 0.0}, trials={"A": 10, "B": 20})
    assert math.isnan(none.value) and none.max_group is None
    with pytest.raises(ValueError, match="trials"):
        max_min_ratio({"A": 0.0, "B": 0.1})
    with pytest.raises(ValueError, match="floor"):
        max_min_ratio(FNMR, 0.0)


# --- rankability --------------------------------------------------------------------------------------


def test_rankable_groups_flags_small_cells_and_says_why():
    by_group = pd.DataFrame(
        {"n_identities": [25, 12, 30], "n_mated": [250, 40, 300], "n_nonmated": [5000, 900, 80]},
        index=pd.Index(["A", "B", "C"], name="group"),
    )
    out = rankable_groups(by_group, min_identities=20, min_mated=100, min_nonmated=1000)
    assert out["rankable"].tolist() == [True, False, False]
    assert out.loc["A", "reason"] == ""
    assert out.loc["B", "reason"] == (
        "12 identities < 20; 40 mated comparisons < 100; "
        "900 within-group non-mated comparisons < 1000"
    )
    assert out.loc["C", "reason"] == "80 within-group non-mated comparisons < 1000"
    # Result objects are accepted directly.
    rates = error_rates(small_comparisons(), 0.5)
    assert not rankable_groups(rates)["rankable"].any()
    assert rankable_groups(rates, min_identities=2, min_mated=1, min_nonmated=1)["rankable"].all()
    with pytest.raises(ValueError, match="missing"):
        rankable_groups(by_group.drop(columns="n_mated"))


# --- summary ----------------------------------------------------------------------------------------


def test_summary_from_point_rates_matches_the_single_measures():
    rates = error_rates(small_comparisons(), 0.5)
    summary = summarize_disparity(rates, alpha=0.3)
    assert isinstance(summary, DisparitySummary)
    table = summary.table
    assert list(table.index) == list(MEASURES) and summary.n_boot == 0
    by_group = rates.by_group
    fmr, fnmr = by_group["fmr"], by_group["fnmr"]
    assert table.at["fdr", "estimate"] == pytest.approx(fairness_discrepancy_rate(fmr, fnmr, 0.3))
    assert table.at["garbe", "estimate"] == pytest.approx(garbe(fmr, fnmr, 0.3))
    assert table.at["fmr_gini", "estimate"] == pytest.approx(gini(fmr))
    expected = max_min_ratio(fnmr, trials=by_group["n_mated"]).value
    assert table.at["fnmr_max_min_ratio", "estimate"] == pytest.approx(expected)
    assert table["lower"].isna().all() and (table["n_valid"] == 0).all()
    assert table.at["garbe", "definition"] == DEFINITIONS["garbe"]


def test_summary_intervals_come_from_the_same_bootstrap_replicates():
    result = bootstrap_group_rates(small_comparisons(), 0.5, n_boot=120, seed=3)
    summary = summarize_disparity(result, alpha=0.5, groups=["A", "B"])
    assert summary.groups == ("A", "B") and summary.excluded == {"C": "not selected"}
    fmr_reps = result.fmr_replicates[["A", "B"]]
    fnmr_reps = result.fnmr_replicates[["A", "B"]]
    n_mated = result.by_group.loc[["A", "B"], "n_mated"]
    n_nonmated = result.by_group.loc[["A", "B"], "n_nonmated"]
    # Naive: each measure recomputed replicate by replicate with the public functions.
    fdr, gar, ratio_fm = [], [], []
    for b in range(result.n_boot):
        fm, fnm = fmr_reps.iloc[b], fnmr_reps.iloc[b]
        if fm.isna().any() or fnm.isna().any():
            continue
        fdr.append(fairness_discrepancy_rate(fm, fnm, 0.5))
        gar.append(garbe(fm, fnm, 0.5))
        # Floors stay at the point-estimate rule-of-three bounds in every replicate.
        floors = {g: min(3 / n_nonmated[g], 1.0) for g in fm.index}
        floored = [floors[g] if fm[g] == 0 else fm[g] for g in fm.index]
        ratio_fm.append(np.nan if all(fm == 0) else max(floored) / min(floored))
    table = summary.table
    assert table.at["fdr", "n_valid"] == len(fdr)
    np.testing.assert_allclose(
        table.loc["fdr", ["lower", "upper"]].astype(float), np.quantile(fdr, [0.025, 0.975])
    )
    np.testing.assert_allclose(
        table.loc["garbe", ["lower", "upper"]].astype(float), np.quantile(gar, [0.025, 0.975])
    )
    valid = np.array(ratio_fm)[~np.isnan(ratio_fm)]
    np.testing.assert_allclose(
        table.loc["fmr_max_min_ratio", ["lower", "upper"]].astype(float),
        np.quantile(valid, [0.025, 0.975]),
    )
    assert table.at["fmr_max_min_ratio", "n_valid"] == valid.size
    assert n_mated.min() > 0
    data = json.loads(json.dumps(summary.to_dict(), allow_nan=False))
    assert data["alpha"] == 0.5 and set(data["measures"]) == set(MEASURES)


def test_summary_leaves_out_groups_without_comparisons_and_says_so():
    result = bootstrap_group_rates(small_comparisons(), 0.5, n_boot=20, groups=["A", "B", "C", "D"])
    summary = summarize_disparity(result, alpha=0.5)
    assert "D" not in summary.groups
    assert summary.excluded["D"] == "no mated and no within-group non-mated comparisons"
    assert any("D" in note for note in summary.notes)
    lonely = summarize_disparity(result, alpha=0.5, groups=["A"])
    assert lonely.table["estimate"].isna().all()
    assert any("nothing to compare" in note for note in lonely.notes)
    with pytest.raises(ValueError, match="not in the result"):
        summarize_disparity(result, alpha=0.5, groups=["Z"])


def test_summary_is_immutable():
    summary = summarize_disparity(error_rates(small_comparisons(), 0.5), alpha=0.5)
    table = summary.table
    table.iloc[0, 0] = 99.0
    assert summary.table.iloc[0, 0] != 99.0
    with pytest.raises(AttributeError):
        summary.alpha = 0.1  # type: ignore[misc]
