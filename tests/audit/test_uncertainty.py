"""Tests for audit.uncertainty: the fast identity bootstrap against a literal one, and coverage.

The reference ("naive") bootstrap below draws the same identities with the documented rng
calls, rebuilds the comparison table row by row from the drawn copies and rescoring it with
audit.rates.error_rates; the fast products must agree replicate for replicate.
"""

from __future__ import annotations

import json
import math
from itertools import count

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame, false_negative_rate, false_positive_rate
from scipy.special import expit

import audit.resampling as resampling
from audit.rates import error_rates
from audit.uncertainty import BOOTSTRAP_COLUMNS, BootstrapResult, bootstrap_group_rates

COLUMNS = ["score", "mated", "group_a", "group_b", "identity_a", "identity_b"]


def small_comparisons(seed: int = 3) -> pd.DataFrame:
    """Irregular small audit: 3 groups, uneven mated counts, repeated and cross-group pairs.

    Group A: identities 1, 2, 3, 4 (4 has no mated comparison: it is only a reference).
    Group B: identities 10..14. Group C: identities 20, 21.
    Scores are rounded to 0.1 so that some fall exactly on the threshold 0.5.
    """
    rng = np.random.default_rng(seed)
    members = {"A": [1, 2, 3, 4], "B": [10, 11, 12, 13, 14], "C": [20, 21]}
    group_of = {i: g for g, ids in members.items() for i in ids}
    mated_per = {1: 3, 2: 1, 3: 4, 4: 0, 10: 2, 11: 2, 12: 5, 13: 1, 14: 3, 20: 2, 21: 3}
    rows = []
    for ident, n in mated_per.items():
        g = group_of[ident]
        for _ in range(n):
            rows.append((round(float(rng.uniform(0.2, 1.0)), 1), True, g, g, ident, ident))
    everyone = sorted(group_of)
    for _ in range(90):
        a, b = rng.choice(everyone, size=2, replace=False)
        # Same-group pairs score higher, so within-group FMR is not trivially zero.
        boost = 0.25 if group_of[a] == group_of[b] else 0.0
        score = round(float(rng.uniform(0.0, 0.6) + boost), 1)
        rows.append((score, False, group_of[a], group_of[b], int(a), int(b)))
    return pd.DataFrame(rows, columns=COLUMNS)


def naive_bootstrap(
    comparisons: pd.DataFrame, threshold: float, n_boot: int, seed: int, groups=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Literal identity bootstrap: draw identities, copy their rows, rescore with error_rates."""
    labels = error_rates(comparisons, threshold, groups=groups).groups
    sides = pd.concat(
        [
            comparisons[["identity_a", "group_a"]].set_axis(["identity", "group"], axis=1),
            comparisons[["identity_b", "group_b"]].set_axis(["identity", "group"], axis=1),
        ]
    ).drop_duplicates()
    members = {g: sorted(sides.loc[sides["group"] == g, "identity"].tolist()) for g in labels}
    rng = np.random.default_rng(seed)
    draws = {
        g: rng.integers(0, len(members[g]), size=(n_boot, len(members[g])))
        for g in labels
        if members[g]
    }
    fnmr = np.empty((n_boot, len(labels)))
    fmr = np.empty((n_boot, len(labels)))
    overall = np.empty((n_boot, 2))
    records = comparisons.to_dict("records")
    for b in range(n_boot):
        fresh = count(1)
        copies: dict[int, list[int]] = {}
        for g, drawn in draws.items():
            for position in drawn[b]:
                copies.setdefault(members[g][position], []).append(next(fresh))
        rows = []
        for r in records:
            for ca in copies.get(r["identity_a"], []):
                if r["mated"]:
                    rows.append({**r, "identity_a": ca, "identity_b": ca})
                    continue
                for cb in copies.get(r["identity_b"], []):
                    rows.append({**r, "identity_a": ca, "identity_b": cb})
        rebuilt = pd.DataFrame(rows, columns=COLUMNS)
        rates = error_rates(rebuilt, threshold, groups=labels)
        fnmr[b] = rates.by_group["fnmr"].to_numpy()
        fmr[b] = rates.by_group["fmr"].to_numpy()
        overall[b] = [rates.overall["fnmr"], rates.overall["fmr"]]
    return fnmr, fmr, overall


# --- equality with the literal bootstrap ----------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 7])
def test_fast_bootstrap_equals_the_literal_rebuild_replicate_for_replicate(seed):
    comparisons = small_comparisons()
    result = bootstrap_group_rates(comparisons, 0.5, n_boot=40, seed=seed)
    fnmr, fmr, overall = naive_bootstrap(comparisons, 0.5, n_boot=40, seed=seed)
    np.testing.assert_array_equal(result.fnmr_replicates.to_numpy(), fnmr)
    np.testing.assert_array_equal(result.fmr_replicates.to_numpy(), fmr)
    np.testing.assert_array_equal(result.overall_replicates.to_numpy(), overall)
    # Group C has 2 identities: some draws pick one twice, leaving no within-group pair.
    assert np.isnan(fmr[:, 2]).any()


def test_dense_sparse_and_chunked_paths_agree(monkeypatch):
    comparisons = small_comparisons(seed=5)
    reference = bootstrap_group_rates(comparisons, 0.5, n_boot=30, seed=1)
    variants = [
        {"_DENSE_MAX_CELLS": 0},  # everything sparse
        {"_DENSE_MIN_DENSITY": 0.0},  # everything dense
        {"_CHUNK_CELLS": 7},  # one replicate per chunk
    ]
    for patch in variants:
        with monkeypatch.context() as m:
            for name, value in patch.items():
                m.setattr(resampling, name, value)
            other = bootstrap_group_rates(comparisons, 0.5, n_boot=30, seed=1)
        np.testing.assert_array_equal(other.fmr_replicates, reference.fmr_replicates)
        np.testing.assert_array_equal(other.fnmr_replicates, reference.fnmr_replicates)
        np.testing.assert_array_equal(other.overall_replicates, reference.overall_replicates)


def test_groups_without_identities_draw_nothing_and_stay_undefined():
    comparisons = small_comparisons()
    groups = ["A", "B", "C", "D"]
    result = bootstrap_group_rates(comparisons, 0.5, n_boot=25, seed=4, groups=groups)
    fnmr, fmr, _ = naive_bootstrap(comparisons, 0.5, n_boot=25, seed=4, groups=groups)
    np.testing.assert_array_equal(result.fmr_replicates.to_numpy(), fmr)
    row = result.by_group.loc["D"]
    assert row["n_identities"] == 0 and math.isnan(row["fnmr_lower"])
    assert row["fnmr_interval"] == "undefined" and row["fnmr_n_valid"] == 0


# --- point estimates ------------------------------------------------------------------------------


def test_point_rates_equal_error_rates_fairlearn_and_naive_masks():
    comparisons = small_comparisons()
    result = bootstrap_group_rates(comparisons, 0.5, n_boot=10)
    by_group = result.by_group
    assert list(by_group.columns) == list(BOOTSTRAP_COLUMNS)
    reference = error_rates(comparisons, 0.5).by_group
    for col in ("n_mated", "false_non_matches", "fnmr", "n_nonmated", "false_matches", "fmr"):
        np.testing.assert_array_equal(by_group[col].to_numpy(), reference[col].to_numpy())

    match = comparisons["score"] >= 0.5
    mated = comparisons[comparisons["mated"]]
    fnmr = MetricFrame(
        metrics=false_negative_rate,
        y_true=np.ones(len(mated), dtype=int),
        y_pred=match[mated.index].astype(int),
        sensitive_features=mated["group_a"],
    ).by_group
    within = comparisons[~comparisons["mated"] & (comparisons["group_a"] == comparisons["group_b"])]
    fmr = MetricFrame(
        metrics=false_positive_rate,
        y_true=np.zeros(len(within), dtype=int),
        y_pred=match[within.index].astype(int),
        sensitive_features=within["group_a"],
    ).by_group
    np.testing.assert_allclose(by_group["fnmr"], fnmr.loc[by_group.index], rtol=1e-15)
    np.testing.assert_allclose(by_group["fmr"], fmr.loc[by_group.index], rtol=1e-15)

    # Overall FMR counts every non-mated pair, cross-group ones too (naive mask).
    nonmated = ~comparisons["mated"]
    assert result.overall["fmr"] == pytest.approx(match[nonmated].mean())
    assert result.overall["fnmr"] == pytest.approx(1 - match[comparisons["mated"]].mean())
    # Identities counted from either side (identity 4 is only ever a reference).
    assert result.rates.by_group["n_identities"].tolist() == [4, 5, 2]


def test_all_ones_draw_reproduces_the_point_estimate():
    comparisons = small_comparisons()
    labels = ("A", "B", "C")
    agg = resampling.aggregate(comparisons, 0.5, labels)
    ones = np.ones((1, agg.identity_ids.size), dtype=np.int32)
    reps = resampling.replicate_counts(agg, ones)
    point = error_rates(comparisons, 0.5).by_group
    np.testing.assert_array_equal(reps["fm"][0], point["false_matches"].to_numpy())
    np.testing.assert_array_equal(reps["n_nonmated"][0], point["n_nonmated"].to_numpy())
    np.testing.assert_array_equal(reps["fnm"][0], point["false_non_matches"].to_numpy())


def test_precomputed_rates_are_reused_and_checked():
    comparisons = small_comparisons()
    rates = error_rates(comparisons, 0.5)
    reused = bootstrap_group_rates(comparisons, 0.5, n_boot=30, seed=2, rates=rates)
    fresh = bootstrap_group_rates(comparisons, 0.5, n_boot=30, seed=2)
    pd.testing.assert_frame_equal(reused.by_group, fresh.by_group)
    pd.testing.assert_frame_equal(reused.fmr_replicates, fresh.fmr_replicates)
    assert reused.rates is rates
    with pytest.raises(ValueError, match="threshold"):
        bootstrap_group_rates(comparisons, 0.6, n_boot=5, rates=rates)
    with pytest.raises(ValueError, match="do not match"):
        # Rates of a different comparison set (first row dropped) at the same threshold.
        bootstrap_group_rates(comparisons, 0.5, n_boot=5,
                              rates=error_rates(comparisons.iloc[1:], 0.5))
    with pytest.raises(ValueError, match="outside"):
        bootstrap_group_rates(comparisons, 0.5, n_boot=5, rates=error_rates(
            comparisons[comparisons["group_a"] != "C"].query("group_b != 'C'"), 0.5))


# --- intervals, seeds, immutability ---------------------------------------------------------------


def test_intervals_are_percentiles_of_the_replicates():
    comparisons = small_comparisons()
    result = bootstrap_group_rates(comparisons, 0.5, n_boot=200, seed=2, confidence=0.9)
    reps = result.fnmr_replicates["B"].to_numpy()
    lower, upper = np.quantile(reps, [0.05, 0.95])
    row = result.by_group.loc["B"]
    assert row["fnmr_lower"] == pytest.approx(lower) and row["fnmr_upper"] == pytest.approx(upper)
    assert row["fnmr_se"] == pytest.approx(np.std(reps, ddof=1))
    assert row["fnmr_interval"] == "bootstrap" and row["fnmr_n_valid"] == 200
    valid = result.fmr_replicates["C"].dropna().to_numpy()
    assert result.by_group.loc["C", "fmr_n_valid"] == valid.size < 200
    assert result.by_group.loc["C", "fmr_lower"] == pytest.approx(np.quantile(valid, 0.05))


def test_no_observed_error_reports_the_rule_of_three_interval():
    comparisons = small_comparisons()
    comparisons.loc[comparisons["mated"] & (comparisons["group_a"] == "A"), "score"] = 0.95
    result = bootstrap_group_rates(comparisons, 0.5, n_boot=50)
    row = result.by_group.loc["A"]
    assert row["false_non_matches"] == 0 and row["fnmr_interval"] == "rule_of_three"
    assert row["fnmr_lower"] == 0.0
    assert row["fnmr_upper"] == pytest.approx(min(3 / row["n_mated"], 1.0))
    assert (result.fnmr_replicates["A"] == 0).all()


def test_same_seed_same_result_other_seed_other_draws():
    comparisons = small_comparisons()
    a = bootstrap_group_rates(comparisons, 0.5, n_boot=50, seed=11)
    b = bootstrap_group_rates(comparisons, 0.5, n_boot=50, seed=11)
    c = bootstrap_group_rates(comparisons, 0.5, n_boot=50, seed=12)
    pd.testing.assert_frame_equal(a.by_group, b.by_group)
    pd.testing.assert_frame_equal(a.fmr_replicates, b.fmr_replicates)
    assert not a.fnmr_replicates.equals(c.fnmr_replicates)


def test_result_is_immutable_and_serialisable():
    result = bootstrap_group_rates(small_comparisons(), 0.5, n_boot=20)
    reps = result.fmr_replicates
    reps.iloc[0, 0] = 99.0
    assert result.fmr_replicates.iloc[0, 0] != 99.0
    table = result.by_group
    table.loc["A", "fnmr"] = 99.0
    assert result.by_group.loc["A", "fnmr"] != 99.0
    with pytest.raises(ValueError):
        result._fmr[0, 0] = 1.0  # read-only storage
    with pytest.raises(AttributeError):
        result.n_boot = 5  # type: ignore[misc]
    assert isinstance(result, BootstrapResult)
    data = json.loads(json.dumps(result.to_dict(include_replicates=True), allow_nan=False))
    assert data["groups"] == ["A", "B", "C"] and len(data["replicates"]["fmr"]) == 20
    assert "identities" in result.method and "Bolle" in result.method


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda df: df.assign(group_a=np.where(df.index == 0, "B", df["group_a"]),
                              group_b=np.where(df.index == 0, "B", df["group_b"])),
         "more than one group"),
        (lambda df: df.assign(identity_b=np.where(df["mated"], df["identity_a"] + 1,
                                                  df["identity_b"])),
         "identity_a == identity_b"),
        (lambda df: df.assign(identity_b=np.where(~df["mated"], df["identity_a"],
                                                  df["identity_b"])),
         "two different identities"),
    ],
)
def test_it_rejects_inconsistent_identities(mutate, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_group_rates(mutate(small_comparisons()), 0.5, n_boot=5)


@pytest.mark.parametrize(
    "kwargs", [{"n_boot": 0}, {"n_boot": 2.5}, {"confidence": 1.0}, {"confidence": 0}, {"seed": "x"}]
)
def test_it_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        bootstrap_group_rates(small_comparisons(), 0.5, **kwargs)


def test_an_empty_frame_gives_an_empty_result():
    result = bootstrap_group_rates(small_comparisons().iloc[:0], 0.5, n_boot=5)
    assert result.groups == () and result.fmr_replicates.shape == (5, 0)
    assert math.isnan(result.overall["fmr"]) and result.overall["fmr_interval"] == "undefined"


# --- coverage simulation --------------------------------------------------------------------------
#
# Model with identity-level random effects (one group per call, two groups simulated):
# - mated: identity i has FNM propensity p_i ~ Beta(a, b), each of its M mated comparisons fails
#   independently with p_i; true FNMR = a / (a + b) (equal comparisons per identity);
# - non-mated: identities i != j of a group meet in P comparisons, each a false match with
#   q_ij = expit(mu + u_i + u_j), u ~ N(0, s^2); true FMR = E[expit(mu + s * sqrt(2) * Z)].
# Intra-identity correlation makes comparison-level resampling too narrow: with this model it
# covers about 77% (FNMR) and 52% (FMR) of the time instead of 95%.

SIM_GROUPS = {  # name: (n identities, mated per identity, Beta a, Beta b, mu, s)
    "G1": (40, 10, 0.5, 4.5, -3.5, 1.0),
    "G2": (30, 12, 0.8, 3.2, -3.0, 0.8),
}
PAIRS_PER_COUPLE = 2


def true_fmr(mu: float, s: float) -> float:
    z, w = np.polynomial.hermite_e.hermegauss(80)
    return float(np.sum(w * expit(mu + s * math.sqrt(2.0) * z)) / math.sqrt(2.0 * math.pi))


def simulate_audit(rng: np.random.Generator) -> pd.DataFrame:
    frames = []
    next_id = 0
    for name, (n, m, a, b, mu, s) in SIM_GROUPS.items():
        ids = np.arange(next_id, next_id + n)
        next_id += n
        p = rng.beta(a, b, size=n)
        fail = rng.random((n, m)) < p[:, None]
        frames.append(pd.DataFrame({
            "score": np.where(fail, 0.0, 1.0).ravel(), "mated": True, "group_a": name,
            "group_b": name, "identity_a": np.repeat(ids, m), "identity_b": np.repeat(ids, m),
        }))
        u = rng.normal(0.0, s, size=n)
        ia, ib = np.triu_indices(n, k=1)
        ia, ib = np.repeat(ia, PAIRS_PER_COUPLE), np.repeat(ib, PAIRS_PER_COUPLE)
        hit = rng.random(ia.size) < expit(mu + u[ia] + u[ib])
        frames.append(pd.DataFrame({
            "score": np.where(hit, 1.0, 0.0), "mated": False, "group_a": name, "group_b": name,
            "identity_a": ids[ia], "identity_b": ids[ib],
        }))
    return pd.concat(frames, ignore_index=True)


def test_identity_bootstrap_covers_the_true_rate_and_comparison_resampling_does_not():
    rng = np.random.default_rng(2024)
    n_sims, n_boot = 150, 250
    truth = {
        name: (a / (a + b), true_fmr(mu, s)) for name, (_, _, a, b, mu, s) in SIM_GROUPS.items()
    }
    hits_identity = {"fnmr": 0, "fmr": 0}
    hits_comparison = {"fnmr": 0, "fmr": 0}
    trials = 0
    for sim in range(n_sims):
        data = simulate_audit(rng)
        result = bootstrap_group_rates(data, 0.5, n_boot=n_boot, seed=sim)
        table = result.by_group
        for name, (fnmr_true, fmr_true) in truth.items():
            trials += 1
            row = table.loc[name]
            for rate, true in (("fnmr", fnmr_true), ("fmr", fmr_true)):
                lo, hi = row[f"{rate}_lower"], row[f"{rate}_upper"]
                hits_identity[rate] += lo <= true <= hi
                # Comparison-level resampling: errors among n resampled comparisons are
                # Binomial(n, observed rate) exactly.
                n = row["n_mated"] if rate == "fnmr" else row["n_nonmated"]
                naive = rng.binomial(int(n), row[rate], size=n_boot) / n
                lo_c, hi_c = np.quantile(naive, [0.025, 0.975])
                hits_comparison[rate] += lo_c <= true <= hi_c
    for rate in ("fnmr", "fmr"):
        identity_cov = hits_identity[rate] / trials
        comparison_cov = hits_comparison[rate] / trials
        # 1,000 simulations of this model give 92-93% (percentile intervals run slightly short
        # with 30-40 identities); 300 group-datasets here carry a Monte Carlo SE of ~1.5%.
        assert 0.88 <= identity_cov <= 0.98, (rate, identity_cov)
        assert comparison_cov < 0.85, (rate, comparison_cov)
        assert comparison_cov < identity_cov - 0.08, (rate, comparison_cov, identity_cov)
