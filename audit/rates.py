"""Decision threshold at a target false-match rate, and error rates per demographic group.

Definitions (ISO/IEC 19795-1, with the convention that a comparison *matches* when its
similarity score is at or above the threshold ``t``):

- FMR(t)  = (non-mated comparisons with score >= t) / (non-mated comparisons)
- FNMR(t) = (mated comparisons with score < t) / (mated comparisons)

One global threshold per FR model is set on all non-mated comparisons (:func:`threshold_at_fmr`);
per-group rates are then read at that same threshold (:func:`error_rates`). A group's FMR uses
only non-mated pairs with both images in that group (demographically matched impostors); the
cross-group matrix gives FMR for every pair of groups, as in NIST FRVT demographic reports.
The threshold itself is chosen in :mod:`audit.thresholds` (importable from here).

When no error is observed in ``n`` trials, the rate is reported as 0 together with the "rule of
three" 95% upper bound ``3 / n`` (:func:`rule_of_three`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .frozen import Copied
from .jsonable import plain as _plain
from .thresholds import ThresholdChoice, threshold_at_fmr

__all__ = [
    "BY_GROUP_COLUMNS",
    "GroupRates",
    "ThresholdChoice",
    "error_rates",
    "rule_of_three",
    "threshold_at_fmr",
]

#: Columns of :attr:`GroupRates.by_group`, in order.
BY_GROUP_COLUMNS: tuple[str, ...] = (
    "n_mated",
    "false_non_matches",
    "fnmr",
    "fnmr_upper95",
    "n_identities",
    "n_nonmated",
    "false_matches",
    "fmr",
    "fmr_upper95",
)

_COMPARISON_COLUMNS = ("score", "mated", "group_a", "group_b", "identity_a", "identity_b")


# --- rule of three ----------------------------------------------------------------------------


def rule_of_three(n: int) -> float:
    """Approximate 95% upper confidence bound on a rate when 0 errors were seen in ``n`` trials.

    Returns ``min(3 / n, 1)``. The exact one-sided 95% binomial bound is ``1 - 0.05 ** (1 / n)``,
    which ``3 / n`` approximates from above, closely for n >= 30 (Hanley & Lippman-Hand 1983,
    "If nothing goes wrong, is everything all right?", JAMA 249:1743; Jovanovic & Levy 1997,
    "A look at the rule of three", The American Statistician 51:137). It is capped at 1 because
    it bounds a probability (3/n exceeds 1 for n < 3).

    Raises
    ------
    ValueError
        If ``n`` is not a positive integer (there is no bound without trials).
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"rule_of_three needs a positive whole number of trials, got {n!r}")
    return min(3.0 / float(n), 1.0)


# --- per-group rates --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class GroupRates:
    """Error rates at one threshold, overall, per group and across groups.

    Built by :func:`error_rates`; computed once and immutable. Every accessor returns a fresh
    copy, so editing what it returns never changes the result object.

    Attributes / accessors
    ----------------------
    threshold:
        The threshold the rates were read at (match when ``score >= threshold``).
    groups:
        Group labels, sorted; the index of :attr:`by_group` and of the cross-group frames.
    overall:
        dict with ``n_mated``, ``false_non_matches``, ``fnmr``, ``fnmr_upper95``, ``n_nonmated``,
        ``false_matches``, ``fmr``, ``fmr_upper95`` over all comparisons. FMR here uses every
        non-mated pair, within- and cross-group.
    by_group:
        DataFrame indexed by ``group`` with columns :data:`BY_GROUP_COLUMNS`.
    cross_group_fmr:
        Square symmetric DataFrame (groups x groups) of FMR over non-mated pairs with one image
        in each of the two groups; the diagonal equals ``by_group["fmr"]``. NaN where there are
        no such pairs.
    cross_group_counts:
        Same shape, number of non-mated pairs per cell (int).
    cross_group_false_matches:
        Same shape, number of false matches per cell (int).
    """

    threshold: float
    _groups: tuple[str, ...] = field(repr=True)
    _overall: dict[str, float | int] = field(repr=False)
    _by_group: pd.DataFrame = field(repr=False)
    _cross_fmr: pd.DataFrame = field(repr=False)
    _cross_counts: pd.DataFrame = field(repr=False)
    _cross_false_matches: pd.DataFrame = field(repr=False)

    groups = Copied()
    overall = Copied()
    by_group = Copied()
    cross_group_fmr = Copied("_cross_fmr")
    cross_group_counts = Copied("_cross_counts")
    cross_group_false_matches = Copied("_cross_false_matches")

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable summary (``json.dumps(..., allow_nan=False)`` works).

        Undefined rates and bounds (NaN) become ``None``. Layout::

            {"threshold": float,
             "overall": {<overall keys>},
             "by_group": {group: {<BY_GROUP_COLUMNS>}},
             "cross_group": {"groups": [...], "fmr": [[...]], "n_nonmated": [[...]],
                             "false_matches": [[...]]}}

        Matrices are row-major in the order of ``groups``.
        """
        by_group = {
            str(g): {col: _plain(self._by_group.at[g, col]) for col in BY_GROUP_COLUMNS}
            for g in self._groups
        }
        return {
            "threshold": _plain(self.threshold),
            "overall": {k: _plain(v) for k, v in self._overall.items()},
            "by_group": by_group,
            "cross_group": {
                "groups": [str(g) for g in self._groups],
                "fmr": [[_plain(v) for v in row] for row in self._cross_fmr.to_numpy()],
                "n_nonmated": [[_plain(v) for v in row] for row in self._cross_counts.to_numpy()],
                "false_matches": [
                    [_plain(v) for v in row] for row in self._cross_false_matches.to_numpy()
                ],
            },
        }


def error_rates(
    comparisons: pd.DataFrame, threshold: float, *, groups: Sequence[str] | None = None
) -> GroupRates:
    """FMR and FNMR with counts at one threshold, overall, per group and across groups.

    Parameters
    ----------
    comparisons:
        One row per comparison with columns ``score`` (float, finite), ``mated`` (bool),
        ``group_a``, ``group_b`` (str), ``identity_a``, ``identity_b`` (int), e.g. the frame of
        :func:`audit.comparisons.build_pairs` with a ``score`` column added. Mated rows must have
        ``group_a == group_b``.
    threshold:
        Decision threshold; a comparison matches when ``score >= threshold``.
    groups:
        Optional full list of group labels, so that groups with no comparisons at all (e.g. every
        face lost to detection) still get a row with zero counts. Must include every group in
        ``comparisons``. Default: the groups found in ``comparisons``.

    Returns
    -------
    GroupRates
        Per group ``g`` (ISO/IEC 19795-1 definitions):

        - ``n_mated``: mated comparisons of ``g``; ``false_non_matches``: those with
          ``score < threshold``; ``fnmr = false_non_matches / n_mated``;
        - ``n_nonmated``: non-mated comparisons with **both** images in ``g``; ``false_matches``:
          those with ``score >= threshold``; ``fmr = false_matches / n_nonmated``;
        - ``fnmr_upper95`` / ``fmr_upper95``: :func:`rule_of_three` bound when the count is > 0
          and no error was observed, else NaN;
        - ``n_identities``: distinct identities of ``g`` that appear in any comparison.

        A rate with a zero denominator is NaN (``None`` in :meth:`GroupRates.to_dict`) and its
        counts are 0.

    Raises
    ------
    ValueError
        On missing columns, non-finite scores or threshold, missing ``mated`` values, mated rows
        whose two groups differ, or groups outside ``groups``.
    """
    threshold = _checked_threshold(comparisons, threshold)
    score, mated, group_a, group_b = _checked_rows(comparisons)
    labels = _group_labels(group_a, group_b, groups)
    n_groups = len(labels)
    code_of = {g: c for c, g in enumerate(labels)}
    code_a = np.fromiter((code_of[g] for g in group_a), dtype=np.int64, count=group_a.size)
    code_b = np.fromiter((code_of[g] for g in group_b), dtype=np.int64, count=group_b.size)

    match = score >= threshold
    cross_counts, cross_fm = _cross_cells(code_a, code_b, mated, match, n_groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross_fmr = np.where(cross_counts > 0, cross_fm / np.maximum(cross_counts, 1), np.nan)

    by_group = _by_group_frame(
        comparisons, code_a, code_b, mated, match, cross_counts, cross_fm, labels
    )
    return GroupRates(
        threshold=threshold,
        _groups=labels,
        _overall=_overall_rates(mated, match),
        _by_group=by_group,
        _cross_fmr=_square(cross_fmr.astype(np.float64), labels),
        _cross_counts=_square(cross_counts.astype(np.int64), labels),
        _cross_false_matches=_square(cross_fm.astype(np.int64), labels),
    )


# --- the steps of error_rates -----------------------------------------------------------------


def _checked_threshold(comparisons: pd.DataFrame, threshold: Any) -> float:
    """The threshold as a finite float, once the comparison columns are known to be there."""
    missing = [c for c in _COMPARISON_COLUMNS if c not in comparisons.columns]
    if missing:
        raise ValueError(
            f"comparisons is missing column(s) {missing}; expected {list(_COMPARISON_COLUMNS)}"
        )
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    return threshold


def _checked_rows(
    comparisons: pd.DataFrame,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(score, mated, group_a, group_b)`` as arrays, validated (finite scores, no missing
    labels, mated rows within one group)."""
    score = comparisons["score"].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(score)):
        raise ValueError("score contains NaN or infinite values")
    if comparisons["mated"].isna().any():
        raise ValueError("mated has missing values")
    mated = comparisons["mated"].to_numpy(dtype=bool)
    if comparisons["group_a"].isna().any() or comparisons["group_b"].isna().any():
        raise ValueError("group_a/group_b have missing values")
    group_a = comparisons["group_a"].to_numpy(dtype=object)
    group_b = comparisons["group_b"].to_numpy(dtype=object)
    if np.any(group_a[mated] != group_b[mated]):
        raise ValueError("mated comparisons must have group_a == group_b (groups are per identity)")
    return score, mated, group_a, group_b


def _group_labels(
    group_a: np.ndarray, group_b: np.ndarray, groups: Sequence[str] | None
) -> tuple[str, ...]:
    """The groups found, sorted, or the caller's ``groups`` in their order (repeats dropped)."""
    found = set(group_a.tolist()) | set(group_b.tolist())
    if groups is None:
        return tuple(sorted(found))
    labels = tuple(dict.fromkeys(groups))  # keep caller's order, drop repeats
    unknown = found - set(labels)
    if unknown:
        raise ValueError(f"comparisons contain groups not in `groups`: {sorted(unknown)}")
    return labels


def _cross_cells(
    code_a: np.ndarray, code_b: np.ndarray, mated: np.ndarray, match: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Non-mated comparisons and false matches per (group, group) cell: symmetric (G, G)."""
    # Non-mated: unordered cell (lo, hi) -> symmetric matrices.
    nm = ~mated
    lo = np.minimum(code_a[nm], code_b[nm])
    hi = np.maximum(code_a[nm], code_b[nm])
    cell = lo * n_groups + hi
    upper_counts = np.bincount(cell, minlength=n_groups * n_groups).reshape(n_groups, n_groups)
    upper_fm = np.bincount(cell[match[nm]], minlength=n_groups * n_groups).reshape(
        n_groups, n_groups
    )
    return _symmetrise(upper_counts), _symmetrise(upper_fm)


def _by_group_frame(
    comparisons: pd.DataFrame,
    code_a: np.ndarray,
    code_b: np.ndarray,
    mated: np.ndarray,
    match: np.ndarray,
    cross_counts: np.ndarray,
    cross_fm: np.ndarray,
    labels: tuple[str, ...],
) -> pd.DataFrame:
    """:attr:`GroupRates.by_group`: one row per group, columns :data:`BY_GROUP_COLUMNS`."""
    n_groups = len(labels)
    # Mated: counts per group (group_a == group_b here).
    n_mated = np.bincount(code_a[mated], minlength=n_groups)
    fnm = np.bincount(code_a[mated & ~match], minlength=n_groups)
    n_nonmated = np.diag(cross_counts).copy()
    fm = np.diag(cross_fm).copy()

    # Distinct identities per group, from either side of any comparison.
    ident = pd.DataFrame(
        {
            "code": np.concatenate((code_a, code_b)),
            "identity": np.concatenate(
                (
                    comparisons["identity_a"].to_numpy(dtype=np.int64),
                    comparisons["identity_b"].to_numpy(dtype=np.int64),
                )
            ),
        }
    ).drop_duplicates()
    n_identities = np.bincount(ident["code"].to_numpy(), minlength=n_groups)

    return pd.DataFrame(
        {
            "n_mated": n_mated.astype(np.int64),
            "false_non_matches": fnm.astype(np.int64),
            "fnmr": _rate(fnm, n_mated),
            "fnmr_upper95": _upper95(fnm, n_mated),
            "n_identities": n_identities.astype(np.int64),
            "n_nonmated": n_nonmated.astype(np.int64),
            "false_matches": fm.astype(np.int64),
            "fmr": _rate(fm, n_nonmated),
            "fmr_upper95": _upper95(fm, n_nonmated),
        },
        index=pd.Index(labels, name="group"),
        columns=list(BY_GROUP_COLUMNS),
    )


def _overall_rates(mated: np.ndarray, match: np.ndarray) -> dict[str, float | int]:
    """:attr:`GroupRates.overall`: counts and rates over every comparison."""
    nm = ~mated
    total_mated = int(mated.sum())
    total_fnm = int((mated & ~match).sum())
    total_nonmated = int(nm.sum())
    total_fm = int((nm & match).sum())
    return {
        "n_mated": total_mated,
        "false_non_matches": total_fnm,
        "fnmr": float(_rate(np.array([total_fnm]), np.array([total_mated]))[0]),
        "fnmr_upper95": float(_upper95(np.array([total_fnm]), np.array([total_mated]))[0]),
        "n_nonmated": total_nonmated,
        "false_matches": total_fm,
        "fmr": float(_rate(np.array([total_fm]), np.array([total_nonmated]))[0]),
        "fmr_upper95": float(_upper95(np.array([total_fm]), np.array([total_nonmated]))[0]),
    }


def _square(values: np.ndarray, labels: tuple[str, ...]) -> pd.DataFrame:
    """A (G, G) matrix labelled ``group_a`` x ``group_b``."""
    frame = pd.DataFrame(
        values, index=pd.Index(labels, name="group"), columns=pd.Index(labels, name="group_b")
    )
    frame.index.name = "group_a"
    return frame


# --- helpers ----------------------------------------------------------------------------------


def _symmetrise(upper: np.ndarray) -> np.ndarray:
    """Full symmetric matrix from one holding each unordered cell once (lo <= hi)."""
    return upper + upper.T - np.diag(np.diag(upper))


def _rate(errors: np.ndarray, trials: np.ndarray) -> np.ndarray:
    errors = np.asarray(errors, dtype=np.float64)
    trials = np.asarray(trials, dtype=np.float64)
    return np.where(trials > 0, errors / np.maximum(trials, 1.0), np.nan)


def _upper95(errors: np.ndarray, trials: np.ndarray) -> np.ndarray:
    trials = np.asarray(trials)
    out = np.full(trials.shape, np.nan)
    zero = (np.asarray(errors) == 0) & (trials > 0)
    out[zero] = [rule_of_three(int(t)) for t in trials[zero]]
    return out


