"""Decision threshold at a target false-match rate, and error rates per demographic group.

Definitions (ISO/IEC 19795-1, with the convention that a comparison *matches* when its
similarity score is at or above the threshold ``t``):

- FMR(t)  = (non-mated comparisons with score >= t) / (non-mated comparisons)
- FNMR(t) = (mated comparisons with score < t) / (mated comparisons)

One global threshold per FR model is set on all non-mated comparisons (:func:`threshold_at_fmr`);
per-group rates are then read at that same threshold (:func:`error_rates`). A group's FMR uses
only non-mated pairs with both images in that group (demographically matched impostors); the
cross-group matrix gives FMR for every pair of groups, as in NIST FRVT demographic reports.

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

from .jsonable import plain as _plain

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


# --- threshold --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdChoice:
    """A decision threshold chosen on non-mated scores.

    Attributes
    ----------
    threshold:
        Similarity threshold ``t`` (same units as the scores, e.g. cosine similarity); a
        comparison matches when ``score >= t``.
    target_fmr:
        The requested false-match rate.
    achieved_fmr:
        FMR(t) on the non-mated scores it was chosen on; always ``<= target_fmr``.
    n_nonmated:
        Number of non-mated scores.
    false_matches:
        Number of non-mated scores ``>= t`` (so ``achieved_fmr = false_matches / n_nonmated``).
    """

    threshold: float
    target_fmr: float
    achieved_fmr: float
    n_nonmated: int
    false_matches: int

    @property
    def resolvable(self) -> bool:
        """Whether the data can resolve the target at all: ``target_fmr >= 1 / n_nonmated``.

        When False, the threshold is just above the highest non-mated score, the achieved FMR is
        0 and the true FMR at that threshold is only bounded (by the rule of three, ``3 / n``).
        """
        return self.target_fmr * self.n_nonmated >= 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable values."""
        return {
            "threshold": float(self.threshold),
            "target_fmr": float(self.target_fmr),
            "achieved_fmr": float(self.achieved_fmr),
            "n_nonmated": int(self.n_nonmated),
            "false_matches": int(self.false_matches),
        }


def threshold_at_fmr(
    nonmated_scores: Sequence[float] | np.ndarray, target_fmr: float
) -> ThresholdChoice:
    """Smallest threshold, among the observed scores, whose FMR does not exceed a target.

    With FMR(t) = share of non-mated scores ``>= t`` (ISO/IEC 19795-1, match at or above the
    threshold), return the smallest observed score value ``t`` with ``FMR(t) <= target_fmr``.
    Ties are handled exactly: all scores equal to ``t`` count as false matches, so the achieved
    FMR never exceeds the target even when many scores tie at the cut. Lowering ``t`` to the next
    smaller distinct score would exceed the target. If even ``t = max(scores)`` gives an FMR above
    the target (for example when ``target_fmr < 1 / n``), the threshold is
    ``numpy.nextafter(max, +inf)``, just above every score, with 0 false matches.

    Parameters
    ----------
    nonmated_scores:
        1-D array-like of non-mated similarity scores, shape (n,), n >= 1, all finite.
    target_fmr:
        Target false-match rate, strictly between 0 and 1 (e.g. 1e-3).

    Returns
    -------
    ThresholdChoice

    Raises
    ------
    ValueError
        If the target is not in (0, 1), or the scores are empty, not 1-D or not finite.
    """
    if isinstance(target_fmr, bool) or not isinstance(target_fmr, (int, float, np.number)):
        raise ValueError(f"target_fmr must be a number in (0, 1), got {target_fmr!r}")
    target = float(target_fmr)
    if not (0.0 < target < 1.0):
        raise ValueError(f"target_fmr must be strictly between 0 and 1, got {target_fmr!r}")
    scores = np.asarray(nonmated_scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"nonmated_scores must be 1-D, got shape {scores.shape}")
    if scores.size == 0:
        raise ValueError("nonmated_scores is empty: no non-mated comparisons to set a threshold on")
    if not np.all(np.isfinite(scores)):
        raise ValueError("nonmated_scores contain NaN or infinite values")

    n = scores.size
    # Distinct values v_1 < ... < v_m; first_index[j] = number of scores < v_j, so the number of
    # scores >= v_j is n - first_index[j], which decreases with j.
    values, first_index = np.unique(np.sort(scores), return_index=True)
    at_or_above = n - first_index
    ok = at_or_above / n <= target  # same arithmetic as achieved_fmr below
    if ok.any():
        j = int(np.argmax(ok))  # first True: FMR is monotone, so this is the smallest t
        threshold = float(values[j])
        false_matches = int(at_or_above[j])
    else:
        threshold = float(np.nextafter(values[-1], np.inf))
        false_matches = 0
    return ThresholdChoice(
        threshold=threshold,
        target_fmr=target,
        achieved_fmr=false_matches / n,
        n_nonmated=int(n),
        false_matches=false_matches,
    )


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


def _copy(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.copy(deep=True)


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

    @property
    def groups(self) -> tuple[str, ...]:
        return self._groups

    @property
    def overall(self) -> dict[str, float | int]:
        return dict(self._overall)

    @property
    def by_group(self) -> pd.DataFrame:
        return _copy(self._by_group)

    @property
    def cross_group_fmr(self) -> pd.DataFrame:
        return _copy(self._cross_fmr)

    @property
    def cross_group_counts(self) -> pd.DataFrame:
        return _copy(self._cross_counts)

    @property
    def cross_group_false_matches(self) -> pd.DataFrame:
        return _copy(self._cross_false_matches)

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

    found = set(group_a.tolist()) | set(group_b.tolist())
    if groups is None:
        labels = tuple(sorted(found))
    else:
        labels = tuple(dict.fromkeys(groups))  # keep caller's order, drop repeats
        unknown = found - set(labels)
        if unknown:
            raise ValueError(f"comparisons contain groups not in `groups`: {sorted(unknown)}")
    n_groups = len(labels)
    code_of = {g: c for c, g in enumerate(labels)}
    code_a = np.fromiter((code_of[g] for g in group_a), dtype=np.int64, count=group_a.size)
    code_b = np.fromiter((code_of[g] for g in group_b), dtype=np.int64, count=group_b.size)

    match = score >= threshold

    # Mated: counts per group (group_a == group_b here).
    n_mated = np.bincount(code_a[mated], minlength=n_groups)
    fnm = np.bincount(code_a[mated & ~match], minlength=n_groups)

    # Non-mated: unordered cell (lo, hi) -> symmetric matrices.
    nm = ~mated
    lo = np.minimum(code_a[nm], code_b[nm])
    hi = np.maximum(code_a[nm], code_b[nm])
    cell = lo * n_groups + hi
    upper_counts = np.bincount(cell, minlength=n_groups * n_groups).reshape(n_groups, n_groups)
    upper_fm = np.bincount(cell[match[nm]], minlength=n_groups * n_groups).reshape(
        n_groups, n_groups
    )
    cross_counts = _symmetrise(upper_counts)
    cross_fm = _symmetrise(upper_fm)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross_fmr = np.where(cross_counts > 0, cross_fm / np.maximum(cross_counts, 1), np.nan)

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

    index = pd.Index(labels, name="group")
    by_group = pd.DataFrame(
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
        index=index,
        columns=list(BY_GROUP_COLUMNS),
    )

    total_mated = int(mated.sum())
    total_fnm = int((mated & ~match).sum())
    total_nonmated = int(nm.sum())
    total_fm = int((nm & match).sum())
    overall: dict[str, float | int] = {
        "n_mated": total_mated,
        "false_non_matches": total_fnm,
        "fnmr": float(_rate(np.array([total_fnm]), np.array([total_mated]))[0]),
        "fnmr_upper95": float(_upper95(np.array([total_fnm]), np.array([total_mated]))[0]),
        "n_nonmated": total_nonmated,
        "false_matches": total_fm,
        "fmr": float(_rate(np.array([total_fm]), np.array([total_nonmated]))[0]),
        "fmr_upper95": float(_upper95(np.array([total_fm]), np.array([total_nonmated]))[0]),
    }

    def square(values: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(values, index=index.copy(), columns=pd.Index(labels, name="group_b"))
        frame.index.name = "group_a"
        return frame

    return GroupRates(
        threshold=threshold,
        _groups=labels,
        _overall=overall,
        _by_group=by_group,
        _cross_fmr=square(cross_fmr.astype(np.float64)),
        _cross_counts=square(cross_counts.astype(np.int64)),
        _cross_false_matches=square(cross_fm.astype(np.int64)),
    )


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


