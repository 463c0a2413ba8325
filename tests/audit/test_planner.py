"""The sample-size planner against the project's own code: counts against
:func:`audit.comparisons.build_pairs` on real design tables, predicted FNMR interval widths
against simulated identity-bootstrap intervals (:func:`audit.uncertainty.bootstrap_group_rates`),
the factor-effect limits against :func:`audit.factor_effects.factor_effects`, and rankability
against :func:`audit.disparity.rankable_groups`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from audit.comparisons import build_pairs
from audit.disparity import MIN_IDENTITIES, rankable_groups
from audit.factor_effects import factor_effects
from audit.planner import (
    DEFAULT_FNMR,
    DEFAULT_ICC,
    NONMATED_CAP,
    Assumptions,
    PlanningError,
    comparison_counts,
    detectable_ratio,
    factor_detection,
    parse_assumptions,
    plan_audit,
    plan_for_config,
)
from generator.config import load_config_file, parse_config
from generator.design import plan_design

ROOT = Path(__file__).resolve().parents[2]


def design_images(groups: dict, identities: int, factors: dict) -> tuple[pd.DataFrame, object]:
    """The image table of a real design (one row per image, every face found)."""
    config = parse_config({"name": "plan", "groups": groups, "identities_per_group": identities,
                           "factors": factors})
    design = plan_design(config)
    rows, image_id = [], 0
    for g, group in enumerate(design.groups):
        for i in range(design.identities_per_group):
            identity = g * design.identities_per_group + i
            for variant in design.variants:
                rows.append({"image_id": image_id, "identity_id": identity, "group": group.name,
                             "is_baseline": variant.is_baseline})
                image_id += 1
    return pd.DataFrame(rows), config


@pytest.mark.parametrize("groups,identities,factors", [
    ({"perceived_gender": ["female", "male"], "skin_tone": ["lighter", "darker"]}, 6,
     {"blur": [1.5, 3], "downscale": [24, 16]}),
    ({"age_band": ["under_30", "30_to_49", "50_plus"]}, 9, {"jpeg": [20]}),
])
def test_counts_match_build_pairs_on_a_real_design(groups, identities, factors):
    images, config = design_images(groups, identities, factors)
    pairs = build_pairs(images)
    plan = plan_for_config(config)
    mated = pairs[pairs["mated"]].groupby("group_a").size()
    nonmated = pairs[~pairs["mated"]]
    within = nonmated[nonmated["group_a"] == nonmated["group_b"]].groupby("group_a").size()
    assert set(mated) == {plan.counts.mated}
    assert set(within) == {plan.counts.nonmated_within} == {plan.counts.nonmated_within_all}
    assert pairs.attrs["nonmated_total"] == plan.counts.nonmated_total == len(nonmated)
    assert not plan.counts.sampled and plan.counts.nonmated_kept == len(nonmated)

    # rankability: the planner's verdict is rankable_groups' verdict on the real counts
    by_group = pd.DataFrame({"n_identities": identities, "n_mated": mated, "n_nonmated": within})
    rank = rankable_groups(by_group)
    assert set(rank["rankable"]) == {plan.rankable}
    assert set(rank["reason"]) == {plan.rank_reason}


def test_sampled_nonmated_counts_follow_the_cap():
    images, config = design_images({"perceived_gender": ["female", "male"],
                                    "skin_tone": ["lighter", "darker"]}, 10, {"blur": [2]})
    cap = 1500
    pairs = build_pairs(images, max_nonmated=cap, seed=3)
    counts = comparison_counts(config.n_groups, 10, config.n_variants, max_nonmated=cap)
    assert counts.sampled and counts.nonmated_kept == cap == int((~pairs["mated"]).sum())
    assert counts.nonmated_total == pairs.attrs["nonmated_total"]
    nonmated = pairs[~pairs["mated"]]
    within = nonmated[nonmated["group_a"] == nonmated["group_b"]].groupby("group_a").size()
    # hypergeometric mean and standard deviation of one group's kept within-group pairs
    share = cap / counts.nonmated_total
    sd = math.sqrt(counts.nonmated_within_all * share * (1 - share))
    assert np.all(np.abs(within - counts.nonmated_within) < 4 * sd)
    assert counts.nonmated_within == pytest.approx(counts.nonmated_within_all * share)
    assert NONMATED_CAP == 2_000_000  # the pipeline's cap, read from build_pairs


def test_a_huge_design_plans_with_the_two_million_cap():
    plan = plan_audit(n_groups=12, identities_per_group=500, n_levels=10)
    c = plan.counts
    assert c.sampled and c.nonmated_kept == NONMATED_CAP
    assert c.nonmated_within == pytest.approx(c.nonmated_within_all * NONMATED_CAP
                                              / c.nonmated_total)
    assert any("seeded sample of 2,000,000" in s for s in plan.sentences)


def simulate_half_widths(groups: int, identities: int, per_identity: int, fnmr: float,
                         icc: float, seed: int, audits: int = 40, n_boot: int = 400) -> float:
    """Mean identity-bootstrap half-width of the per-group FNMR over simulated audits.

    Each identity's failure probability is drawn from a beta distribution with mean ``fnmr``
    and intra-class correlation ``icc`` (beta-binomial: ``a + b = (1 - icc) / icc``); its
    ``per_identity`` mated comparisons fail independently with that probability. A ring of
    within-group non-mated rows gives every group a defined FMR."""
    rng = np.random.default_rng(seed)
    a, b = fnmr * (1 - icc) / icc, (1 - fnmr) * (1 - icc) / icc
    widths = []
    for _ in range(audits):
        frames = []
        for g in range(groups):
            ids = np.arange(g * identities, (g + 1) * identities, dtype=np.int64)
            p = rng.beta(a, b, size=identities)
            fails = rng.random((identities, per_identity)) < p[:, None]
            mated_ids = np.repeat(ids, per_identity)
            frames.append(pd.DataFrame({"score": np.where(fails.ravel(), 0.0, 1.0),
                                        "mated": True, "group_a": f"g{g}", "group_b": f"g{g}",
                                        "identity_a": mated_ids, "identity_b": mated_ids}))
            frames.append(pd.DataFrame({"score": 0.0, "mated": False, "group_a": f"g{g}",
                                        "group_b": f"g{g}", "identity_a": ids,
                                        "identity_b": np.roll(ids, 1)}))
        from audit.uncertainty import bootstrap_group_rates

        result = bootstrap_group_rates(pd.concat(frames, ignore_index=True), 0.5, n_boot=n_boot,
                                       seed=int(rng.integers(2**31)))
        frame = result.by_group
        widths.extend(((frame["fnmr_upper"] - frame["fnmr_lower"]) / 2).tolist())
    return float(np.mean(widths))


@pytest.mark.parametrize("groups,identities,levels,fnmr,icc", [
    (4, 30, 4, 0.05, 0.1),   # the form's default design at the default planning values
    (4, 30, 4, 0.30, 0.1),   # the FNMR measured on the default generator and model
    (2, 50, 1, 0.10, 0.2),
    (4, 20, 7, 0.05, 0.05),
    (2, 100, 4, 0.05, 0.3),
])
def test_predicted_half_width_is_within_20_percent_of_the_simulated_bootstrap(
        groups, identities, levels, fnmr, icc):
    plan = plan_audit(n_groups=groups, identities_per_group=identities, n_levels=levels,
                      assumptions=Assumptions(fnmr=fnmr, icc=icc))
    simulated = simulate_half_widths(groups, identities, levels + 1, fnmr, icc,
                                     seed=identities * 7 + levels)
    assert plan.half_width == pytest.approx(simulated, rel=0.20), (plan.half_width, simulated)


def test_detectable_ratio_solves_its_equation_and_shrinks_with_size():
    p, deff = 0.05, 1.4
    r = detectable_ratio(p, 150, deff)
    s1 = math.sqrt(deff * (1 - p) / (150 * p))
    s2 = math.sqrt(deff * (1 - r * p) / (150 * r * p))
    assert math.log(r) == pytest.approx((1.959964 + 0.841621) * math.hypot(s1, s2), rel=1e-4)
    assert detectable_ratio(p, 600, deff) < r < detectable_ratio(p, 50, deff)
    assert detectable_ratio(p, 150, deff, rule="no_overlap") > r
    assert detectable_ratio(0.5, 2, 5.0) is None  # even an FNMR of 1 would not stand out


def test_detectable_ratio_has_about_80_percent_power_in_simulation():
    """Two groups at p and r p (r the planned ratio), identity-clustered outcomes; a z-test on
    the log ratio with the cluster variance of each group's FNMR rejects about 80% of the time."""
    n, m, p, icc = 60, 5, 0.1, 0.1
    plan = plan_audit(n_groups=2, identities_per_group=n, n_levels=m - 1,
                      assumptions=Assumptions(fnmr=p, icc=icc))
    rng = np.random.default_rng(5)
    rejected = 0
    trials = 600
    for _ in range(trials):
        logs, variances = [], []
        for rate in (p, p * plan.ratio):
            a, b = rate * (1 - icc) / icc, (1 - rate) * (1 - icc) / icc
            per_identity = rng.binomial(m, rng.beta(a, b, size=n)) / m
            mean = max(per_identity.mean(), 0.5 / (n * m))
            logs.append(math.log(mean))
            variances.append(per_identity.var(ddof=1) / n / mean**2)
        rejected += abs(logs[1] - logs[0]) / math.sqrt(sum(variances)) > 1.959964
    assert 0.70 <= rejected / trials <= 0.92, rejected / trials


def factor_frame(groups: int, levels: int, identities: int, lost: int = 0,
                 shifted: bool = False) -> pd.DataFrame:
    """Mated scores: every identity matches (0.9) in every condition, except in the cell of the
    first group and first level, where ``lost`` identities stop matching (0.1), or, with
    ``shifted``, every identity's score drops a little (by distinct amounts, still matching)."""
    rows = []
    for g in range(groups):
        for i in range(identities):
            identity = g * identities + i
            rows.append(("m", identity, f"g{g}", "control", None, 0.9))
            for lv in range(levels):
                score = 0.9
                if g == 0 and lv == 0:
                    score = 0.1 if i < lost else (0.9 - 0.01 * (i + 1) if shifted else 0.9)
                rows.append(("m", identity, f"g{g}", "blur", float(lv + 1), score))
    return pd.DataFrame(rows, columns=["fr_model", "identity_id", "group", "factor", "level",
                                       "score"])


def first_cell(frame: pd.DataFrame) -> pd.Series:
    effects = factor_effects(frame, {"m": 0.5}).effects
    return effects[(effects["group"] == "g0") & (effects["level"] == 1.0)].iloc[0]


def test_factor_limits_match_the_real_holm_corrected_tests():
    groups, levels = 4, 4
    limits = factor_detection(30, groups * levels)
    assert limits.mcnemar_min_lost == limits.wilcoxon_min_pairs == 10
    # McNemar: the fewest identities that must stop matching in a cell of 30
    for lost in (limits.mcnemar_min_lost - 1, limits.mcnemar_min_lost):
        cell = first_cell(factor_frame(groups, levels, 30, lost=lost))
        assert bool(cell["mcnemar_significant"]) is (lost == limits.mcnemar_min_lost)
    # signed-rank (exact test, every pair changed in one direction): the fewest pairs
    for pairs in (limits.wilcoxon_min_pairs - 1, limits.wilcoxon_min_pairs):
        cell = first_cell(factor_frame(groups, levels, pairs, shifted=True))
        assert cell["n_pairs"] == cell["wilcoxon_n_nonzero"] == pairs
        assert bool(cell["wilcoxon_significant"]) is (pairs == limits.wilcoxon_min_pairs)
    old_default = factor_detection(8, 16)
    assert not old_default.mcnemar_possible and not old_default.wilcoxon_possible


def test_the_old_default_cannot_rank_and_the_verdict_says_what_fixes_it():
    plan = plan_audit(n_groups=4, identities_per_group=8, n_levels=4, target_fmr=[0.001],
                      seconds_per_image=0.05)
    assert not plan.rankable and plan.status == "too_small"
    assert f"8 identities < {MIN_IDENTITIES}" in plan.headline
    text = " ".join(plan.sentences)
    assert "no factor effect can be significant" in text
    fix = plan.suggestions[0]
    assert fix.status == "ok" and fix.identities_per_group > 8 and fix.minutes is not None
    assert f"{fix.identities_per_group} identities per group" in text
    data = plan.to_dict()
    assert data["rankable"]["rankable"] is False
    assert data["verdict"]["headline"] == plan.headline
    assert data["operating_points"][0]["mated_per_group"] == 40


def test_readme_example_and_form_default_are_rankable():
    config = parse_config(load_config_file(ROOT / "examples" / "audit.yaml"))
    plan = plan_for_config(config)
    assert plan.status == "ok", plan.headline
    default = plan_audit(n_groups=4, identities_per_group=30, n_levels=4)
    assert default.status == "ok" and default.counts.mated == 150
    assert default.counts.nonmated_within == 4785


@pytest.mark.parametrize("fnmr,icc,field", [
    ("abc", None, "planning_fnmr"), ("1.5", None, "planning_fnmr"), ("0", None, "planning_fnmr"),
    ("nan", None, "planning_fnmr"), (None, "-0.1", "planning_icc"), (None, "x", "planning_icc"),
])
def test_bad_planning_values_name_their_field(fnmr, icc, field):
    with pytest.raises(PlanningError) as info:
        parse_assumptions(fnmr, icc)
    assert list(info.value.errors) == [field]


def test_blank_planning_values_take_the_stated_defaults():
    a = parse_assumptions("", None)
    assert (a.fnmr, a.icc) == (DEFAULT_FNMR, DEFAULT_ICC)
    assert parse_assumptions(" 0.2 ", "0").icc == 0.0
