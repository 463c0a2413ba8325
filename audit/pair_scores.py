"""Cosine similarity scores of image pairs (the pairs of :func:`audit.comparisons.build_pairs`),
from one L2-normalised embedding per image: the dot product of the two rows, accumulated in
float64, in bounded chunks.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


def score_pairs(
    pairs: pd.DataFrame,
    embeddings: np.ndarray,
    index_of: Mapping[int, int] | pd.Series,
    *,
    chunk_size: int = 4096,
) -> np.ndarray:
    """Cosine similarity of every pair.

    Parameters
    ----------
    pairs:
        Frame with integer columns ``image_a`` and ``image_b`` (as from :func:`build_pairs`).
    embeddings:
        Array of shape (M, D), one L2-normalised embedding per row (float32 expected; any float
        dtype is accepted). Because rows have unit norm, the cosine similarity is the dot product.
        Rows whose norm is not 1 (tolerance 1e-3) raise ``ValueError``: an unnormalised embedding
        is an adapter bug that would silently skew every score.
    index_of:
        Mapping (dict or pandas Series) from image id to row of ``embeddings``.
    chunk_size:
        Pairs scored per step. Peak extra memory is about ``2 * chunk_size * D`` times the
        embedding itemsize (plus einsum's float64 working buffers for one chunk).

    Returns
    -------
    numpy.ndarray
        float64 array of shape (len(pairs),), cosine similarity in [-1, 1] (up to rounding),
        accumulated in float64.

    Raises
    ------
    KeyError
        If an image id of ``pairs`` is missing from ``index_of``.
    ValueError
        On a malformed embeddings array, an out-of-range row, non-finite or unnormalised rows.
    """
    emb = _checked_embeddings(pairs, embeddings, chunk_size)
    a = pairs["image_a"].to_numpy(dtype=np.int64)
    b = pairs["image_b"].to_numpy(dtype=np.int64)
    row_a, row_b = _embedding_rows(a, b, index_of, emb.shape[0])
    out = np.empty(a.size, dtype=np.float64)
    step = int(chunk_size)
    for start in range(0, a.size, step):
        stop = min(start + step, a.size)
        # Products and sums in float64 (einsum's dtype) without a float64 copy of the rows.
        out[start:stop] = np.einsum(
            "ij,ij->i", emb[row_a[start:stop]], emb[row_b[start:stop]], dtype=np.float64
        )
    return out


def _checked_embeddings(pairs: pd.DataFrame, embeddings: np.ndarray, chunk_size: int) -> np.ndarray:
    """Check :func:`score_pairs`' inputs -> the embeddings as an array (finite, unit rows)."""
    for col in ("image_a", "image_b"):
        if col not in pairs.columns:
            raise ValueError(f"pairs is missing column {col!r}")
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or not np.issubdtype(emb.dtype, np.floating):
        raise ValueError(
            f"embeddings must be a 2-D float array (M, D), got shape {emb.shape} dtype {emb.dtype}"
        )
    if not np.all(np.isfinite(emb)):
        raise ValueError("embeddings contain NaN or infinite values")
    norms = np.sqrt(np.einsum("ij,ij->i", emb, emb, dtype=np.float64))
    off = np.flatnonzero(np.abs(norms - 1.0) > 1e-3)
    if off.size:
        raise ValueError(
            f"embeddings must be L2-normalised; {off.size} row(s) are not, e.g. row {off[0]} "
            f"has norm {norms[off[0]]:.6g}"
        )
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size!r}")
    return emb


def _embedding_rows(
    a: np.ndarray, b: np.ndarray, index_of: Mapping[int, int] | pd.Series, n_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Embedding row of each pair's two images, looking up each distinct image id once."""
    # A Python loop over <= number of images, not pairs.
    ids, inverse = np.unique(np.concatenate((a, b)), return_inverse=True)
    rows = np.empty(ids.size, dtype=np.int64)
    for n, image in enumerate(ids.tolist()):
        try:
            rows[n] = index_of[image]
        except KeyError:
            raise KeyError(f"image id {image} has no row in index_of") from None
    if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
        raise ValueError(f"index_of maps to rows outside [0, {n_rows})")
    return rows[inverse[: a.size]], rows[inverse[a.size :]]
