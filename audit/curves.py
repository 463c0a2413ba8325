"""DET curves and score distributions per demographic group, as tidy tables for plotting.

A detection error trade-off (DET) curve plots FNMR(t) against FMR(t) over all thresholds t
(ISO/IEC 19795-1; Martin et al., "The DET curve in assessment of detection task performance",
Eurospeech 1997), usually on normal-deviate (probit) or log axes. With match = ``score >= t``:

- FMR(t)  = (non-mated scores >= t) / (non-mated scores)
- FNMR(t) = (mated scores < t) / (mated scores)

For a group, FMR uses the non-mated comparisons with both identities in the group and FNMR the
group's mated comparisons, as in :func:`audit.rates.error_rates`. Every returned point is exact
at its threshold; long curves are thinned to a bounded number of points for plotting by keeping
thresholds spread evenly along the curve's length in probit space (so the low-FMR tail, which
log axes stretch, keeps its share of points). Plotting code takes these frames; nothing here
draws.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtri

__all__ = ["DET_COLUMNS", "HISTOGRAM_COLUMNS", "det_curve", "det_curves", "score_histograms"]

#: Columns of :func:`det_curve`; :func:`det_curves` adds ``group`` in front.
DET_COLUMNS: tuple[str, ...] = ("threshold", "fmr", "fnmr")
#: Columns of :func:`score_histograms`.
HISTOGRAM_COLUMNS: tuple[str, ...] = ("group", "kind", "bin_left", "bin_right", "count")


def det_curve(
    scores: Sequence[float] | np.ndarray,
    mated: Sequence[bool] | np.ndarray,
    *,
    max_points: int | None = None,
) -> pd.DataFrame:
    """Exact FMR and FNMR at every distinct score, optionally thinned for plotting.

    Parameters
    ----------
    scores:
        1-D similarity scores, shape (n,), finite.
    mated:
        1-D bool, shape (n,): True for mated comparisons, False for non-mated.
    max_points:
        None (default): one row per distinct score. Otherwise keep at most this many rows
        (>= 2), always including the lowest and highest threshold; the kept rows are spread
        evenly by arc length along the curve in probit coordinates, with rates clipped to
        ``[1/(2n), 1 - 1/(2n)]`` for that spacing only. The values in the kept rows are exact.

    Returns
    -------
    pandas.DataFrame
        Columns ``threshold`` (ascending, the distinct observed scores), ``fmr``, ``fnmr``
        (floats in [0, 1]); FMR falls and FNMR rises with the threshold.
        ``attrs["n_mated"]`` and ``attrs["n_nonmated"]`` hold the counts.

    Raises
    ------
    ValueError
        On shape mismatch, non-finite scores, or when mated or non-mated scores are missing.
    """
    s = np.asarray(scores, dtype=np.float64)
    m = np.asarray(mated)
    if s.ndim != 1 or m.shape != s.shape:
        raise ValueError(
            f"scores and mated must be 1-D of the same length, got {s.shape} and {m.shape}"
        )
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise ValueError("mated must be boolean")
        m = m.astype(bool)
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinite values")
    genuine = np.sort(s[m])
    impostor = np.sort(s[~m])
    if genuine.size == 0 or impostor.size == 0:
        raise ValueError(
            f"a DET curve needs both kinds of comparison; got {genuine.size} mated and "
            f"{impostor.size} non-mated"
        )
    # Distinct scores: the two sorted runs merge in linear time under the stable sort.
    merged = np.concatenate((genuine, impostor))
    merged.sort(kind="stable")
    distinct = np.empty(merged.size, dtype=bool)
    distinct[0] = True
    np.not_equal(merged[1:], merged[:-1], out=distinct[1:])
    thresholds = merged[distinct]
    # Count of impostor scores >= t and genuine scores < t, by binary search in sorted arrays.
    fmr = (impostor.size - np.searchsorted(impostor, thresholds, side="left")) / impostor.size
    fnmr = np.searchsorted(genuine, thresholds, side="left") / genuine.size
    if max_points is not None:
        keep = _thin(fmr, fnmr, int(max_points), impostor.size, genuine.size)
        thresholds, fmr, fnmr = thresholds[keep], fmr[keep], fnmr[keep]
    frame = pd.DataFrame({"threshold": thresholds, "fmr": fmr, "fnmr": fnmr})
    frame.attrs.update(n_mated=int(genuine.size), n_nonmated=int(impostor.size))
    return frame


def _thin(
    fmr: np.ndarray, fnmr: np.ndarray, max_points: int, n_nonmated: int, n_mated: int
) -> np.ndarray:
    """Indices of at most ``max_points`` points spread evenly along the curve (probit space)."""
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    n = fmr.size
    if n <= max_points:
        return np.arange(n)
    lo_x, lo_y = 0.5 / n_nonmated, 0.5 / n_mated
    x = ndtri(np.clip(fmr, lo_x, 1.0 - lo_x))
    y = ndtri(np.clip(fnmr, lo_y, 1.0 - lo_y))
    arc = np.concatenate(([0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))))
    if arc[-1] == 0.0:
        return np.array([0, n - 1])
    targets = np.linspace(0.0, arc[-1], max_points)
    idx = np.searchsorted(arc, targets, side="left")
    idx = np.unique(np.clip(idx, 0, n - 1))
    # The ends are always kept (searchsorted gives 0 for the first target; force the last).
    idx[-1] = n - 1
    idx = np.unique(np.concatenate(([0], idx)))
    return idx[:max_points]


def _group_codes(
    comparisons: pd.DataFrame, groups: Sequence[str] | None
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    for col in ("score", "mated", "group_a", "group_b"):
        if col not in comparisons.columns:
            raise ValueError(f"comparisons is missing column {col!r}")
    found = set(pd.unique(comparisons["group_a"])) | set(pd.unique(comparisons["group_b"]))
    if groups is None:
        labels = tuple(sorted(str(g) for g in found))
    else:
        labels = tuple(dict.fromkeys(str(g) for g in groups))
        unknown = {str(g) for g in found} - set(labels)
        if unknown:
            raise ValueError(f"comparisons contain groups not in `groups`: {sorted(unknown)}")
    index = pd.Index(labels)
    code_a = index.get_indexer(comparisons["group_a"].astype(str))
    code_b = index.get_indexer(comparisons["group_b"].astype(str))
    return labels, code_a, code_b


def det_curves(
    comparisons: pd.DataFrame,
    *,
    max_points: int | None = 500,
    groups: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One DET curve per group: FMR from within-group non-mated pairs, FNMR from mated pairs.

    Parameters
    ----------
    comparisons:
        Frame with columns ``score``, ``mated``, ``group_a``, ``group_b`` (the comparison
        contract of :func:`audit.rates.error_rates`).
    max_points:
        At most this many points per group (see :func:`det_curve`); None keeps all.
    groups:
        Groups and their order (default: sorted labels found).

    Returns
    -------
    pandas.DataFrame
        Long format, columns ``group``, ``threshold``, ``fmr``, ``fnmr``; rows of a group in
        ascending threshold. ``attrs["counts"]`` maps group -> {"n_mated", "n_nonmated"};
        ``attrs["skipped"]`` maps group -> reason for groups with no curve (no mated or no
        within-group non-mated comparisons).
    """
    labels, code_a, code_b = _group_codes(comparisons, groups)
    score = comparisons["score"].to_numpy(dtype=np.float64)
    mated = comparisons["mated"].to_numpy(dtype=bool)
    within = code_a == code_b
    # Sort the relevant rows by group once, then slice (one pass instead of a mask per group).
    rows = np.flatnonzero(within)
    rows = rows[np.argsort(code_a[rows], kind="stable")]
    bounds = np.searchsorted(code_a[rows], np.arange(len(labels) + 1), side="left")
    frames: list[pd.DataFrame] = []
    counts: dict[str, dict[str, int]] = {}
    skipped: dict[str, str] = {}
    for g, label in enumerate(labels):
        sel = rows[bounds[g] : bounds[g + 1]]
        n_m = int(mated[sel].sum())
        n_nm = int(sel.size - n_m)
        counts[label] = {"n_mated": n_m, "n_nonmated": n_nm}
        if n_m == 0 or n_nm == 0:
            skipped[label] = (
                f"{n_m} mated and {n_nm} within-group non-mated comparisons: a DET curve "
                "needs both"
            )
            continue
        curve = det_curve(score[sel], mated[sel], max_points=max_points)
        curve.insert(0, "group", label)
        frames.append(curve)
    if frames:
        out = pd.concat(frames, ignore_index=True)
    else:
        out = pd.DataFrame({"group": [], "threshold": [], "fmr": [], "fnmr": []})
    out["group"] = out["group"].astype(object)
    out.attrs.update(counts=counts, skipped=skipped)
    return out


def score_histograms(
    comparisons: pd.DataFrame,
    bins: int | Sequence[float] | np.ndarray = 50,
    *,
    range: tuple[float, float] | None = None,  # numpy's name for it
    groups: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Mated and within-group non-mated score counts per group on shared bin edges.

    Parameters
    ----------
    comparisons:
        Frame with columns ``score``, ``mated``, ``group_a``, ``group_b``.
    bins:
        Number of equal-width bins spanning all scores in ``comparisons`` (or ``range``), or
        the bin edges themselves (1-D, increasing), as in :func:`numpy.histogram`. Bins are
        half-open ``[left, right)`` except the last, which includes its right edge; scores
        outside the edges are not counted (``attrs["out_of_range"]`` says how many).
    range:
        Optional (low, high) for integer ``bins``.
    groups:
        Groups and their order (default: sorted labels found).

    Returns
    -------
    pandas.DataFrame
        Long format with columns :data:`HISTOGRAM_COLUMNS`: for each group, ``kind`` is
        ``"mated"`` (the group's mated comparisons) or ``"nonmated"`` (non-mated comparisons
        with both identities in the group), one row per bin with its edges and ``count`` (int).
        Every group and kind has every bin (zeros included). ``attrs["edges"]`` holds the edges.
    """
    labels, code_a, code_b = _group_codes(comparisons, groups)
    score = comparisons["score"].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(score)):
        raise ValueError("score contains NaN or infinite values")
    mated = comparisons["mated"].to_numpy(dtype=bool)
    if np.ndim(bins) == 0:
        if score.size == 0 and range is None:
            raise ValueError("no scores to place bins on: pass explicit edges or `range`")
        edges = np.histogram_bin_edges(score, bins=int(bins), range=range)
    else:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError("bin edges must be 1-D, at least 2, strictly increasing")
    n_bins = edges.size - 1
    within = code_a == code_b
    # Bin index per row; the last bin is closed on the right like numpy.histogram.
    bin_of = np.searchsorted(edges, score, side="right") - 1
    bin_of[score == edges[-1]] = n_bins - 1
    inside = (bin_of >= 0) & (bin_of < n_bins)
    kind = np.where(mated, 0, 1)
    use = within & inside
    n_groups = len(labels)
    cell = (code_a[use] * 2 + kind[use]) * n_bins + bin_of[use]
    table = np.bincount(cell, minlength=n_groups * 2 * n_bins).reshape(n_groups, 2, n_bins)
    out = pd.DataFrame(
        {
            "group": np.repeat(np.array(labels, dtype=object), 2 * n_bins),
            "kind": np.tile(np.repeat(np.array(["mated", "nonmated"], dtype=object), n_bins),
                            n_groups),
            "bin_left": np.tile(edges[:-1], 2 * n_groups),
            "bin_right": np.tile(edges[1:], 2 * n_groups),
            "count": table.reshape(-1).astype(np.int64),
        },
        columns=list(HISTOGRAM_COLUMNS),
    )
    out.attrs.update(edges=edges.tolist(), out_of_range=int((within & ~inside).sum()))
    return out
