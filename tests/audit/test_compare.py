"""Tests for audit.compare: hand-worked rates, replicate-level references, paired vs independent."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from audit.compare import COMPARE_COLUMNS, DISPARITY_COLUMNS, ModelComparison, compare_models
from audit.disparity import fairness_discrepancy_rate, garbe, max_min_ratio, summarize_disparity
from audit.uncertainty import bootstrap_group_rates

COLUMNS = ["score", "mated", "group_a", "group_b", "identity_a", "identity_b"]


# --- hand-worked example ----------------------------------------------------------------------

# Group X: identities 1, 2; group Y: identities 3, 4. Columns: A score, B score, mated, ids.
# Thresholds: A 0.5, B 0.6.
HAND_ROWS = [
    # mated                       A non-match (< 0.5)?  B non-match (< 0.6)?
    (0.9, 0.9, True, 1, 1),  #    no                    no
    (0.4, 0.7, True, 1, 1),  #    yes                   no
    (0.8, 0.8, True, 2, 2),  #    no                    no
    (0.3, 0.2, True, 2, 2),  #    yes                   yes
    (0.3, 0.7, True, 3, 3),  #    yes                   no
    (0.2, 0.65, True, 3, 3),  #   yes                   no
    (0.9, 0.5, True, 4, 4),  #    no                    yes
    (0.6, 0.55, True, 4, 4),  #   no                    yes
    # non-mated                   A match (>= 0.5)?     B match (>= 0.6)?
    (0.6, 0.5, False, 1, 2),  #   yes                   no
    (0.1, 0.7, False, 1, 2),  #   no                    yes
    (0.2, 0.62, False, 3, 4),  #  no                    yes
    (0.55, 0.65, False, 4, 3),  # yes                   yes
    (0.0, 0.0, False, 1, 3),  #   no                    no   (cross-group: overall FMR only)
]
# FNMR_X: A 2/4 = 0.5, B 1/4 = 0.25, diff -0.25.   FNMR_Y: A 2/4 = 0.5, B 2/4 = 0.5, diff 0.
# FMR_X:  A 1/2 = 0.5, B 1/2 = 0.5,  diff 0.       FMR_Y:  A 1/2 = 0.5, B 2/2 = 1.0, diff 0.5.
# Overall FNMR: A 4/8 = 0.5, B 3/8 = 0.375 (diff -0.125); FMR: A 2/5 = 0.4, B 3/5 = 0.6 (0.2).
# Disparity (alpha 0.5). A: all rates equal -> FDR 1, GARBE 0, ratios 1.
# B: FNMR (0.25, 0.5), FMR (0.5, 1.0): ratios 2 and 2; gaps B = 0.25, A = 0.5,
#    FDR = 1 - (0.5 * 0.5 + 0.5 * 0.25) = 0.625; Gini of (0.25, 0.5):
#    2/1 * (2 * 0.25) / (2 * 4 * 0.375) = 1/3, of (0.5, 1.0): 2 * 1.0 / (8 * 0.75) = 1/3,
#    GARBE = 1/3.


def hand_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    group = {1: "X", 2: "X", 3: "Y", 4: "Y"}
    frames = []
    for which in (0, 1):
        frames.append(pd.DataFrame(
            [(row[which], row[2], group[row[3]], group[row[4]], row[3], row[4])
             for row in HAND_ROWS],
            columns=COLUMNS,
        ))
    return frames[0], frames[1]


def test_hand_example_rates_and_differences():
    a, b = hand_tables()
    result = compare_models(a, 0.5, b, 0.6, labels=("old", "new"), n_boot=50, seed=1)
    assert result.paired is True and result.seed_a == result.seed_b == 1
    bg = result.by_group
    assert list(bg.columns) == list(COMPARE_COLUMNS)
    assert bg.at["X", "fnmr_a"] == 0.5 and bg.at["X", "fnmr_b"] == 0.25
    assert bg.at["X", "fnmr_diff"] == pytest.approx(-0.25)
    assert bg.at["Y", "fnmr_diff"] == pytest.approx(0.0)
    assert bg.at["X", "fmr_diff"] == pytest.approx(0.0)
    assert bg.at["Y", "fmr_a"] == 0.5 and bg.at["Y", "fmr_b"] == 1.0
    assert bg.at["Y", "fmr_diff"] == pytest.approx(0.5)
    assert bg.at["X", "n_mated_a"] == bg.at["X", "n_mated_b"] == 4
    assert bg.at["Y", "false_matches_b"] == 2
    ov = result.overall
    assert ov["fnmr_diff"] == pytest.approx(-0.125)
    assert ov["fmr_a"] == pytest.approx(0.4) and ov["fmr_b"] == pytest.approx(0.6)
    assert ov["fmr_diff"] == pytest.approx(0.2)

    d = result.disparity
    assert list(d.columns) == list(DISPARITY_COLUMNS)
    assert d.at["fdr", "estimate_a"] == pytest.approx(1.0)
    assert d.at["fdr", "estimate_b"] == pytest.approx(0.625)
    assert d.at["fdr", "diff"] == pytest.approx(-0.375)
    assert d.at["garbe", "estimate_a"] == pytest.approx(0.0)
    assert d.at["garbe", "diff"] == pytest.approx(1 / 3)
    assert d.at["fnmr_max_min_ratio", "diff"] == pytest.approx(1.0)
    assert d.at["fmr_max_min_ratio", "diff"] == pytest.approx(1.0)
    assert result.disparity_groups == ("X", "Y")


def test_result_is_immutable_and_serialisable():
    a, b = hand_tables()
    result = compare_models(a, 0.5, b, 0.6, n_boot=20)
    assert isinstance(result, ModelComparison)
    with pytest.raises(AttributeError):
        result.paired = False  # type: ignore[misc]
    frame = result.by_group
    frame.loc["X", "fnmr_diff"] = 9.0
    assert result.by_group.at["X", "fnmr_diff"] == pytest.approx(-0.25)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["labels"] == ["A", "B"] and data["paired"] is True
    assert set(data["by_group"]["X"]) == set(COMPARE_COLUMNS)
    assert set(data["disparity"]["fdr"]) == set(DISPARITY_COLUMNS)
    assert data["threshold_b"] == 0.6
    assert "minus" in data["method"]


# --- generated audits -------------------------------------------------------------------------


def generated(seed: int, *, id_offset: int = 0, per_group: int = 15) -> pd.DataFrame:
    """Three groups with identity effects; mated FNMR around 10-30%, FMR around 5-15%."""
    rng = np.random.default_rng(seed)
    rows = []
    groups = ["P", "Q", "R"]
    ids = {g: [id_offset + 100 * k + i for i in range(per_group)] for k, g in enumerate(groups)}
    effect = {i: rng.normal(0, 0.1) for g in groups for i in ids[g]}
    for k, g in enumerate(groups):
        for i in ids[g]:
            for _ in range(4):
                rows.append((0.6 - 0.05 * k + effect[i] + rng.normal(0, 0.1), True, g, g, i, i))
        for _ in range(120):
            i, j = rng.choice(ids[g], size=2, replace=False)
            rows.append((0.3 + 0.03 * k + rng.normal(0, 0.12), False, g, g, int(i), int(j)))
    return pd.DataFrame(rows, columns=COLUMNS)


def rescored(frame: pd.DataFrame, seed: int, noise: float = 0.03) -> pd.DataFrame:
    """Same pairs, scored by a correlated second model that is worse for group R."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    shift = np.where((frame["group_a"] == "R") & frame["mated"], -0.05, 0.0)
    out["score"] = frame["score"] + rng.normal(0, noise, len(frame)) + shift
    return out


def test_paired_differences_are_percentiles_of_same_draw_replicate_differences():
    a = generated(1)
    b = rescored(a, 2)
    result = compare_models(a, 0.5, b, 0.52, n_boot=200, seed=7)
    assert result.paired
    ref_a = bootstrap_group_rates(a, 0.5, n_boot=200, seed=7)
    ref_b = bootstrap_group_rates(b, 0.52, n_boot=200, seed=7)
    for rate in ("fnmr", "fmr"):
        diff = (getattr(ref_b, f"{rate}_replicates") - getattr(ref_a, f"{rate}_replicates"))
        lo, hi = np.quantile(diff.to_numpy(), [0.025, 0.975], axis=0)
        bg = result.by_group
        np.testing.assert_allclose(bg[f"{rate}_diff_lower"].to_numpy(), lo)
        np.testing.assert_allclose(bg[f"{rate}_diff_upper"].to_numpy(), hi)
        assert (bg[f"{rate}_diff_interval"] == "bootstrap").all()
        np.testing.assert_allclose(
            bg[f"{rate}_diff"].to_numpy(),
            ref_b.by_group[rate].to_numpy() - ref_a.by_group[rate].to_numpy(),
        )


def test_disparity_differences_match_public_functions_replicate_by_replicate():
    a = generated(3)
    b = rescored(a, 4)
    n_boot = 120
    result = compare_models(a, 0.5, b, 0.5, n_boot=n_boot, seed=5, alpha=0.3)
    ref_a = bootstrap_group_rates(a, 0.5, n_boot=n_boot, seed=5)
    ref_b = bootstrap_group_rates(b, 0.5, n_boot=n_boot, seed=5)

    def measures(ref):
        fm, fnm = ref.fmr_replicates, ref.fnmr_replicates
        n_mated, n_nonmated = ref.by_group["n_mated"], ref.by_group["n_nonmated"]
        out = []
        for r in range(n_boot):
            out.append((
                fairness_discrepancy_rate(fm.iloc[r], fnm.iloc[r], 0.3),
                garbe(fm.iloc[r], fnm.iloc[r], 0.3),
                max_min_ratio(fnm.iloc[r], trials=n_mated).value,
                max_min_ratio(fm.iloc[r], trials=n_nonmated).value,
            ))
        return np.array(out)

    diff = measures(ref_b) - measures(ref_a)
    lo, hi = np.quantile(diff, [0.025, 0.975], axis=0)
    d = result.disparity
    for k, m in enumerate(("fdr", "garbe", "fnmr_max_min_ratio", "fmr_max_min_ratio")):
        assert d.at[m, "diff_lower"] == pytest.approx(lo[k])
        assert d.at[m, "diff_upper"] == pytest.approx(hi[k])
        assert d.at[m, "n_valid"] == n_boot
    # Point estimates are summarize_disparity's.
    for side, ref in (("a", ref_a), ("b", ref_b)):
        table = summarize_disparity(ref, alpha=0.3).table
        np.testing.assert_allclose(d[f"estimate_{side}"].to_numpy(),
                                   table["estimate"].to_numpy(dtype=float))


def test_paired_intervals_are_narrower_than_independent_ones_for_correlated_models():
    a = generated(11, per_group=25)
    b = rescored(a, 12, noise=0.02)
    paired = compare_models(a, 0.5, b, 0.5, n_boot=300, seed=0)
    independent = compare_models(a, 0.5, b, 0.5, n_boot=300, seed=0, paired=False)
    assert paired.paired and not independent.paired
    assert independent.seed_b != independent.seed_a
    expected_seed = int(np.random.SeedSequence([0, 1]).generate_state(1)[0])
    assert independent.seed_b == expected_seed
    for rate in ("fnmr", "fmr"):
        w_paired = (paired.by_group[f"{rate}_diff_upper"]
                    - paired.by_group[f"{rate}_diff_lower"]).mean()
        w_indep = (independent.by_group[f"{rate}_diff_upper"]
                   - independent.by_group[f"{rate}_diff_lower"]).mean()
        assert w_paired < 0.6 * w_indep
    # The model made worse for R on mated pairs: the paired interval excludes 0 there.
    assert paired.by_group.at["R", "fnmr_diff_lower"] > 0


def test_two_audits_with_different_identities_are_resampled_independently():
    a = generated(21)
    b = generated(22, id_offset=10_000)
    result = compare_models(a, 0.5, b, 0.5, n_boot=100, seed=3)
    assert not result.paired
    ref_a = bootstrap_group_rates(a, 0.5, n_boot=100, seed=result.seed_a)
    ref_b = bootstrap_group_rates(b, 0.5, n_boot=100, seed=result.seed_b)
    diff = ref_b.fnmr_replicates - ref_a.fnmr_replicates
    lo = np.quantile(diff.to_numpy(), 0.025, axis=0)
    np.testing.assert_allclose(result.by_group["fnmr_diff_lower"].to_numpy(), lo)
    with pytest.raises(ValueError, match="same identities"):
        compare_models(a, 0.5, b, 0.5, n_boot=10, paired=True)


def test_a_side_without_errors_gets_the_difference_of_the_intervals():
    a = generated(31)
    b = rescored(a, 32)
    # Model A never fails group P: push its mated scores far above the threshold.
    a.loc[a["mated"] & (a["group_a"] == "P"), "score"] = 0.99
    result = compare_models(a, 0.5, b, 0.5, n_boot=100, seed=2)
    row = result.by_group.loc["P"]
    n = row["n_mated_a"]
    assert row["fnmr_a"] == 0.0 and row["fnmr_a_upper"] == pytest.approx(3 / n)
    assert row["fnmr_diff_interval"] == "bounds"
    assert row["fnmr_diff_lower"] == pytest.approx(row["fnmr_b_lower"] - 3 / n)
    assert row["fnmr_diff_upper"] == pytest.approx(row["fnmr_b_upper"] - 0.0)
    assert any("FNMR difference for P" in note for note in result.notes)


def test_groups_missing_on_one_side_are_undefined_and_left_out_of_disparity():
    a = generated(41)
    b = rescored(a, 42)
    b = b[~(b["mated"] & (b["group_a"] == "R"))]  # B has no mated pairs for R
    result = compare_models(a, 0.5, b, 0.5, n_boot=50, seed=0)
    assert result.paired  # R's identities are still in B through its non-mated rows
    assert np.isnan(result.by_group.at["R", "fnmr_diff"])
    assert result.by_group.at["R", "fnmr_diff_interval"] == "undefined"
    assert result.disparity_groups == ("P", "Q")
    assert any("left out" in note for note in result.notes)


def test_single_group_gives_no_disparity_comparison():
    a = generated(51)
    a = a[a["group_a"] == "P"]
    b = rescored(a, 52)
    result = compare_models(a, 0.5, b, 0.5, n_boot=30)
    assert result.disparity_groups == ("P",)
    assert result.disparity["diff"].isna().all()
    assert result.disparity_a is None
    json.dumps(result.to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    "kwargs",
    [{"labels": ("A", "A")}, {"paired": "yes"}, {"alpha": 2.0}, {"seed": 0.5},
     {"disparity_groups": ["nope"]}, {"n_boot": 0}],
)
def test_it_rejects_bad_arguments(kwargs):
    a, b = hand_tables()
    with pytest.raises(ValueError):
        compare_models(a, 0.5, b, 0.6, **kwargs)
