"""The comparison set of an audit: which image pairs are compared (their similarity scores are
:func:`audit.pair_scores.score_pairs`).

Vocabulary (ISO/IEC 19795-1): a *mated* comparison compares two images of the same identity, a
*non-mated* (impostor) comparison compares images of two different identities.

The audit uses a controlled design: every identity has one *baseline* image and a number of
variants (factor edits of that baseline). Hence

- mated comparisons are, by default (``mated="baseline"``), exactly "variant vs its own
  identity's baseline" (``image_a`` is the baseline), so that each mated score measures what one
  edit did to one identity. ``mated="all"`` instead takes every unordered pair of images of one
  identity (variant vs variant too), as in an unconstrained verification benchmark; it is a
  superset of the baseline pairs, which keep their orientation;
- non-mated comparisons, by default (``nonmated="reference"``), pair every image (the *probe*)
  with the baseline of every *other* identity (the *reference*), as in verification against
  enrolment-quality references: the same probe-vs-reference shape as the mated pairs, so the
  global threshold is calibrated on the comparisons the rates are read on. Two degraded images
  of different people are never compared: heavily blurred faces look alike (MobileFaceNet
  scores blurred impostor pairs far above clean ones), which would inflate the threshold.
  ``nonmated="all"`` instead takes all unordered pairs of images of different identities.
  Either way, a seeded uniform sample is kept when there are too many.

Pair modes of :func:`build_pairs`
---------------------------------
``nonmated=``
    ``"reference"`` (default): every image against the baseline of every other identity;
    ``image_a`` is the reference baseline, ``image_b`` the probe, except for
    baseline-vs-baseline pairs (each once, smaller image id first). Count:
    ``C(B, 2) + sum over variants v of (B - [v's identity has a baseline])`` for B baselines.
    ``"all"``: every unordered pair of images of different identities, smaller image id
    first; the count is ``nonmated_total`` below.
``mated=``
    ``"baseline"`` (default): every variant against its own identity's baseline, ``image_a``
    the baseline; ``sum over identities with a baseline of (n_i - 1)`` pairs for n_i images
    of identity i. Identities without a baseline contribute none.
    ``"all"``: every unordered pair of images of the same identity, ``C(n_i, 2)`` per
    identity (``sum_i C(n_i, 2)`` in all), identities without a baseline included. A pair
    with the baseline has the baseline as ``image_a`` (so these rows are exactly the
    ``"baseline"`` rows); a pair of two variants has the smaller image id first. Factor
    effects against the control use the baseline pairs only: select them with
    ``image_a`` equal to the identity's baseline image. Mated pairs are never sampled.

The pair frame
--------------
:func:`build_pairs` returns one row per comparison, columns :data:`PAIR_COLUMNS`: ``image_a``,
``image_b``, ``identity_a``, ``identity_b`` (int64), ``group_a``, ``group_b`` (str) and ``mated``
(bool). Mated rows come first, sorted by ``(image_a, image_b)``, with ``image_a`` the baseline and
``image_b`` the variant (for ``mated="all"``, see above). Then non-mated rows, sorted by
``(image_a, image_b)`` with ``image_a < image_b``. No unordered pair appears twice.

``df.attrs`` records how the set was made (pandas keeps ``attrs`` through copies and most
single-frame operations, but not necessarily through concat/merge; read them right away
if in doubt):

- ``"n_mated"``: number of mated rows;
- ``"mated_mode"``: ``"baseline"`` or ``"all"``;
- ``"mated_total"``: number of mated pairs that exist in that mode (equal to
  ``n_mated``: mated pairs are never sampled);
- ``"mated_with_baseline"``: how many of them involve the identity's baseline (all of
  them for ``"baseline"``);
- ``"nonmated_mode"``: ``"reference"`` or ``"all"``;
- ``"nonmated_total"``: number of non-mated pairs that exist,
  ``C(N, 2) - sum_i C(n_i, 2)`` for N images and n_i images of identity i;
- ``"nonmated_kept"``: number of non-mated rows returned,
  ``min(nonmated_total, max_nonmated)``;
- ``"nonmated_sampled"``: whether the non-mated rows are a sample;
- ``"seed"``: the seed used;
- ``"identities_without_baseline"``: sorted list of identity ids that have images but no
  baseline. With ``mated="baseline"`` such identities contribute **no mated pairs**
  (there is nothing to pair their variants with); their images still take part in
  non-mated pairs.

Sampling
--------
Non-mated pairs are never materialised in full when they are many. With images ordered by
identity, each different-identity pair ``(i, j)``, ``i < j`` in that order, gets a pair index
``k`` in ``[0, nonmated_total)``; the sampled indices are decoded back into ``(i, j)``
arithmetically, so memory is O(N + max_nonmated).

Everything here is plain numpy/pandas; nothing imports Django or an FR framework.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["PAIR_COLUMNS", "build_pairs"]

#: Columns of the frame returned by :func:`build_pairs`, in order.
PAIR_COLUMNS: tuple[str, ...] = (
    "image_a",
    "image_b",
    "identity_a",
    "identity_b",
    "group_a",
    "group_b",
    "mated",
)

_IMAGE_COLUMNS = ("image_id", "identity_id", "group", "is_baseline")

# Above this many candidate pairs per kept pair, sampling draws random indices and rejects
# duplicates instead of permuting every index (which would allocate 8 bytes per candidate pair).
_PERMUTE_RATIO = 4


def build_pairs(
    images: pd.DataFrame,
    *,
    max_nonmated: int = 2_000_000,
    seed: int = 0,
    nonmated: str = "reference",
    mated: str = "baseline",
) -> pd.DataFrame:
    """Build the mated and non-mated comparisons of an audit.

    Parameters
    ----------
    images:
        One row per image usable for comparison (the caller has already dropped images in which
        no face was detected), with columns ``image_id`` (int, unique), ``identity_id`` (int),
        ``group`` (str, the identity's demographic group; must be the same on all images of an
        identity) and ``is_baseline`` (bool; at most one baseline per identity).
    max_nonmated:
        Upper bound on the number of non-mated pairs kept. When more non-mated pairs exist, a
        uniform random sample without replacement of exactly ``max_nonmated`` of them is kept
        (drawn without listing every pair: "Sampling" in the module docstring).
    seed:
        Seed of the sample (``numpy.random.default_rng(seed)``). The same images, bound and seed
        always give the same pairs.
    nonmated:
        ``"reference"`` (default) or ``"all"``; see "Pair modes" in the module docstring for
        each mode's orientation and count.
    mated:
        ``"baseline"`` (default) or ``"all"``, likewise. Mated pairs are never sampled.

    Returns
    -------
    pandas.DataFrame
        One row per comparison, columns :data:`PAIR_COLUMNS`: ``image_a``, ``image_b``,
        ``identity_a``, ``identity_b`` (int64), ``group_a``, ``group_b`` (str) and ``mated``
        (bool), mated rows first. Row order, orientation and the ``df.attrs`` that record how the
        set was made: "The pair frame" in the module docstring.

    Raises
    ------
    ValueError
        On missing columns, duplicate image ids, more than one baseline for an identity, an
        identity whose images carry different groups, or a negative ``max_nonmated``.
    """
    _check_pair_settings(images, nonmated, mated, max_nonmated)
    blocks = _identity_blocks(images)
    mated_pairs, with_baseline = _mated_pairs(blocks, mated)
    nonmated_pairs, total, sampled = _nonmated_pairs(blocks, nonmated, int(max_nonmated), seed)
    pairs = pd.concat([mated_pairs, nonmated_pairs], ignore_index=True)
    pairs.attrs.update(
        n_mated=int(len(mated_pairs)),
        mated_mode=mated,
        mated_total=int(len(mated_pairs)),
        mated_with_baseline=with_baseline,
        nonmated_total=total,
        nonmated_kept=int(len(nonmated_pairs)),
        nonmated_sampled=sampled,
        seed=int(seed),
        nonmated_mode=nonmated,
        identities_without_baseline=[
            int(x) for x in blocks.ident_ids[blocks.n_baselines == 0].tolist()
        ],
    )
    return pairs


@dataclass(frozen=True)
class _Blocks:
    """The images ordered by (identity, image_id), each identity one contiguous block.

    Arrays of length N (images): ``image_id``, ``identity``, ``group``, ``baseline`` and
    ``block_of`` (block of each position); of length I (identities): ``ident_ids``,
    ``block_start``, ``block_size``, ``n_baselines`` and ``baseline_pos`` (position of the
    identity's baseline, -1 when it has none).
    """

    image_id: np.ndarray
    identity: np.ndarray
    group: np.ndarray
    baseline: np.ndarray
    ident_ids: np.ndarray
    block_start: np.ndarray
    block_size: np.ndarray
    block_of: np.ndarray
    n_baselines: np.ndarray
    baseline_pos: np.ndarray


def _identity_blocks(images: pd.DataFrame) -> _Blocks:
    """:class:`_Blocks` of checked ``images``; one group and at most one baseline per identity."""
    image_id = images["image_id"].to_numpy(dtype=np.int64)
    identity = images["identity_id"].to_numpy(dtype=np.int64)
    group = images["group"].to_numpy(dtype=object)
    baseline = images["is_baseline"].to_numpy(dtype=bool)

    # Order images by (identity, image_id): each identity becomes one contiguous block.
    order = np.lexsort((image_id, identity))
    image_id, identity, group, baseline = (
        image_id[order],
        identity[order],
        group[order],
        baseline[order],
    )
    ident_ids, block_start, block_size = np.unique(identity, return_index=True, return_counts=True)
    block_of = np.repeat(np.arange(ident_ids.size), block_size)
    _check_one_group_per_identity(ident_ids, block_start, block_of, group)

    n_baselines = np.bincount(block_of, weights=baseline, minlength=ident_ids.size).astype(np.int64)
    if np.any(n_baselines > 1):
        bad = ident_ids[n_baselines > 1][:10].tolist()
        raise ValueError(f"identities with more than one baseline image: {bad}")
    baseline_pos = np.full(ident_ids.size, -1, dtype=np.int64)
    baseline_pos[block_of[baseline]] = np.flatnonzero(baseline)
    return _Blocks(image_id, identity, group, baseline, ident_ids, block_start, block_size,
                   block_of, n_baselines, baseline_pos)


def _mated_pairs(blocks: _Blocks, mated_mode: str) -> tuple[pd.DataFrame, int]:
    """Every non-baseline image vs its identity's baseline (or all pairs within an identity),
    and how many of those pairs involve the baseline."""
    baseline, block_of, baseline_pos = blocks.baseline, blocks.block_of, blocks.baseline_pos
    variant = ~baseline & (baseline_pos[block_of] >= 0)
    if mated_mode == "baseline":
        b_idx = np.flatnonzero(variant)
        a_idx = baseline_pos[block_of[b_idx]]
    else:
        a_idx, b_idx = _within_block_pairs(blocks.block_start, blocks.block_size, block_of)
        # Inside a block images are ordered by id, so a_idx < b_idx is "smaller id first";
        # put the baseline first instead when the later image is the baseline.
        swap = baseline[b_idx]
        a_idx, b_idx = np.where(swap, b_idx, a_idx), np.where(swap, a_idx, b_idx)
    with_baseline = int(np.count_nonzero(baseline[a_idx])) if a_idx.size else 0
    frame = _frame(blocks.image_id, blocks.identity, blocks.group, a_idx, b_idx, mated=True)
    return frame, with_baseline


def _nonmated_index(
    blocks: _Blocks, nonmated_mode: str
) -> tuple[np.ndarray, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """``(offsets, partner)`` of the non-mated pairs: each candidate pair gets an index k in
    ``[0, total)``; position p owns the range ``offsets[p] .. offsets[p + 1]`` and
    ``partner(p, r)`` decodes the r-th pair of p."""
    baseline, block_of = blocks.baseline, blocks.block_of
    n_images = blocks.image_id.size
    if nonmated_mode == "all":
        # Position p (in identity order) pairs with every later position in a later block,
        # i.e. with the n_images - block_end(p) positions from block_end(p) on.
        block_end = (blocks.block_start + blocks.block_size)[block_of]
        per_position = (n_images - block_end).astype(np.int64)

        def partner(p: np.ndarray, r: np.ndarray) -> np.ndarray:
            return block_end[p] + r
    else:
        # References are the baselines, in identity order (rank 0..B-1). A variant pairs with
        # every baseline but its own identity's; a baseline pairs with the later baselines.
        ref_pos = np.flatnonzero(baseline)
        n_ref = ref_pos.size
        own_rank = np.full(n_images, n_ref, dtype=np.int64)  # n_ref: identity has no baseline
        has_ref = blocks.baseline_pos[block_of] >= 0
        own_rank[has_ref] = np.searchsorted(ref_pos, blocks.baseline_pos[block_of[has_ref]])
        per_position = np.where(baseline, n_ref - 1 - own_rank,
                                n_ref - (own_rank < n_ref)).astype(np.int64)

        def partner(p: np.ndarray, r: np.ndarray) -> np.ndarray:
            rank = np.where(baseline[p], own_rank[p] + 1 + r,
                            np.where(r < own_rank[p], r, r + 1))
            return ref_pos[rank]

    return np.concatenate(([0], np.cumsum(per_position))), partner


def _nonmated_pairs(
    blocks: _Blocks, nonmated_mode: str, max_nonmated: int, seed: int
) -> tuple[pd.DataFrame, int, bool]:
    """Pairs of images of different identities: ``(frame, total that exist, sampled)``.

    Sampled indices are decoded arithmetically (:func:`_nonmated_index`), so the full set is
    never materialised.
    """
    offsets, partner = _nonmated_index(blocks, nonmated_mode)
    total = int(offsets[-1])
    if total <= max_nonmated:
        k = np.arange(total, dtype=np.int64)
        sampled = False
    else:
        k = _sample_indices(total, max_nonmated, np.random.default_rng(seed))
        sampled = True
    i = np.searchsorted(offsets, k, side="right") - 1
    j = partner(i, k - offsets[i])
    image_id, baseline = blocks.image_id, blocks.baseline
    if nonmated_mode == "all":
        # Put the smaller image id first.
        swap = image_id[i] > image_id[j]
    else:
        # The reference (j) first, except baseline pairs: smaller image id first.
        swap = ~baseline[i] | (image_id[i] > image_id[j])
    i, j = np.where(swap, j, i), np.where(swap, i, j)
    frame = _frame(image_id, blocks.identity, blocks.group, i, j, mated=False)
    return frame, total, sampled


# --- helpers --------------------------------------------------------------------------------


def _check_pair_settings(
    images: pd.DataFrame, nonmated: str, mated: str, max_nonmated: int
) -> None:
    """Check :func:`build_pairs`' images table, pair modes and bound."""
    _check_images(images)
    if nonmated not in ("reference", "all"):
        raise ValueError(f"nonmated must be 'reference' or 'all', got {nonmated!r}")
    if mated not in ("baseline", "all"):
        raise ValueError(f"mated must be 'baseline' or 'all', got {mated!r}")
    if isinstance(max_nonmated, bool) or int(max_nonmated) != max_nonmated or max_nonmated < 0:
        raise ValueError(f"max_nonmated must be a non-negative integer, got {max_nonmated!r}")


def _check_images(images: pd.DataFrame) -> None:
    missing = [c for c in _IMAGE_COLUMNS if c not in images.columns]
    if missing:
        raise ValueError(f"images is missing column(s) {missing}; expected {list(_IMAGE_COLUMNS)}")
    if images["image_id"].duplicated().any():
        dup = images.loc[images["image_id"].duplicated(), "image_id"].head(10).tolist()
        raise ValueError(f"image_id must be unique; duplicated: {dup}")
    if images["is_baseline"].isna().any():
        raise ValueError("is_baseline has missing values")
    if images["group"].isna().any():
        raise ValueError("group has missing values")


def _check_one_group_per_identity(
    ident_ids: np.ndarray, block_start: np.ndarray, block_of: np.ndarray, group: np.ndarray
) -> None:
    # Groups belong to identities: a mated pair must fall in exactly one group.
    if group.size == 0:
        return
    first_group = group[block_start][block_of]
    differs = group != first_group
    if np.any(differs):
        bad = np.unique(ident_ids[block_of[differs]])[:10].tolist()
        raise ValueError(f"identities whose images carry more than one group: {bad}")


def _within_block_pairs(
    block_start: np.ndarray, block_size: np.ndarray, block_of: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(p, q)``, ``p < q``, of every pair inside one block (identity).

    Position p pairs with the ``block_end(p) - p - 1`` later positions of its block; in all
    ``sum_i C(n_i, 2)`` pairs for block sizes n_i. O(pairs) memory.
    """
    if block_of.size == 0:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty.copy()
    block_end = (block_start + block_size)[block_of]
    positions = np.arange(block_of.size, dtype=np.int64)
    per_position = block_end - positions - 1
    p = np.repeat(positions, per_position)
    # r = 0 .. per_position[p] - 1 for each p: running index minus the start of p's run.
    run_start = np.repeat(np.cumsum(per_position) - per_position, per_position)
    r = np.arange(p.size, dtype=np.int64) - run_start
    return p, p + 1 + r


def _sample_indices(total: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform sample of ``k`` distinct integers from ``[0, total)``, sorted.

    When ``total`` is within a few multiples of ``k``, a permutation is cheap and exact. Otherwise
    draw with replacement and top up until ``k`` distinct values are held: the set of distinct
    values among i.i.d. uniform draws is, given its size, a uniform subset, so the result is a
    uniform ``k``-subset; with ``total > 4k`` each top-up round keeps over 3/4 of its draws.
    """
    if total <= _PERMUTE_RATIO * k:
        return np.sort(rng.permutation(total)[:k])
    held = np.empty(0, dtype=np.int64)
    while held.size < k:
        draws = rng.integers(0, total, size=k - held.size, dtype=np.int64)
        # Sort and drop repeats by hand: np.unique/union1d take a slow hashing path here.
        held = np.sort(np.concatenate((held, draws)))
        held = held[np.concatenate(([True], held[1:] != held[:-1]))]
    return held


def _frame(
    image_id: np.ndarray,
    identity: np.ndarray,
    group: np.ndarray,
    ia: np.ndarray,
    ib: np.ndarray,
    *,
    mated: bool,
) -> pd.DataFrame:
    order = np.lexsort((image_id[ib], image_id[ia]))
    ia, ib = ia[order], ib[order]
    return pd.DataFrame(
        {
            "image_a": image_id[ia],
            "image_b": image_id[ib],
            "identity_a": identity[ia],
            "identity_b": identity[ib],
            "group_a": pd.array(group[ia], dtype="str"),
            "group_b": pd.array(group[ib], dtype="str"),
            "mated": np.full(ia.size, mated, dtype=bool),
        },
        columns=list(PAIR_COLUMNS),
    )
