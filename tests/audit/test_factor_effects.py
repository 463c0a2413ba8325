"""Tests for audit.factor_effects: hand-worked cells, scipy/statsmodels as references, simulations.

References are computed independently of the module: pairing by a pandas pivot, the tests by
``scipy.stats.wilcoxon`` and ``statsmodels``' ``mcnemar`` / ``multipletests``, the regression by
statsmodels' formula interface. Every simulation is seeded.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.multitest import multipletests

from audit.factor_effects import (
    EFFECT_COLUMNS,
    INTERACTION_COLUMNS,
    MCNEMAR_EXACT_BELOW,
    TEST_COLUMNS,
    FactorEffects,
    InteractionResult,
    adjust_pvalues,
    factor_effects,
    interaction_model,
)
from audit.paired_tests import mcnemar

COLUMNS = ["fr_model", "identity_id", "group", "factor", "level", "score"]

# --- a hand-made design ---------------------------------------------------------------------------
#
# One FR model "m", threshold 0.5 (match when score >= 0.5).
#
#            control   blur 1.5   blur 3
#   A  a1    0.9       0.8        0.5     (0.5 ties the threshold: a match)
#      a2    0.6       0.4        0.3
#      a3    0.45      0.55       NaN     (no face: missing)
#      a4    0.7       -          0.2     (no blur-1.5 image)
#   B  b1    0.7       0.65       0.7     (blur 3 unchanged: zero difference)
#      b2    -         0.6        0.1     (no control image)
#
# A, blur 1.5: pairs a1 a2 a3, d = -0.1, -0.2, +0.1 -> mean -0.2/3, median -0.1
#   control matches 1 1 0 (2/3), level 1 0 1 (2/3): FNMR change 0; lost 1 (a2), gained 1 (a3)
#   McNemar exact: b + c = 2, p = min(1, 2 P(Bin(2, .5) <= 1)) = 1
#   missing level: a4 -> 1; missing control: 0; identities 4
# A, blur 3: pairs a1 a2 a4 (a3 NaN), d = -0.4, -0.3, -0.5 -> mean -0.4, median -0.4
#   control matches 1 1 1, level 1 0 0: FNMR 0 -> 2/3, change +2/3; lost 2, gained 0
#   McNemar exact: p = 2 P(Bin(2, .5) <= 0) = 0.5; Wilcoxon exact: all 3 negative -> p = 2/8
#   missing level: a3 -> 1
# B, blur 1.5: pair b1 only, d = -0.05: n 1, no t-interval; missing control 1 (b2)
# B, blur 3: pair b1 only, d = 0: no non-zero difference -> Wilcoxon p = 1; McNemar "none", p = 1


def hand_mated() -> pd.DataFrame:
    rows = [
        ("m", "a1", "A", "control", None, 0.9),
        ("m", "a1", "A", "blur", 1.5, 0.8),
        ("m", "a1", "A", "blur", 3.0, 0.5),
        ("m", "a2", "A", "control", None, 0.6),
        ("m", "a2", "A", "blur", 1.5, 0.4),
        ("m", "a2", "A", "blur", 3.0, 0.3),
        ("m", "a3", "A", "control", None, 0.45),
        ("m", "a3", "A", "blur", 1.5, 0.55),
        ("m", "a3", "A", "blur", 3.0, math.nan),
        ("m", "a4", "A", "control", None, 0.7),
        ("m", "a4", "A", "blur", 3.0, 0.2),
        ("m", "b1", "B", "control", None, 0.7),
        ("m", "b1", "B", "blur", 1.5, 0.65),
        ("m", "b1", "B", "blur", 3.0, 0.7),
        ("m", "b2", "B", "blur", 1.5, 0.6),
        ("m", "b2", "B", "blur", 3.0, 0.1),
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def cell(result: FactorEffects, group: str, level: object, model: str = "m") -> pd.Series:
    e = result.effects
    hit = e[(e["fr_model"] == model) & (e["group"] == group) & (e["level"] == level)]
    assert len(hit) == 1
    return hit.iloc[0]


def test_it_computes_the_hand_worked_mean_change_and_fnmr_change() -> None:
    result = factor_effects(hand_mated(), {"m": 0.5})
    a15 = cell(result, "A", 1.5)
    assert a15["n_pairs"] == 3
    assert a15["mean_change"] == pytest.approx(-0.2 / 3)
    assert a15["median_change"] == pytest.approx(-0.1)
    assert a15["mean_control"] == pytest.approx((0.9 + 0.6 + 0.45) / 3)
    assert a15["match_rate_control"] == pytest.approx(2 / 3)
    assert a15["match_rate_level"] == pytest.approx(2 / 3)
    assert a15["fnmr_change"] == pytest.approx(0.0)
    assert (a15["mcnemar_lost"], a15["mcnemar_gained"]) == (1, 1)
    assert a15["mcnemar_method"] == "exact"
    assert a15["mcnemar_p"] == pytest.approx(1.0)

    a3 = cell(result, "A", 3.0)
    assert a3["n_pairs"] == 3
    assert a3["mean_change"] == pytest.approx(-0.4)
    assert a3["median_change"] == pytest.approx(-0.4)
    assert a3["fnmr_control"] == pytest.approx(0.0)
    assert a3["fnmr_level"] == pytest.approx(2 / 3)  # 0.5 >= 0.5 is a match
    assert a3["fnmr_change"] == pytest.approx(2 / 3)
    assert (a3["mcnemar_lost"], a3["mcnemar_gained"]) == (2, 0)
    assert a3["mcnemar_p"] == pytest.approx(0.5)
    assert a3["wilcoxon_p"] == pytest.approx(0.25)
    # t-interval by hand: sd of (-0.4, -0.3, -0.5) is 0.1
    half = stats.t.ppf(0.975, 2) * 0.1 / math.sqrt(3)
    assert a3["mean_change_ci_low"] == pytest.approx(-0.4 - half)
    assert a3["mean_change_ci_high"] == pytest.approx(-0.4 + half)
    # n < 6: no distribution-free 95% interval for the median exists
    assert math.isnan(a3["median_change_ci_low"]) and math.isnan(a3["median_change_ci_high"])


def test_missing_cells_are_dropped_from_pairing_and_counted() -> None:
    result = factor_effects(hand_mated(), {"m": 0.5})
    assert result.dropped_nan_scores == 1
    a15, a3 = cell(result, "A", 1.5), cell(result, "A", 3.0)
    assert (a15["n_identities"], a15["n_missing_control"], a15["n_missing_level"]) == (4, 0, 1)
    assert (a3["n_identities"], a3["n_missing_control"], a3["n_missing_level"]) == (4, 0, 1)
    b15 = cell(result, "B", 1.5)
    assert (b15["n_identities"], b15["n_missing_control"], b15["n_missing_level"]) == (2, 1, 0)
    assert b15["n_pairs"] == 1
    assert b15["mean_change"] == pytest.approx(-0.05)
    assert math.isnan(b15["mean_change_ci_low"])  # n = 1: no t-interval


def test_a_cell_with_no_pairs_has_no_p_value_and_is_left_out_of_the_family() -> None:
    mated = hand_mated()
    # B loses its only control: both B cells have no pair left.
    mated = mated[~((mated["identity_id"] == "b1") & (mated["factor"] == "control"))]
    result = factor_effects(mated, {"m": 0.5})
    b15 = cell(result, "B", 1.5)
    assert b15["n_pairs"] == 0 and b15["n_missing_control"] == 2
    assert math.isnan(b15["wilcoxon_p"]) and math.isnan(b15["wilcoxon_p_adjusted"])
    assert not b15["significant"]
    tests = result.tests
    assert set(tests["family_size"]) == {2}  # only the two A cells were tested


def test_all_zero_differences_give_p_one_and_no_warning() -> None:
    result = factor_effects(hand_mated(), {"m": 0.5})
    b3 = cell(result, "B", 3.0)
    assert b3["wilcoxon_n_nonzero"] == 0
    assert b3["wilcoxon_p"] == 1.0
    assert b3["mcnemar_method"] == "none" and b3["mcnemar_p"] == 1.0


def test_median_interval_uses_the_binomial_order_statistics() -> None:
    # n = 10: P(Bin(10, .5) <= 1) = 11/1024 <= 0.025 < P(<= 2) = 56/1024, so k = 2:
    # the interval is [d_(2), d_(9)] of the sorted differences.
    diffs = np.array([-0.9, -0.5, -0.4, -0.3, -0.2, -0.1, 0.0, 0.1, 0.3, 0.6])
    rows = []
    for i, d in enumerate(diffs):
        rows.append(("m", i, "A", "control", None, 0.5))
        rows.append(("m", i, "A", "blur", 1.0, 0.5 + d))
    result = factor_effects(pd.DataFrame(rows, columns=COLUMNS), {"m": 0.4})
    row = cell(result, "A", 1.0)
    assert row["median_change_ci_low"] == pytest.approx(-0.5)
    assert row["median_change_ci_high"] == pytest.approx(0.3)
    assert row["median_change"] == pytest.approx(np.median(diffs))


# --- the tests against independent references ------------------------------------------------------


def simulate(
    seed: int,
    *,
    n_per_group: int = 30,
    effect: float = -0.08,
    effect_group: str = "B",
    effect_condition: tuple[str, object] = ("yaw", 15.0),
    missing_share: float = 0.0,
    models: tuple[str, ...] = ("m",),
) -> pd.DataFrame:
    """Mated scores with an identity random effect; one (group, condition) cell is shifted.

    score = 0.8 + u_i + e_ij, u_i ~ N(0, 0.05), e_ij ~ N(0, 0.03); ``effect`` is added in
    ``effect_group`` at ``effect_condition`` only. Every other cell has a true change of 0.
    """
    rng = np.random.default_rng(seed)
    conditions = [("blur", 1.5), ("blur", 3.0), ("yaw", 15.0), ("yaw", 30.0), ("expr", "smile")]
    rows = []
    for model in models:
        for g in ("A", "B", "C"):
            for i in range(n_per_group):
                u = rng.normal(0.0, 0.05)
                iid = f"{g}{i}"
                rows.append((model, iid, g, "control", None, 0.8 + u + rng.normal(0, 0.03)))
                for factor, level in conditions:
                    shift = (
                        effect if (g, (factor, level)) == (effect_group, effect_condition) else 0
                    )
                    score = 0.8 + u + shift + rng.normal(0, 0.03)
                    rows.append((model, iid, g, factor, level, score))
    mated = pd.DataFrame(rows, columns=COLUMNS)
    if missing_share:
        mated = mated[rng.random(len(mated)) >= missing_share].reset_index(drop=True)
    return mated


def reference_pairs(mated: pd.DataFrame, model: str, group: str, factor: str, level: object):
    """(level scores, control scores) paired by identity, built without the module."""
    sub = mated[(mated["fr_model"] == model) & (mated["group"] == group)].dropna(subset=["score"])
    control = sub[sub["factor"] == "control"].set_index("identity_id")["score"]
    at_level = sub[(sub["factor"] == factor) & (sub["level"] == level)].set_index("identity_id")
    joined = pd.concat([at_level["score"].rename("x"), control.rename("c")], axis=1, join="inner")
    return joined["x"].to_numpy(), joined["c"].to_numpy()


def test_wilcoxon_p_values_equal_scipy_on_the_same_pairs() -> None:
    mated = simulate(1, missing_share=0.1)
    result = factor_effects(mated, {"m": 0.72})
    effects = result.effects
    assert len(effects) == 15
    for _, row in effects.iterrows():
        x, c = reference_pairs(mated, "m", row["group"], row["factor"], row["level"])
        assert row["n_pairs"] == len(x)
        expected = stats.wilcoxon(x, c)
        assert row["wilcoxon_p"] == pytest.approx(expected.pvalue, rel=1e-12)
        assert row["wilcoxon_statistic"] == pytest.approx(expected.statistic)
        assert row["mean_change"] == pytest.approx(np.mean(x - c))


def test_mcnemar_p_values_equal_statsmodels_on_the_same_decisions() -> None:
    # A large effect so that some cells have >= 25 discordant pairs (chi-square branch).
    mated = simulate(2, n_per_group=80, effect=-0.1, missing_share=0.05)
    threshold = 0.76
    result = factor_effects(mated, {"m": threshold})
    methods = set()
    for _, row in result.effects.iterrows():
        x, c = reference_pairs(mated, "m", row["group"], row["factor"], row["level"])
        mc, mx = c >= threshold, x >= threshold
        table = np.array(
            [[np.sum(mc & mx), np.sum(mc & ~mx)], [np.sum(~mc & mx), np.sum(~mc & ~mx)]]
        )
        discordant = table[0, 1] + table[1, 0]
        expected = sm_mcnemar(table, exact=bool(discordant < MCNEMAR_EXACT_BELOW), correction=True)
        assert row["mcnemar_p"] == pytest.approx(expected.pvalue, rel=1e-12)
        assert row["mcnemar_statistic"] == pytest.approx(expected.statistic)
        assert row["fnmr_change"] == pytest.approx(np.mean(~mx) - np.mean(~mc))
        methods.add(row["mcnemar_method"])
    assert methods == {"exact", "chi2"}


@pytest.mark.parametrize("lost", [0, 1, 3, 12, 24, 25, 40])
@pytest.mark.parametrize("gained", [0, 2, 13, 30])
def test_mcnemar_helper_matches_statsmodels_on_a_grid(lost: int, gained: int) -> None:
    table = np.array([[50, lost], [gained, 50]])
    exact = lost + gained < MCNEMAR_EXACT_BELOW
    expected = sm_mcnemar(table, exact=exact, correction=True)
    method, statistic, p = mcnemar(lost, gained)
    if lost + gained == 0:
        assert (method, p) == ("none", 1.0)
        assert expected.pvalue == 1.0  # statsmodels' exact test agrees
        return
    assert method == ("exact" if exact else "chi2")
    assert p == pytest.approx(expected.pvalue, rel=1e-12)
    assert statistic == pytest.approx(expected.statistic)


@pytest.mark.parametrize("method", ["holm", "fdr_bh"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adjusted_p_values_equal_statsmodels_multipletests(method: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 1, 20), rng.uniform(0, 0.01, 8), [0.03, 0.03, 1.0, 0.0]])
    rng.shuffle(p)
    reject, expected, _, _ = multipletests(p, alpha=0.05, method=method)
    got = adjust_pvalues(p, method)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    np.testing.assert_array_equal(got <= 0.05, reject)


def test_adjust_pvalues_leaves_nan_out_of_the_family() -> None:
    p = np.array([0.01, np.nan, 0.04, 0.02])
    got = adjust_pvalues(p, "holm")
    assert math.isnan(got[1])
    np.testing.assert_allclose(got[[0, 2, 3]], multipletests(p[[0, 2, 3]], method="holm")[1])


@pytest.mark.parametrize("correction", ["holm", "fdr_bh"])
def test_the_family_is_one_fr_model_and_one_test_type(correction: str) -> None:
    mated = simulate(3, models=("m1", "m2"), missing_share=0.05)
    result = factor_effects(mated, {"m1": 0.72, "m2": 0.7}, correction=correction)
    effects = result.effects
    for model in ("m1", "m2"):
        rows = effects[effects["fr_model"] == model]
        for test in ("wilcoxon", "mcnemar"):
            reject, expected, _, _ = multipletests(rows[f"{test}_p"], alpha=0.05, method=correction)
            np.testing.assert_allclose(rows[f"{test}_p_adjusted"], expected, rtol=1e-12)
            np.testing.assert_array_equal(rows[f"{test}_significant"], reject)
    tests = result.tests
    assert list(tests.columns) == list(TEST_COLUMNS)
    assert len(tests) == 2 * len(effects)
    assert set(tests["family_size"]) == {15}
    np.testing.assert_array_equal(
        effects["significant"], effects["wilcoxon_significant"] | effects["mcnemar_significant"]
    )


# --- simulations: power and false positives ------------------------------------------------------

SEEDS = range(100, 115)


@pytest.mark.parametrize("correction", ["holm", "fdr_bh"])
def test_a_planted_effect_in_one_group_is_flagged_and_null_cells_rarely_are(
    correction: str,
) -> None:
    flagged_planted = {"wilcoxon": 0, "mcnemar": 0}
    false_positives = {"wilcoxon": 0, "mcnemar": 0}
    seeds_with_any_false_positive = 0
    uncorrected_null_rejections = 0
    null_tests = 0
    for seed in SEEDS:
        result = factor_effects(simulate(seed), {"m": 0.72}, correction=correction)
        e = result.effects
        planted = (e["group"] == "B") & (e["factor"] == "yaw") & (e["level"] == 15.0)
        assert planted.sum() == 1
        null = e[~planted]
        for test in ("wilcoxon", "mcnemar"):
            flagged_planted[test] += int(e.loc[planted, f"{test}_significant"].iloc[0])
            false_positives[test] += int(null[f"{test}_significant"].sum())
        seeds_with_any_false_positive += int(null["significant"].any())
        uncorrected_null_rejections += int((null["wilcoxon_p"] <= 0.05).sum())
        null_tests += len(null)
    n_seeds = len(SEEDS)
    # Power: effect -0.08 against a paired-difference sd of about 0.042, n = 30 per group.
    assert flagged_planted["wilcoxon"] == n_seeds
    assert flagged_planted["mcnemar"] >= n_seeds - 1
    # False positives: 14 null cells x 2 tests per seed. Holm bounds the family-wise error rate
    # by alpha per test type, BH the false discovery rate; over 15 seeds the expected number of
    # seeds with any null cell flagged is <= 1.5 (two families at 0.05 each).
    assert seeds_with_any_false_positive <= 3
    for test in ("wilcoxon", "mcnemar"):
        assert false_positives[test] / (n_seeds * 14) <= 0.05
    # Without correction the null p-values behave like p-values: about alpha of them reject.
    assert 0.01 <= uncorrected_null_rejections / null_tests <= 0.10


# --- the interaction model ------------------------------------------------------------------------


def simulate_interaction(
    seed: int, *, n_per_group: int = 40, gamma: float = -0.06, identity_sd: float = 0.06
) -> pd.DataFrame:
    """score = 0.8 + a_g + b_c + gamma [g = C, c = yaw 15] + u_i + e, u_i ~ N(0, identity_sd)."""
    rng = np.random.default_rng(seed)
    group_effect = {"A": 0.0, "B": -0.03, "C": 0.02}
    condition_effect = {("control", None): 0.0, ("blur", 3.0): -0.05, ("yaw", 15.0): -0.1}
    rows = []
    for g, a in group_effect.items():
        for i in range(n_per_group):
            u = rng.normal(0.0, identity_sd)
            for (factor, level), b in condition_effect.items():
                planted = gamma if (g, factor) == ("C", "yaw") else 0.0
                score = 0.8 + a + b + planted + u + rng.normal(0.0, 0.02)
                rows.append(("m", f"{g}{i}", g, factor, level, score))
    return pd.DataFrame(rows, columns=COLUMNS)


def term(result: InteractionResult, group: str, factor: str) -> pd.Series:
    t = result.interactions
    hit = t[(t["group"] == group) & (t["factor"] == factor)]
    assert len(hit) == 1
    return hit.iloc[0]


def test_the_interaction_recovers_a_planted_group_by_condition_effect() -> None:
    result = interaction_model(simulate_interaction(7), "m")
    assert result.reference_group == "A"
    assert result.n_obs == 3 * 40 * 3 and result.n_clusters == 120
    assert list(result.interactions.columns) == list(INTERACTION_COLUMNS)
    assert len(result.interactions) == 4  # (B, C) x (blur 3, yaw 15)
    planted = term(result, "C", "yaw")
    assert planted["ci_low"] <= -0.06 <= planted["ci_high"]
    assert planted["p_value"] < 1e-6
    assert planted["n_obs_cell"] == 40
    for g, f in [("B", "blur"), ("B", "yaw"), ("C", "blur")]:
        row = term(result, g, f)
        assert row["ci_low"] <= 0.0 <= row["ci_high"]


def test_interaction_intervals_cover_the_planted_effect_about_95_percent() -> None:
    covered = 0
    seeds = range(200, 240)
    for seed in seeds:
        row = term(interaction_model(simulate_interaction(seed, n_per_group=25), "m"), "C", "yaw")
        covered += int(row["ci_low"] <= -0.06 <= row["ci_high"])
    assert covered / len(seeds) >= 0.85


def test_it_equals_statsmodels_formula_fit_with_identity_clusters() -> None:
    mated = simulate_interaction(8)
    mated = mated.drop(index=[5, 17, 200]).reset_index(drop=True)  # a few missing images
    result = interaction_model(mated, "m", reference_group="B")
    data = with_condition(mated)
    formula = "score ~ C(group, Treatment('B')) * C(condition, Treatment('control'))"
    clusters = pd.factorize(data["identity_id"])[0]
    reference = smf.ols(formula, data).fit(
        cov_type="cluster", cov_kwds={"groups": clusters}, use_t=True
    )
    for _, row in result.interactions.iterrows():
        name = (
            f"C(group, Treatment('B'))[T.{row['group']}]:"
            f"C(condition, Treatment('control'))[T.{row['factor']}={row['level']}]"
        )
        assert row["estimate"] == pytest.approx(reference.params[name], rel=1e-9)
        assert row["std_error"] == pytest.approx(reference.bse[name], rel=1e-9)
        assert row["p_value"] == pytest.approx(reference.pvalues[name], rel=1e-6)
    assert result.n_obs == int(reference.nobs)


def with_condition(mated: pd.DataFrame) -> pd.DataFrame:
    """``mated`` with the condition label the formula references use ("control", "yaw=15.0")."""
    label = mated["factor"] + "=" + mated["level"].astype(str)
    return mated.assign(condition=np.where(mated["factor"] == "control", "control", label))


NAIVE_FORMULA = "score ~ C(group, Treatment('A')) * C(condition, Treatment('control'))"
NAIVE_YAW_TERM = "C(group, Treatment('A'))[T.C]:C(condition, Treatment('control'))[T.yaw=15.0]"


def simulate_sensitivity(seed: int, *, n_per_group: int = 30) -> pd.DataFrame:
    """Identities differ in how much yaw hurts them (v_i ~ N(0, 0.08)), barely in level.

    score = 0.8 + b_c + v_i [c = yaw 15] + gamma [g = C, c = yaw 15] + u_i + e, u_i ~ N(0, 0.01),
    e ~ N(0, 0.02), gamma = -0.06, five conditions besides the control. v_i is shared by nothing
    else, so the yaw images are far noisier than the rest: naive OLS pools one residual
    variance and understates the yaw contrasts' uncertainty.
    """
    rng = np.random.default_rng(seed)
    conditions = [("blur", 1.5), ("blur", 3.0), ("yaw", 15.0), ("expr", "smile"), ("expr", "open")]
    rows = []
    for g in ("A", "B", "C"):
        for i in range(n_per_group):
            u, v = rng.normal(0.0, 0.01), rng.normal(0.0, 0.08)
            iid = f"{g}{i}"
            rows.append(("m", iid, g, "control", None, 0.8 + u + rng.normal(0.0, 0.02)))
            for factor, level in conditions:
                shift = 0.0
                if factor == "yaw":
                    shift = -0.1 + v + (-0.06 if g == "C" else 0.0)
                rows.append(("m", iid, g, factor, level, 0.8 + shift + u + rng.normal(0.0, 0.02)))
    return pd.DataFrame(rows, columns=COLUMNS)


def test_clustered_errors_use_the_pairing_when_identities_share_a_random_effect() -> None:
    # A shared identity effect u_i cancels from the within-identity contrast (level - control),
    # while naive OLS counts it as residual noise: the clustered SE of an interaction is smaller.
    # The group main effect compares groups at the control, one image per identity, so there is
    # nothing to cluster and both SEs agree.
    mated = simulate_interaction(9, identity_sd=0.08)
    result = interaction_model(mated, "m")
    naive = smf.ols(NAIVE_FORMULA, with_condition(mated)).fit()
    assert term(result, "C", "yaw")["std_error"] < 0.5 * naive.bse[NAIVE_YAW_TERM]
    group_se = result.coefficients.set_index("term").at["group[T.C]", "std_error"]
    assert group_se == pytest.approx(naive.bse["C(group, Treatment('A'))[T.C]"], rel=0.2)


def test_clustered_errors_are_wider_than_naive_when_identities_differ_in_sensitivity() -> None:
    result = interaction_model(simulate_sensitivity(13), "m")
    naive = smf.ols(NAIVE_FORMULA, with_condition(simulate_sensitivity(13))).fit()
    assert term(result, "C", "yaw")["std_error"] > 1.2 * naive.bse[NAIVE_YAW_TERM]


def test_clustered_intervals_keep_their_coverage_where_naive_ones_do_not() -> None:
    # 40 seeds, 20 identities per group (seen: clustered 0.975, naive 0.775).
    seeds = range(300, 340)
    clustered = naive = 0
    for seed in seeds:
        mated = simulate_sensitivity(seed, n_per_group=20)
        row = term(interaction_model(mated, "m"), "C", "yaw")
        clustered += int(row["ci_low"] <= -0.06 <= row["ci_high"])
        low, high = (
            smf.ols(NAIVE_FORMULA, with_condition(mated)).fit().conf_int().loc[NAIVE_YAW_TERM]
        )
        naive += int(low <= -0.06 <= high)
    assert clustered / len(seeds) >= 0.88
    assert naive / len(seeds) <= clustered / len(seeds) - 0.1


def test_interaction_equals_the_difference_of_mean_paired_changes_on_complete_data() -> None:
    mated = simulate_interaction(10)
    effects = factor_effects(mated, {"m": 0.7}).effects.set_index(["group", "factor"])
    result = interaction_model(mated, "m")
    for _, row in result.interactions.iterrows():
        expected = (
            effects.at[(row["group"], row["factor"]), "mean_change"]
            - effects.at[("A", row["factor"]), "mean_change"]
        )
        assert row["estimate"] == pytest.approx(expected, abs=1e-12)


def test_interaction_rejects_unknown_reference_group_and_single_group() -> None:
    mated = simulate_interaction(11, n_per_group=5)
    with pytest.raises(ValueError, match="reference_group"):
        interaction_model(mated, "m", reference_group="Z")
    with pytest.raises(ValueError, match="two groups"):
        interaction_model(mated[mated["group"] == "A"], "m")
    with pytest.raises(ValueError, match="not in mated"):
        interaction_model(mated, "other")
    no_control = mated[~((mated["group"] == "B") & (mated["factor"] == "control"))]
    with pytest.raises(ValueError, match="no control"):
        interaction_model(no_control, "m")


def test_an_empty_interaction_cell_is_reported_not_estimated() -> None:
    mated = simulate_interaction(12, n_per_group=10)
    mated = mated[~((mated["group"] == "B") & (mated["factor"] == "blur"))]
    result = interaction_model(mated, "m")
    row = term(result, "B", "blur")
    assert row["n_obs_cell"] == 0 and math.isnan(row["estimate"])
    assert not math.isnan(term(result, "C", "yaw")["estimate"])
    json.dumps(result.to_dict(), allow_nan=False)


# --- the result object and bad input -------------------------------------------------------------


def test_results_are_immutable_copies_and_json_ready() -> None:
    result = factor_effects(hand_mated(), {"m": 0.5})
    assert list(result.effects.columns) == list(EFFECT_COLUMNS)
    edited = result.effects
    edited.loc[0, "mean_change"] = 99.0
    assert result.effects.loc[0, "mean_change"] != 99.0
    with pytest.raises(AttributeError):
        result.alpha = 0.1  # type: ignore[misc]
    payload = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert payload["correction"] == "holm" and len(payload["effects"]) == 4
    assert "per FR model and per test type" in result.family


def test_rows_are_ordered_numbers_first_then_text_levels() -> None:
    mated = simulate(4, n_per_group=8)
    e = factor_effects(mated, {"m": 0.7}).effects
    a = e[e["group"] == "A"]
    assert list(zip(a["factor"], a["level"], strict=True)) == [
        ("blur", 1.5),
        ("blur", 3.0),
        ("expr", "smile"),
        ("yaw", 15.0),
        ("yaw", 30.0),
    ]


def test_it_rejects_bad_input_with_a_clear_message() -> None:
    mated = hand_mated()
    with pytest.raises(ValueError, match="thresholds has no entry"):
        factor_effects(mated, {"other": 0.5})
    with pytest.raises(ValueError, match="must be a finite number"):
        factor_effects(mated, {"m": "high"})
    with pytest.raises(ValueError, match="correction"):
        factor_effects(mated, {"m": 0.5}, correction="bonferroni")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha"):
        factor_effects(mated, {"m": 0.5}, alpha=1.5)
    with pytest.raises(ValueError, match="missing column"):
        factor_effects(mated.drop(columns=["level"]), {"m": 0.5})
    with pytest.raises(ValueError, match="duplicate mated score"):
        factor_effects(pd.concat([mated, mated.iloc[[1]]]), {"m": 0.5})
    two_groups = mated.copy()
    two_groups.loc[two_groups.index[0], "group"] = "B"
    with pytest.raises(ValueError, match="more than one group"):
        factor_effects(two_groups, {"m": 0.5})
    infinite = mated.copy()
    infinite.loc[infinite.index[0], "score"] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        factor_effects(infinite, {"m": 0.5})
    no_level = mated.copy()
    no_level.loc[no_level.index[1], "level"] = None
    with pytest.raises(ValueError, match="level"):
        factor_effects(no_level, {"m": 0.5})
