"""Tests for audit.disparity: hand-worked values, naive double loops, and the summary object."""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from audit.disparity import (
    DEFINITIONS,
    INTERVAL_METHODS,
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


def naive_band(point, reps, n_units, confidence=0.95):
    """Sup-t band by its definition, one replicate and one contrast at a time, with the
    expanded critical value sqrt(n/(n-1)) * t_{n-1}^{-1}(Phi(c)) (Hesterberg 2015)."""
    point = [float(v) for v in point]
    rows = [list(r) for r in np.asarray(reps, dtype=float) if not np.isnan(r).any()]
    se = [float(np.std([r[k] for r in rows], ddof=1)) for k in range(len(point))]
    t = [max(abs(r[k] - point[k]) / se[k] for k in range(len(point)) if se[k] > 0) for r in rows]
    c = float(np.quantile(t, confidence))
    c = math.sqrt(n_units / (n_units - 1)) * stats.t.ppf(stats.norm.cdf(c), n_units - 1)
    lower = [p - c * s for p, s in zip(point, se, strict=True)]
    upper = [p + c * s for p, s in zip(point, se, strict=True)]
    return lower, upper, len(rows)


def two_group_expectations(result, groups, alpha):
    """Intervals of every measure for two groups, by hand from the definitions.

    For two groups there is one pair, so the max gap is |r_0 - r_1| with interval
    [max(0, L, -U), max(U, -L)] from the band [L, U] on r_0 - r_1 (widened by 3/n for an
    error-free group); the ratio the same on floored log rates; and the corrected Gini is
    |x_0 - x_1| / (x_0 + x_1), whose range over a box [l, u] is 0 (or (max l - min u) /
    (max l + min u) when the two intervals do not meet) to max((u_0 - l_1) / (u_0 + l_1),
    (u_1 - l_0) / (u_1 + l_0)).
    """
    by_group = result.by_group.loc[groups]
    n_units = int(by_group["n_identities"].min())
    fam = {}
    for name, errors, trials in (("fmr", "false_matches", "n_nonmated"),
                                 ("fnmr", "false_non_matches", "n_mated")):
        reps = getattr(result, f"{name}_replicates")[groups].to_numpy()
        n = by_group[trials].to_numpy()
        bound = np.minimum(3.0 / n, 1.0)
        zero = by_group[errors].to_numpy() == 0
        fam[name] = {"p": by_group[name].to_numpy(), "reps": reps, "bound": bound,
                     "allow": np.where(zero, bound, 0.0), "zero": zero}

    def diff_band(names):
        point = [fam[k]["p"][0] - fam[k]["p"][1] for k in names]
        reps = np.column_stack([fam[k]["reps"][:, 0] - fam[k]["reps"][:, 1] for k in names])
        lower, upper, n_valid = naive_band(point, reps, n_units)
        gaps = []
        for k, lo, hi in zip(names, lower, upper, strict=True):
            lo, hi = lo - fam[k]["allow"][1], hi + fam[k]["allow"][0]
            gaps.append((max(0.0, lo, -hi), max(hi, -lo)))
        return gaps, n_valid

    def log_floored(k, x):
        return np.log(np.where(x == 0, fam[k]["bound"], x))

    def box(names):
        point = np.concatenate([log_floored(k, fam[k]["p"]) for k in names])
        reps = np.column_stack([log_floored(k, fam[k]["reps"]) for k in names])
        lower, upper, n_valid = naive_band(point, reps, n_units)
        out = []
        for m, k in enumerate(names):
            lo, hi = np.exp(lower[2 * m : 2 * m + 2]), np.exp(upper[2 * m : 2 * m + 2])
            lo = np.where(fam[k]["zero"], 0.0, lo)
            hi = np.where(fam[k]["zero"], np.maximum(hi, fam[k]["bound"]), hi)
            lo, hi = np.clip(lo, 0, 1), np.clip(hi, 0, 1)
            meet = max(lo) <= min(hi)
            g_min = 0.0 if meet else (max(lo) - min(hi)) / (max(lo) + min(hi))
            g_max = max((hi[0] - lo[1]) / (hi[0] + lo[1]), (hi[1] - lo[0]) / (hi[1] + lo[0]))
            out.append((g_min, g_max))
        return out, n_valid

    expected = {}
    for k in ("fnmr", "fmr"):
        logs = log_floored(k, fam[k]["p"])
        rep_logs = log_floored(k, fam[k]["reps"])
        lower, upper, n_valid = naive_band(
            [logs[0] - logs[1]], rep_logs[:, [0]] - rep_logs[:, [1]], n_units)
        lo, hi = lower[0], upper[0]
        expected[f"{k}_max_min_ratio"] = (max(1.0, math.exp(lo), math.exp(-hi)),
                                          max(math.exp(hi), math.exp(-lo)), n_valid)
        [gap], n_valid = diff_band([k])
        expected[f"{k}_max_gap"] = (*gap, n_valid)
        [gini_k], n_valid = box([k])
        expected[f"{k}_gini"] = (*gini_k, n_valid)
    (gap_fm, gap_fnm), n_valid = diff_band(["fmr", "fnmr"])
    expected["fdr"] = (1 - (alpha * gap_fm[1] + (1 - alpha) * gap_fnm[1]),
                       1 - (alpha * gap_fm[0] + (1 - alpha) * gap_fnm[0]), n_valid)
    (g_fm, g_fnm), n_valid = box(["fmr", "fnmr"])
    expected["garbe"] = (alpha * g_fm[0] + (1 - alpha) * g_fnm[0],
                         alpha * g_fm[1] + (1 - alpha) * g_fnm[1], n_valid)
    return expected


def error_free_b() -> pd.DataFrame:
    """small_comparisons with every mated comparison of B matching: B's FNMR is 0."""
    comp = small_comparisons()
    comp.loc[comp["mated"] & (comp["group_a"] == "B"), "score"] = 0.9
    return comp


@pytest.mark.parametrize(("groups", "make"), [(["A", "B"], small_comparisons),
                                              (["B", "C"], small_comparisons),
                                              (["A", "B"], error_free_b)])
def test_summary_intervals_are_the_simultaneous_bounds_worked_by_hand(groups, make):
    result = bootstrap_group_rates(make(), 0.5, n_boot=120, seed=3)
    summary = summarize_disparity(result, alpha=0.4, groups=groups)
    table = summary.table
    expected = two_group_expectations(result, groups, 0.4)
    for m in MEASURES:
        lo, hi, n_valid = expected[m]
        est = table.at[m, "estimate"]
        # The estimate is inside by construction; the hand bounds may round just past it.
        np.testing.assert_allclose(
            [table.at[m, "lower"], table.at[m, "upper"]], [min(lo, est), max(hi, est)],
            rtol=1e-9, atol=1e-12, err_msg=m,
        )
        assert table.at[m, "n_valid"] == n_valid, m
        assert table.at[m, "lower"] <= est <= table.at[m, "upper"], m
        assert table.at[m, "interval_method"] == INTERVAL_METHODS[m]
    highest = str(result.by_group.loc[groups, "fnmr"].idxmax())
    assert table.at["fnmr_max_gap", "max_group"] == highest


def test_summary_intervals_contain_parity_when_the_rates_are_equal():
    # Two identical groups (the same comparisons under two labels): every contrast is 0 in the
    # point and symmetric in the replicates, so each interval holds parity and the estimate.
    base = small_comparisons()
    one = base[(base["group_a"] == "A") & (base["group_b"] == "A")]
    two = one.assign(group_a="Z", group_b="Z", identity_a=one["identity_a"] + 1000,
                     identity_b=one["identity_b"] + 1000)
    comp = pd.concat([one, two], ignore_index=True)
    result = bootstrap_group_rates(comp, 0.5, n_boot=200, seed=1)
    table = summarize_disparity(result, alpha=0.5).table
    parity = {"fnmr_max_min_ratio": 1.0, "fmr_max_min_ratio": 1.0, "fmr_max_gap": 0.0,
              "fnmr_max_gap": 0.0, "fdr": 1.0, "fmr_gini": 0.0, "fnmr_gini": 0.0, "garbe": 0.0}
    for m, value in parity.items():
        assert table.at[m, "estimate"] == pytest.approx(value, abs=1e-12)
        assert table.at[m, "lower"] <= value <= table.at[m, "upper"], m
        assert table.at[m, "upper"] > table.at[m, "lower"], m


def test_an_error_free_group_is_named_in_the_notes():
    result = bootstrap_group_rates(error_free_b(), 0.5, n_boot=100, seed=2)
    summary = summarize_disparity(result, alpha=0.5, groups=["A", "B"])
    assert result.by_group.at["B", "false_non_matches"] == 0
    assert any("no observed error" in note and "B" in note for note in summary.notes)
    table = summary.table
    # B's true FNMR may be up to 3/n: the FNMR Gini can reach 1 only if B may be 0 -- it can.
    assert table.at["fnmr_gini", "upper"] == pytest.approx(1.0)


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
