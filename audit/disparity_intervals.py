"""Simultaneous intervals of the disparity measures, from identity-bootstrap replicates.

:func:`measure_intervals` maps one sup-t band (:mod:`audit.simultaneous`) per measure onto the
max/min ratios, max gaps, Gini coefficients, FDR and GARBE that :func:`audit.disparity.
summarize_disparity` reports: pairwise differences of group rates (log rates for ratios) for
gaps and ratios, a box on the group rates for Gini and GARBE. A :class:`Family` holds one rate's
per-group inputs (point values, replicates, rule-of-three allowances, ratio floors).
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

__all__ = ["Family", "floored", "measure_intervals"]


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
