"""Tests for audit.rates: hand-worked numbers, brute-force thresholds, fairlearn as a reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from audit.rates import (
    BY_GROUP_COLUMNS,
    GroupRates,
    ThresholdChoice,
    error_rates,
    rule_of_three,
    threshold_at_fmr,
)

# --- a hand-made comparison set -----------------------------------------------------------------
#
# Groups A (identities 1, 2), B (identities 3, 4), C (identity 5).
#
# Mated scores (10):   A: 0.9 (id 1), 0.35, 0.7 (id 2)
#                      B: 0.6, 0.4 (id 3), 0.3 (id 4)
#                      C: 0.95, 0.85, 0.75, 0.55 (id 5)
# Non-mated scores (12): A-A: 0.5, 0.1, 0.2      B-B: 0.45, 0.45, 0.05     C-C: none
#                        A-B: 0.3, 0.0, 0.1      A-C: 0.2                  B-C: 0.6, 0.15
#
# Sorted non-mated: 0.0 0.05 0.1 0.1 0.15 0.2 0.2 0.3 0.45 0.45 0.5 0.6
# Target FMR 0.25 allows at most 3 of 12 at or above t.
#   t = 0.45 -> 4 scores >= t (0.45, 0.45, 0.5, 0.6) = 1/3 > 0.25   (the tie pushes it over)
#   t = 0.5  -> 2 scores >= t = 1/6 <= 0.25                         => threshold 0.5
# Target 0.1 (at most 1.2 of 12): t = 0.5 -> 2/12 too many; t = 0.6 -> 1/12  => threshold 0.6
# Target 0.05 (< 1/12): even t = 0.6 gives 1/12 > 0.05            => just above 0.6, 0 matches
#
# At t = 0.5 (match: score >= 0.5):
#   A mated: 0.9 ok, 0.35 miss, 0.7 ok          -> n 3, FNM 1, FNMR 1/3
#   B mated: 0.6 ok, 0.4 miss, 0.3 miss         -> n 3, FNM 2, FNMR 2/3
#   C mated: all >= 0.55                         -> n 4, FNM 0, FNMR 0, upper95 = 3/4
#   A-A: 0.5 matches                             -> n 3, FM 1, FMR 1/3
#   B-B: none                                    -> n 3, FM 0, FMR 0, upper95 = min(3/3, 1) = 1
#   C-C: no pairs                                -> n 0, FMR NaN, upper95 NaN
#   A-B 0/3, A-C 0/1, B-C 1/2 (0.6)
#   overall: FNM 3/10 = 0.3; FM 2/12 = 1/6
#   identities: A {1, 2} = 2, B {3, 4} = 2, C {5} = 1


def hand_comparisons() -> pd.DataFrame:
    rows = [
        # mated: score, group, identity
        (0.9, True, "A", "A", 1, 1),
        (0.35, True, "A", "A", 2, 2),
        (0.7, True, "A", "A", 2, 2),
        (0.6, True, "B", "B", 3, 3),
        (0.4, True, "B", "B", 3, 3),
        (0.3, True, "B", "B", 4, 4),
        (0.95, True, "C", "C", 5, 5),
        (0.85, True, "C", "C", 5, 5),
        (0.75, True, "C", "C", 5, 5),
        (0.55, True, "C", "C", 5, 5),
        # non-mated
        (0.5, False, "A", "A", 1, 2),
        (0.1, False, "A", "A", 1, 2),
        (0.2, False, "A", "A", 2, 1),
        (0.45, False, "B", "B", 3, 4),
        (0.45, False, "B", "B", 3, 4),
        (0.05, False, "B", "B", 4, 3),
        (0.3, False, "A", "B", 1, 3),
        (0.0, False, "B", "A", 4, 2),  # either orientation counts for the A-B cell
        (0.1, False, "A", "B", 2, 4),
        (0.2, False, "C", "A", 5, 1),
        (0.6, False, "B", "C", 3, 5),
        (0.15, False, "C", "B", 5, 4),
    ]
    return pd.DataFrame(
        rows, columns=["score", "mated", "group_a", "group_b", "identity_a", "identity_b"]
    )


def test_threshold_on_hand_scores_respects_ties():
    nm = hand_comparisons().query("not mated")["score"].to_numpy()
    choice = threshold_at_fmr(nm, 0.25)
    assert choice == ThresholdChoice(
        threshold=0.5, target_fmr=0.25, achieved_fmr=2 / 12, n_nonmated=12, false_matches=2
    )
    assert threshold_at_fmr(nm, 0.1).threshold == 0.6
    assert threshold_at_fmr(nm, 0.1).false_matches == 1


def test_threshold_goes_just_above_the_max_when_target_is_unreachable():
    nm = hand_comparisons().query("not mated")["score"].to_numpy()
    choice = threshold_at_fmr(nm, 0.05)
    assert choice.threshold == np.nextafter(0.6, np.inf)
    assert choice.threshold > 0.6
    assert choice.false_matches == 0 and choice.achieved_fmr == 0.0
    assert not choice.resolvable
    assert threshold_at_fmr(nm, 0.25).resolvable


def test_error_rates_on_hand_comparisons():
    rates = error_rates(hand_comparisons(), 0.5)
    bg = rates.by_group
    assert list(bg.index) == ["A", "B", "C"]
    assert list(bg.columns) == list(BY_GROUP_COLUMNS)
    assert bg["n_mated"].tolist() == [3, 3, 4]
    assert bg["false_non_matches"].tolist() == [1, 2, 0]
    np.testing.assert_allclose(bg["fnmr"], [1 / 3, 2 / 3, 0.0])
    np.testing.assert_allclose(bg["fnmr_upper95"], [np.nan, np.nan, 0.75])
    assert bg["n_identities"].tolist() == [2, 2, 1]
    assert bg["n_nonmated"].tolist() == [3, 3, 0]
    assert bg["false_matches"].tolist() == [1, 0, 0]
    np.testing.assert_allclose(bg["fmr"], [1 / 3, 0.0, np.nan])
    np.testing.assert_allclose(bg["fmr_upper95"], [np.nan, 1.0, np.nan])

    assert rates.overall == pytest.approx(
        {
            "n_mated": 10,
            "false_non_matches": 3,
            "fnmr": 0.3,
            "fnmr_upper95": np.nan,
            "n_nonmated": 12,
            "false_matches": 2,
            "fmr": 1 / 6,
            "fmr_upper95": np.nan,
        },
        nan_ok=True,
    )

    counts = rates.cross_group_counts
    assert counts.to_numpy().tolist() == [[3, 3, 1], [3, 3, 2], [1, 2, 0]]
    assert rates.cross_group_false_matches.to_numpy().tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]
    np.testing.assert_allclose(
        rates.cross_group_fmr.to_numpy(),
        [[1 / 3, 0, 0], [0, 0, 0.5], [0, 0.5, np.nan]],
    )
    assert (
        list(rates.cross_group_fmr.index) == list(rates.cross_group_fmr.columns) == ["A", "B", "C"]
    )


def test_to_dict_is_plain_json_with_none_for_undefined_rates():
    summary = error_rates(hand_comparisons(), 0.5).to_dict()
    text = json.dumps(summary, allow_nan=False)  # raises on NaN
    back = json.loads(text)
    assert back == summary
    assert summary["threshold"] == 0.5
    assert summary["by_group"]["C"]["fmr"] is None
    assert summary["by_group"]["C"]["n_nonmated"] == 0
    assert summary["by_group"]["C"]["fnmr_upper95"] == 0.75
    assert summary["by_group"]["A"]["fnmr_upper95"] is None
    assert summary["overall"]["false_matches"] == 2
    assert summary["cross_group"]["groups"] == ["A", "B", "C"]
    assert summary["cross_group"]["fmr"][2][2] is None
    assert summary["cross_group"]["n_nonmated"][1] == [3, 3, 2]
    assert type(summary["by_group"]["A"]["n_mated"]) is int


def test_groups_without_comparisons_get_zero_counts_and_nan_rates():
    rates = error_rates(hand_comparisons(), 0.5, groups=["A", "B", "C", "D"])
    d = rates.by_group.loc["D"]
    assert d["n_mated"] == 0 and d["n_nonmated"] == 0 and d["n_identities"] == 0
    assert math.isnan(d["fnmr"]) and math.isnan(d["fmr"]) and math.isnan(d["fmr_upper95"])
    assert rates.cross_group_counts.loc["D"].tolist() == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="not in `groups`"):
        error_rates(hand_comparisons(), 0.5, groups=["A", "B"])


def test_error_rates_on_an_empty_frame_does_not_crash():
    rates = error_rates(hand_comparisons().iloc[:0], 0.5)
    assert rates.groups == ()
    assert rates.overall["n_mated"] == 0 and math.isnan(rates.overall["fnmr"])
    assert json.dumps(rates.to_dict(), allow_nan=False)


def test_group_rates_cannot_be_changed_through_accessors():
    rates = error_rates(hand_comparisons(), 0.5)
    by_group, cross, overall = rates.by_group, rates.cross_group_fmr, rates.overall
    by_group.loc["A", "fnmr"] = 99.0
    cross.iloc[0, 0] = 99.0
    overall["fmr"] = 99.0
    assert rates.by_group.loc["A", "fnmr"] == pytest.approx(1 / 3)
    assert rates.cross_group_fmr.iloc[0, 0] == pytest.approx(1 / 3)
    assert rates.overall["fmr"] == pytest.approx(1 / 6)
    with pytest.raises(AttributeError):
        rates.threshold = 0.1  # type: ignore[misc]
    assert isinstance(rates, GroupRates)


# --- threshold against a brute-force scan ------------------------------------------------------


def brute_force_threshold(scores: np.ndarray, target: float) -> tuple[float, int]:
    """Scan every candidate (each distinct score, then just above the max), smallest first."""
    n = len(scores)
    candidates = sorted(set(scores.tolist())) + [float(np.nextafter(scores.max(), np.inf))]
    for t in candidates:
        count = 0
        for s in scores.tolist():
            if s >= t:
                count += 1
        if count / n <= target:
            return t, count
    raise AssertionError("unreachable: the last candidate has no false matches")


@pytest.mark.parametrize("seed", range(20))
def test_threshold_matches_brute_force_on_tied_random_scores(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    # Few distinct values -> many ties at every candidate.
    scores = rng.integers(0, int(rng.integers(2, 30)), size=n) / 10.0
    for target in (0.001, 0.01, 0.05, 0.1, 0.3, 0.5, 0.9, float(rng.uniform(0.001, 0.999))):
        choice = threshold_at_fmr(scores, target)
        t, count = brute_force_threshold(scores, target)
        assert choice.threshold == t
        assert choice.false_matches == count
        assert choice.n_nonmated == n

        # Properties: never above the target; the next smaller distinct score would exceed it.
        assert choice.achieved_fmr <= target
        assert choice.achieved_fmr == np.mean(scores >= choice.threshold)
        lower = scores[scores < choice.threshold]
        if lower.size:
            assert np.mean(scores >= lower.max()) > target


def test_threshold_on_continuous_scores_hits_the_target_count():
    scores = np.random.default_rng(5).normal(size=10_000)
    choice = threshold_at_fmr(scores, 1e-3)
    # Distinct scores: exactly floor(1e-3 * 10_000) = 10 at or above t, i.e. t is the 10th largest.
    assert choice.false_matches == 10
    assert choice.threshold == np.sort(scores)[-10]


@pytest.mark.parametrize(
    ("scores", "target", "message"),
    [
        ([0.1, 0.2], 0.0, "strictly between 0 and 1"),
        ([0.1, 0.2], 1.0, "strictly between 0 and 1"),
        ([0.1, 0.2], float("nan"), "strictly between 0 and 1"),
        ([0.1, 0.2], "0.1", "must be a number"),
        ([], 0.1, "empty"),
        ([0.1, float("nan")], 0.1, "NaN or infinite"),
        ([0.1, float("inf")], 0.1, "NaN or infinite"),
        ([[0.1, 0.2]], 0.1, "1-D"),
    ],
)
def test_threshold_rejects_bad_input(scores, target, message):
    with pytest.raises(ValueError, match=message):
        threshold_at_fmr(scores, target)


# --- rule of three ----------------------------------------------------------------------------


def test_rule_of_three():
    assert rule_of_three(300) == pytest.approx(0.01)
    assert rule_of_three(3) == 1.0
    assert rule_of_three(1) == 1.0  # capped: a bound on a probability
    # It approximates (from above) the exact one-sided 95% bound 1 - 0.05 ** (1 / n).
    for n in (30, 100, 10_000):
        exact = 1 - 0.05 ** (1 / n)
        assert exact < rule_of_three(n) < exact * 1.06
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="positive whole number"):
            rule_of_three(bad)


# --- per-group rates against fairlearn / naive masks -------------------------------------------


def random_comparisons(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    groups = np.array(["asian", "black", "indian", "white"])
    n_ids = 60
    id_group = rng.choice(groups, size=n_ids)
    n_mated, n_nonmated = 400, 3000
    mated_ids = rng.integers(0, n_ids, size=n_mated)
    ia = rng.integers(0, n_ids, size=n_nonmated)
    ib = (ia + rng.integers(1, n_ids, size=n_nonmated)) % n_ids  # always a different identity
    scores = np.concatenate(
        (
            np.round(rng.normal(0.6, 0.15, size=n_mated), 2),  # rounded: ties at the threshold
            np.round(rng.normal(0.1, 0.12, size=n_nonmated), 2),
        )
    )
    return pd.DataFrame(
        {
            "score": scores,
            "mated": np.r_[np.ones(n_mated, bool), np.zeros(n_nonmated, bool)],
            "group_a": np.r_[id_group[mated_ids], id_group[ia]],
            "group_b": np.r_[id_group[mated_ids], id_group[ib]],
            "identity_a": np.r_[mated_ids, ia],
            "identity_b": np.r_[mated_ids, ib],
        }
    )


@pytest.mark.parametrize("seed", range(4))
def test_by_group_rates_match_fairlearn_metricframe(seed):
    metrics = pytest.importorskip("fairlearn.metrics")
    comparisons = random_comparisons(seed)
    threshold = 0.4
    rates = error_rates(comparisons, threshold)
    bg = rates.by_group

    mated = comparisons[comparisons["mated"]]
    mf = metrics.MetricFrame(
        metrics={"fnr": metrics.false_negative_rate, "n": metrics.count},
        y_true=np.ones(len(mated), dtype=int),
        y_pred=(mated["score"] >= threshold).astype(int),
        sensitive_features=mated["group_a"],
    )
    np.testing.assert_allclose(bg["fnmr"], mf.by_group["fnr"].loc[bg.index].astype(float))
    assert bg["n_mated"].tolist() == mf.by_group["n"].loc[bg.index].tolist()
    assert rates.overall["fnmr"] == pytest.approx(mf.overall["fnr"])

    within = comparisons[~comparisons["mated"] & (comparisons["group_a"] == comparisons["group_b"])]
    mf = metrics.MetricFrame(
        metrics={"fpr": metrics.false_positive_rate, "n": metrics.count},
        y_true=np.zeros(len(within), dtype=int),
        y_pred=(within["score"] >= threshold).astype(int),
        sensitive_features=within["group_a"],
    )
    np.testing.assert_allclose(bg["fmr"], mf.by_group["fpr"].loc[bg.index].astype(float))
    assert bg["n_nonmated"].tolist() == mf.by_group["n"].loc[bg.index].tolist()


@pytest.mark.parametrize("seed", range(4))
def test_rates_match_naive_masks(seed):
    comparisons = random_comparisons(seed)
    threshold = 0.35
    rates = error_rates(comparisons, threshold)
    bg, fmr, counts = rates.by_group, rates.cross_group_fmr, rates.cross_group_counts
    s = comparisons["score"].to_numpy()
    m = comparisons["mated"].to_numpy()
    ga, gb = comparisons["group_a"].to_numpy(), comparisons["group_b"].to_numpy()
    ida, idb = comparisons["identity_a"].to_numpy(), comparisons["identity_b"].to_numpy()

    for g in rates.groups:
        mask = m & (ga == g)
        assert bg.loc[g, "n_mated"] == mask.sum()
        assert bg.loc[g, "false_non_matches"] == (s[mask] < threshold).sum()
        assert bg.loc[g, "fnmr"] == pytest.approx((s[mask] < threshold).mean())
        ids = set(ida[ga == g].tolist()) | set(idb[gb == g].tolist())
        assert bg.loc[g, "n_identities"] == len(ids)
        for h in rates.groups:
            cell = ~m & (((ga == g) & (gb == h)) | ((ga == h) & (gb == g)))
            assert counts.loc[g, h] == cell.sum()
            if cell.any():
                assert fmr.loc[g, h] == pytest.approx((s[cell] >= threshold).mean())
            else:
                assert math.isnan(fmr.loc[g, h])
        assert bg.loc[g, "fmr"] == pytest.approx(fmr.loc[g, g], nan_ok=True)

    assert np.array_equal(counts.to_numpy(), counts.to_numpy().T)
    np.testing.assert_array_equal(fmr.to_numpy(), fmr.to_numpy().T)
    assert rates.overall["false_matches"] == int((~m & (s >= threshold)).sum())
    assert rates.overall["n_nonmated"] == int((~m).sum())


def test_error_rates_rejects_bad_input():
    good = hand_comparisons()
    with pytest.raises(ValueError, match="missing column"):
        error_rates(good.drop(columns="score"), 0.5)
    with pytest.raises(ValueError, match="finite"):
        error_rates(good, float("nan"))
    bad = good.copy()
    bad.loc[0, "score"] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        error_rates(bad, 0.5)
    bad = good.copy()
    bad.loc[0, "group_b"] = "B"
    with pytest.raises(ValueError, match="group_a == group_b"):
        error_rates(bad, 0.5)
