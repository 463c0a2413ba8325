"""Simultaneous intervals of the disparity measures, from identity-bootstrap replicates.

:func:`measure_intervals` maps one sup-t band (:mod:`audit.simultaneous`) per measure onto the
max/min ratios, max gaps, Gini coefficients, FDR and GARBE that :func:`audit.disparity.
summarize_disparity` reports: pairwise differences of group rates (log rates for ratios) for
gaps and ratios, a box on the group rates for Gini and GARBE. A :class:`Family` holds one rate's
per-group inputs (point values, replicates, rule-of-three allowances, ratio floors).
:data:`INTERVAL_METHODS` and :data:`INTERVAL_SUMMARY` say in words how each interval is made
(importable from :mod:`audit.disparity` too).

Coverage by simulation (``bench/coverage_disparity.py``: 1000 audits per case,
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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from audit.simultaneous import (
    gap_interval,
    gini_range,
    pair_index,
    pairwise,
    ratio_interval,
    sup_t_intervals,
)

__all__ = ["INTERVAL_METHODS", "INTERVAL_SUMMARY", "Family", "floored", "measure_intervals"]

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


def floored(x: np.ndarray, floors: np.ndarray, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Apply the floor; returns (values, which cells were floored)."""
    if rule == "rule_of_three":
        hit = x == 0.0
    else:
        hit = x < floors
    return np.where(hit, floors, x), hit



# --- families and their bounds -------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """Per-group inputs of one rate (FNMR or FMR) over the kept groups, shapes (G,) / (B, G).

    ``allowance`` is the rule-of-three bound ``3 / n`` of a group with no observed error (its
    replicates are all 0 and carry no uncertainty), else 0; ``bound`` is every
    group's ``3 / n``; ``floors``/``rule`` are the max/min ratio floors of :func:`_floor_vector`;
    ``n_units`` is the smallest group's number of identities (the bootstrap's units), for the
    small-sample expansion of the band (:func:`audit.simultaneous.expand_critical`).
    """

    point: np.ndarray
    reps: np.ndarray | None
    allowance: np.ndarray
    bound: np.ndarray
    floors: np.ndarray
    rule: str
    n_units: int


def pair_bounds(
    families: Sequence[Family], confidence: float, log: bool = False
) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """Simultaneous bounds of ``r_i - r_j`` (or ``log r'_i - log r'_j``, floored) for all pairs
    of every family at once (one sup-t band over their union).

    On the rate scale, a pair involving an error-free group is widened by its rule-of-three
    allowance: ``L_ij -= b_j``, ``U_ij += b_i``. Returns ``[(L, U) per family], n_valid``.
    """
    points, reps = [], []
    for fam in families:
        assert fam.reps is not None
        if log:
            p = np.log(floored(fam.point[None, :], fam.floors[None, :], fam.rule)[0])[0]
            r = np.log(floored(fam.reps, fam.floors[None, :], fam.rule)[0])
        else:
            p, r = fam.point, fam.reps
        points.append(pairwise(p))
        reps.append(pairwise(r))
    band = sup_t_intervals(np.concatenate(points), np.concatenate(reps, axis=1), confidence,
                           min(fam.n_units for fam in families))
    out, start = [], 0
    for fam, p in zip(families, points, strict=True):
        lower, upper = band.lower[start : start + p.size], band.upper[start : start + p.size]
        start += p.size
        if not log:
            i, j = pair_index(fam.point.size)
            lower, upper = lower - fam.allowance[j], upper + fam.allowance[i]
        out.append((lower, upper))
    return out, band.n_valid


def group_box(
    families: Sequence[Family], confidence: float
) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """Simultaneous bounds of every group's rate in every family (one sup-t band on the log
    rates, mapped back by exp and clipped to [0, 1]).

    Log rates because rates near 0 are skewed (a band on the rate scale reaches 0 and makes
    the Gini bounds needlessly wide; the Gini is scale-free). A replicate rate of 0 is replaced
    by the group's rule-of-three bound ``3 / n`` for the logarithm; a group with no observed
    error gets ``[0, 3/n]``. Returns ``[(l, u) per family], n_valid``.
    """
    points, reps = [], []
    for fam in families:
        assert fam.reps is not None
        floors = fam.bound[None, :]
        points.append(np.log(floored(fam.point[None, :], floors, "rule_of_three")[0][0]))
        reps.append(np.log(floored(fam.reps, floors, "rule_of_three")[0]))
    band = sup_t_intervals(np.concatenate(points), np.concatenate(reps, axis=1), confidence,
                           min(fam.n_units for fam in families))
    out, start = [], 0
    for fam in families:
        n = fam.point.size
        lower = np.exp(band.lower[start : start + n])
        upper = np.exp(band.upper[start : start + n])
        start += n
        zero = fam.allowance > 0
        lower = np.where(zero, 0.0, lower)
        upper = np.where(zero, np.maximum(upper, fam.allowance), upper)
        out.append((np.clip(lower, 0.0, 1.0), np.clip(upper, 0.0, 1.0)))
    return out, band.n_valid


def joint(fm: Family, fnm: Family, a: float) -> list[Family]:
    """The families an alpha-weighted measure depends on (both unless alpha is 0 or 1)."""
    return [fm] if a == 1.0 else [fnm] if a == 0.0 else [fm, fnm]


def weighted(
    a: float, fm: tuple[float, float], fnm: tuple[float, float]
) -> tuple[float, float]:
    """``alpha * fm + (1 - alpha) * fnm`` of two intervals (a term with weight 0 is skipped,
    so a NaN there does not spread)."""
    if a == 1.0:
        return fm
    if a == 0.0:
        return fnm
    return (a * fm[0] + (1.0 - a) * fnm[0], a * fm[1] + (1.0 - a) * fnm[1])


def measure_intervals(
    fm: Family, fnm: Family, a: float, confidence: float, ratio_defined: tuple[bool, bool]
) -> dict[str, tuple[float, float, int]]:
    """Measure name (:data:`audit.disparity.MEASURES`) -> ``(lower, upper, n_valid)``, by the
    methods of :data:`audit.disparity.INTERVAL_METHODS`.

    ``ratio_defined`` (FNMR, FMR): whether the point max/min ratio is defined (some error
    observed); an undefined ratio gets a NaN interval.
    """
    out: dict[str, tuple[float, float, int]] = {}
    for name, fam, defined in (("fnmr", fnm, ratio_defined[0]), ("fmr", fm, ratio_defined[1])):
        [(lo, hi)], n = pair_bounds([fam], confidence, log=True)
        out[f"{name}_max_min_ratio"] = (*ratio_interval(lo, hi), n) if defined else (
            math.nan, math.nan, n)
        [(lo, hi)], n = pair_bounds([fam], confidence)
        out[f"{name}_max_gap"] = (*gap_interval(lo, hi), n)
        [(lo, hi)], n = group_box([fam], confidence)
        out[f"{name}_gini"] = (*gini_range(lo, hi), n)

    families = joint(fm, fnm, a)
    bounds, n = pair_bounds(families, confidence)
    gaps = [gap_interval(lo, hi) for lo, hi in bounds]
    gap_fm, gap_fnm = (gaps[0], gaps[-1])
    gap = weighted(a, gap_fm, gap_fnm)
    out["fdr"] = (1.0 - gap[1], 1.0 - gap[0], n)
    boxes, n = group_box(families, confidence)
    ginis = [gini_range(lo, hi) for lo, hi in boxes]
    out["garbe"] = (*weighted(a, ginis[0], ginis[-1]), n)
    return out
