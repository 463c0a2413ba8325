"""The identity-level (subsets) bootstrap engine: seeded draws, aggregated counts, replicates.

Shared by :mod:`audit.uncertainty` (per-group FNMR/FMR intervals), :mod:`audit.cross_group`
(the cross-group FMR matrix), :mod:`audit.permutation` (identity-label permutation tests reuse
the aggregation) and :mod:`audit.compare` (percentile intervals of differences).

Why identities, not comparisons
-------------------------------
Comparisons that share an identity are correlated: a face that is hard to verify fails most of
its mated comparisons, and a face that looks like many others produces several false matches.
The independent sampling units are the identities, so the bootstrap resamples identities with
replacement (within each demographic group) and rebuilds the comparison set from the drawn
identities. Resampling comparisons as if they were independent gives intervals that are too
narrow. This is the "subsets bootstrap" of Bolle, Ratha & Pankanti, "Error analysis of pattern
recognition systems: the subsets bootstrap", Computer Vision and Image Understanding 93 (2004)
1-33, in line with ISO/IEC 19795-1 (biometric performance testing and reporting), which asks
that uncertainty estimates allow for the correlation between attempts of one test subject; see
also Schuckers, "Computational Methods in Biometric Authentication" (Springer 2010), and Poh,
Martin & Bengio, "Performance generalization in biometric authentication using joint
user-specific and sample bootstraps", IEEE TPAMI 29 (2007) 492-498.

One replicate
-------------
For each group ``g`` with ``n_g`` identities (every identity that appears on either side of any
comparison, labelled with its group), draw ``n_g`` identities of ``g`` uniformly with replacement.
Let ``k_i`` be how often identity ``i`` was drawn. The rebuilt comparison set holds

- every mated comparison of ``i`` (variant vs its own baseline) ``k_i`` times;
- every non-mated comparison between identities ``i`` and ``j`` (``i != j``) ``k_i * k_j``
  times: each drawn copy of ``i`` is compared with each drawn copy of ``j``. Copies of one
  identity are never compared with each other (a pair of an identity with itself is mated, not
  non-mated, and does not exist in the data). Cross-group pairs enter the overall FMR the same
  way, with ``k_i`` and ``k_j`` drawn in their own groups.

The replicate rates are then ``FNMR*_g = sum_i k_i fnm_i / sum_i k_i m_i`` and
``FMR*_g = k_g' E_g k_g / k_g' N_g k_g``, where ``m_i``/``fnm_i`` are identity ``i``'s mated
comparisons and false non-matches, and ``N_g``/``E_g`` are the group's identity-by-identity
matrices of non-mated comparisons and false matches at the threshold (:func:`aggregate`).
Aggregating once and then computing the replicates as these products (dense BLAS for dense
matrices, sparse products for sparse ones; :func:`replicate_counts`) is exactly equal to
literally rebuilding and rescoring the comparison table, and costs
``O(n_boot * (identities + non-zero identity pairs))`` instead of ``O(n_boot * comparisons)``.
For the cross-group FMR matrix, :func:`replicate_cross_counts` gives every cell ``(i, j)``
``k_i' N_ij k_j`` and ``k_i' E_ij k_j`` from the identity-by-identity blocks (identities of
group i by identities of group j), counting each comparison once whichever side each identity
was listed on.

The draws are reproducible and documented so that other code can repeat them: with
``rng = numpy.random.default_rng(seed)``, for each group in the order of
:attr:`audit.uncertainty.BootstrapResult.groups` that has at least one identity,
``rng.integers(0, n_g, size=(n_boot, n_g))`` gives, per replicate (row), the positions of the
drawn identities among that group's identities sorted by identity id (:func:`draw_counts`).

Intervals are percentile intervals over the replicates (Efron & Tibshirani, "An Introduction to
the Bootstrap", 1993, ch. 13; :func:`percentile_interval`); :func:`interval_columns` adds the
rule-of-three bound where no error was observed (see :mod:`audit.uncertainty`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from audit.rates import GroupRates, error_rates, rule_of_three

__all__ = [
    "Aggregates",
    "aggregate",
    "check_settings",
    "draw_counts",
    "interval_columns",
    "matmul",
    "percentile_interval",
    "point_rates",
    "quadratic",
    "ratio",
    "replicate_counts",
    "replicate_cross_counts",
]

_COLUMNS = ("score", "mated", "group_a", "group_b", "identity_a", "identity_b")

# An identity-by-identity matrix is held dense when it has at most this many cells (32 MB as
# float64) and at least this share of them is non-zero; otherwise it stays sparse (CSR). A dense
# product runs on BLAS and is an order of magnitude faster per cell than scipy's sparse product,
# so it wins once the matrix is more than a few per cent full.
_DENSE_MAX_CELLS = 4_000_000
_DENSE_MIN_DENSITY = 0.05
# Replicates are computed in chunks of about this many (identity x replicate) cells, which
# bounds the working memory of the products (a few float64 arrays of this size).
_CHUNK_CELLS = 2_000_000
# Dense products with at most this many multiply-adds run in numpy's own loops, not BLAS.
_SMALL_PRODUCT = 4_000_000


# --- settings and point estimates ------------------------------------------------------------


def check_settings(n_boot: Any, confidence: Any, seed: Any) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.number)):
        raise ValueError(f"confidence must be a number in (0, 1), got {confidence!r}")
    if not (0.0 < float(confidence) < 1.0):
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {seed!r}")



def point_rates(
    comparisons: pd.DataFrame,
    threshold: float,
    groups: Sequence[str] | None,
    rates: GroupRates | None,
) -> tuple[GroupRates, bool]:
    """The point estimates a bootstrap starts from, and whether the caller passed them.

    ``rates`` None: :func:`audit.rates.error_rates` on ``comparisons`` (which also validates the
    shared input contract). Otherwise ``rates`` must be a :class:`audit.rates.GroupRates` read
    at ``threshold`` over ``groups``; its counts are checked against the aggregation later.
    """
    if rates is None:
        return error_rates(comparisons, threshold, groups=groups), False
    if not isinstance(rates, GroupRates):
        raise ValueError(f"rates must be a GroupRates, got {type(rates).__name__}")
    if float(rates.threshold) != float(threshold):
        raise ValueError(
            f"rates were read at threshold {rates.threshold!r}, not {threshold!r}"
        )
    if groups is not None and tuple(dict.fromkeys(groups)) != rates.groups:
        raise ValueError(f"rates cover groups {list(rates.groups)}, not {list(groups)}")
    return rates, True


# --- aggregation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Aggregates:
    """Per-identity and per-identity-pair counts; identities ordered by (group, identity id)."""

    identity_ids: np.ndarray  # (N,) identity id of each position
    starts: np.ndarray  # (G + 1,) positions of group g are starts[g]:starts[g + 1]
    mated: np.ndarray  # (N,) mated comparisons per identity
    fnm: np.ndarray  # (N,) false non-matches per identity
    within_counts: list[Any]  # per group: (n_g, n_g) non-mated comparisons (dense or CSR)
    within_fm: list[Any]  # per group: (n_g, n_g) false matches
    all_counts: Any  # (N, N) non-mated comparisons between any two identities
    all_fm: Any  # (N, N) false matches


def dense_or_sparse(matrix: sparse.csr_array) -> Any:
    """Dense ndarray or CSR, whichever makes ``matrix @ K`` cheaper (see _DENSE_*)."""
    cells = matrix.shape[0] * matrix.shape[1]
    if cells <= _DENSE_MAX_CELLS and matrix.nnz >= _DENSE_MIN_DENSITY * cells:
        return matrix.toarray()
    return matrix


def _checked_columns(
    comparisons: pd.DataFrame, threshold: float, labels: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(mated, match, code_a, code_b, ident_a, ident_b)`` of the comparison rows, validated.

    ``match``: ``score >= threshold``; ``code_*``: position of each side's group in ``labels``; ``ident_*``: identity ids (int64).
    Mated rows must pair an identity with itself, non-mated rows two different identities.
    """
    missing = [c for c in _COLUMNS if c not in comparisons.columns]
    if missing:
        raise ValueError(f"comparisons is missing column(s) {missing}; expected {list(_COLUMNS)}")
    score = comparisons["score"].to_numpy(dtype=np.float64)
    mated = comparisons["mated"].to_numpy(dtype=bool)
    match = score >= threshold
    categories = pd.Index(labels)
    code_a = categories.get_indexer(comparisons["group_a"]).astype(np.int64)
    code_b = categories.get_indexer(comparisons["group_b"]).astype(np.int64)
    if np.any(code_a < 0) or np.any(code_b < 0):
        raise ValueError(f"comparisons contain groups outside {list(labels)}")
    ident_a = comparisons["identity_a"].to_numpy(dtype=np.int64)
    ident_b = comparisons["identity_b"].to_numpy(dtype=np.int64)

    if np.any(ident_a[mated] != ident_b[mated]):
        raise ValueError(
            "mated comparisons must have identity_a == identity_b (variant vs own baseline)"
        )
    if np.any(ident_a[~mated] == ident_b[~mated]):
        raise ValueError(
            "non-mated comparisons must pair two different identities; found identity_a == "
            "identity_b on a non-mated row"
        )
    return mated, match, code_a, code_b, ident_a, ident_b


def _identity_positions(
    code_a: np.ndarray, code_b: np.ndarray, ident_a: np.ndarray, ident_b: np.ndarray,
    n_groups: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(pos_a, pos_b, identity_ids, starts)``: each row's identity positions, ordered by
    (group, identity id), the identity id at each position and the group boundaries."""
    # Identity positions: factorise (hashing), then check one group per identity.
    n_rows = ident_a.size
    codes, uniques = pd.factorize(np.concatenate((ident_a, ident_b)), sort=False)
    groups_both = np.concatenate((code_a, code_b))
    n_ident = uniques.size
    group_of = np.full(n_ident, -1, dtype=np.int64)
    group_of[codes] = groups_both
    if np.any(group_of[codes] != groups_both):
        bad = np.unique(np.asarray(uniques)[codes[group_of[codes] != groups_both]])[:10]
        raise ValueError(
            f"identities that appear with more than one group: {bad.tolist()}; each identity "
            "must belong to exactly one group"
        )
    uniques = np.asarray(uniques, dtype=np.int64)
    order = np.lexsort((uniques, group_of))  # by group, then identity id
    position = np.empty(n_ident, dtype=np.int64)
    position[order] = np.arange(n_ident)
    pos = position[codes]
    pos_a, pos_b = pos[:n_rows], pos[n_rows:]
    identity_ids = uniques[order]
    starts = np.searchsorted(group_of[order], np.arange(n_groups + 1), side="left")
    return pos_a, pos_b, identity_ids, starts


def aggregate(
    comparisons: pd.DataFrame, threshold: float, labels: tuple[str, ...]
) -> Aggregates:
    """Per-identity mated counts and identity-pair matrices of the comparisons at a threshold.

    ``comparisons`` has the columns of :func:`audit.rates.error_rates`; ``labels`` are the
    groups in order. Raises ``ValueError`` on a missing column, a group outside ``labels``, a
    mated row between two identities, a non-mated row of one identity, or an identity in two
    groups.
    """
    mated, match, code_a, code_b, ident_a, ident_b = _checked_columns(
        comparisons, threshold, labels
    )
    n_groups = len(labels)
    pos_a, pos_b, identity_ids, starts = _identity_positions(
        code_a, code_b, ident_a, ident_b, n_groups
    )
    n_ident = identity_ids.size

    mated_count = np.bincount(pos_a[mated], minlength=n_ident).astype(np.float64)
    fnm = np.bincount(pos_a[mated & ~match], minlength=n_ident).astype(np.float64)

    nm = ~mated

    def pair_matrix(rows: np.ndarray) -> sparse.csr_array:
        # Duplicated (a, b) entries are summed by the conversion: the count of comparisons.
        return sparse.coo_array(
            (np.ones(int(rows.sum()), dtype=np.float64), (pos_a[rows], pos_b[rows])),
            shape=(n_ident, n_ident),
        ).tocsr()

    counts = pair_matrix(nm)
    false_matches = pair_matrix(nm & match)
    within_counts = []
    within_fm = []
    for g in range(n_groups):
        s, e = int(starts[g]), int(starts[g + 1])
        within_counts.append(dense_or_sparse(counts[s:e, s:e]))
        within_fm.append(dense_or_sparse(false_matches[s:e, s:e]))
    return Aggregates(
        identity_ids=identity_ids,
        starts=starts,
        mated=mated_count,
        fnm=fnm,
        within_counts=within_counts,
        within_fm=within_fm,
        all_counts=dense_or_sparse(counts),
        all_fm=dense_or_sparse(false_matches),
    )


def matmul(a: Any, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for a dense or sparse ``a`` and dense ``b``.

    Small dense products skip BLAS: waking a multi-threaded BLAS costs milliseconds, far more
    than the product itself, and small audits make many such calls.
    """
    if isinstance(a, np.ndarray) and a.shape[0] * a.shape[1] * b.shape[1] <= _SMALL_PRODUCT:
        return np.einsum("ij,jb->ib", a, b)
    return np.asarray(a @ b)


def quadratic(matrix: Any, kt: np.ndarray) -> np.ndarray:
    """``k_b' M k_b`` for every column ``k_b`` of ``kt`` (shape (n, B)) -> shape (B,)."""
    if kt.shape[0] == 0:
        return np.zeros(kt.shape[1])
    return np.einsum("ib,ib->b", kt, matmul(matrix, kt))


def draw_counts(
    rng: np.random.Generator, starts: np.ndarray, n_boot: int
) -> np.ndarray:
    """(n_boot, N) int32 draw counts; the documented draw order (see the module docstring)."""
    n_ident = int(starts[-1])
    counts = np.zeros((n_boot, n_ident), dtype=np.int32)
    rows = np.arange(n_boot, dtype=np.int64)[:, None]
    for g in range(starts.size - 1):
        s, e = int(starts[g]), int(starts[g + 1])
        n_g = e - s
        if n_g == 0:
            continue
        drawn = rng.integers(0, n_g, size=(n_boot, n_g))
        flat = np.bincount((rows * n_g + drawn).ravel(), minlength=n_boot * n_g)
        counts[:, s:e] = flat.reshape(n_boot, n_g)
    return counts


def replicate_counts(agg: Aggregates, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Counts of each replicate: arrays (n_boot, G) per group, and (n_boot,) overall."""
    n_boot, n_ident = counts.shape
    n_groups = agg.starts.size - 1
    group_of = np.repeat(np.arange(n_groups), np.diff(agg.starts))
    # (G, N) selectors weighted by the per-identity mated counts and false non-matches.
    sel_mated = np.zeros((n_groups, n_ident))
    sel_fnm = np.zeros((n_groups, n_ident))
    sel_mated[group_of, np.arange(n_ident)] = agg.mated
    sel_fnm[group_of, np.arange(n_ident)] = agg.fnm

    out = {
        name: np.zeros((n_boot, n_groups))
        for name in ("n_mated", "fnm", "n_nonmated", "fm")
    }
    out["all_nonmated"] = np.zeros(n_boot)
    out["all_fm"] = np.zeros(n_boot)
    chunk = max(1, _CHUNK_CELLS // max(n_ident, 1))
    for b0 in range(0, n_boot, chunk):
        b1 = min(b0 + chunk, n_boot)
        kt = np.ascontiguousarray(counts[b0:b1].T, dtype=np.float64)  # (N, B)
        out["n_mated"][b0:b1] = matmul(sel_mated, kt).T
        out["fnm"][b0:b1] = matmul(sel_fnm, kt).T
        for g in range(n_groups):
            s, e = int(agg.starts[g]), int(agg.starts[g + 1])
            out["n_nonmated"][b0:b1, g] = quadratic(agg.within_counts[g], kt[s:e])
            out["fm"][b0:b1, g] = quadratic(agg.within_fm[g], kt[s:e])
        out["all_nonmated"][b0:b1] = quadratic(agg.all_counts, kt)
        out["all_fm"][b0:b1] = quadratic(agg.all_fm, kt)
    return out



def _column_blocks(matrix: Any, starts: np.ndarray) -> list[Any]:
    """``S[:, block h]`` of the symmetrised pair matrix ``S = M + M'`` for every group h."""
    if isinstance(matrix, np.ndarray):
        sym = matrix + matrix.T
        return [sym[:, int(starts[h]) : int(starts[h + 1])] for h in range(starts.size - 1)]
    sym = (matrix + matrix.T).tocsc()
    return [
        dense_or_sparse(sym[:, int(starts[h]) : int(starts[h + 1])]) for h in range(starts.size - 1)
    ]


def replicate_cross_counts(
    agg: Aggregates, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Non-mated comparisons and false matches per cell: two arrays (n_boot, G, G).

    With ``S = M + M'`` (``M`` the identity-by-identity matrix of :class:`Aggregates`, each
    comparison once in the direction it was listed), cell ``(g, h)`` of replicate ``b`` is
    ``sum_{i in g} k_i sum_{j in h} S_ij k_j``, halved on the diagonal where ``S`` counts every
    within-group comparison twice. One product ``S[:, h] @ K[h]`` per column block h, so the
    whole matrix costs about one ``N x N`` by ``N x B`` product per chunk of replicates.
    """
    n_boot, n_ident = counts.shape
    n_groups = agg.starts.size - 1
    starts = agg.starts
    out_counts = np.zeros((n_boot, n_groups, n_groups))
    out_fm = np.zeros((n_boot, n_groups, n_groups))
    blocks = [_column_blocks(agg.all_counts, starts), _column_blocks(agg.all_fm, starts)]
    chunk = max(1, _CHUNK_CELLS // max(n_ident, 1))
    for b0 in range(0, n_boot, chunk):
        b1 = min(b0 + chunk, n_boot)
        kt = np.ascontiguousarray(counts[b0:b1].T, dtype=np.float64)  # (N, B)
        for target, column_blocks in zip((out_counts, out_fm), blocks, strict=True):
            for h in range(n_groups):
                s, e = int(starts[h]), int(starts[h + 1])
                if e == s:
                    continue
                weighted = kt * matmul(column_blocks[h], kt[s:e])  # (N, B)
                for g in range(n_groups):
                    gs, ge = int(starts[g]), int(starts[g + 1])
                    if ge > gs:
                        target[b0:b1, g, h] = weighted[gs:ge].sum(axis=0)
    diagonal = np.arange(n_groups)
    out_counts[:, diagonal, diagonal] /= 2.0
    out_fm[:, diagonal, diagonal] /= 2.0
    return out_counts, out_fm



# --- rates and intervals from replicates -------------------------------------------------------


def ratio(errors: np.ndarray, trials: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(trials > 0, errors / np.where(trials > 0, trials, 1.0), np.nan)


def percentile_interval(
    replicates: np.ndarray, confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Percentile interval per column of ``replicates`` (n_boot, k), ignoring NaN replicates.

    Returns ``(lower, upper, standard_error, n_valid)``, each of shape (k,); NaN where a column
    has no defined replicate (standard error needs two). Uses numpy's default (linear)
    interpolation between order statistics.
    """
    reps = np.asarray(replicates, dtype=np.float64)
    if reps.ndim == 1:
        reps = reps[:, None]
    alpha = (1.0 - confidence) / 2.0
    valid = ~np.isnan(reps)
    n_valid = valid.sum(axis=0)
    lower = np.full(reps.shape[1], np.nan)
    upper = np.full(reps.shape[1], np.nan)
    se = np.full(reps.shape[1], np.nan)
    full = n_valid == reps.shape[0]
    if reps.shape[0] > 0 and full.any():
        # Columns without NaN in one vectorised call; the others one by one.
        lower[full], upper[full] = np.quantile(reps[:, full], [alpha, 1.0 - alpha], axis=0)
        if reps.shape[0] > 1:
            se[full] = np.std(reps[:, full], axis=0, ddof=1)
    for c in np.flatnonzero(~full & (n_valid > 0)):
        col = reps[valid[:, c], c]
        lower[c], upper[c] = np.quantile(col, [alpha, 1.0 - alpha])
        if col.size > 1:
            se[c] = float(np.std(col, ddof=1))
    return lower, upper, se, n_valid.astype(np.int64)


def interval_columns(
    name: str,
    replicates: np.ndarray,
    errors: np.ndarray,
    trials: np.ndarray,
    confidence: float,
) -> dict[str, np.ndarray]:
    """The ``<name>_lower/_upper/_se/_n_valid/_interval`` columns for one rate."""
    lower, upper, se, n_valid = percentile_interval(replicates, confidence)
    errors = np.asarray(errors)
    trials = np.asarray(trials)
    kind = np.where(trials > 0, "bootstrap", "undefined").astype(object)
    zero = (trials > 0) & (errors == 0)
    for i in np.flatnonzero(zero):
        lower[i] = 0.0
        upper[i] = rule_of_three(int(trials[i]))
        kind[i] = "rule_of_three"
    return {
        f"{name}_lower": lower,
        f"{name}_upper": upper,
        f"{name}_se": se,
        f"{name}_n_valid": n_valid,
        f"{name}_interval": kind,
    }

