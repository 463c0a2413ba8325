"""Summary disparity measures across demographic groups at one decision threshold.

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

:func:`summarize_disparity` computes all of them at once from a
:class:`audit.uncertainty.BootstrapResult` or from a :class:`audit.rates.GroupRates` (point values
only). :func:`rankable_groups` says which groups have enough identities and comparisons to be
ranked at all, and why not.

Intervals
---------
Percentile intervals of these measures over the bootstrap replicates are biased away from
parity: each replicate picks its own worst and best group, so even with all groups equal the
replicate maxima lie above the truth (an audit showed FNMR max/min 1.098 with "95% interval"
[1.114, 2.307], not even containing its estimate). The intervals here are instead built from one
sup-t (studentised maximum) band over smooth contrasts of the same identity-bootstrap replicates,
mapped to each measure by :mod:`audit.disparity_intervals` (:mod:`audit.simultaneous` has the band
and its sources;
:data:`INTERVAL_METHODS` says which contrasts each measure uses):

- max gap A or B: simultaneous bounds ``[L_ij, U_ij]`` on every ``r_i - r_j`` give
  ``[max(0, max L_ij), max U_ij]`` over ordered pairs;
- max/min ratio: the same on ``log r'_i - log r'_j`` (floored rates, floors fixed), mapped by exp,
  with lower end at least 1;
- FDR: A and B from one band over the FMR and FNMR differences together (both hold jointly);
- Gini: the smallest and largest value over a simultaneous box on the group rates (a band on
  the log rates mapped back, since rates near 0 are skewed and the Gini is scale-free); GARBE:
  the same over one joint box of both rates.

A group with no observed error has all replicates 0; for the gaps, FDR, Gini and GARBE it enters
as ``[0, 3/n]`` (rule of three) instead, and a replicate rate of 0 is taken as ``3 / n`` where a
logarithm is needed. If the band covers, every true contrast is inside it and so is the true
measure, hence parity is covered at (at least) the nominal level when the groups are equal, and
each estimate lies inside its interval. With a real difference and many groups the intervals are
conservative. Coverage by simulation (``bench/coverage_disparity.py``: 1000 audits per case,
groups of 40 identities with identity random effects, 300 replicates; parity / FNMR ratio 2 in
one group):

============================  ===========  ===========  ===========  ===========
measure                       2 parity     2 ratio 2    4 parity     4 ratio 2
============================  ===========  ===========  ===========  ===========
FNMR max/min ratio            0.953        0.986        0.978        0.994
FMR max/min ratio             0.994        0.997        0.999        0.998
FMR max gap (A)               0.992        0.984        0.996        0.999
FNMR max gap (B)              0.941        0.974        0.955        0.998
FDR                           0.971        0.995        0.982        1.000
Gini of FMR / FNMR, GARBE     >= 0.999     1.000        >= 0.999     1.000
old percentile (FNMR ratio)   0.618        0.965        0.000        0.763
============================  ===========  ===========  ===========  ===========

The FNMR gap, a difference of skewed rates on their own scale, is the least accurate (0.94 with
two groups); FMR measures are conservative because the identity bootstrap counts the noise of
single non-mated pairs more than once (see :func:`audit.uncertainty.bootstrap_cross_group_fmr`),
and the Gini and GARBE intervals, from a box, are valid but wide.

Permutation test
----------------
Given the comparisons, :func:`summarize_disparity` also runs
:func:`audit.permutation.permutation_test` (group labels shuffled across identities, not
comparisons; see that module for the FMR null) and records a p-value of "no difference between
groups" for FNMR and for FMR.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from audit.disparity_intervals import Family, floored, measure_intervals
from audit.permutation import GroupPermutationTest, permutation_test
from audit.rates import GroupRates, rule_of_three
from audit.uncertainty import BootstrapResult

from .jsonable import plain as _plain

__all__ = [
    "DEFINITIONS",
    "INTERVAL_METHODS",
    "INTERVAL_SUMMARY",
    "MEASURES",
    "DisparitySummary",
    "MaxMinRatio",
    "fairness_discrepancy_rate",
    "garbe",
    "gini",
    "max_min_ratio",
    "rankable_groups",
    "summarize_disparity",
]

#: Measures of :attr:`DisparitySummary.table`, in order.
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

#: How each measure's interval is made from the identity-bootstrap replicates (sup-t bands of
#: :mod:`audit.simultaneous`), for reports.
INTERVAL_METHODS: dict[str, str] = {
    "fnmr_max_min_ratio": "sup-t simultaneous bounds [L, U] on every log FNMR_i - log FNMR_j "
    "(floors fixed); interval [max(1, max exp L), max exp U]",
    "fmr_max_min_ratio": "sup-t simultaneous bounds [L, U] on every log FMR_i - log FMR_j "
    "(floors fixed); interval [max(1, max exp L), max exp U]",
    "fmr_max_gap": "sup-t simultaneous bounds [L, U] on every FMR_i - FMR_j; "
    "interval [max(0, max L), max U]",
    "fnmr_max_gap": "sup-t simultaneous bounds [L, U] on every FNMR_i - FNMR_j; "
    "interval [max(0, max L), max U]",
    "fdr": "the A and B intervals from one sup-t band over the FMR and FNMR differences jointly",
    "fmr_gini": "smallest and largest Gini over a sup-t simultaneous box of the group FMRs",
    "fnmr_gini": "smallest and largest Gini over a sup-t simultaneous box of the group FNMRs",
    "garbe": "smallest and largest GARBE over one sup-t simultaneous box of the group FMRs and "
    "FNMRs jointly",
}

#: One sentence on the disparity intervals, for reports.
INTERVAL_SUMMARY = (
    "Simultaneous (sup-t) bootstrap bounds on all pairwise differences of group rates (log rates "
    "for max/min ratios) or on the group rates (Gini, GARBE), from the identity-bootstrap "
    "replicates, mapped to each measure; each interval contains its estimate and, when the "
    "groups could all be equal, parity."
)

#: Default minimum cell sizes of :func:`rankable_groups`.
MIN_IDENTITIES = 20
MIN_MATED = 100
MIN_NONMATED = 1000


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


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if not (0.0 <= float(alpha) <= 1.0):
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    return float(alpha)


# --- vectorised kernels: rows = replicates, columns = groups ------------------------------------


def _max_gap(x: np.ndarray) -> np.ndarray:
    # max over pairs |x_i - x_j| = max - min. NaN in a row -> NaN.
    return np.max(x, axis=1) - np.min(x, axis=1)


def _gini(x: np.ndarray) -> np.ndarray:
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


def _ratio_rows(x: np.ndarray, floors: np.ndarray, rule: str) -> np.ndarray:
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
    return float(_gini(series.to_numpy()[None, :])[0])


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
    a = _check_alpha(alpha)
    gap_fm = float(_max_gap(fmr.to_numpy()[None, :])[0])
    gap_fnm = float(_max_gap(fnmr.to_numpy()[None, :])[0])
    return 1.0 - (a * gap_fm + (1.0 - a) * gap_fnm)


def garbe(fmr_by_group: Any, fnmr_by_group: Any, alpha: float) -> float:
    """GARBE, the Gini aggregation rate for biometric equitability (Howard et al. 2022).

    ``GARBE = alpha * G(FMR) + (1 - alpha) * G(FNMR)`` with ``G`` of :func:`gini`:
    ``G(x) = n / (n - 1) * sum_i sum_j |x_i - x_j| / (2 * n**2 * mean(x))``. In [0, 1]; 0 is
    perfectly fair. Inputs as for :func:`fairness_discrepancy_rate`; ``alpha`` has no default.
    """
    fmr, fnmr = _pair(fmr_by_group, fnmr_by_group)
    a = _check_alpha(alpha)
    g_fm = float(_gini(fmr.to_numpy()[None, :])[0])
    g_fnm = float(_gini(fnmr.to_numpy()[None, :])[0])
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


def _floor_vector(
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
    floors, rule = _floor_vector(series, floor, trials)
    x = series.to_numpy()[None, :]
    values, hit = floored(x, floors[None, :], rule)
    value = float(_ratio_rows(x, floors[None, :], rule)[0])
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


# --- rankability ------------------------------------------------------------------------------


def rankable_groups(
    by_group: pd.DataFrame | GroupRates | BootstrapResult,
    *,
    min_identities: int = MIN_IDENTITIES,
    min_mated: int = MIN_MATED,
    min_nonmated: int = MIN_NONMATED,
) -> pd.DataFrame:
    """Which groups have cells large enough to be ranked against each other, and why not.

    A group is rankable when it has at least ``min_identities`` identities (the bootstrap's
    sampling units: with fewer, identity-level variation dominates and percentile intervals are
    unreliable), ``min_mated`` mated comparisons (FNMR) and ``min_nonmated`` within-group
    non-mated comparisons (FMR; to resolve an FMR of p at all you need n >= 3 / p, e.g. 3,000 for
    1e-3, by the rule of three).

    Parameters
    ----------
    by_group:
        A per-group frame with columns ``n_identities``, ``n_mated`` and ``n_nonmated`` (e.g.
        :attr:`GroupRates.by_group`), or a :class:`GroupRates` / :class:`BootstrapResult`.

    Returns
    -------
    pandas.DataFrame
        Indexed by group, columns ``n_identities``, ``n_mated``, ``n_nonmated``, ``rankable``
        (bool) and ``reason`` ("" when rankable, else e.g. ``"12 identities < 20; 40 mated
        comparisons < 100"``).
    """
    frame = by_group.by_group if hasattr(by_group, "by_group") else by_group
    needed = ["n_identities", "n_mated", "n_nonmated"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"by_group is missing column(s) {missing}")
    for name, value in (
        ("min_identities", min_identities),
        ("min_mated", min_mated),
        ("min_nonmated", min_nonmated),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    out = frame[needed].copy()
    reasons = []
    for n_id, n_m, n_nm in out.itertuples(index=False):
        why = []
        if n_id < min_identities:
            why.append(f"{int(n_id)} identities < {min_identities}")
        if n_m < min_mated:
            why.append(f"{int(n_m)} mated comparisons < {min_mated}")
        if n_nm < min_nonmated:
            why.append(f"{int(n_nm)} within-group non-mated comparisons < {min_nonmated}")
        reasons.append("; ".join(why))
    out["rankable"] = [r == "" for r in reasons]
    out["reason"] = reasons
    return out


# --- summary ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DisparitySummary:
    """All disparity measures at one threshold, with simultaneous bootstrap intervals.

    Built by :func:`summarize_disparity`; immutable, accessors return copies.

    Attributes / accessors
    ----------------------
    threshold, alpha, confidence, n_boot:
        The threshold of the rates, the FMR weight used by FDR and GARBE, the interval level
        and the number of replicates (0: point values only, intervals NaN).
    groups:
        Groups the measures were computed over.
    excluded:
        dict group -> reason for groups left out (a rate undefined, or not in ``groups``).
    table:
        DataFrame indexed by ``measure`` (:data:`MEASURES`) with columns ``estimate``,
        ``lower``, ``upper`` (interval by the method of :data:`INTERVAL_METHODS`; it always
        contains the estimate), ``n_valid`` (replicates used), ``definition``,
        ``interval_method`` (:data:`INTERVAL_METHODS`, "" without replicates), and
        ``max_group`` / ``min_group`` (for the ratios and gaps: the groups with the largest and
        smallest point rate, floored for the ratios; None for the other measures).
    fnmr_ratio, fmr_ratio:
        The :class:`MaxMinRatio` point results (max/min groups, floored groups, floor rule).
    permutation:
        The :class:`audit.permutation.GroupPermutationTest` (p-values of "no difference between
        groups" for FNMR and FMR) when comparisons were given, else None.
    notes:
        Plain-words caveats for the report (interval method, floors, exclusions, p-values).
    """

    threshold: float
    alpha: float
    confidence: float
    n_boot: int
    fnmr_ratio: MaxMinRatio
    fmr_ratio: MaxMinRatio
    _groups: tuple[str, ...] = field(repr=True)
    _excluded: dict[str, str] = field(repr=False)
    _table: pd.DataFrame = field(repr=False)
    _notes: tuple[str, ...] = field(repr=False)
    permutation: GroupPermutationTest | None = field(default=None, repr=False)

    @property
    def groups(self) -> tuple[str, ...]:
        return self._groups

    @property
    def excluded(self) -> dict[str, str]:
        return dict(self._excluded)

    @property
    def table(self) -> pd.DataFrame:
        return self._table.copy(deep=True)

    @property
    def notes(self) -> tuple[str, ...]:
        return self._notes

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable values (NaN -> None)::

            {"threshold", "alpha", "confidence", "n_boot", "groups", "excluded",
             "measures": {measure: {"estimate", "lower", "upper", "n_valid", "definition",
                                    "interval_method", "max_group", "min_group"}},
             "interval_method", "fnmr_ratio", "fmr_ratio", "notes",
             "permutation_test": {...} (audit.permutation.GroupPermutationTest.to_dict) or None}
        """
        return {
            "threshold": _plain(self.threshold),
            "alpha": self.alpha,
            "confidence": self.confidence,
            "n_boot": self.n_boot,
            "groups": list(self._groups),
            "excluded": dict(self._excluded),
            "measures": {
                m: {c: _plain(self._table.at[m, c]) for c in self._table.columns}
                for m in self._table.index
            },
            "interval_method": INTERVAL_SUMMARY if self.n_boot else "",
            "fnmr_ratio": _ratio_dict(self.fnmr_ratio),
            "fmr_ratio": _ratio_dict(self.fmr_ratio),
            "notes": list(self._notes),
            "permutation_test": None if self.permutation is None else self.permutation.to_dict(),
        }


def _select_groups(
    by_group: pd.DataFrame, groups: Sequence[str] | None
) -> tuple[list[str], dict[str, str]]:
    """Kept groups (both rates defined, selected) and excluded group -> reason."""
    all_groups = [str(g) for g in by_group.index]
    if groups is None:
        chosen = all_groups
    else:
        chosen = list(dict.fromkeys(str(g) for g in groups))
        unknown = sorted(set(chosen) - set(all_groups))
        if unknown:
            raise ValueError(f"groups not in the result: {unknown}")
    excluded = {g: "not selected" for g in all_groups if g not in chosen}
    kept = []
    for g in chosen:
        row = by_group.loc[g]
        if row["n_mated"] == 0 and row["n_nonmated"] == 0:
            excluded[g] = "no mated and no within-group non-mated comparisons"
        elif row["n_mated"] == 0:
            excluded[g] = "no mated comparisons (FNMR undefined)"
        elif row["n_nonmated"] == 0:
            excluded[g] = "no within-group non-mated comparisons (FMR undefined)"
        else:
            kept.append(g)
    return kept, excluded


def _family(
    rates: pd.Series, errors: pd.Series, trials: pd.Series, identities: pd.Series,
    reps: pd.DataFrame | None, floor: float | None,
) -> Family:
    """The :class:`Family` of one rate over the kept groups (Series indexed by group)."""
    floors, rule = _floor_vector(rates, floor, trials)
    bound = np.array([rule_of_three(int(n)) for n in trials])
    return Family(
        point=rates.to_numpy(dtype=np.float64),
        reps=None if reps is None else reps[list(rates.index)].to_numpy(dtype=np.float64),
        allowance=np.where(errors.to_numpy() == 0, bound, 0.0), bound=bound,
        floors=floors, rule=rule, n_units=int(identities.min()),
    )


def _point_measures(fm: np.ndarray, fnm: np.ndarray, fam_fm: Family, fam_fnm: Family,
                    a: float) -> np.ndarray:
    """Values of MEASURES for one row of FMR and FNMR rates (G,)."""
    gap_fm, gap_fnm = _max_gap(fm[None, :])[0], _max_gap(fnm[None, :])[0]
    g_fm, g_fnm = _gini(fm[None, :])[0], _gini(fnm[None, :])[0]
    return np.array([
        _ratio_rows(fnm[None, :], fam_fnm.floors[None, :], fam_fnm.rule)[0],
        _ratio_rows(fm[None, :], fam_fm.floors[None, :], fam_fm.rule)[0],
        gap_fm, gap_fnm, 1.0 - (a * gap_fm + (1.0 - a) * gap_fnm),
        g_fm, g_fnm, a * g_fm + (1.0 - a) * g_fnm,
    ])


def _ratio_notes(fnmr_ratio: MaxMinRatio, fmr_ratio: MaxMinRatio) -> list[str]:
    notes = []
    for label, r in (("FNMR", fnmr_ratio), ("FMR", fmr_ratio)):
        if r.floored:
            notes.append(f"{label} max/min ratio: {r.note}")
        if math.isnan(r.value):
            notes.append(f"{label} max/min ratio undefined: no error observed in any group")
        elif r.max_group in r.floored:
            notes.append(
                f"{label} max/min ratio: the largest rate is a floor ({r.max_group}), so the "
                "ratio mostly reflects small counts"
            )
    return notes


def _extreme_groups(
    fnmr: pd.Series, fmr: pd.Series, fnmr_ratio: MaxMinRatio, fmr_ratio: MaxMinRatio
) -> dict[str, tuple[str | None, str | None]]:
    """measure -> (group with the largest, group with the smallest point rate)."""
    def ends(rates: pd.Series) -> tuple[str, str]:
        return str(rates.idxmax()), str(rates.idxmin())

    return {
        "fnmr_max_min_ratio": (fnmr_ratio.max_group, fnmr_ratio.min_group),
        "fmr_max_min_ratio": (fmr_ratio.max_group, fmr_ratio.min_group),
        "fmr_max_gap": ends(fmr),
        "fnmr_max_gap": ends(fnmr),
    }


def _permutation_note(test: GroupPermutationTest) -> str:
    parts = []
    for label, t in (("FNMR", test.fnmr), ("FMR", test.fmr)):
        text = f"{label} p = {t.p_value:.3g}" if t.p_value is not None else f"{label} {t.note}"
        if t.p_value is not None and t.note:
            text += f" ({t.note})"
        parts.append(text)
    return (
        "Permutation test of no difference between groups (statistic: the max/min ratio; group "
        f"labels shuffled across identities, {test.n_permutations} shuffles, seed {test.seed}): "
        + "; ".join(parts) + "."
    )


def summarize_disparity(
    result: BootstrapResult | GroupRates,
    *,
    alpha: float = 0.5,
    floor: float | None = None,
    groups: Sequence[str] | None = None,
    comparisons: pd.DataFrame | None = None,
    n_permutations: int = 999,
    seed: int | None = None,
) -> DisparitySummary:
    """Max/min ratios, gaps, FDR, Gini coefficients and GARBE with simultaneous intervals.

    Parameters
    ----------
    result:
        A :class:`BootstrapResult` (intervals from its replicates by the methods of
        :data:`INTERVAL_METHODS`: sup-t simultaneous bounds on pairwise differences of group
        rates, of log rates, or on the rates, mapped to each measure; see
        :mod:`audit.simultaneous`) or a :class:`GroupRates` (point values, intervals NaN).
    alpha:
        FMR weight of FDR and GARBE, in [0, 1]; recorded in the result.
    floor:
        Floor of the max/min ratios (see :func:`max_min_ratio`); None: rule of three per group.
        The floors are fixed at their point values in every replicate.
    groups:
        Groups to compare (e.g. the rankable ones from :func:`rankable_groups`); default all.
        Groups whose FMR or FNMR is undefined (no comparisons) are always left out, and listed
        in :attr:`DisparitySummary.excluded`.
    comparisons:
        The comparison table the rates were computed from (as for
        :func:`audit.uncertainty.bootstrap_group_rates`). When given (with at least 2 compared
        groups), :func:`audit.permutation.permutation_test` adds p-values of "no difference
        between groups" for FNMR and FMR at ``result.threshold``.
    n_permutations, seed:
        Label shuffles of the permutation test and its seed (default: the bootstrap's seed, or
        0 for a :class:`GroupRates`).

    Returns
    -------
    DisparitySummary
    """
    a = _check_alpha(alpha)
    if isinstance(result, BootstrapResult):
        fnmr_reps, fmr_reps = result.fnmr_replicates, result.fmr_replicates
        confidence, n_boot, boot_seed = result.confidence, result.n_boot, result.seed
    elif isinstance(result, GroupRates):
        fnmr_reps = fmr_reps = None
        confidence, n_boot, boot_seed = math.nan, 0, 0
    else:
        raise ValueError(
            f"result must be a BootstrapResult or GroupRates, got {type(result).__name__}"
        )
    by_group = result.by_group
    kept, excluded = _select_groups(by_group, groups)

    notes: list[str] = []
    if excluded:
        notes.append("left out: " + "; ".join(f"{g} ({why})" for g, why in excluded.items()))
    table = pd.DataFrame(
        index=pd.Index(MEASURES, name="measure"),
        columns=["estimate", "lower", "upper", "n_valid"],
        dtype=np.float64,
    )
    table["n_valid"] = 0
    table["n_valid"] = table["n_valid"].astype(np.int64)
    table["definition"] = [DEFINITIONS[m] for m in MEASURES]
    table["interval_method"] = ""
    table["max_group"] = None
    table["min_group"] = None
    if len(kept) < 2:
        notes.append(f"{len(kept)} group(s) with defined rates: nothing to compare")
        empty = MaxMinRatio(math.nan, None, None, (), "rule_of_three" if floor is None else "fixed")
        return DisparitySummary(
            threshold=float(result.threshold),
            alpha=a, confidence=confidence, n_boot=n_boot, fnmr_ratio=empty, fmr_ratio=empty,
            _groups=tuple(kept), _excluded=excluded, _table=table, _notes=tuple(notes),
        )

    rows = by_group.loc[kept]
    fnmr, fmr = rows["fnmr"].astype(np.float64), rows["fmr"].astype(np.float64)
    fnmr_ratio = max_min_ratio(fnmr, floor, trials=rows["n_mated"])
    fmr_ratio = max_min_ratio(fmr, floor, trials=rows["n_nonmated"])
    notes.extend(_ratio_notes(fnmr_ratio, fmr_ratio))
    fam_fnm = _family(fnmr, rows["false_non_matches"], rows["n_mated"], rows["n_identities"],
                      fnmr_reps, floor)
    fam_fm = _family(fmr, rows["false_matches"], rows["n_nonmated"], rows["n_identities"],
                     fmr_reps, floor)

    point = _point_measures(fam_fm.point, fam_fnm.point, fam_fm, fam_fnm, a)
    table["estimate"] = point
    for m, (high, low) in _extreme_groups(fnmr, fmr, fnmr_ratio, fmr_ratio).items():
        table.at[m, "max_group"], table.at[m, "min_group"] = high, low
    if fam_fnm.reps is not None and fam_fm.reps is not None:
        defined = (not math.isnan(fnmr_ratio.value), not math.isnan(fmr_ratio.value))
        by_measure = measure_intervals(fam_fm, fam_fnm, a, confidence, defined)
        lower = np.array([by_measure[m][0] for m in MEASURES])
        upper = np.array([by_measure[m][1] for m in MEASURES])
        n_valid = np.array([by_measure[m][2] for m in MEASURES], dtype=np.int64)
        # Guard against rounding (the LP, exp/log): the estimate is inside by construction.
        table["lower"] = np.where(np.isnan(lower), lower, np.fmin(lower, point))
        table["upper"] = np.where(np.isnan(upper), upper, np.fmax(upper, point))
        table["n_valid"] = n_valid
        table["interval_method"] = [INTERVAL_METHODS[m] for m in MEASURES]
        notes.append(_interval_note(confidence))
        zero = [g for g, fam_z in zip(kept, fam_fnm.allowance + fam_fm.allowance, strict=True)
                if fam_z > 0]
        if zero:
            notes.append(
                "groups with no observed error (" + ", ".join(zero) + ") have no bootstrap "
                "spread; their rates enter the gap, FDR, Gini and GARBE intervals as [0, 3/n] "
                "(rule of three), and the max/min ratio intervals hold their floors fixed"
            )
        for m, n in zip(MEASURES, n_valid, strict=True):
            if n < n_boot:
                notes.append(
                    f"{m}: {n_boot - int(n)} of {n_boot} replicates left out of its interval (a "
                    "group without comparisons in the draw)"
                )
    permutation = None
    if comparisons is not None:
        permutation = permutation_test(
            comparisons, float(result.threshold), kept, n_permutations=n_permutations,
            seed=boot_seed if seed is None else seed,
        )
        notes.append(_permutation_note(permutation))

    return DisparitySummary(
        threshold=float(result.threshold),
        alpha=a,
        confidence=confidence,
        n_boot=n_boot,
        fnmr_ratio=fnmr_ratio,
        fmr_ratio=fmr_ratio,
        _groups=tuple(kept),
        _excluded=excluded,
        _table=table,
        _notes=tuple(notes),
        permutation=permutation,
    )


def _interval_note(confidence: float) -> str:
    level = f"{100 * confidence:g}%"
    return (
        f"Disparity intervals are simultaneous {level} bounds: one sup-t band over all pairwise "
        "differences of the group rates (of log rates for the max/min ratios), or over the group "
        "rates themselves for Gini and GARBE, from the identity-bootstrap replicates, mapped to "
        "each measure. They contain the estimate and, when the groups could all be equal, "
        "parity; with many groups they are conservative (wider than a single interval)."
    )


# --- helpers ----------------------------------------------------------------------------------


def _ratio_dict(r: MaxMinRatio) -> dict[str, Any]:
    return {
        "value": _plain(r.value),
        "max_group": r.max_group,
        "min_group": r.min_group,
        "floored": list(r.floored),
        "floor_rule": r.floor_rule,
        "floors": {k: _plain(v) for k, v in r.floors.items()},
        "note": r.note,
    }
