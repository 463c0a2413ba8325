"""Single disparity measures across demographic groups, and their vectorised kernels.

Each measure turns the per-group rates (FMR_d, FNMR_d for groups d = 1..n, all read at the same
global threshold) into one number:

- Max/min ratio (:func:`max_min_ratio`): ``max_d r_d / min_d r_d`` for r = FNMR or FMR. Undefined
  when a group has no observed error, so zero rates are replaced by a stated floor (by default
  that group's rule-of-three bound ``3 / n``) and the floored groups are reported.
- Fairness Discrepancy Rate (:func:`fairness_discrepancy_rate`; de Freitas Pereira & Marcel,
  "Fairness in biometrics: a figure of merit to assess biometric verification systems", IEEE
  T-BIOM 4(1), 2022; arXiv:2011.02395): ``1 - (alpha * A + (1 - alpha) * B)`` with A, B the
  largest pairwise absolute FMR and FNMR gaps. 1 is perfectly fair.
- GARBE (:func:`garbe`; Howard et al., "Evaluating proposed fairness models for face
  recognition algorithms", 2022): a weighted sum of
  Gini coefficients of the per-group FMR and FNMR with the ``n / (n - 1)`` small-sample
  correction. 0 is perfectly fair.

``alpha`` in [0, 1] weights false matches against false non-matches; it has no default in the
single-measure functions so that every report states it.

The kernels (:func:`max_gap_rows`, :func:`gini_rows`, :func:`ratio_rows`) take a matrix of rates,
rows = bootstrap replicates (or one row of point rates), columns = groups, and return one value
per row; :func:`audit.disparity.summarize_disparity` and :func:`audit.compare.compare_models`
use them on the replicates. Every name here is also importable from :mod:`audit.disparity`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from audit.disparity_intervals import floored
from audit.rates import rule_of_three

__all__ = [
    "DEFINITIONS",
    "MEASURES",
    "MaxMinRatio",
    "check_alpha",
    "fairness_discrepancy_rate",
    "floor_vector",
    "garbe",
    "gini",
    "gini_rows",
    "max_gap_rows",
    "max_min_ratio",
    "ratio_rows",
]

#: Measures of :attr:`audit.disparity.DisparitySummary.table`, in order.
MEASURES: tuple[str, ...] = (
    "fnmr_max_min_ratio",
    "fmr_max_min_ratio",
    "fmr_max_gap",
    "fnmr_max_gap",
    "fdr",
    "fmr_gini",
    "fnmr_gini",
    "garbe",
)

#: One-line definition of each measure, for reports.
DEFINITIONS: dict[str, str] = {
    "fnmr_max_min_ratio": "max_d FNMR_d / min_d FNMR_d; zero rates replaced by the stated floor",
    "fmr_max_min_ratio": "max_d FMR_d / min_d FMR_d; zero rates replaced by the stated floor",
    "fmr_max_gap": "A = max over pairs of groups |FMR_i - FMR_j|",
    "fnmr_max_gap": "B = max over pairs of groups |FNMR_i - FNMR_j|",
    "fdr": "Fairness Discrepancy Rate = 1 - (alpha * A + (1 - alpha) * B) "
    "(de Freitas Pereira & Marcel 2021); 1 is perfectly fair",
    "fmr_gini": "G(FMR) = n/(n-1) * sum_i sum_j |x_i - x_j| / (2 n^2 mean(x))",
    "fnmr_gini": "G(FNMR) = n/(n-1) * sum_i sum_j |x_i - x_j| / (2 n^2 mean(x))",
    "garbe": "GARBE = alpha * G(FMR) + (1 - alpha) * G(FNMR) (Howard et al. 2022); "
    "0 is perfectly fair",
}



# --- input helpers ----------------------------------------------------------------------------


def _as_series(values: Any, name: str) -> pd.Series:
    """Series of float rates indexed by group label, from a Series, mapping or 1-D array."""
    if isinstance(values, pd.Series):
        series = values.astype(np.float64)
    elif isinstance(values, Mapping):
        series = pd.Series({k: float(v) for k, v in values.items()}, dtype=np.float64)
    else:
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one rate per group), got shape {array.shape}")
        series = pd.Series(array)
    if series.index.has_duplicates:
        raise ValueError(f"{name} has repeated group labels")
    return series


def _check_rates(series: pd.Series, name: str) -> None:
    if len(series) < 2:
        raise ValueError(f"{name} needs at least 2 groups, got {len(series)}")
    if series.isna().any():
        bad = [str(g) for g in series.index[series.isna()]]
        raise ValueError(
            f"{name} is undefined (NaN) for group(s) {bad}: drop groups without comparisons "
            "before summarising"
        )
    if (series < 0).any() or (series > 1).any():
        raise ValueError(f"{name} must hold rates in [0, 1]")


def _pair(fmr_by_group: Any, fnmr_by_group: Any) -> tuple[pd.Series, pd.Series]:
    fmr = _as_series(fmr_by_group, "fmr_by_group")
    fnmr = _as_series(fnmr_by_group, "fnmr_by_group")
    if set(fmr.index) != set(fnmr.index):
        raise ValueError(
            "fmr_by_group and fnmr_by_group must cover the same groups; got "
            f"{sorted(map(str, fmr.index))} and {sorted(map(str, fnmr.index))}"
        )
    fnmr = fnmr.loc[fmr.index]
    _check_rates(fmr, "fmr_by_group")
    _check_rates(fnmr, "fnmr_by_group")
    return fmr, fnmr


def check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if not (0.0 <= float(alpha) <= 1.0):
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    return float(alpha)


# --- vectorised kernels: rows = replicates, columns = groups ------------------------------------


def max_gap_rows(x: np.ndarray) -> np.ndarray:
    # max over pairs |x_i - x_j| = max - min. NaN in a row -> NaN.
    return np.max(x, axis=1) - np.min(x, axis=1)


def gini_rows(x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    mean = np.mean(x, axis=1)
    # sum_i sum_j |x_i - x_j| via sorted values: 2 * sum_k (2k - n - 1) x_(k), k = 1..n.
    xs = np.sort(x, axis=1)  # NaN sorts last and propagates through the sum
    weights = 2.0 * np.arange(1, n + 1) - n - 1.0
    abs_diff_sum = 2.0 * (xs @ weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (n / (n - 1.0)) * abs_diff_sum / (2.0 * n * n * mean)
    # All rates equal (including all zero): no inequality, G = 0.
    g = np.where(np.isfinite(mean) & (abs_diff_sum == 0.0), 0.0, g)
    return np.where(np.isnan(mean), np.nan, g)


def ratio_rows(x: np.ndarray, floors: np.ndarray, rule: str) -> np.ndarray:
    values, _ = floored(x, floors, rule)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.max(values, axis=1) / np.min(values, axis=1)
    # No error observed in any group: nothing to compare, the ratio is undefined.
    return np.where(np.all(x == 0.0, axis=1), np.nan, ratio)


# --- public single measures -------------------------------------------------------------------


def gini(rates: Any) -> float:
    """Gini coefficient with the small-sample correction, as used by GARBE.

    ``G(x) = n / (n - 1) * sum_i sum_j |x_i - x_j| / (2 * n**2 * mean(x))`` over the n >= 2
    group rates (Howard et al. 2022). 0 when all rates are equal (also when all are 0, where the
    formula is 0/0); 1 when one group carries all errors.
    """
    series = _as_series(rates, "rates")
    _check_rates(series, "rates")
    return float(gini_rows(series.to_numpy()[None, :])[0])


def fairness_discrepancy_rate(fmr_by_group: Any, fnmr_by_group: Any, alpha: float) -> float:
    """Fairness Discrepancy Rate (de Freitas Pereira & Marcel 2021) at one threshold.

    ``A = max_{i,j} |FMR_i - FMR_j|``, ``B = max_{i,j} |FNMR_i - FNMR_j|``,
    ``FDR = 1 - (alpha * A + (1 - alpha) * B)``. In [0, 1]; 1 is perfectly fair. Absolute gaps
    between small FMRs barely move it (1e-3 vs 1e-4 is a 10x ratio but A = 9e-4), which is why
    :func:`max_min_ratio` is reported too.

    Parameters
    ----------
    fmr_by_group, fnmr_by_group:
        Per-group rates, pandas Series or mappings keyed by group (matched by label) or 1-D
        arrays in the same group order; at least 2 groups, no NaN.
    alpha:
        Weight of the FMR gap, in [0, 1] (no default: state it).
    """
    fmr, fnmr = _pair(fmr_by_group, fnmr_by_group)
    a = check_alpha(alpha)
    gap_fm = float(max_gap_rows(fmr.to_numpy()[None, :])[0])
    gap_fnm = float(max_gap_rows(fnmr.to_numpy()[None, :])[0])
    return 1.0 - (a * gap_fm + (1.0 - a) * gap_fnm)


def garbe(fmr_by_group: Any, fnmr_by_group: Any, alpha: float) -> float:
    """GARBE, the Gini aggregation rate for biometric equitability (Howard et al. 2022).

    ``GARBE = alpha * G(FMR) + (1 - alpha) * G(FNMR)`` with ``G`` of :func:`gini`:
    ``G(x) = n / (n - 1) * sum_i sum_j |x_i - x_j| / (2 * n**2 * mean(x))``. In [0, 1]; 0 is
    perfectly fair. Inputs as for :func:`fairness_discrepancy_rate`; ``alpha`` has no default.
    """
    fmr, fnmr = _pair(fmr_by_group, fnmr_by_group)
    a = check_alpha(alpha)
    g_fm = float(gini_rows(fmr.to_numpy()[None, :])[0])
    g_fnm = float(gini_rows(fnmr.to_numpy()[None, :])[0])
    return a * g_fm + (1.0 - a) * g_fnm


@dataclass(frozen=True)
class MaxMinRatio:
    """Result of :func:`max_min_ratio`.

    Attributes
    ----------
    value:
        ``max_d r'_d / min_d r'_d`` over the floored rates ``r'``; NaN when no group has an
        observed error (every rate 0).
    max_group, min_group:
        Groups attaining the maximum and minimum floored rate (first in order on ties); None
        when ``value`` is NaN.
    floored:
        Groups whose rate was replaced by the floor.
    floor_rule:
        ``"rule_of_three"`` (zero rates -> that group's ``3 / n``) or ``"fixed"`` (rates below
        ``floor`` -> ``floor``).
    floors:
        The floor value used for each floored group.
    rates:
        The rates after flooring, by group.
    """

    value: float
    max_group: str | None
    min_group: str | None
    floored: tuple[str, ...]
    floor_rule: str
    floors: dict[str, float] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)

    @property
    def note(self) -> str:
        """Plain-words statement of the floor, for reports."""
        if not self.floored:
            return "no rate was floored"
        names = ", ".join(self.floored)
        if self.floor_rule == "rule_of_three":
            return f"no error observed in {names}: rate floored at the rule-of-three bound 3/n"
        floor = next(iter(self.floors.values()))
        return f"rate of {names} below the floor {floor:.3g}: floored at it"


def floor_vector(
    rates: pd.Series, floor: float | None, trials: Any
) -> tuple[np.ndarray, str]:
    if floor is None:
        if trials is None:
            if (rates == 0).any():
                raise ValueError(
                    "a group has rate 0: pass `trials` (comparisons per group) for the "
                    "rule-of-three floor, or a numeric `floor`"
                )
            return np.full(len(rates), np.nan), "rule_of_three"
        t = _as_series(trials, "trials")
        if set(t.index) != set(rates.index):
            raise ValueError("trials must cover the same groups as rates")
        t = t.loc[rates.index]
        floors = np.array(
            [rule_of_three(int(n)) if n >= 1 else np.nan for n in t.to_numpy()], dtype=np.float64
        )
        return floors, "rule_of_three"
    if isinstance(floor, bool) or not isinstance(floor, (int, float, np.number)):
        raise ValueError(f"floor must be a positive number or None, got {floor!r}")
    if not (0.0 < float(floor) <= 1.0):
        raise ValueError(f"floor must be in (0, 1], got {floor!r}")
    return np.full(len(rates), float(floor)), "fixed"


def max_min_ratio(
    rates: Any, floor: float | None = None, *, trials: Any = None
) -> MaxMinRatio:
    """Ratio of the largest to the smallest per-group rate, with a stated floor.

    ``ratio = max_d r'_d / min_d r'_d`` where ``r'`` is the rate after flooring:

    - ``floor=None`` (default): a group with rate 0 (no error observed in ``n_d`` trials) gets
      its rule-of-three 95% upper bound ``3 / n_d`` (:func:`audit.rates.rule_of_three`); needs
      ``trials``. Non-zero rates are kept, even when below another group's bound.
    - ``floor=f`` (a number in (0, 1]): every rate below ``f`` is raised to ``f``.

    When no group has any error the ratio is undefined and ``value`` is NaN. A floored group can
    end up as the maximum (its bound exceeds the others' rates); ``max_group`` shows it.

    Parameters
    ----------
    rates:
        Per-group rates (Series or mapping keyed by group, or a 1-D array), >= 2 groups, no NaN.
    floor:
        See above.
    trials:
        Per-group number of comparisons behind each rate (same keys/order), for the
        rule-of-three floor.
    """
    series = _as_series(rates, "rates")
    _check_rates(series, "rates")
    floors, rule = floor_vector(series, floor, trials)
    x = series.to_numpy()[None, :]
    values, hit = floored(x, floors[None, :], rule)
    value = float(ratio_rows(x, floors[None, :], rule)[0])
    labels = [str(g) for g in series.index]
    floored_groups = tuple(g for g, h in zip(labels, hit[0], strict=True) if h)
    if math.isnan(value):
        max_group = min_group = None
    else:
        max_group = labels[int(np.argmax(values[0]))]
        min_group = labels[int(np.argmin(values[0]))]
    return MaxMinRatio(
        value=value,
        max_group=max_group,
        min_group=min_group,
        floored=floored_groups,
        floor_rule=rule,
        floors={g: float(floors[i]) for i, g in enumerate(labels) if g in floored_groups},
        rates={g: float(values[0, i]) for i, g in enumerate(labels)},
    )

