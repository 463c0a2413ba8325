"""The disparity summary across demographic groups at one decision threshold: every measure of
:mod:`audit.disparity_measures` (max/min ratios, max gaps, Fairness Discrepancy Rate, Gini,
GARBE; their definitions and sources are there) with simultaneous intervals.

:func:`summarize_disparity` computes all of them at once from a
:class:`audit.uncertainty.BootstrapResult` or from a :class:`audit.rates.GroupRates` (point values
only). :func:`rankable_groups` says which groups have enough identities and comparisons to be
ranked at all, and why not.
The single measures, their definitions and kernels live in :mod:`audit.disparity_measures`
(importable from here), the mapping of intervals to measures in :mod:`audit.disparity_intervals`.

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
conservative. Their coverage by simulation is tabled in :mod:`audit.disparity_intervals`.

Permutation test
----------------
Given the comparisons, :func:`summarize_disparity` also runs
:func:`audit.permutation.permutation_test` (group labels shuffled across identities, not
comparisons; see that module for the FMR null) and records a p-value of "no difference between
groups" for FNMR and for FMR at ``result.threshold``. The comparisons are the table the rates
were computed from (as for :func:`audit.uncertainty.bootstrap_group_rates`); the test runs only
when at least 2 groups are compared.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from audit.disparity_intervals import (
    INTERVAL_METHODS,
    INTERVAL_SUMMARY,
    Family,
    measure_intervals,
)
from audit.permutation import GroupPermutationTest, permutation_test
from audit.rates import GroupRates, rule_of_three
from audit.uncertainty import BootstrapResult

from .disparity_measures import (
    DEFINITIONS,
    MEASURES,
    MaxMinRatio,
    check_alpha,
    fairness_discrepancy_rate,
    floor_vector,
    garbe,
    gini,
    gini_rows,
    max_gap_rows,
    max_min_ratio,
    ratio_rows,
)
from .frozen import Copied
from .jsonable import plain as _plain
from .rankability import MIN_IDENTITIES, MIN_MATED, MIN_NONMATED, rankable_groups

__all__ = [
    "DEFINITIONS",
    "INTERVAL_METHODS",
    "INTERVAL_SUMMARY",
    "MEASURES",
    "MIN_IDENTITIES",
    "MIN_MATED",
    "MIN_NONMATED",
    "DisparitySummary",
    "MaxMinRatio",
    "fairness_discrepancy_rate",
    "garbe",
    "gini",
    "max_min_ratio",
    "rankable_groups",
    "summarize_disparity",
]


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

    groups = Copied()
    excluded = Copied()
    table = Copied()
    notes = Copied()

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
    floors, rule = floor_vector(rates, floor, trials)
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
    gap_fm, gap_fnm = max_gap_rows(fm[None, :])[0], max_gap_rows(fnm[None, :])[0]
    g_fm, g_fnm = gini_rows(fm[None, :])[0], gini_rows(fnm[None, :])[0]
    return np.array([
        ratio_rows(fnm[None, :], fam_fnm.floors[None, :], fam_fnm.rule)[0],
        ratio_rows(fm[None, :], fam_fm.floors[None, :], fam_fm.rule)[0],
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
        A :class:`BootstrapResult` (simultaneous intervals from its replicates by the methods of
        :data:`INTERVAL_METHODS`; see "Intervals" above and :mod:`audit.simultaneous`) or a
        :class:`GroupRates` (point values, intervals NaN).
    alpha:
        FMR weight of FDR and GARBE, in [0, 1]; recorded in the result.
    floor:
        Floor of the max/min ratios (see :func:`max_min_ratio`); None: rule of three per group.
        The floors are fixed at their point values in every replicate.
    groups:
        Groups to compare (e.g. the rankable ones from :func:`rankable_groups`); default all.
        Groups whose FMR or FNMR is undefined (no comparisons) are always left out, and listed
        in :attr:`DisparitySummary.excluded`.
    comparisons, n_permutations, seed:
        The comparison table the rates came from, for the permutation test ("Permutation test"
        in the module docstring); its label shuffles and their seed (default: the bootstrap's
        seed, or 0 for a :class:`GroupRates`).

    Returns
    -------
    DisparitySummary
    """
    a = check_alpha(alpha)
    fnmr_reps, fmr_reps, confidence, n_boot, boot_seed = _replicates_of(result)
    kept, excluded = _select_groups(result.by_group, groups)
    notes: list[str] = []
    if excluded:
        notes.append("left out: " + "; ".join(f"{g} ({why})" for g, why in excluded.items()))
    if len(kept) < 2:
        notes.append(f"{len(kept)} group(s) with defined rates: nothing to compare")
        empty = MaxMinRatio(math.nan, None, None, (), "rule_of_three" if floor is None else "fixed")
        return DisparitySummary(
            threshold=float(result.threshold),
            alpha=a, confidence=confidence, n_boot=n_boot, fnmr_ratio=empty, fmr_ratio=empty,
            _groups=tuple(kept), _excluded=excluded, _table=_empty_table(), _notes=tuple(notes),
        )
    table, fnmr_ratio, fmr_ratio = _measure_table(
        result.by_group.loc[kept], kept, fnmr_reps, fmr_reps, floor, a, confidence, n_boot, notes
    )
    permutation = None
    if comparisons is not None:
        permutation = permutation_test(
            comparisons, float(result.threshold), kept, n_permutations=n_permutations,
            seed=boot_seed if seed is None else seed,
        )
        notes.append(_permutation_note(permutation))
    return DisparitySummary(
        threshold=float(result.threshold), alpha=a, confidence=confidence, n_boot=n_boot,
        fnmr_ratio=fnmr_ratio, fmr_ratio=fmr_ratio, _groups=tuple(kept), _excluded=excluded,
        _table=table, _notes=tuple(notes), permutation=permutation,
    )


def _measure_table(
    rows: pd.DataFrame,
    kept: list[str],
    fnmr_reps: pd.DataFrame | None,
    fmr_reps: pd.DataFrame | None,
    floor: float | None,
    a: float,
    confidence: float,
    n_boot: int,
    notes: list[str],
) -> tuple[pd.DataFrame, MaxMinRatio, MaxMinRatio]:
    """Every measure's estimate, extreme groups and interval (when replicates exist) for the
    compared groups' ``rows`` -> (table, FNMR ratio, FMR ratio); appends its notes to ``notes``.
    """
    table = _empty_table()
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
        notes.extend(_add_intervals(table, point, fam_fm, fam_fnm, a, confidence, defined,
                                    kept, n_boot))
    return table, fnmr_ratio, fmr_ratio


def _replicates_of(
    result: BootstrapResult | GroupRates,
) -> tuple[pd.DataFrame | None, pd.DataFrame | None, float, int, int]:
    """``(fnmr_reps, fmr_reps, confidence, n_boot, seed)`` of a bootstrap result; no replicates,
    NaN confidence, 0 replicates and seed 0 for point rates."""
    if isinstance(result, BootstrapResult):
        return (result.fnmr_replicates, result.fmr_replicates, result.confidence,
                result.n_boot, result.seed)
    if isinstance(result, GroupRates):
        return None, None, math.nan, 0, 0
    raise ValueError(
        f"result must be a BootstrapResult or GroupRates, got {type(result).__name__}"
    )


def _empty_table() -> pd.DataFrame:
    """:attr:`DisparitySummary.table` before any value: NaN estimates and intervals."""
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
    return table


def _add_intervals(
    table: pd.DataFrame, point: np.ndarray, fam_fm: Family, fam_fnm: Family, a: float,
    confidence: float, defined: tuple[bool, bool], kept: list[str], n_boot: int,
) -> list[str]:
    """Fill the simultaneous intervals into ``table``; return the notes on them."""
    notes = []
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
    return notes


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
