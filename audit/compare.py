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

The per-group, overall and disparity differences are computed by :mod:`audit.model_differences`
(where :data:`COMPARE_COLUMNS` and :data:`DISPARITY_COLUMNS` are defined); this module pairs the
tables, runs the two bootstraps and holds the result.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from audit.disparity import DisparitySummary
from audit.disparity_measures import check_alpha
from audit.model_differences import (
    COMPARE_COLUMNS,
    DISPARITY_COLUMNS,
    bounded_notes,
    disparity_differences,
    group_differences,
    kept_groups,
    overall_differences,
)
from audit.rates import error_rates
from audit.uncertainty import BootstrapResult, bootstrap_group_rates

from .frozen import Copied
from .jsonable import plain as _plain

__all__ = ["COMPARE_COLUMNS", "DISPARITY_COLUMNS", "ModelComparison", "compare_models"]

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

    groups = Copied()
    by_group = Copied()
    overall = Copied()
    disparity = Copied()
    disparity_groups = Copied()
    notes = Copied()

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
    comparisons_a, comparisons_b, threshold_a, threshold_b:
        Comparison tables as for :func:`audit.rates.error_rates` (columns ``score``, ``mated``,
        ``group_a``, ``group_b``, ``identity_a``, ``identity_b``): the same pairs scored by two
        FR models, or two audits with the same design; and each table's decision threshold
        (match when ``score >= threshold``). labels: names of A and B for reports.
    paired:
        None (default): paired exactly when both tables hold the same identities with the same
        groups (same audit); True: require that (``ValueError`` otherwise); False: independent
        draws even for shared identities.
    n_boot, seed, confidence:
        Bootstrap replicates, seed (see the module docstring for B's seed) and interval level.
    alpha, floor:
        FMR weight of FDR and GARBE, and the max/min ratio floor, as in
        :func:`audit.disparity.summarize_disparity`.
    groups, disparity_groups:
        Full list of group labels (default: every group in either table), and the groups to
        compute disparity measures over (e.g. the rankable ones; default all groups). Groups
        whose FNMR or FMR is undefined in either table are always left out of the latter.

    Returns
    -------
    ModelComparison

    Raises
    ------
    ValueError
        On the input errors of :func:`audit.uncertainty.bootstrap_group_rates`, ``paired=True``
        with different identities, or bad labels.
    """
    names, a_value, is_paired, labels_g = _checked_arguments(
        comparisons_a, comparisons_b, labels, paired, seed, alpha, groups
    )
    seed_a = int(seed)
    seed_b = seed_a if is_paired else _independent_seed(seed_a)
    boot_a, boot_b = _bootstrap_both(
        (comparisons_a, threshold_a, seed_a), (comparisons_b, threshold_b, seed_b),
        n_boot, confidence, labels_g,
    )
    level = boot_a.confidence
    notes: list[str] = []
    by_group = group_differences(boot_a, boot_b, labels_g, level)
    overall = overall_differences(boot_a, boot_b, level)
    kept = kept_groups(boot_a, boot_b, labels_g, disparity_groups, notes)
    disparity, dis_a, dis_b = disparity_differences(
        boot_a, boot_b, kept, names, a_value, floor, level, notes
    )
    notes.extend(bounded_notes(by_group, labels_g))
    return ModelComparison(
        labels=(names[0], names[1]), threshold_a=float(threshold_a),
        threshold_b=float(threshold_b), paired=is_paired, seed_a=seed_a, seed_b=seed_b,
        n_boot=int(boot_a.n_boot), confidence=level, alpha=a_value,
        bootstrap_a=boot_a, bootstrap_b=boot_b, disparity_a=dis_a, disparity_b=dis_b,
        _groups=labels_g, _by_group=by_group, _overall=overall, _disparity=disparity,
        _disparity_groups=kept, _notes=tuple(notes),
    )


def _bootstrap_both(
    side_a: tuple[pd.DataFrame, float, int],
    side_b: tuple[pd.DataFrame, float, int],
    n_boot: int,
    confidence: float,
    groups: list[str],
) -> tuple[BootstrapResult, BootstrapResult]:
    """Point rates of both tables (A, then B), then each one's identity bootstrap.

    side_a, side_b: ``(comparisons, threshold, seed)`` of each table.
    """
    (table_a, threshold_a, seed_a), (table_b, threshold_b, seed_b) = side_a, side_b
    rates_a = error_rates(table_a, threshold_a, groups=groups)
    rates_b = error_rates(table_b, threshold_b, groups=groups)
    settings: dict[str, Any] = {"n_boot": n_boot, "confidence": confidence, "groups": groups}
    return (
        bootstrap_group_rates(table_a, threshold_a, seed=seed_a, rates=rates_a, **settings),
        bootstrap_group_rates(table_b, threshold_b, seed=seed_b, rates=rates_b, **settings),
    )


def _checked_arguments(
    comparisons_a: pd.DataFrame,
    comparisons_b: pd.DataFrame,
    labels: Sequence[str],
    paired: bool | None,
    seed: int,
    alpha: float,
    groups: Sequence[str] | None,
) -> tuple[tuple[str, ...], float, bool, tuple[str, ...]]:
    """``(names, alpha, is_paired, groups)``: the checked labels of A and B and FDR/GARBE
    weight, whether the identity draws are shared (both tables hold the same identities, or
    ``paired``), and the groups to report (``groups``, default every group found)."""
    names = tuple(str(x) for x in labels)
    if len(names) != 2 or names[0] == names[1]:
        raise ValueError(f"labels must be two different names, got {labels!r}")
    if paired not in (None, True, False):
        raise ValueError(f"paired must be None, True or False, got {paired!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    a_value = check_alpha(alpha)

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

    return names, a_value, is_paired, labels_g
