"""Tests for audit.simultaneous: the sup-t band by its definition, gap/ratio maps by hand, and
the Gini range over a box against a brute-force grid."""

from __future__ import annotations

from itertools import product

import numpy as np
import pytest

from audit.simultaneous import (
    MAX_VERTEX_GROUPS,
    expand_critical,
    gap_interval,
    gini_range,
    pairwise,
    ratio_interval,
    sup_t_intervals,
)
from tests.audit.disparity_simulation import naive_gini


def test_sup_t_band_of_independent_normal_columns_uses_the_max_t_quantile():
    rng = np.random.default_rng(0)
    reps = rng.normal(0.0, [1.0, 2.0, 0.5], size=(20000, 3))
    band = sup_t_intervals(np.zeros(3), reps, 0.95)
    # For 3 independent standard normals, P(max |Z| <= c) = (2 Phi(c) - 1)^3 = 0.95:
    # c = Phi^-1((1 + 0.95^(1/3)) / 2) = 2.387 (a table value; Sidak).
    assert band.critical == pytest.approx(2.387, abs=0.03)
    np.testing.assert_allclose(band.se, [1.0, 2.0, 0.5], rtol=0.02)
    np.testing.assert_allclose(band.upper, band.critical * band.se)
    assert band.n_valid == 20000


def test_sup_t_band_drops_rows_with_nan_and_ignores_columns_without_spread():
    reps = np.array([[1.0, 5.0], [3.0, 5.0], [np.nan, 5.0], [2.0, 5.0]])
    band = sup_t_intervals(np.array([2.0, 5.0]), reps, 0.5)
    # Valid rows 1, 3, 2: se 1, |t| = 1, 1, 0 -> median 1.
    assert band.n_valid == 3 and band.critical == pytest.approx(1.0)
    np.testing.assert_allclose(band.lower, [1.0, 5.0])
    np.testing.assert_allclose(band.upper, [3.0, 5.0])
    empty = sup_t_intervals(np.array([1.0]), np.array([[np.nan]]), 0.9)
    assert empty.n_valid == 0 and np.isnan(empty.lower).all()


def test_pairwise_differences_follow_upper_triangle_order():
    np.testing.assert_allclose(pairwise(np.array([1.0, 4.0, 9.0])), [-3.0, -8.0, -5.0])


def test_gap_and_ratio_intervals_over_ordered_pairs_by_hand():
    # Pairs (0,1), (0,2), (1,2): r0 - r1 in [-0.1, 0.3], r0 - r2 in [0.05, 0.2],
    # r1 - r2 in [-0.4, -0.2]. Ordered maxima: lower max(-0.1, 0.05, -0.4, -0.3, -0.2, 0.2) =
    # 0.2 (from r2 - r1 >= 0.2); upper max(0.3, 0.2, -0.2, 0.1, -0.05, 0.4) = 0.4.
    lower, upper = np.array([-0.1, 0.05, -0.4]), np.array([0.3, 0.2, -0.2])
    assert gap_interval(lower, upper) == pytest.approx((0.2, 0.4))
    assert ratio_interval(lower, upper) == pytest.approx((np.exp(0.2), np.exp(0.4)))
    # All pairs may be equal: the gap's lower end is 0, the ratio's 1.
    assert gap_interval(np.array([-0.1]), np.array([0.2]))[0] == 0.0
    assert ratio_interval(np.array([-0.1]), np.array([0.2]))[0] == 1.0


def grid_range(lower, upper, steps=41):
    axes = [np.linspace(lo, hi, steps) for lo, hi in zip(lower, upper, strict=True)]
    values = [naive_gini(np.array(x)) for x in product(*axes)]
    return min(values), max(values)


@pytest.mark.parametrize("seed", range(6))
def test_gini_range_matches_a_grid_search_on_three_groups(seed):
    rng = np.random.default_rng(seed)
    lower = rng.uniform(0.0, 0.3, 3)
    upper = lower + rng.uniform(0.0, 0.2, 3)
    g_min, g_max = gini_range(lower, upper)
    grid_min, grid_max = grid_range(lower, upper)
    # The grid holds every vertex, so its maximum is exact; its minimum is at most one grid step
    # above the true minimum.
    assert g_max == pytest.approx(grid_max, abs=1e-12)
    assert g_min <= grid_min + 1e-12
    assert g_min >= grid_min - 0.02


def test_gini_range_by_hand():
    # Disjoint boxes for two groups: G = |x0 - x1| / (x0 + x1) is smallest at the facing ends.
    assert gini_range(np.array([0.1, 0.3]), np.array([0.2, 0.4]))[0] == pytest.approx(0.1 / 0.5)
    # Overlapping boxes: all-equal rates are possible, G = 0.
    assert gini_range(np.array([0.1, 0.15]), np.array([0.2, 0.4]))[0] == 0.0
    # Point boxes: the Gini of the point (hand example of test_disparity: 3/7).
    fixed = np.array([0.1, 0.2, 0.4])
    assert gini_range(fixed, fixed) == pytest.approx((3 / 7, 3 / 7))
    # A box reaching 0 for all but one group: the maximum is 1.
    assert gini_range(np.zeros(3), np.array([0.1, 0.1, 0.1]))[1] == pytest.approx(1.0)


def test_gini_maximum_above_the_vertex_limit_is_a_valid_bound():
    rng = np.random.default_rng(1)
    n = MAX_VERTEX_GROUPS + 2
    lower = rng.uniform(0.05, 0.1, n)
    upper = lower + 0.02
    g_min, g_max = gini_range(lower, upper)
    samples = rng.uniform(lower, upper, size=(2000, n))
    assert max(naive_gini(x) for x in samples[:200]) <= g_max <= 1.0
    assert g_min <= min(naive_gini(x) for x in samples[:200])


def test_undefined_bounds_give_an_undefined_interval():
    nan = np.array([np.nan])
    assert all(np.isnan(gap_interval(nan, nan))) and all(np.isnan(ratio_interval(nan, nan)))
    assert all(np.isnan(gini_range(np.array([np.nan, 0.1]), np.array([0.2, 0.2]))))


def test_expanded_critical_value_against_a_t_table():
    # c = 1.96 is the normal 97.5% point; t with 10 df has 2.228 there (table), times
    # sqrt(11/10).
    assert expand_critical(1.959964, 11) == pytest.approx(2.228 * np.sqrt(1.1), abs=2e-3)
    assert expand_critical(1.959964, 1) == 1.959964  # nothing to expand with one unit
    reps = np.random.default_rng(2).normal(size=(4000, 2))
    plain = sup_t_intervals(np.zeros(2), reps, 0.95)
    wide = sup_t_intervals(np.zeros(2), reps, 0.95, n_units=20)
    assert wide.critical == pytest.approx(expand_critical(plain.critical, 20))
    assert wide.critical > plain.critical
