"""Tests for audit.comparisons: expected pairs are rebuilt naively with itertools."""

from __future__ import annotations

import itertools
import math
import tracemalloc

import numpy as np
import pandas as pd
import pytest

import audit.comparisons as comparisons
from audit.comparisons import PAIR_COLUMNS, _sample_indices
from audit.pair_scores import score_pairs


# Most tests below cover the all-pairs mode; the reference mode (the default) has its own tests
# at the end.
def build_pairs(images, **kwargs):
    return comparisons.build_pairs(images, **{"nonmated": "all", **kwargs})

# --- fixtures / naive references ---------------------------------------------------------------


def images_frame(rows: list[tuple[int, int, str, bool]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["image_id", "identity_id", "group", "is_baseline"])


def random_images(rng: np.random.Generator, n_identities: int = 40) -> pd.DataFrame:
    """Identities of 1..6 images, some without a baseline, shuffled rows, non-contiguous ids."""
    rows = []
    ids = rng.choice(10_000, size=n_identities * 6, replace=False)
    k = 0
    for identity in rng.choice(1000, size=n_identities, replace=False):
        size = int(rng.integers(1, 7))
        has_baseline = rng.random() < 0.8
        group = f"g{identity % 3}"
        for v in range(size):
            rows.append((int(ids[k]), int(identity), group, bool(has_baseline and v == 0)))
            k += 1
    frame = images_frame(rows)
    return frame.sample(frac=1.0, random_state=int(rng.integers(1 << 31))).reset_index(drop=True)


def naive_mated(images: pd.DataFrame) -> set[tuple[int, int]]:
    out = set()
    for a in images.itertuples():
        for b in images.itertuples():
            if a.identity_id == b.identity_id and a.is_baseline and not b.is_baseline:
                out.add((a.image_id, b.image_id))
    return out


def naive_nonmated(images: pd.DataFrame) -> set[tuple[int, int]]:
    out = set()
    for a, b in itertools.combinations(images.itertuples(), 2):
        if a.identity_id != b.identity_id:
            out.add((min(a.image_id, b.image_id), max(a.image_id, b.image_id)))
    return out


def pair_set(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["image_a"].tolist(), frame["image_b"].tolist(), strict=True))


def nonmated_formula(images: pd.DataFrame) -> int:
    # C(N, 2) minus same-identity pairs sum_i C(n_i, 2).
    sizes = images.groupby("identity_id").size()
    return math.comb(len(images), 2) - sum(math.comb(int(s), 2) for s in sizes)


# --- build_pairs: hand-made example ------------------------------------------------------------


HAND = images_frame(
    [
        (1, 10, "A", True),  # identity 10: baseline 1, variants 2 and 3
        (2, 10, "A", False),
        (3, 10, "A", False),
        (4, 20, "B", True),  # identity 20: baseline 4, variant 5
        (5, 20, "B", False),
        (6, 30, "B", False),  # identity 30: no baseline -> no mated pairs
        (7, 30, "B", False),
        (8, 40, "A", True),  # identity 40: baseline only
    ]
)


def test_it_pairs_each_variant_with_its_own_baseline():
    pairs = build_pairs(HAND)
    mated = pairs[pairs["mated"]]
    assert pair_set(mated) == {(1, 2), (1, 3), (4, 5)}
    assert mated["identity_a"].tolist() == mated["identity_b"].tolist() == [10, 10, 20]
    assert mated["group_a"].tolist() == ["A", "A", "B"]


def test_it_counts_hand_example_by_formula():
    pairs = build_pairs(HAND)
    # N = 8: C(8,2) = 28 pairs; same identity: C(3,2) + C(2,2) + C(2,2) + C(1,2) = 3+1+1+0 = 5.
    assert (~pairs["mated"]).sum() == 23
    assert pairs.attrs["nonmated_total"] == 23
    assert pairs.attrs["nonmated_kept"] == 23
    assert pairs.attrs["nonmated_sampled"] is False
    assert pairs.attrs["n_mated"] == 3
    assert pairs.attrs["identities_without_baseline"] == [30]
    assert list(pairs.columns) == list(PAIR_COLUMNS)


def test_it_keeps_every_pair_when_the_bound_equals_the_count():
    exact = build_pairs(HAND, max_nonmated=23)
    assert exact.attrs["nonmated_sampled"] is False and exact.attrs["nonmated_kept"] == 23
    pd.testing.assert_frame_equal(exact, build_pairs(HAND))
    one_less = build_pairs(HAND, max_nonmated=22)
    assert one_less.attrs["nonmated_sampled"] is True and (~one_less["mated"]).sum() == 22


def test_it_puts_mated_rows_first_and_orders_nonmated_by_image_id():
    pairs = build_pairs(HAND)
    assert pairs["mated"].tolist() == [True] * 3 + [False] * 23
    nm = pairs[~pairs["mated"]]
    assert (nm["image_a"] < nm["image_b"]).all()
    keys = list(zip(nm["image_a"], nm["image_b"], strict=True))
    assert keys == sorted(keys)


# --- build_pairs: random data against itertools ------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_it_matches_naive_pairs_on_random_images(seed):
    images = random_images(np.random.default_rng(seed))
    pairs = build_pairs(images)
    mated, nonmated = pairs[pairs["mated"]], pairs[~pairs["mated"]]

    assert pair_set(mated) == naive_mated(images)
    assert pair_set(nonmated) == naive_nonmated(images)
    assert len(nonmated) == nonmated_formula(images) == pairs.attrs["nonmated_total"]

    with_baseline = images.groupby("identity_id")["is_baseline"].transform("any")
    assert len(mated) == int((~images["is_baseline"] & with_baseline).sum())
    # No pair twice, in either orientation.
    unordered = {tuple(sorted(p)) for p in pair_set(pairs)}
    assert len(unordered) == len(pairs)

    # Identity and group columns describe the image on each side.
    lookup = images.set_index("image_id")
    for side in ("a", "b"):
        ids = pairs[f"image_{side}"]
        assert (
            pairs[f"identity_{side}"].to_numpy() == lookup.loc[ids, "identity_id"].to_numpy()
        ).all()
        assert (pairs[f"group_{side}"].to_numpy() == lookup.loc[ids, "group"].to_numpy()).all()
    assert (nonmated["identity_a"] != nonmated["identity_b"]).all()
    assert (mated["identity_a"] == mated["identity_b"]).all()
    assert lookup.loc[mated["image_a"], "is_baseline"].all()


def test_it_handles_empty_and_single_identity_inputs():
    empty = build_pairs(images_frame([]))
    assert len(empty) == 0 and list(empty.columns) == list(PAIR_COLUMNS)
    assert empty.attrs["nonmated_total"] == 0

    one = build_pairs(images_frame([(1, 5, "A", True), (2, 5, "A", False)]))
    assert pair_set(one) == {(1, 2)} and one["mated"].all()
    assert one.attrs["nonmated_total"] == 0


# --- build_pairs: sampling ---------------------------------------------------------------------


@pytest.mark.parametrize("keep", [5, 60, 150])  # rejection path, permutation path, near all
def test_it_samples_exactly_max_nonmated_distinct_different_identity_pairs(keep):
    images = random_images(np.random.default_rng(11))
    full = naive_nonmated(images)
    assert len(full) > keep

    pairs = build_pairs(images, max_nonmated=keep, seed=3)
    nonmated = pairs[~pairs["mated"]]
    assert len(nonmated) == keep
    assert pairs.attrs["nonmated_kept"] == keep
    assert pairs.attrs["nonmated_total"] == len(full)
    assert pairs.attrs["nonmated_sampled"] is True
    assert len(pair_set(nonmated)) == keep
    assert pair_set(nonmated) <= full
    assert (nonmated["identity_a"] != nonmated["identity_b"]).all()
    # Mated pairs are never sampled away.
    assert pair_set(pairs[pairs["mated"]]) == naive_mated(images)


def test_sampling_is_deterministic_for_a_seed_and_differs_across_seeds():
    images = random_images(np.random.default_rng(12))
    first = build_pairs(images, max_nonmated=40, seed=7)
    again = build_pairs(images.sample(frac=1.0, random_state=1), max_nonmated=40, seed=7)
    other = build_pairs(images, max_nonmated=40, seed=8)
    pd.testing.assert_frame_equal(first, again)
    assert pair_set(first) != pair_set(other)


@pytest.mark.parametrize("keep", [4, 20])  # rejection path (total > 4 * keep), permutation path
def test_sampling_is_uniform_over_pair_indices(keep):
    # 45 candidate pairs. Over 4000 seeds each index is kept ~Binomial(4000, k/45) times; with
    # fixed seeds this is deterministic, and the bound is 6 standard deviations. (That sampled
    # indices decode to the right pairs is covered by the exact-set tests above.)
    total, n_runs = 45, 4000
    counts = np.zeros(total, dtype=np.int64)
    for seed in range(n_runs):
        kept = _sample_indices(total, keep, np.random.default_rng(seed))
        assert kept.size == keep and np.unique(kept).size == keep
        counts[kept] += 1
    p = keep / total
    mean, sd = n_runs * p, math.sqrt(n_runs * p * (1 - p))
    assert np.all(np.abs(counts - mean) < 6 * sd)
    # And the draws are not trivially the same subset every time.
    assert counts.min() > 0


def test_it_never_materialises_all_pairs_when_sampling():
    # 20,000 images of 10,000 identities: ~2e8 non-mated pairs (1.6 GB as int64 indices alone).
    n = 20_000
    images = images_frame([(i, i // 2, f"g{(i // 2) % 4}", i % 2 == 0) for i in range(n)])
    tracemalloc.start()
    try:
        pairs = build_pairs(images, max_nonmated=10_000, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pairs.attrs["nonmated_total"] == math.comb(n, 2) - n // 2
    assert (~pairs["mated"]).sum() == 10_000
    assert pairs["mated"].sum() == n // 2
    assert peak < 50 * 2**20


# --- build_pairs: validation -------------------------------------------------------------------


def test_it_rejects_two_baselines_for_one_identity():
    with pytest.raises(ValueError, match="more than one baseline"):
        build_pairs(images_frame([(1, 1, "A", True), (2, 1, "A", True)]))


def test_it_rejects_duplicate_image_ids():
    with pytest.raises(ValueError, match="unique"):
        build_pairs(images_frame([(1, 1, "A", True), (1, 2, "A", True)]))


def test_it_rejects_an_identity_in_two_groups():
    with pytest.raises(ValueError, match="more than one group"):
        build_pairs(images_frame([(1, 1, "A", True), (2, 1, "B", False)]))


def test_it_rejects_missing_columns_and_bad_bound():
    with pytest.raises(ValueError, match="missing column"):
        build_pairs(HAND.drop(columns="group"))
    with pytest.raises(ValueError, match="max_nonmated"):
        build_pairs(HAND, max_nonmated=-1)


# --- score_pairs -------------------------------------------------------------------------------


def unit_rows(rng: np.random.Generator, m: int, d: int) -> np.ndarray:
    e = rng.normal(size=(m, d)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_score_pairs_equals_naive_dot(chunk_size):
    rng = np.random.default_rng(0)
    images = random_images(rng)
    pairs = build_pairs(images)
    emb = unit_rows(rng, len(images) + 5, 16)
    # Rows in an arbitrary order, not aligned with image ids.
    rows = rng.permutation(len(images) + 5)[: len(images)]
    index_of = dict(zip(images["image_id"].tolist(), rows.tolist(), strict=True))

    got = score_pairs(pairs, emb, index_of, chunk_size=chunk_size)
    expected = np.array(
        [
            np.dot(emb[index_of[a]].astype(np.float64), emb[index_of[b]].astype(np.float64))
            for a, b in zip(pairs["image_a"], pairs["image_b"], strict=True)
        ]
    )
    assert got.dtype == np.float64 and got.shape == (len(pairs),)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_score_pairs_accepts_a_series_as_index():
    emb = unit_rows(np.random.default_rng(1), 3, 4)
    pairs = pd.DataFrame({"image_a": [10, 10], "image_b": [20, 30]})
    index_of = pd.Series([2, 0, 1], index=[10, 20, 30])
    got = score_pairs(pairs, emb, index_of)
    np.testing.assert_allclose(got, [emb[2] @ emb[0], emb[2] @ emb[1]], atol=1e-6)


def test_score_pairs_rejects_unknown_ids_and_unnormalised_embeddings():
    emb = unit_rows(np.random.default_rng(2), 2, 4)
    pairs = pd.DataFrame({"image_a": [1], "image_b": [2]})
    with pytest.raises(KeyError, match="image id 2"):
        score_pairs(pairs, emb, {1: 0})
    with pytest.raises(ValueError, match="L2-normalised"):
        score_pairs(pairs, emb * 2, {1: 0, 2: 1})
    with pytest.raises(ValueError, match="outside"):
        score_pairs(pairs, emb, {1: 0, 2: 5})
    with pytest.raises(ValueError, match="2-D"):
        score_pairs(pairs, emb[0], {1: 0, 2: 1})


# --- reference mode (the default): probes against other identities' baselines -------------------


def naive_reference_nonmated(images: pd.DataFrame) -> set[tuple[int, int]]:
    """(reference baseline, probe) for every image vs every other identity's baseline; baseline
    pairs once, smaller id first."""
    out = set()
    rows = list(images.itertuples())
    for ref in rows:
        if not ref.is_baseline:
            continue
        for probe in rows:
            if probe.identity_id == ref.identity_id:
                continue
            if probe.is_baseline:
                out.add((min(ref.image_id, probe.image_id), max(ref.image_id, probe.image_id)))
            else:
                out.add((ref.image_id, probe.image_id))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_reference_mode_matches_naive_enumeration(seed):
    images = random_images(np.random.default_rng(100 + seed), n_identities=25)
    pairs = comparisons.build_pairs(images)
    nm = pairs[~pairs["mated"]]
    got = list(zip(nm["image_a"], nm["image_b"], strict=True))
    assert len(got) == len(set(got))
    assert set(got) == naive_reference_nonmated(images)
    assert pairs.attrs["nonmated_total"] == len(got)
    # count formula: C(B, 2) + per variant, B minus one if its identity has a baseline
    b = int(images["is_baseline"].sum())
    with_baseline = set(images.loc[images["is_baseline"], "identity_id"])
    variants = images[~images["is_baseline"]]
    expected = math.comb(b, 2) + sum(b - (i in with_baseline) for i in variants["identity_id"])
    assert len(got) == expected
    # every non-mated pair involves a baseline, and never two images of one identity
    baselines = set(images.loc[images["is_baseline"], "image_id"])
    assert all(a in baselines or bb in baselines for a, bb in got)
    assert (nm["identity_a"] != nm["identity_b"]).all()


def test_reference_mode_samples_a_subset_of_the_same_pairs():
    images = random_images(np.random.default_rng(7), n_identities=30)
    full = comparisons.build_pairs(images)
    total = full.attrs["nonmated_total"]
    sample = comparisons.build_pairs(images, max_nonmated=total // 3, seed=4)
    nm = sample[~sample["mated"]]
    got = set(zip(nm["image_a"], nm["image_b"], strict=True))
    assert len(nm) == len(got) == total // 3
    assert got <= naive_reference_nonmated(images)


def test_it_rejects_an_unknown_nonmated_mode():
    with pytest.raises(ValueError, match="nonmated"):
        comparisons.build_pairs(HAND, nonmated="some")


# --- mated="all": every pair within an identity ------------------------------------------------


def naive_all_mated(images: pd.DataFrame) -> set[tuple[int, int]]:
    """Every unordered same-identity pair; baseline first, else smaller image id first."""
    out = set()
    for a, b in itertools.combinations(images.itertuples(), 2):
        if a.identity_id != b.identity_id:
            continue
        if b.is_baseline or (not a.is_baseline and b.image_id < a.image_id):
            a, b = b, a
        out.add((a.image_id, b.image_id))
    return out


def test_all_mated_pairs_on_the_hand_example():
    pairs = comparisons.build_pairs(HAND, mated="all")
    mated = pairs[pairs["mated"]]
    # Identity 10 (images 1 baseline, 2, 3): C(3,2) = 3 pairs (1,2), (1,3), (2,3);
    # identity 20 (4 baseline, 5): (4,5); identity 30 (6, 7, no baseline): (6,7);
    # identity 40 (8 alone): none. 5 in all, 3 of them with a baseline.
    assert list(zip(mated["image_a"], mated["image_b"], strict=True)) == [
        (1, 2), (1, 3), (2, 3), (4, 5), (6, 7)
    ]
    assert mated["identity_a"].tolist() == mated["identity_b"].tolist() == [10, 10, 10, 20, 30]
    assert mated["group_a"].tolist() == ["A", "A", "A", "B", "B"]
    assert pairs.attrs["n_mated"] == pairs.attrs["mated_total"] == 5
    assert pairs.attrs["mated_with_baseline"] == 3
    assert pairs.attrs["mated_mode"] == "all"
    assert pairs.attrs["identities_without_baseline"] == [30]
    assert pairs["mated"].tolist() == [True] * 5 + [False] * (len(pairs) - 5)


def test_baseline_mode_reports_its_mode_and_counts():
    pairs = comparisons.build_pairs(HAND)
    assert pairs.attrs["mated_mode"] == "baseline"
    assert pairs.attrs["mated_total"] == pairs.attrs["n_mated"] == 3
    assert pairs.attrs["mated_with_baseline"] == 3
    # The mode attributes are plain strings (JSON-ready), not frames.
    assert pairs.attrs["nonmated_mode"] == "reference"


@pytest.mark.parametrize("seed", range(4))
def test_all_mated_matches_naive_pairs_and_count_formula(seed):
    images = random_images(np.random.default_rng(300 + seed))
    pairs = comparisons.build_pairs(images, mated="all")
    mated = pairs[pairs["mated"]]
    got = list(zip(mated["image_a"], mated["image_b"], strict=True))
    assert len(got) == len(set(got))
    assert set(got) == naive_all_mated(images)
    sizes = images.groupby("identity_id").size()
    assert len(got) == sum(math.comb(int(s), 2) for s in sizes) == pairs.attrs["mated_total"]
    assert got == sorted(got)
    assert (mated["identity_a"] == mated["identity_b"]).all()
    baselines = set(images.loc[images["is_baseline"], "image_id"])
    assert pairs.attrs["mated_with_baseline"] == sum(a in baselines for a, _ in got)


@pytest.mark.parametrize("nonmated", ["reference", "all"])
def test_all_mated_is_a_superset_and_leaves_nonmated_unchanged(nonmated):
    images = random_images(np.random.default_rng(42), n_identities=30)
    base = comparisons.build_pairs(images, nonmated=nonmated, max_nonmated=500, seed=3)
    every = comparisons.build_pairs(images, nonmated=nonmated, max_nonmated=500, seed=3,
                                    mated="all")
    base_mated = pair_set(base[base["mated"]])
    every_mated = pair_set(every[every["mated"]])
    # Same orientation: the baseline pairs appear as they are, baseline first.
    assert base_mated <= every_mated
    assert every.attrs["mated_with_baseline"] == len(base_mated)
    pd.testing.assert_frame_equal(
        base[~base["mated"]].reset_index(drop=True), every[~every["mated"]].reset_index(drop=True)
    )


def test_it_rejects_an_unknown_mated_mode():
    with pytest.raises(ValueError, match="mated"):
        comparisons.build_pairs(HAND, mated="pairs")


def test_all_mated_handles_empty_and_single_image_identities():
    empty = images_frame([]).astype({"image_id": int, "identity_id": int, "is_baseline": bool})
    pairs = comparisons.build_pairs(empty, mated="all")
    assert len(pairs) == 0 and pairs.attrs["mated_total"] == 0
    single = images_frame([(1, 1, "A", True), (2, 2, "A", False)])
    pairs = comparisons.build_pairs(single, mated="all")
    assert pairs.attrs["n_mated"] == 0 and (~pairs["mated"]).sum() == 1
