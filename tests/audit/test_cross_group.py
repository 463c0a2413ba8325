"""Tests for audit.cross_group.bootstrap_cross_group_fmr (importable from audit.uncertainty).

The reference below is a plain loop: it draws identities with the documented rng calls, and
for every replicate walks the non-mated rows one by one, weighting each by the product of its
two identities' draw counts, and accumulates per (unordered) pair of groups. The fast matrix
products must agree replicate for replicate.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import audit.resampling as resampling
from audit.rates import error_rates
from audit.uncertainty import (
    CrossGroupBootstrap,
    bootstrap_cross_group_fmr,
    bootstrap_group_rates,
)

COLUMNS = ["score", "mated", "group_a", "group_b", "identity_a", "identity_b"]


def random_comparisons(seed: int, n_nonmated: int = 150) -> pd.DataFrame:
    """Three groups of uneven size, repeated pairs, both orientations, scores on a 0.1 grid."""
    rng = np.random.default_rng(seed)
    members = {"A": [1, 2, 3, 4], "B": [10, 11, 12, 13, 14], "C": [20, 21, 22]}
    group_of = {i: g for g, ids in members.items() for i in ids}
    everyone = sorted(group_of)
    rows = []
    for ident in everyone:
        for _ in range(int(rng.integers(0, 3))):
            g = group_of[ident]
            rows.append((round(float(rng.uniform(0.3, 1.0)), 1), True, g, g, ident, ident))
    for _ in range(n_nonmated):
        a, b = rng.choice(everyone, size=2, replace=False)
        boost = 0.3 if group_of[a] == group_of[b] else 0.1 * (group_of[a] == "C")
        score = round(float(rng.uniform(0.0, 0.6) + boost), 1)
        rows.append((score, False, group_of[a], group_of[b], int(a), int(b)))
    return pd.DataFrame(rows, columns=COLUMNS)


def naive_cross_bootstrap(
    comparisons: pd.DataFrame, threshold: float, n_boot: int, seed: int
) -> np.ndarray:
    """(n_boot, G, G) replicate cross-group FMR by an explicit loop over non-mated rows."""
    labels = sorted(set(comparisons["group_a"]) | set(comparisons["group_b"]))
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
    index = {g: i for i, g in enumerate(labels)}
    nonmated = comparisons[~comparisons["mated"]].to_dict("records")
    out = np.full((n_boot, len(labels), len(labels)), np.nan)
    for b in range(n_boot):
        k: dict[int, int] = {}
        for g, drawn in draws.items():
            for position in drawn[b]:
                ident = members[g][position]
                k[ident] = k.get(ident, 0) + 1
        trials = np.zeros((len(labels), len(labels)))
        errors = np.zeros((len(labels), len(labels)))
        for row in nonmated:
            weight = k.get(row["identity_a"], 0) * k.get(row["identity_b"], 0)
            i, j = index[row["group_a"]], index[row["group_b"]]
            for x, y in {(i, j), (j, i)}:
                trials[x, y] += weight
                errors[x, y] += weight * (row["score"] >= threshold)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[b] = np.where(trials > 0, errors / trials, np.nan)
    return out


# --- replicate-for-replicate agreement --------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_cross_group_bootstrap_equals_a_plain_loop(seed):
    comparisons = random_comparisons(seed)
    result = bootstrap_cross_group_fmr(comparisons, 0.5, n_boot=40, seed=seed + 7)
    expected = naive_cross_bootstrap(comparisons, 0.5, n_boot=40, seed=seed + 7)
    np.testing.assert_allclose(result.replicates, expected, rtol=1e-12, equal_nan=True)
    # The matrix of every replicate is symmetric.
    np.testing.assert_array_equal(
        np.nan_to_num(result.replicates, nan=-1.0),
        np.nan_to_num(result.replicates.transpose(0, 2, 1), nan=-1.0),
    )


def test_dense_sparse_and_chunked_paths_agree(monkeypatch):
    comparisons = random_comparisons(5, n_nonmated=300)
    dense = bootstrap_cross_group_fmr(comparisons, 0.5, n_boot=60, seed=3)
    monkeypatch.setattr(resampling, "_DENSE_MAX_CELLS", 0)
    monkeypatch.setattr(resampling, "_CHUNK_CELLS", 7)
    monkeypatch.setattr(resampling, "_SMALL_PRODUCT", 0)
    sparse = bootstrap_cross_group_fmr(comparisons, 0.5, n_boot=60, seed=3)
    np.testing.assert_allclose(dense.replicates, sparse.replicates, rtol=1e-12, equal_nan=True)


def test_the_diagonal_is_the_group_bootstrap_with_the_same_draws():
    comparisons = random_comparisons(4)
    cross = bootstrap_cross_group_fmr(comparisons, 0.5, n_boot=80, seed=11)
    groups = bootstrap_group_rates(comparisons, 0.5, n_boot=80, seed=11)
    diagonal = np.diagonal(cross.replicates, axis1=1, axis2=2)
    np.testing.assert_allclose(diagonal, groups.fmr_replicates.to_numpy(), equal_nan=True)
    by_group = groups.by_group
    for i, g in enumerate(cross.groups):
        assert cross.lower.iat[i, i] == pytest.approx(by_group.at[g, "fmr_lower"], nan_ok=True)
        assert cross.upper.iat[i, i] == pytest.approx(by_group.at[g, "fmr_upper"], nan_ok=True)


# --- hand-worked example ----------------------------------------------------------------------


def hand_comparisons() -> pd.DataFrame:
    """Group X: identities 1, 2; group Y: identities 3, 4; group Z: identity 5 (no pairs).

    Non-mated rows at threshold 0.5:
      X-X: (1, 2) 0.7 match, (1, 2) 0.2                    -> 1 / 2 = 0.5
      Y-Y: (3, 4) 0.1, (4, 3) 0.3                          -> 0 / 2 (rule of three: 3/2 -> 1)
      X-Y: (1, 3) 0.6 match, (3, 2) 0.4, (2, 4) 0.5 match,
           (4, 1) 0.0                                      -> 2 / 4 = 0.5
      Z appears only in a mated row: every Z cell has no comparisons (NaN, "undefined").
    """
    rows = [
        (0.9, True, "Z", "Z", 5, 5),
        (0.7, False, "X", "X", 1, 2),
        (0.2, False, "X", "X", 1, 2),
        (0.1, False, "Y", "Y", 3, 4),
        (0.3, False, "Y", "Y", 4, 3),
        (0.6, False, "X", "Y", 1, 3),
        (0.4, False, "Y", "X", 3, 2),
        (0.5, False, "X", "Y", 2, 4),
        (0.0, False, "Y", "X", 4, 1),
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def test_hand_example_point_values_counts_and_rule_of_three():
    result = bootstrap_cross_group_fmr(hand_comparisons(), 0.5, n_boot=200, seed=0)
    assert result.groups == ("X", "Y", "Z")
    counts = result.n_nonmated.to_numpy()
    np.testing.assert_array_equal(counts, [[2, 4, 0], [4, 2, 0], [0, 0, 0]])
    np.testing.assert_array_equal(result.false_matches.to_numpy(), [[1, 2, 0], [2, 0, 0],
                                                                     [0, 0, 0]])
    fmr = result.fmr.to_numpy()
    assert fmr[0, 0] == 0.5 and fmr[0, 1] == fmr[1, 0] == 0.5 and fmr[1, 1] == 0.0
    assert np.isnan(fmr[2]).all() and np.isnan(fmr[:, 2]).all()
    interval = result.interval.to_numpy()
    assert interval[1, 1] == "rule_of_three"
    assert interval[0, 0] == interval[0, 1] == "bootstrap"
    assert (interval[2] == "undefined").all()
    # Y-Y: 0 errors in 2 trials: [0, min(3/2, 1)] = [0, 1]; fmr_upper95 only there.
    assert result.lower.iat[1, 1] == 0.0 and result.upper.iat[1, 1] == 1.0
    upper95 = result.fmr_upper95.to_numpy()
    assert upper95[1, 1] == 1.0
    assert np.isnan(upper95[0, 0]) and np.isnan(upper95[0, 1]) and np.isnan(upper95[2, 2])


def test_hand_example_replicates_by_hand():
    """X has identities (1, 2): a draw is (1,1), (2,2) or a mix. Only the mix has an X-X pair.

    X-Y cell with draw counts k1, k2 (X) and k3, k4 (Y): trials 4-way weighted
    k1 k3 + k3 k2 + k2 k4 + k4 k1 = (k1 + k2)(k3 + k4) = 4 always (two draws per group);
    false matches k1 k3 + k2 k4. So FMR*_XY = (k1 k3 + k2 k4) / 4.
    """
    result = bootstrap_cross_group_fmr(hand_comparisons(), 0.5, n_boot=50, seed=9)
    rng = np.random.default_rng(9)
    # Documented draw order: groups X, Y, Z in order; positions among sorted identity ids.
    draw_x = rng.integers(0, 2, size=(50, 2))
    draw_y = rng.integers(0, 2, size=(50, 2))
    k1 = (draw_x == 0).sum(axis=1)
    k2 = (draw_x == 1).sum(axis=1)
    k3 = (draw_y == 0).sum(axis=1)
    k4 = (draw_y == 1).sum(axis=1)
    expected_xy = (k1 * k3 + k2 * k4) / 4.0
    np.testing.assert_allclose(result.replicates[:, 0, 1], expected_xy)
    # X-X: trials 2 k1 k2, false matches k1 k2 -> 0.5 when both drawn, else undefined.
    expected_xx = np.where(k1 * k2 > 0, 0.5, np.nan)
    np.testing.assert_array_equal(result.replicates[:, 0, 0], expected_xx)
    assert result.n_valid.iat[0, 0] == int((k1 * k2 > 0).sum())


def test_intervals_are_percentiles_of_the_defined_replicates():
    comparisons = random_comparisons(8)
    result = bootstrap_cross_group_fmr(comparisons, 0.5, n_boot=150, seed=2, confidence=0.9)
    reps = result.replicates
    interval = result.interval.to_numpy()
    for i in range(len(result.groups)):
        for j in range(len(result.groups)):
            if interval[i, j] != "bootstrap":
                continue
            col = reps[:, i, j]
            col = col[~np.isnan(col)]
            lo, hi = np.quantile(col, [0.05, 0.95])
            assert result.lower.iat[i, j] == pytest.approx(lo)
            assert result.upper.iat[i, j] == pytest.approx(hi)
            assert result.n_valid.iat[i, j] == col.size


# --- coverage ---------------------------------------------------------------------------------


def test_cross_group_intervals_cover_a_known_fmr_near_the_nominal_rate():
    """Simulated audits with identity-level effects; the true cross-group FMR is known.

    Identity i has a 'look-alike' propensity p_i ~ Beta(0.2, 3.8) (mean 0.05, strongly
    skewed: a few identities cause most false matches); a non-mated comparison of identities
    i, j matches with probability (p_i + p_j) / 2, so the true FMR of the X-Y cell (over the
    identity population) is 0.05. 80 audits of 30 + 30 identities, every X-Y pair compared 10
    times; the 90% intervals should cover 0.05 in about 90% of them (0.9125 with these seeds).
    """
    rng = np.random.default_rng(2024)
    covered = 0
    n_audits = 80
    for audit in range(n_audits):
        x_ids = np.arange(30)
        y_ids = np.arange(100, 130)
        p = dict(zip(np.r_[x_ids, y_ids].tolist(), rng.beta(0.2, 3.8, 60).tolist(),
                     strict=True))
        a, b = np.meshgrid(x_ids, y_ids, indexing="ij")
        a = np.repeat(a.ravel(), 10)
        b = np.repeat(b.ravel(), 10)
        prob = (np.array([p[int(i)] for i in a]) + np.array([p[int(j)] for j in b])) / 2
        score = (rng.random(a.size) < prob).astype(float)
        frame = pd.DataFrame({"score": score, "mated": False, "group_a": "X", "group_b": "Y",
                              "identity_a": a, "identity_b": b})
        result = bootstrap_cross_group_fmr(frame, 0.5, n_boot=300, seed=audit,
                                           confidence=0.9)
        covered += result.lower.iat[0, 1] <= 0.05 <= result.upper.iat[0, 1]
    assert 0.8 <= covered / n_audits <= 0.98


# --- result object, reuse of rates, errors ----------------------------------------------------


def test_result_is_immutable_and_serialisable():
    result = bootstrap_cross_group_fmr(hand_comparisons(), 0.5, n_boot=30, seed=1)
    assert isinstance(result, CrossGroupBootstrap)
    with pytest.raises(AttributeError):
        result.seed = 3  # type: ignore[misc]
    frame = result.fmr
    frame.iloc[0, 0] = 99.0
    assert result.fmr.iat[0, 0] == 0.5
    reps = result.replicates
    reps[:] = 7.0
    assert not (result.replicates == 7.0).all()
    data = result.to_dict(include_replicates=True)
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["groups"] == ["X", "Y", "Z"]
    for key in ("fmr", "lower", "upper", "n_nonmated", "false_matches", "fmr_upper95",
                "interval", "n_valid"):
        assert len(data[key]) == 3 and all(len(row) == 3 for row in data[key])
    assert data["fmr"][2][2] is None and data["interval"][1][1] == "rule_of_three"
    assert data["fmr_upper95"][1][1] == 1.0 and data["fmr_upper95"][0][0] is None
    assert len(data["replicates"]) == 30
    assert "resample identities" in data["method"]


def test_precomputed_rates_are_reused_and_checked():
    comparisons = random_comparisons(3)
    rates = error_rates(comparisons, 0.5)
    with_rates = bootstrap_cross_group_fmr(comparisons, 0.5, n_boot=20, seed=4, rates=rates)
    without = bootstrap_cross_group_fmr(comparisons, 0.5, n_boot=20, seed=4)
    np.testing.assert_array_equal(with_rates.replicates, without.replicates)
    other = error_rates(random_comparisons(4), 0.5)
    with pytest.raises(ValueError, match="do not match"):
        bootstrap_cross_group_fmr(comparisons, 0.5, n_boot=20, rates=other)
    with pytest.raises(ValueError, match="threshold"):
        bootstrap_cross_group_fmr(comparisons, 0.6, n_boot=20, rates=rates)


def test_same_seed_same_result_and_groups_option():
    comparisons = random_comparisons(6)
    one = bootstrap_cross_group_fmr(comparisons, 0.5, n_boot=25, seed=5)
    two = bootstrap_cross_group_fmr(comparisons, 0.5, n_boot=25, seed=5)
    np.testing.assert_array_equal(one.replicates, two.replicates)
    wide = bootstrap_cross_group_fmr(comparisons, 0.5, n_boot=25, seed=5,
                                     groups=["A", "B", "C", "D"])
    assert wide.groups == ("A", "B", "C", "D")
    assert (wide.interval.to_numpy()[3] == "undefined").all()
    np.testing.assert_array_equal(wide.replicates[:, :3, :3], one.replicates)


@pytest.mark.parametrize(
    "kwargs", [{"n_boot": 0}, {"confidence": 1.0}, {"seed": 1.5}, {"n_boot": True}]
)
def test_it_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        bootstrap_cross_group_fmr(hand_comparisons(), 0.5, **kwargs)


def test_an_empty_frame_gives_an_empty_matrix():
    empty = pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
        COLUMNS, [float, bool, object, object, np.int64, np.int64], strict=True)})
    result = bootstrap_cross_group_fmr(empty, 0.5, n_boot=5)
    assert result.groups == () and result.replicates.shape == (5, 0, 0)
    assert result.to_dict()["fmr"] == []
