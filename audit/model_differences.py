"""The differences B - A of two bootstrapped comparison tables, per group and in disparity.

The steps of :func:`audit.compare.compare_models` once both tables are bootstrapped
(:func:`audit.uncertainty.bootstrap_group_rates`, paired or independent draws):

- :func:`group_differences`: per group, each side's counts, rate and interval and
  ``diff = rate(B) - rate(A)`` with the percentile interval of the replicate differences
  ``theta*_b(B) - theta*_a(A)`` (Efron & Tibshirani 1993, ch. 13; subsets bootstrap of Bolle,
  Ratha & Pankanti 2004); :func:`overall_differences` the same over all comparisons. Where a
  side observed no error its replicates are all 0, so the interval is the difference of the two
  reported intervals ``[lower_B - upper_A, upper_B - lower_A]`` (rule of three ``[0, 3/n]`` on
  the error-free side), marked ``"bounds"``.
- :func:`disparity_differences`: each measure of :mod:`audit.disparity_measures` (max/min ratios,
  gaps, FDR of de Freitas Pereira & Marcel 2021, Gini and GARBE of Howard et al. 2022) on A and
  B over the groups defined in both, with the interval of the replicate differences.

Columns are :data:`COMPARE_COLUMNS` and :data:`DISPARITY_COLUMNS` (both also importable from
:mod:`audit.compare`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from audit.disparity import DisparitySummary, summarize_disparity
from audit.disparity_measures import (
    DEFINITIONS,
    MEASURES,
    floor_vector,
    gini_rows,
    max_gap_rows,
    ratio_rows,
)
from audit.resampling import percentile_interval
from audit.uncertainty import BootstrapResult

__all__ = [
    "COMPARE_COLUMNS",
    "DISPARITY_COLUMNS",
    "disparity_differences",
    "bounded_notes",
    "group_differences",
    "kept_groups",
    "overall_differences",
]

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
    fn_floor, rule_fn = floor_vector(point_fnmr, floor, n_mated)
    fm_floor, rule_fm = floor_vector(point_fmr, floor, n_nonmated)
    gap_fm, gap_fnm = max_gap_rows(fmr), max_gap_rows(fnmr)
    g_fm, g_fnm = gini_rows(fmr), gini_rows(fnmr)
    values = {
        "fnmr_max_min_ratio": ratio_rows(fnmr, fn_floor[None, :], rule_fn),
        "fmr_max_min_ratio": ratio_rows(fmr, fm_floor[None, :], rule_fm),
        "fmr_max_gap": gap_fm,
        "fnmr_max_gap": gap_fnm,
        "fdr": 1.0 - (alpha * gap_fm + (1.0 - alpha) * gap_fnm),
        "fmr_gini": g_fm,
        "fnmr_gini": g_fnm,
        "garbe": alpha * g_fm + (1.0 - alpha) * g_fnm,
    }
    return np.column_stack([values[m] for m in MEASURES])


def group_differences(
    boot_a: BootstrapResult, boot_b: BootstrapResult, groups: tuple[str, ...], level: float
) -> pd.DataFrame:
    """:attr:`audit.compare.ModelComparison.by_group`: indexed by ``group``, columns
    :data:`COMPARE_COLUMNS` (each side's counts, rate and interval, then the difference)."""
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
    return pd.DataFrame(
        {c: columns[c] for c in COMPARE_COLUMNS}, index=pd.Index(groups, name="group")
    )


def overall_differences(
    boot_a: BootstrapResult, boot_b: BootstrapResult, level: float
) -> dict[str, Any]:
    """:attr:`audit.compare.ModelComparison.overall`: ``fnmr_a``, ``fnmr_b``, ``fnmr_diff``
    with its interval, ``n_valid`` and kind, and the ``fmr_*`` counterparts."""
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
    return overall


def kept_groups(
    boot_a: BootstrapResult,
    boot_b: BootstrapResult,
    groups: tuple[str, ...],
    disparity_groups: Any,
    notes: list[str],
) -> tuple[str, ...]:
    """The groups of ``disparity_groups`` (default all) whose FNMR and FMR are defined in both
    tables; a note in ``notes`` names the others."""
    by_a, by_b = boot_a.by_group, boot_b.by_group
    chosen = groups if disparity_groups is None else tuple(
        dict.fromkeys(str(g) for g in disparity_groups)
    )
    unknown = sorted(set(chosen) - set(groups))
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
    return kept


def disparity_differences(
    boot_a: BootstrapResult,
    boot_b: BootstrapResult,
    kept: tuple[str, ...],
    names: tuple[str, str],
    alpha: float,
    floor: float | None,
    level: float,
    notes: list[str],
) -> tuple[pd.DataFrame, DisparitySummary | None, DisparitySummary | None]:
    """:attr:`audit.compare.ModelComparison.disparity` (indexed by ``measure``, columns
    :data:`DISPARITY_COLUMNS`) over ``kept``, and the two sides' summaries (None with fewer
    than 2 groups); caveats are appended to ``notes``."""
    disparity = pd.DataFrame(
        np.nan, index=pd.Index(MEASURES, name="measure"), columns=list(DISPARITY_COLUMNS[:-1])
    )
    disparity["definition"] = [DEFINITIONS[m] for m in MEASURES]
    dis_a = dis_b = None
    if len(kept) >= 2:
        dis_a = summarize_disparity(boot_a, alpha=alpha, floor=floor, groups=list(kept))
        dis_b = summarize_disparity(boot_b, alpha=alpha, floor=floor, groups=list(kept))
        _fill_differences(disparity, boot_a, boot_b, dis_a, dis_b, list(kept), alpha, floor,
                          level, notes)
        for side, summary in ((names[0], dis_a), (names[1], dis_b)):
            notes.extend(f"{side}: {note}" for note in summary.notes)
    else:
        disparity["n_valid"] = 0
        notes.append(
            f"{len(kept)} group(s) with defined rates in both tables: no disparity comparison"
        )
    disparity["n_valid"] = disparity["n_valid"].astype(np.int64)
    return disparity[list(DISPARITY_COLUMNS)], dis_a, dis_b


def _fill_differences(
    disparity: pd.DataFrame,
    boot_a: BootstrapResult,
    boot_b: BootstrapResult,
    dis_a: DisparitySummary,
    dis_b: DisparitySummary,
    k: list[str],
    alpha: float,
    floor: float | None,
    level: float,
    notes: list[str],
) -> None:
    """Estimates of both sides, their difference and its interval, into ``disparity``."""

    def rows(boot: BootstrapResult, fm: np.ndarray, fnm: np.ndarray) -> np.ndarray:
        bg = boot.by_group
        return _measure_rows(
            fm, fnm, bg.loc[k, "fmr"].astype(np.float64),
            bg.loc[k, "fnmr"].astype(np.float64), bg.loc[k, "n_nonmated"],
            bg.loc[k, "n_mated"], alpha, floor,
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


def bounded_notes(by_group: pd.DataFrame, groups: tuple[str, ...]) -> list[str]:
    """Notes on the groups whose difference interval is the difference of the two intervals."""
    notes = []
    for rate in ("fnmr", "fmr"):
        bounded = [g for g in groups if by_group.at[g, f"{rate}_diff_interval"] == "bounds"]
        if bounded:
            notes.append(
                f"{rate.upper()} difference for {', '.join(bounded)}: one side observed no "
                "error, so the interval is the (conservative) difference of the two intervals"
            )
    return notes
