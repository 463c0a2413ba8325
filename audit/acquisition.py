"""Failure to acquire (no face found) compared across demographic groups.

An image in which the detector finds no face takes part in no comparison, so FNMR is measured
only on the images where a face was found. When one group loses more images this way, that is a
disparity in itself, and the group's FNMR understates how often its people would fail to be
verified. This module decides whether the failure-to-acquire (FTA) rate differs between groups.

The rule
--------
Images of one synthetic identity are not independent (a face the generator renders badly tends
to fail in every variant), so a test that treats images as independent trials (Fisher's exact
test or a chi-square test on image counts) would call differences real far too often. The test
here works at the identity level:

- Statistic: Pearson's chi-square of the groups x (face found, no face) table of image counts.
- Null distribution: the identities' group labels are permuted (each identity keeps all its
  images and its own failures; each group keeps its number of identities), and the statistic is
  recomputed for each relabelling. Under the null hypothesis that FTA does not depend on the
  group, every relabelling is equally likely, whatever the correlation within an identity.
- p-value: the share of relabellings whose statistic is at least the observed one (two-sided
  in effect: any departure from equal rates, in any direction, raises the statistic). Every
  relabelling is enumerated when there are at most :data:`MAX_EXACT` of them (an exact
  permutation test); otherwise :data:`N_PERMUTATIONS` random relabellings from a fixed seed
  are used and ``p = (1 + #{T* >= T}) / (1 + N)`` (Monte Carlo; the same numbers every time).
- "Differs" means ``p < alpha`` (0.05 by default).

With few identities per group the test cannot reach small p-values (with 3 identities in each
of two groups the smallest possible p is 2/20 = 0.1), which is the honest answer: three faces
that fail in every image are three observations, not dozens.

Without per-identity counts no test is made: the rates are reported and the difference is not
assessed.

Everything here is a pure function of its inputs (numpy and pandas only).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ALPHA", "MAX_EXACT", "N_PERMUTATIONS", "AcquisitionComparison", "GroupAcquisition",
           "compare_acquisition", "identity_counts"]

#: Significance level of "differs".
ALPHA = 0.05
#: Enumerate every relabelling up to this many; sample above it.
MAX_EXACT = 20_000
#: Random relabellings for the Monte Carlo p-value.
N_PERMUTATIONS = 1_999
#: Relabellings scored at once (memory: batch x identities).
_BATCH = 500


@dataclass(frozen=True)
class GroupAcquisition:
    """One group's images, how many had no face found, and its identities (when known)."""

    group: str
    images: int
    failures: int
    identities: int | None = None

    @property
    def rate(self) -> float | None:
        return self.failures / self.images if self.images else None


@dataclass(frozen=True)
class AcquisitionComparison:
    """The groups' FTA rates and the identity-level test of a difference between them.

    ``p_value`` is None when no test was made (``method`` says why); ``differs`` is True only
    when a test was made and ``p_value < alpha``."""

    groups: tuple[GroupAcquisition, ...]
    p_value: float | None
    method: str
    alpha: float = ALPHA
    n_relabellings: int = 0

    @property
    def differs(self) -> bool:
        return self.p_value is not None and self.p_value < self.alpha

    @property
    def images(self) -> int:
        return sum(g.images for g in self.groups)

    @property
    def failures(self) -> int:
        return sum(g.failures for g in self.groups)

    @property
    def highest(self) -> GroupAcquisition | None:
        rated = [g for g in self.groups if g.rate is not None]
        return max(rated, key=lambda g: g.rate or 0.0) if rated else None  # first on ties

    @property
    def lowest(self) -> GroupAcquisition | None:
        rated = [g for g in self.groups if g.rate is not None]
        return min(rated, key=lambda g: g.rate or 0.0) if rated else None


def identity_counts(images: pd.DataFrame) -> pd.DataFrame:
    """Per identity: ``identity_id``, ``group``, ``images`` and ``failures`` (images with no face
    found), from one row per image with ``identity_id``, ``group`` and ``face_found``.

    ``face_found`` may be bool or the text ``True``/``False`` of a CSV; rows whose value is
    neither are left out."""
    if images is None or images.empty or not {"identity_id", "group", "face_found"} <= set(
            images.columns):
        return pd.DataFrame(columns=["identity_id", "group", "images", "failures"])
    found = images["face_found"].map(_flag)
    rows = images.assign(_found=found)[found.notna()]
    out = (rows.assign(_fail=~rows["_found"].astype(bool))
           .groupby(["identity_id", "group"], sort=True)
           .agg(images=("_fail", "size"), failures=("_fail", "sum"))
           .reset_index())
    out["group"] = out["group"].astype(str)
    return out.astype({"images": np.int64, "failures": np.int64})


def _flag(value: Any) -> bool | None:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    return {"true": True, "1": True, "false": False, "0": False}.get(text)


def _whole(value: Any) -> int | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return int(x) if math.isfinite(x) and x >= 0 and x == int(x) else None


def _summary_groups(by_group: Mapping[str, Any]) -> list[GroupAcquisition]:
    out = []
    for g, entry in by_group.items():
        entry = entry or {}
        images, found = _whole(entry.get("images")), _whole(entry.get("faces_found"))
        if images is None or found is None or found > images:
            continue
        out.append(GroupAcquisition(str(g), images, images - found))
    return out


def compare_acquisition(by_group: Mapping[str, Any],
                        identities: pd.DataFrame | None = None, *, alpha: float = ALPHA,
                        n_permutations: int = N_PERMUTATIONS, max_exact: int = MAX_EXACT,
                        seed: int = 0) -> AcquisitionComparison:
    """Compare the groups' failure-to-acquire rates (see the module docstring for the rule).

    Parameters
    ----------
    by_group:
        ``summary["acquisition"]["by_group"]``: group -> ``{"images", "faces_found", ...}``.
    identities:
        Per-identity counts (:func:`identity_counts`): ``group``, ``images``, ``failures``.
        They must add up to ``by_group``'s counts for every group; otherwise (or when absent)
        no test is made.
    """
    groups = _summary_groups(by_group)
    if len(groups) < 2:
        return AcquisitionComparison(tuple(groups), None, "fewer than two groups", alpha)
    failures = sum(g.failures for g in groups)
    total = sum(g.images for g in groups)
    if failures == 0 or failures == total:
        return AcquisitionComparison(tuple(groups), None, "the same rate in every group", alpha)
    ids = _checked_identities(groups, identities)
    if ids is None:
        return AcquisitionComparison(tuple(groups), None, "no per-identity counts", alpha)
    sizes = ids.groupby("group").size()
    groups = [GroupAcquisition(g.group, g.images, g.failures, int(sizes.get(g.group, 0)))
              for g in groups]
    names = [g.group for g in groups]
    labels = ids["group"].map({n: k for k, n in enumerate(names)}).to_numpy(np.int64)
    images = ids["images"].to_numpy(np.float64)
    fails = ids["failures"].to_numpy(np.float64)
    observed = _chi_square(_sums(labels[None, :], images, len(names)),
                           _sums(labels[None, :], fails, len(names)))[0]
    counts = [int((labels == k).sum()) for k in range(len(names))]
    n_exact = _multinomial(counts)
    if n_exact <= max_exact:
        stats = np.concatenate([
            _chi_square(_sums(batch, images, len(names)), _sums(batch, fails, len(names)))
            for batch in _all_labellings(counts, _BATCH)])
        p = float(np.mean(stats >= observed * (1 - 1e-9)))
        return AcquisitionComparison(tuple(groups), p, "exact identity-level permutation test",
                                     alpha, n_exact)
    # Random relabellings: identities sorted by group, a shuffled order, then per-group sums
    # over consecutive blocks of the groups' sizes (the same as permuting the labels).
    order = np.argsort(labels, kind="stable")
    images, fails = images[order], fails[order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    keep = np.asarray(counts) > 0
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    while done < n_permutations:
        b = min(_BATCH, n_permutations - done)
        perm = rng.permuted(np.broadcast_to(np.arange(labels.size), (b, labels.size)), axis=1)
        sums_images = np.add.reduceat(images[perm], starts[keep], axis=1)
        sums_fails = np.add.reduceat(fails[perm], starts[keep], axis=1)
        stats = _chi_square(sums_images, sums_fails)
        hits += int((stats >= observed * (1 - 1e-9)).sum())
        done += b
    p = (1 + hits) / (1 + n_permutations)
    return AcquisitionComparison(
        tuple(groups), p,
        f"identity-level permutation test, {n_permutations:,} random relabellings", alpha,
        n_permutations)


def _checked_identities(groups: list[GroupAcquisition],
                        identities: pd.DataFrame | None) -> pd.DataFrame | None:
    """The per-identity rows of ``groups``, or None when they are missing or do not add up to
    the groups' image and failure counts."""
    if identities is None or identities.empty or not {"group", "images", "failures"} <= set(
            identities.columns):
        return None
    names = {g.group for g in groups}
    ids = identities.assign(group=identities["group"].astype(str))
    ids = ids[ids["group"].isin(names)]
    images = pd.to_numeric(ids["images"], errors="coerce")
    fails = pd.to_numeric(ids["failures"], errors="coerce")
    if images.isna().any() or fails.isna().any():
        return None
    ids = ids.assign(images=images.astype(np.int64), failures=fails.astype(np.int64))
    totals = ids.groupby("group")[["images", "failures"]].sum()
    for g in groups:
        if g.group not in totals.index or (int(totals.at[g.group, "images"]),
                                           int(totals.at[g.group, "failures"])) != (
                g.images, g.failures):
            return None
    return ids.reset_index(drop=True)


def _sums(labels: np.ndarray, weights: np.ndarray, n_groups: int) -> np.ndarray:
    """Per row of ``labels`` (relabellings x identities), the sum of ``weights`` per group."""
    rows = labels.shape[0]
    index = labels + n_groups * np.arange(rows)[:, None]
    return np.bincount(index.ravel(), weights=np.broadcast_to(weights, labels.shape).ravel(),
                       minlength=rows * n_groups).reshape(rows, n_groups)


def _chi_square(images: np.ndarray, failures: np.ndarray) -> np.ndarray:
    """Pearson's chi-square of the groups x (failed, found) table, one per row; groups with no
    images add nothing."""
    total = images.sum(axis=1, keepdims=True)
    rate = failures.sum(axis=1, keepdims=True) / total
    expected_fail = images * rate
    expected_found = images * (1 - rate)
    with np.errstate(divide="ignore", invalid="ignore"):
        part = ((failures - expected_fail) ** 2 / expected_fail
                + ((images - failures) - expected_found) ** 2 / expected_found)
    return np.nansum(np.where(images > 0, part, 0.0), axis=1)


def _multinomial(counts: list[int]) -> int:
    out, n = 1, 0
    for k in counts:
        n += k
        out *= math.comb(n, k)
    return out


def _all_labellings(counts: list[int], batch: int):
    """Every assignment of ``sum(counts)`` identities to groups with these sizes, as arrays of
    group indices (rows), in batches."""
    n = sum(counts)

    def assign(free: tuple[int, ...], k: int):
        if k == len(counts) - 1:
            yield {i: k for i in free}
            return
        for chosen in itertools.combinations(free, counts[k]):
            rest = tuple(i for i in free if i not in chosen)
            for tail in assign(rest, k + 1):
                yield {**dict.fromkeys(chosen, k), **tail}

    rows: list[list[int]] = []
    for mapping in assign(tuple(range(n)), 0):
        rows.append([mapping[i] for i in range(n)])
        if len(rows) == batch:
            yield np.asarray(rows, dtype=np.int64)
            rows = []
    if rows:
        yield np.asarray(rows, dtype=np.int64)
