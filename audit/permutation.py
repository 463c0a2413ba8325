"""Permutation tests of "no difference between groups" for FNMR and FMR at one threshold.

Test statistic: the max/min ratio ``max_d rate_d / min_d rate_d`` over the compared groups, a
zero rate floored at its rule-of-three bound ``3 / n`` (the reported max/min ratio of
:func:`audit.disparity.max_min_ratio`), for FNMR and for FMR separately. The p-value is
``(1 + #{permutations with a ratio >= the observed ratio}) / (1 + permutations)`` (Phipson &
Smyth, "Permutation p-values should never be zero", Stat. Appl. Genet. Mol. Biol. 9 (2010)
art. 39), which is valid (never below its level under the null) for any number of
permutations.

What is permuted, and why
-------------------------
Comparisons that share an identity are dependent (a hard-to-verify face fails most of its mated
comparisons), so the exchangeable units are identities, not comparisons: a permutation shuffles
the group labels across the identities of the compared groups (keeping each group's number of
identities) and recomputes every group's rate from the comparisons of the identities it now
holds. Shuffling comparisons would treat dependent comparisons as independent and give p-values
that are too small.

- FNMR. Every mated comparison belongs to one identity, so an identity carries its mated
  comparisons and false non-matches with it. Null hypothesis: an identity's mated outcomes have
  the same distribution whatever its group. The test is exact under it.
- FMR. A within-group non-mated comparison involves two identities of one group, so a group's
  FMR is not a sum of identity-level parts: carrying each identity's own within-group row of
  comparisons to another group would mix rows that share comparisons (and identity effects) with
  rows that do not, and underestimate the null spread. Instead the labels are shuffled across
  identities and each permuted group's FMR is recomputed from *all* non-mated comparisons
  between two identities that now share a label, cross-group comparisons of the original labels
  included (the same identity-by-identity matrices as the bootstrap). Null hypothesis: group
  labels carry no information about non-mated outcomes (identities are exchangeable, same-group
  and cross-group pairs alike). The test is exact under it when which pairs were compared does
  not depend on the groups (every pair, or a uniform sample of pairs, as
  :func:`audit.comparisons.build_pairs` makes). It needs cross-group non-mated comparisons: with
  none it is not run (``p_value`` None, with the reason).

  That null is stronger than "equal within-group FMR": same-group impostors usually match more
  often than cross-group ones, and the shuffled groups, being mostly made of cross-group pairs,
  then have a lower FMR. The ratio statistic is scale-free, so that level shift alone does not
  make the observed spread look large; with a lower cross-group FMR the shuffled ratios spread
  at least as much and the test is conservative. Simulation (``bench/coverage_disparity.py``:
  4 groups of 40 identities, within-group FMR 0.05 in each, 400 audits, 199 shuffles, share of
  p <= 0.05): 0.052 with cross-group FMR 0.05 (the exact case), 0.013 with 0.02, but 0.110 with
  0.08 (FNMR test: 0.045 to 0.048 in all three; power 0.41 for an FNMR ratio of 2 in one
  group). So when cross-group pairs match *more* often than same-group pairs the test is
  anti-conservative, and the result says so in its note (when the excess is above
  :data:`CROSS_WARNING_RATIO`).

Draws: ``rng = numpy.random.default_rng(seed)``; ``rng.permuted(labels, axis=1)`` on the
(n_permutations, identities) tile of the identities' group codes (identities ordered by group,
then identity id) gives the permuted labels, shared by the FNMR and the FMR test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from audit.resampling import aggregate, matmul

from .jsonable import plain as _plain

__all__ = ["GroupPermutationTest", "RatePermutationTest", "permutation_test"]

#: The FMR test's result carries a warning when the pooled cross-group FMR exceeds the pooled
#: same-group FMR by more than this factor (a heuristic: small excesses are mostly chance).
CROSS_WARNING_RATIO = 1.2

# Permutations are processed in chunks of about this many (identity x label) cells.
_CHUNK_CELLS = 2_000_000
# Integers up to this size are exact in float32.
_FLOAT32_EXACT = 2.0**24

STATISTIC = (
    "max/min ratio: max over groups of the rate divided by min over groups, a zero rate "
    "floored at its rule-of-three bound 3/n"
)
FNMR_NULL = (
    "identities' mated outcomes have the same distribution in every group (group labels "
    "shuffled across identities; exact)"
)
FMR_NULL = (
    "group labels carry no information about non-mated outcomes (labels shuffled across "
    "identities, each permuted group's FMR recomputed from all non-mated comparisons between "
    "identities sharing a label, cross-group ones included; exact under this null, conservative "
    "for 'equal within-group FMR' when cross-group pairs match less often)"
)


@dataclass(frozen=True)
class RatePermutationTest:
    """One rate's test: observed max/min ratio, p-value, permutations used, null, and a note."""

    observed: float
    p_value: float | None
    n_valid: int
    null: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"observed": _plain(self.observed), "p_value": _plain(self.p_value),
                "n_valid": int(self.n_valid), "null": self.null, "note": self.note}


@dataclass(frozen=True)
class GroupPermutationTest:
    """Result of :func:`permutation_test`: the FNMR and FMR tests over ``groups``."""

    n_permutations: int
    seed: int
    groups: tuple[str, ...]
    fnmr: RatePermutationTest
    fmr: RatePermutationTest

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable values::

            {"method", "statistic", "n_permutations", "seed", "groups",
             "fnmr": {"observed", "p_value", "n_valid", "null", "note"}, "fmr": {...}}
        """
        return {
            "method": "identity-label permutation test",
            "statistic": STATISTIC,
            "n_permutations": int(self.n_permutations),
            "seed": int(self.seed),
            "groups": list(self.groups),
            "fnmr": self.fnmr.to_dict(),
            "fmr": self.fmr.to_dict(),
        }


def _p_value(observed: float, permuted: np.ndarray) -> tuple[float | None, int]:
    """Phipson-Smyth p-value ``(1 + #{T* >= T}) / (1 + n)`` over the defined ``permuted``."""
    values = permuted[~np.isnan(permuted)]
    if np.isnan(observed) or values.size == 0:
        return None, int(values.size)
    tol = 1e-12 * max(1.0, abs(observed))  # equal ratios up to rounding count as ties
    exceed = int(np.count_nonzero(values >= observed - tol))
    return (1.0 + exceed) / (1.0 + values.size), int(values.size)


def _ratio(sums_err: np.ndarray, sums_trials: np.ndarray) -> np.ndarray:
    """Max/min ratio over groups (last axis) of err / trials, a zero rate floored at its
    rule-of-three bound ``3 / trials``; NaN where a group has no trials or no group has an
    error."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.where(sums_trials > 0, sums_err / sums_trials, np.nan)
        floored = np.where(rates == 0, np.minimum(3.0 / sums_trials, 1.0), rates)
        ratio = np.max(floored, axis=-1) / np.min(floored, axis=-1)
    return np.where(np.all(sums_err == 0, axis=-1), np.nan, ratio)


def _label_sums(labels: np.ndarray, weights: np.ndarray, n_groups: int) -> np.ndarray:
    """(P, G) sums of the per-identity ``weights`` (N,) by label, for labels (P, N)."""
    rows = np.arange(labels.shape[0])[:, None] * n_groups
    flat = np.bincount((rows + labels).ravel(), weights=np.broadcast_to(weights, labels.shape)
                       .ravel(), minlength=labels.shape[0] * n_groups)
    return flat.reshape(labels.shape[0], n_groups)


def _within_sums(matrix: Any, labels: np.ndarray, n_groups: int) -> np.ndarray:
    """(P, G): ``z_g' M z_g`` for the indicator ``z_g`` of each label g in each row of labels.

    ``M`` (N, N) holds each non-mated comparison once (identity_a row, identity_b column), so
    the quadratic form counts the comparisons between two identities that both carry label g.
    A dense ``M`` whose total is below 2**24 is multiplied in float32, where every partial sum
    is an integer below 2**24 and so exact, at half the cost of float64.
    """
    n_perm, n_ident = labels.shape
    dtype = np.float64
    if isinstance(matrix, np.ndarray) and float(matrix.sum()) < _FLOAT32_EXACT:
        matrix, dtype = matrix.astype(np.float32), np.float32
    out = np.zeros((n_perm, n_groups))
    chunk = max(1, _CHUNK_CELLS // max(n_ident * n_groups, 1))
    for p0 in range(0, n_perm, chunk):
        p1 = min(p0 + chunk, n_perm)
        # Indicators (N, chunk * G): column p * G + g is 1 where row p's label is g.
        z = (labels[p0:p1].T[:, :, None] == np.arange(n_groups)).astype(dtype)
        z = z.reshape(n_ident, -1)
        out[p0:p1] = np.einsum("nc,nc->c", z, matmul(matrix, z)).reshape(p1 - p0, n_groups)
    return out


def _cross_note(nonmated: pd.DataFrame, cross: np.ndarray, threshold: float) -> str:
    """A warning when cross-group pairs match clearly more often (by more than
    :data:`CROSS_WARNING_RATIO`) than same-group pairs (see the module docstring: the FMR test is
    then anti-conservative), else ""."""
    match = nonmated["score"].to_numpy(dtype=np.float64) >= threshold
    if cross.all() or match[cross].mean() <= CROSS_WARNING_RATIO * match[~cross].mean():
        return ""
    return (
        f"cross-group non-mated pairs match more often ({match[cross].mean():.3g}) than "
        f"same-group pairs ({match[~cross].mean():.3g}); the FMR test may then reject too often"
    )


def permutation_test(
    comparisons: pd.DataFrame,
    threshold: float,
    groups: Sequence[str],
    *,
    n_permutations: int = 999,
    seed: int = 0,
) -> GroupPermutationTest:
    """Identity-label permutation tests of equal FNMR and of equal FMR across ``groups``.

    Parameters
    ----------
    comparisons:
        Comparison table as for :func:`audit.uncertainty.bootstrap_group_rates`. Rows with an
        identity outside ``groups`` are left out.
    threshold:
        Decision threshold (match when ``score >= threshold``).
    groups:
        The compared groups (>= 2), e.g. :attr:`audit.disparity.DisparitySummary.groups`.
    n_permutations, seed:
        Number of label shuffles (>= 1) and the seed of ``numpy.random.default_rng``.

    Returns
    -------
    GroupPermutationTest
        Statistic and nulls as in the module docstring. Permutations in which a group's rate is
        undefined (no comparisons) are left out (``n_valid``).

    Notes
    -----
    Time: the aggregation of the bootstrap, then per chunk of permutations one product of the
    N x N identity-pair matrix with N x (chunk * G) indicators (FMR; N identities, G groups), and
    O(N) per permutation for FNMR.
    """
    labels = tuple(dict.fromkeys(str(g) for g in groups))
    if len(labels) < 2:
        raise ValueError(f"permutation_test needs at least 2 groups, got {list(labels)}")
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, (int, np.integer)) \
            or n_permutations < 1:
        raise ValueError(f"n_permutations must be a positive integer, got {n_permutations!r}")
    keep = comparisons["group_a"].isin(labels) & comparisons["group_b"].isin(labels)
    agg = aggregate(comparisons.loc[keep], float(threshold), labels)
    n_groups = len(labels)
    codes = np.repeat(np.arange(n_groups), np.diff(agg.starts))
    rng = np.random.default_rng(int(seed))
    permuted = rng.permuted(np.tile(codes, (int(n_permutations), 1)), axis=1)

    def fnmr_ratio(lab: np.ndarray) -> np.ndarray:
        return _ratio(_label_sums(lab, agg.fnm, n_groups), _label_sums(lab, agg.mated, n_groups))

    obs_fnmr = float(fnmr_ratio(codes[None, :])[0])
    p_fnmr, n_fnmr = _p_value(obs_fnmr, fnmr_ratio(permuted))
    fnmr = RatePermutationTest(obs_fnmr, p_fnmr, n_fnmr, FNMR_NULL)

    def fmr_ratio(lab: np.ndarray) -> np.ndarray:
        return _ratio(_within_sums(agg.all_fm, lab, n_groups),
                    _within_sums(agg.all_counts, lab, n_groups))

    obs_fmr = float(fmr_ratio(codes[None, :])[0])
    nonmated = comparisons.loc[keep & ~comparisons["mated"].astype(bool)]
    cross = (nonmated["group_a"] != nonmated["group_b"]).to_numpy()
    if not cross.any():
        fmr = RatePermutationTest(
            obs_fmr, None, 0, FMR_NULL,
            note="not run: no cross-group non-mated comparisons, so shuffled groups would have "
            "no comparisons between identities from different original groups",
        )
    else:
        p_fmr, n_fmr = _p_value(obs_fmr, fmr_ratio(permuted))
        fmr = RatePermutationTest(obs_fmr, p_fmr, n_fmr, FMR_NULL, _cross_note(nonmated, cross,
                                                                                threshold))
    return GroupPermutationTest(int(n_permutations), int(seed), labels, fnmr, fmr)
