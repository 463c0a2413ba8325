"""Paired comparison of two FR models, or of two audits with the same design.

Input: two comparison tables, A and B, each scored by one FR model and read at its own decision
threshold (for example each model's threshold at FMR 1e-3). Either

- the **same pairs** scored by two models (one audit, two FR models): the tables share their
  identities, so the bootstrap applies **the same identity draws** to both (a paired bootstrap)
  and the interval of a difference reflects only how the two models disagree on the same faces;
- **two audits with the same design** (e.g. two generator runs): the identities differ, so A and
  B are resampled **independently**.

For every group d (ISO/IEC 19795-1 rates at each table's threshold)::

    diff FNMR_d = FNMR_d(B) - FNMR_d(A)        diff FMR_d = FMR_d(B) - FMR_d(A)

and for each disparity summary of :mod:`audit.disparity` (max/min ratios of FNMR and FMR, the
maximum gaps, the Fairness Discrepancy Rate of de Freitas Pereira & Marcel 2021, the Gini
coefficients and GARBE of Howard et al. 2022) ``measure(B) - measure(A)``, computed over the groups
whose rates are defined in both tables.

Intervals are percentile intervals over the replicate differences ``theta*_b(B) - theta*_a(A)``
of the identity-level (subsets) bootstrap of :func:`audit.uncertainty.bootstrap_group_rates`
(Bolle, Ratha & Pankanti 2004): in the paired case replicate ``b`` of A and of B comes from one
draw of identities, in the independent case from two independent draws. Draws are reproducible:
A uses ``seed``; B uses ``seed`` too when paired (hence the same draws), otherwise
``int(numpy.random.SeedSequence([seed, 1]).generate_state(1)[0])``.

Where a side observed no error in a group its replicates are all 0 and carry no uncertainty, so
the percentile interval of the difference would be too narrow; there the interval is instead the
difference of the two reported intervals, ``[lower_B - upper_A, upper_B - lower_A]`` with ``[0,
3/n]`` (rule of three) for the error-free side (conservative), marked ``"bounds"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from audit.disparity import (
    DEFINITIONS,
    MEASURES,
    DisparitySummary,
    _check_alpha,
    _floor_vector,
    _gini,
    _max_gap,
    _ratio_rows,
    summarize_disparity,
)
from audit.rates import error_rates
from audit.uncertainty import BootstrapResult, bootstrap_group_rates, percentile_interval

from .jsonable import plain as _plain

__all__ = ["COMPARE_COLUMNS", "DISPARITY_COLUMNS", "ModelComparison", "compare_models"]

_RATES = (
    # rate, errors column, trials column
    ("fnmr", "false_non_matches", "n_mated"),
    ("fmr", "false_matches", "n_nonmated"),
)

#: Columns of :attr:`ModelComparison.by_group`, in order.
COMPARE_COLUMNS: tuple[str, ...] = tuple(
    col
    for rate, errors, trials in _RATES
    for col in (
        f"{trials}_a",
        f"{errors}_a",
        f"{rate}_a",
        f"{rate}_a_lower",
        f"{rate}_a_upper",
        f"{trials}_b",
        f"{errors}_b",
        f"{rate}_b",
        f"{rate}_b_lower",
        f"{rate}_b_upper",
        f"{rate}_diff",
        f"{rate}_diff_lower",
        f"{rate}_diff_upper",
        f"{rate}_diff_n_valid",
        f"{rate}_diff_interval",
    )
)

#: Columns of :attr:`ModelComparison.disparity`, in order.
DISPARITY_COLUMNS: tuple[str, ...] = (
    "estimate_a",
    "estimate_b",
    "diff",
    "diff_lower",
    "diff_upper",
    "n_valid",
    "definition",
)

_COLUMNS = ("score", "mated", "group_a", "group_b", "identity_a", "identity_b")


@dataclass(frozen=True, eq=False)
class ModelComparison:
    """Per-group FNMR/FMR of two tables (A, B), their differences B - A and disparity changes.

    Built by :func:`compare_models`; immutable, accessors return copies.

    Attributes / accessors
    ----------------------
    labels:
        Names of A and B (e.g. the two FR model names).
    threshold_a, threshold_b:
        The decision thresholds of A and B (match when ``score >= threshold``).
    paired:
        True when the same identity draws were applied to A and B.
    seed_a, seed_b, n_boot, confidence, alpha:
        Seeds of the two bootstraps (equal when paired), replicates, interval level, and the
        FMR weight of FDR and GARBE.
    groups:
        Group labels (index of :attr:`by_group`).
    by_group:
        DataFrame indexed by ``group`` with columns :data:`COMPARE_COLUMNS`: per side the counts,
        the rate and its interval (as in :attr:`BootstrapResult.by_group`), then ``*_diff``
        (B - A), ``*_diff_lower``/``*_diff_upper``, ``*_diff_n_valid`` (replicates where both
        rates are defined) and ``*_diff_interval`` (``"bootstrap"``, ``"bounds"`` when a side
        observed no error, or ``"undefined"``).
    overall:
        dict with ``fnmr_a``, ``fnmr_b``, ``fnmr_diff``, ``fnmr_diff_lower``,
        ``fnmr_diff_upper``, ``fnmr_diff_n_valid``, ``fnmr_diff_interval`` and the ``fmr_*``
        counterparts over all comparisons (overall FMR over every non-mated pair).
    disparity:
        DataFrame indexed by ``measure`` (:data:`audit.disparity.MEASURES`) with columns
        :data:`DISPARITY_COLUMNS`; estimates as in :func:`audit.disparity.summarize_disparity`
        over :attr:`disparity_groups`, ``diff = estimate_b - estimate_a``.
    disparity_groups:
        Groups the disparity measures were computed over (rates defined in both tables).
    bootstrap_a, bootstrap_b:
        The two :class:`audit.uncertainty.BootstrapResult` objects.
    disparity_a, disparity_b:
        The two :class:`audit.disparity.DisparitySummary` objects (None with < 2 groups).
    notes:
        Plain-words caveats for reports.
    """

    labels: tuple[str, str]
    threshold_a: float
    threshold_b: float
    paired: bool
    seed_a: int
    seed_b: int
    n_boot: int
    confidence: float
    alpha: float
    bootstrap_a: BootstrapResult = field(repr=False)
    bootstrap_b: BootstrapResult = field(repr=False)
    disparity_a: DisparitySummary | None = field(repr=False)
    disparity_b: DisparitySummary | None = field(repr=False)
    _groups: tuple[str, ...] = field(repr=True)
    _by_group: pd.DataFrame = field(repr=False)
    _overall: dict[str, Any] = field(repr=False)
    _disparity: pd.DataFrame = field(repr=False)
    _disparity_groups: tuple[str, ...] = field(repr=False)
    _notes: tuple[str, ...] = field(repr=False)

    @property
    def groups(self) -> tuple[str, ...]:
        return self._groups

    @property
    def by_group(self) -> pd.DataFrame:
        return self._by_group.copy(deep=True)

    @property
    def overall(self) -> dict[str, Any]:
        return dict(self._overall)

    @property
    def disparity(self) -> pd.DataFrame:
        return self._disparity.copy(deep=True)

    @property
    def disparity_groups(self) -> tuple[str, ...]:
        return self._disparity_groups

    @property
    def notes(self) -> tuple[str, ...]:
        return self._notes

    @property
    def method(self) -> str:
        """One paragraph describing how the intervals were made, for reports."""
        a, b = self.labels
        how = (
            "the same identity draws for both (paired: the two tables share their identities)"
            if self.paired
            else f"independent identity draws for each (seeds {self.seed_a} and {self.seed_b})"
        )
        return (
            f"Differences are {b} minus {a}, each read at its own threshold "
            f"({self.threshold_b:.6g} and {self.threshold_a:.6g}). "
            f"{100 * self.confidence:g}% percentile intervals of the differences from "
            f"{self.n_boot} identity-bootstrap replicates (seed {self.seed_a}) with {how}, "
            "rebuilding the comparison set from the drawn identities (subsets bootstrap, Bolle, "
            "Ratha & Pankanti 2004; ISO/IEC 19795-1). Where a side observed no error in a group "
            "the interval is the difference of the two reported intervals, with [0, 3/n] "
            f"(rule of three) for that side. FDR and GARBE use alpha = {self.alpha:g}."
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable values (NaN -> None)::

            {"labels": [a, b], "threshold_a", "threshold_b", "paired", "seed_a", "seed_b",
             "n_boot", "confidence", "alpha", "method", "groups",
             "by_group": {group: {<COMPARE_COLUMNS>}},
             "overall": {...},
             "disparity_groups": [...],
             "disparity": {measure: {<DISPARITY_COLUMNS>}},
             "notes": [...]}
        """
        return {
            "labels": list(self.labels),
            "threshold_a": _plain(self.threshold_a),
            "threshold_b": _plain(self.threshold_b),
            "paired": bool(self.paired),
            "seed_a": int(self.seed_a),
            "seed_b": int(self.seed_b),
            "n_boot": int(self.n_boot),
            "confidence": float(self.confidence),
            "alpha": float(self.alpha),
            "method": self.method,
            "groups": [str(g) for g in self._groups],
            "by_group": {
                str(g): {c: _plain(self._by_group.at[g, c]) for c in COMPARE_COLUMNS}
                for g in self._groups
            },
            "overall": {k: _plain(v) for k, v in self._overall.items()},
            "disparity_groups": list(self._disparity_groups),
            "disparity": {
                m: {c: _plain(self._disparity.at[m, c]) for c in DISPARITY_COLUMNS}
                for m in self._disparity.index
            },
            "notes": list(self._notes),
        }


# --- helpers ----------------------------------------------------------------------------------


def _identity_sets(comparisons: pd.DataFrame) -> set[tuple[str, int]]:
    """The (group, identity) pairs on either side of any comparison."""
    missing = [c for c in _COLUMNS if c not in comparisons.columns]
    if missing:
        raise ValueError(f"comparisons is missing column(s) {missing}; expected {list(_COLUMNS)}")
    sides = pd.concat(
        [
            comparisons[["group_a", "identity_a"]].set_axis(["group", "identity"], axis=1),
            comparisons[["group_b", "identity_b"]].set_axis(["group", "identity"], axis=1),
        ]
    ).drop_duplicates()
    return set(zip(sides["group"].astype(str), sides["identity"].astype(np.int64), strict=True))


def _independent_seed(seed: int) -> int:
    return int(np.random.SeedSequence([int(seed), 1]).generate_state(1)[0])


def _difference(
    reps_a: np.ndarray,
    reps_b: np.ndarray,
    point_a: np.ndarray,
    point_b: np.ndarray,
    bounds_a: tuple[np.ndarray, np.ndarray],
    bounds_b: tuple[np.ndarray, np.ndarray],
    kind_a: np.ndarray,
    kind_b: np.ndarray,
    confidence: float,
) -> dict[str, np.ndarray]:
    """Point difference, interval, n_valid and interval kind per column (B - A)."""
    diff_reps = np.asarray(reps_b, dtype=np.float64) - np.asarray(reps_a, dtype=np.float64)
    lower, upper, _, n_valid = percentile_interval(diff_reps, confidence)
    point = np.asarray(point_b, dtype=np.float64) - np.asarray(point_a, dtype=np.float64)
    kind = np.where(np.isnan(point), "undefined", "bootstrap").astype(object)
    zero_side = ((kind_a == "rule_of_three") | (kind_b == "rule_of_three")) & ~np.isnan(point)
    # A side without errors has constant-zero replicates: use the difference of the intervals.
    lower = np.where(zero_side, bounds_b[0] - bounds_a[1], lower)
    upper = np.where(zero_side, bounds_b[1] - bounds_a[0], upper)
    kind[zero_side] = "bounds"
    lower = np.where(np.isnan(point), np.nan, lower)
    upper = np.where(np.isnan(point), np.nan, upper)
    return {"diff": point, "lower": lower, "upper": upper, "n_valid": n_valid, "kind": kind}


def _measure_rows(
    fmr: np.ndarray,
    fnmr: np.ndarray,
    point_fmr: pd.Series,
    point_fnmr: pd.Series,
    n_nonmated: pd.Series,
    n_mated: pd.Series,
    alpha: float,
    floor: float | None,
) -> np.ndarray:
    """(rows, len(MEASURES)) disparity measures for rate matrices (rows, groups).

    The same kernels and floors (fixed at the point rates) as
    :func:`audit.disparity.summarize_disparity`, so row values equal its estimates and
    replicate values.
    """
    fn_floor, rule_fn = _floor_vector(point_fnmr, floor, n_mated)
    fm_floor, rule_fm = _floor_vector(point_fmr, floor, n_nonmated)
    gap_fm, gap_fnm = _max_gap(fmr), _max_gap(fnmr)
    g_fm, g_fnm = _gini(fmr), _gini(fnmr)
    values = {
        "fnmr_max_min_ratio": _ratio_rows(fnmr, fn_floor[None, :], rule_fn),
        "fmr_max_min_ratio": _ratio_rows(fmr, fm_floor[None, :], rule_fm),
        "fmr_max_gap": gap_fm,
        "fnmr_max_gap": gap_fnm,
        "fdr": 1.0 - (alpha * gap_fm + (1.0 - alpha) * gap_fnm),
        "fmr_gini": g_fm,
        "fnmr_gini": g_fnm,
        "garbe": alpha * g_fm + (1.0 - alpha) * g_fnm,
    }
    return np.column_stack([values[m] for m in MEASURES])


# --- public function --------------------------------------------------------------------------


def compare_models(
    comparisons_a: pd.DataFrame,
    threshold_a: float,
    comparisons_b: pd.DataFrame,
    threshold_b: float,
    *,
    labels: Sequence[str] = ("A", "B"),
    paired: bool | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    alpha: float = 0.5,
    floor: float | None = None,
    groups: Sequence[str] | None = None,
    disparity_groups: Sequence[str] | None = None,
) -> ModelComparison:
    """Per-group FNMR and FMR of A and B, B - A with bootstrap intervals, disparity changes.

    Parameters
    ----------
    comparisons_a, comparisons_b:
        Comparison tables as for :func:`audit.rates.error_rates` (columns ``score``, ``mated``,
        ``group_a``, ``group_b``, ``identity_a``, ``identity_b``): the same pairs scored by two
        FR models, or two audits with the same design.
    threshold_a, threshold_b:
        Each table's decision threshold (match when ``score >= threshold``).
    labels:
        Names of A and B for reports.
    paired:
        None (default): paired exactly when both tables hold the same identities with the same
        groups (same audit); True: require that (``ValueError`` otherwise); False: independent
        draws even for shared identities.
    n_boot, seed, confidence:
        Bootstrap replicates, seed (see the module docstring for B's seed) and interval level.
    alpha, floor:
        FMR weight of FDR and GARBE, and the max/min ratio floor, as in
        :func:`audit.disparity.summarize_disparity`.
    groups:
        Full list of group labels (default: every group in either table).
    disparity_groups:
        Groups to compute disparity measures over (e.g. the rankable ones); default all groups.
        Groups whose FNMR or FMR is undefined in either table are always left out.

    Returns
    -------
    ModelComparison

    Raises
    ------
    ValueError
        On the input errors of :func:`audit.uncertainty.bootstrap_group_rates`, ``paired=True``
        with different identities, or bad labels.
    """
    names = tuple(str(x) for x in labels)
    if len(names) != 2 or names[0] == names[1]:
        raise ValueError(f"labels must be two different names, got {labels!r}")
    if paired not in (None, True, False):
        raise ValueError(f"paired must be None, True or False, got {paired!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    a_value = _check_alpha(alpha)

    ids_a, ids_b = _identity_sets(comparisons_a), _identity_sets(comparisons_b)
    same = ids_a == ids_b and bool(ids_a)
    if paired is True and not same:
        raise ValueError(
            "paired=True needs both tables to hold the same identities with the same groups; "
            f"{len(ids_a ^ ids_b)} (group, identity) pairs are in only one of them"
        )
    is_paired = same if paired is None else bool(paired)

    if groups is None:
        found = {g for g, _ in ids_a} | {g for g, _ in ids_b}
        labels_g: tuple[str, ...] = tuple(sorted(found))
    else:
        labels_g = tuple(dict.fromkeys(str(g) for g in groups))

    seed_a = int(seed)
    seed_b = seed_a if is_paired else _independent_seed(seed_a)
    rates_a = error_rates(comparisons_a, threshold_a, groups=labels_g)
    rates_b = error_rates(comparisons_b, threshold_b, groups=labels_g)
    boot_a = bootstrap_group_rates(
        comparisons_a, threshold_a, n_boot=n_boot, seed=seed_a, confidence=confidence,
        groups=labels_g, rates=rates_a,
    )
    boot_b = bootstrap_group_rates(
        comparisons_b, threshold_b, n_boot=n_boot, seed=seed_b, confidence=confidence,
        groups=labels_g, rates=rates_b,
    )
    level = boot_a.confidence
    notes: list[str] = []

    # --- per group and overall ------------------------------------------------------------
    by_a, by_b = boot_a.by_group, boot_b.by_group
    columns: dict[str, Any] = {}
    for rate, errors, trials in _RATES:
        for side, frame in (("a", by_a), ("b", by_b)):
            columns[f"{trials}_{side}"] = frame[trials].to_numpy()
            columns[f"{errors}_{side}"] = frame[errors].to_numpy()
            for suffix in ("", "_lower", "_upper"):
                columns[f"{rate}_{side}{suffix}"] = frame[f"{rate}{suffix}"].to_numpy()
        reps = {"fnmr": (boot_a.fnmr_replicates, boot_b.fnmr_replicates),
                "fmr": (boot_a.fmr_replicates, boot_b.fmr_replicates)}[rate]
        d = _difference(
            reps[0].to_numpy(), reps[1].to_numpy(),
            by_a[rate].to_numpy(), by_b[rate].to_numpy(),
            (by_a[f"{rate}_lower"].to_numpy(), by_a[f"{rate}_upper"].to_numpy()),
            (by_b[f"{rate}_lower"].to_numpy(), by_b[f"{rate}_upper"].to_numpy()),
            by_a[f"{rate}_interval"].to_numpy(), by_b[f"{rate}_interval"].to_numpy(),
            level,
        )
        columns[f"{rate}_diff"] = d["diff"]
        columns[f"{rate}_diff_lower"] = d["lower"]
        columns[f"{rate}_diff_upper"] = d["upper"]
        columns[f"{rate}_diff_n_valid"] = d["n_valid"]
        columns[f"{rate}_diff_interval"] = d["kind"]
    by_group = pd.DataFrame(
        {c: columns[c] for c in COMPARE_COLUMNS}, index=pd.Index(labels_g, name="group")
    )

    ov_a, ov_b = boot_a.overall, boot_b.overall
    reps_a, reps_b = boot_a.overall_replicates, boot_b.overall_replicates
    overall: dict[str, Any] = {}
    for rate, _, _ in _RATES:
        d = _difference(
            reps_a[[rate]].to_numpy(), reps_b[[rate]].to_numpy(),
            np.array([ov_a[rate]]), np.array([ov_b[rate]]),
            (np.array([ov_a[f"{rate}_lower"]]), np.array([ov_a[f"{rate}_upper"]])),
            (np.array([ov_b[f"{rate}_lower"]]), np.array([ov_b[f"{rate}_upper"]])),
            np.array([ov_a[f"{rate}_interval"]]), np.array([ov_b[f"{rate}_interval"]]),
            level,
        )
        overall.update({
            f"{rate}_a": ov_a[rate],
            f"{rate}_b": ov_b[rate],
            f"{rate}_diff": float(d["diff"][0]),
            f"{rate}_diff_lower": float(d["lower"][0]),
            f"{rate}_diff_upper": float(d["upper"][0]),
            f"{rate}_diff_n_valid": int(d["n_valid"][0]),
            f"{rate}_diff_interval": str(d["kind"][0]),
        })

    # --- disparity --------------------------------------------------------------------------
    chosen = labels_g if disparity_groups is None else tuple(
        dict.fromkeys(str(g) for g in disparity_groups)
    )
    unknown = sorted(set(chosen) - set(labels_g))
    if unknown:
        raise ValueError(f"disparity_groups not among the groups: {unknown}")
    kept = tuple(
        g for g in chosen
        if min(by_a.at[g, "n_mated"], by_a.at[g, "n_nonmated"],
               by_b.at[g, "n_mated"], by_b.at[g, "n_nonmated"]) > 0
    )
    dropped = [g for g in chosen if g not in kept]
    if dropped:
        notes.append(
            "left out of the disparity comparison (FNMR or FMR undefined in A or B): "
            + ", ".join(dropped)
        )
    disparity = pd.DataFrame(
        np.nan, index=pd.Index(MEASURES, name="measure"), columns=list(DISPARITY_COLUMNS[:-1])
    )
    disparity["definition"] = [DEFINITIONS[m] for m in MEASURES]
    dis_a = dis_b = None
    if len(kept) >= 2:
        dis_a = summarize_disparity(boot_a, alpha=alpha, floor=floor, groups=list(kept))
        dis_b = summarize_disparity(boot_b, alpha=alpha, floor=floor, groups=list(kept))
        k = list(kept)

        def rows(boot: BootstrapResult, fm: np.ndarray, fnm: np.ndarray) -> np.ndarray:
            bg = boot.by_group
            return _measure_rows(
                fm, fnm, bg.loc[k, "fmr"].astype(np.float64),
                bg.loc[k, "fnmr"].astype(np.float64), bg.loc[k, "n_nonmated"],
                bg.loc[k, "n_mated"], a_value, floor,
            )

        rep_a = rows(boot_a, boot_a.fmr_replicates[k].to_numpy(),
                     boot_a.fnmr_replicates[k].to_numpy())
        rep_b = rows(boot_b, boot_b.fmr_replicates[k].to_numpy(),
                     boot_b.fnmr_replicates[k].to_numpy())
        est_a = dis_a.table["estimate"].to_numpy(dtype=np.float64)
        est_b = dis_b.table["estimate"].to_numpy(dtype=np.float64)
        lower, upper, _, n_valid = percentile_interval(rep_b - rep_a, level)
        disparity["estimate_a"] = est_a
        disparity["estimate_b"] = est_b
        disparity["diff"] = est_b - est_a
        disparity["diff_lower"] = np.where(np.isnan(est_b - est_a), np.nan, lower)
        disparity["diff_upper"] = np.where(np.isnan(est_b - est_a), np.nan, upper)
        disparity["n_valid"] = n_valid
        for m, n in zip(MEASURES, n_valid, strict=True):
            if n < boot_a.n_boot and not math.isnan(disparity.at[m, "diff"]):
                notes.append(
                    f"{m}: undefined in A or B in {boot_a.n_boot - int(n)} of "
                    f"{boot_a.n_boot} replicates; left out of the interval of the difference"
                )
        for side, summary in ((names[0], dis_a), (names[1], dis_b)):
            notes.extend(f"{side}: {note}" for note in summary.notes)
    else:
        disparity["n_valid"] = 0
        notes.append(
            f"{len(kept)} group(s) with defined rates in both tables: no disparity comparison"
        )
    disparity["n_valid"] = disparity["n_valid"].astype(np.int64)
    disparity = disparity[list(DISPARITY_COLUMNS)]

    for rate in ("fnmr", "fmr"):
        bounded = [g for g in labels_g if by_group.at[g, f"{rate}_diff_interval"] == "bounds"]
        if bounded:
            notes.append(
                f"{rate.upper()} difference for {', '.join(bounded)}: one side observed no "
                "error, so the interval is the (conservative) difference of the two intervals"
            )

    return ModelComparison(
        labels=(names[0], names[1]),
        threshold_a=float(threshold_a),
        threshold_b=float(threshold_b),
        paired=is_paired,
        seed_a=seed_a,
        seed_b=seed_b,
        n_boot=int(boot_a.n_boot),
        confidence=level,
        alpha=a_value,
        bootstrap_a=boot_a,
        bootstrap_b=boot_b,
        disparity_a=dis_a,
        disparity_b=dis_b,
        _groups=labels_g,
        _by_group=by_group,
        _overall=overall,
        _disparity=disparity,
        _disparity_groups=kept,
        _notes=tuple(notes),
    )
