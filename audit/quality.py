"""Face image quality: LightQNet scores, ISO/IEC 29794-5-style measures, quality by group and
error-versus-discard curves.

Scoring:

- :class:`LightQNetQuality`: the LightQNet face image quality network (Chen et al., "LightQNet:
  Lightweight Deep Face Quality Assessment for Risk-Controlled Face Recognition", IEEE Signal
  Processing Letters 2021), one number per face, higher is better.
- :func:`quality_measures`: explicit, interpretable measures in the spirit of ISO/IEC 29794-5
  (face image quality components): inter-eye distance, luminance mean and spread, sharpness,
  illumination uniformity and head pose.

Statistics:

- :func:`percentile_against`: each value's percentile rank within the audit's baseline images.
- :func:`quality_by_group`: per-group distribution and share below a quality threshold.
- :func:`edc_curves`: error-versus-discard curves per group (ISO/IEC 29794-1; Grother and
  Tabassi 2007).

The LightQNet model and its crop live in :mod:`audit.lightqnet` (re-exported here); everything
else is plain numpy/pandas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .align import align_face
from .lightqnet import (
    LIGHTQNET_SIZE,
    LIGHTQNET_TEMPLATE,
    LightQNetQuality,
    lightqnet_crop,
    lightqnet_crops,
    lightqnet_crops_upscaled,
    lightqnet_input,
    lightqnet_points,
    similarity_transform,
)
from .sensors import SHARPNESS_REGION, luma

if TYPE_CHECKING:  # only for hints; audit.analysis imports audit.lightqnet, not this module
    from .analysis import AnalysisBatch


__all__ = [
    "EDC_COLUMNS",
    "LIGHTQNET_SIZE",
    "LIGHTQNET_TEMPLATE",
    "LUMINANCE_REGION",
    "QUALITY_BY_GROUP_COLUMNS",
    "QUALITY_MEASURE_UNITS",
    "LightQNetQuality",
    "edc_curves",
    "lightqnet_crop",
    "lightqnet_crops",
    "lightqnet_crops_upscaled",
    "lightqnet_input",
    "lightqnet_points",
    "percentile_against",
    "quality_by_group",
    "quality_measures",
    "similarity_transform",
]

# --- ISO/IEC 29794-5-style measures ------------------------------------------------------------

LUMINANCE_REGION: tuple[slice, slice] = SHARPNESS_REGION
"""Face region for the luminance measures, ``(rows, columns)`` of the ArcFace-aligned 112 crop:
the inner face of :data:`audit.sensors.SHARPNESS_REGION` (eyebrows to below the mouth), so hair,
background and warp borders stay out."""

QUALITY_MEASURE_UNITS: dict[str, str] = {
    "inter_eye_distance": "pixels of the original image",
    "luminance_mean": "0-255 luma",
    "luminance_std": "0-255 luma",
    "sharpness": "luma^2 (variance of the 3x3 Laplacian of 0-255 luma)",
    "sharpness_normalised": "ratio (Laplacian variance / luma variance)",
    "illumination_uniformity": "ratio (0-1, 1 = left and right equally lit)",
    "yaw": "degrees",
    "pitch": "degrees",
    "roll": "degrees",
    "quality": "LightQNet score (higher is better)",
}
"""Unit of each column of :func:`quality_measures`."""


def quality_measures(
    batch: AnalysisBatch, images: Sequence[np.ndarray], *, index: Sequence | None = None
) -> pd.DataFrame:
    """ISO/IEC 29794-5-style quality measures of analysed images, one row per image.

    batch: the :class:`audit.analysis.AnalysisBatch` of ``images`` (N HxWx3 uint8 RGB, in the
    same order). index: optional row labels (e.g. image ids); default 0..N-1.

    Columns (units in :data:`QUALITY_MEASURE_UNITS`; every value is NaN where no face was found):

    - ``face_found`` (bool);
    - ``inter_eye_distance``: distance between the two eye keypoints in the original image's
      pixels, the resolution measure of ISO/IEC 29794-5 and ICAO portrait guidance (which asks
      for at least 60-90 px; a 64-px generated face has about 20-25);
    - ``luminance_mean`` / ``luminance_std``: mean and standard deviation of BT.601 luma over
      :data:`LUMINANCE_REGION` of the ArcFace-aligned crop (the luminance mean and spread
      components of ISO/IEC 29794-5, here as plain statistics without its mapping to 0-100);
    - ``sharpness``, ``sharpness_normalised``, ``illumination_uniformity``, ``yaw``, ``pitch``,
      ``roll``: copied from ``batch`` (:mod:`audit.sensors`, :mod:`audit.pose`);
    - ``quality``: ``batch.quality`` (LightQNet; all NaN if the analyzer ran without it).
    """
    n = len(batch)
    if len(images) != n:
        raise ValueError(f"{len(images)} images but the batch has {n} rows")
    if index is not None and len(index) != n:
        raise ValueError(f"index has {len(index)} labels for {n} rows")
    found = np.asarray(batch.face_found, dtype=bool)
    kps = np.asarray(batch.kps, dtype=np.float64)
    ied = np.full(n, np.nan)
    ied[found] = np.linalg.norm(kps[found, 1] - kps[found, 0], axis=1)
    lum_mean, lum_std = np.full(n, np.nan), np.full(n, np.nan)
    rows, cols = LUMINANCE_REGION
    for i in np.flatnonzero(found):
        y = luma(align_face(images[i], kps[i])[rows, cols]).astype(np.float64)
        lum_mean[i], lum_std[i] = y.mean(), y.std()
    quality = getattr(batch, "quality", None)
    frame = pd.DataFrame(
        {
            "face_found": found,
            "inter_eye_distance": ied,
            "luminance_mean": lum_mean,
            "luminance_std": lum_std,
            "sharpness": np.asarray(batch.sharpness, dtype=np.float64),
            "sharpness_normalised": np.asarray(batch.sharpness_normalised, dtype=np.float64),
            "illumination_uniformity": np.asarray(batch.illumination_uniformity, dtype=np.float64),
            "yaw": np.asarray(batch.yaw, dtype=np.float64),
            "pitch": np.asarray(batch.pitch, dtype=np.float64),
            "roll": np.asarray(batch.roll, dtype=np.float64),
            "quality": (
                np.full(n, np.nan) if quality is None else np.asarray(quality, dtype=np.float64)
            ),
        },
        index=pd.RangeIndex(n) if index is None else pd.Index(index),
    )
    return frame


# --- statistics --------------------------------------------------------------------------------


def percentile_against(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Percentile rank (0-100) of each value within ``reference``, (N,) float64.

    Semantics: scipy's ``percentileofscore(reference, v, kind="weak")``, i.e. the empirical CDF:
    the percentage of reference values **at or below** ``v``. So for a higher-is-better measure,
    100 means "at least as good as every baseline image", and a value below all of them reads 0. Use the audit's own baseline
    images as ``reference``, so a variant's quality reads against the audit's starting point.

    NaN values give NaN; NaN entries of ``reference`` are dropped. Raises ``ValueError`` if
    ``reference`` holds nothing else.
    """
    values = np.asarray(values, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64).ravel()
    ref = np.sort(ref[~np.isnan(ref)])
    if ref.size == 0:
        raise ValueError("reference has no values to rank against (empty or all NaN)")
    ranks = np.searchsorted(ref, values, side="right") * (100.0 / ref.size)
    return np.where(np.isnan(values), np.nan, ranks)


QUALITY_BY_GROUP_COLUMNS: tuple[str, ...] = (
    "n",
    "n_missing",
    "mean",
    "q25",
    "median",
    "q75",
    "below",
    "share_below",
)


def quality_by_group(
    table: pd.DataFrame, measure: str, threshold: float, *, group: str = "group"
) -> pd.DataFrame:
    """Distribution of one quality measure per group, and the share below a threshold.

    table: one row per image with a ``group`` column and a numeric ``measure`` column (e.g.
    :func:`quality_measures` joined to the images' groups). threshold: a value of ``measure``.

    Returns one row per group (index ``group``, sorted), columns
    :data:`QUALITY_BY_GROUP_COLUMNS`: ``n`` images with a value, ``n_missing`` with NaN (no
    face; left out of everything else), ``mean``, quartiles ``q25``/``median``/``q75`` (numpy's
    linear interpolation), ``below`` = count with value **strictly below** ``threshold`` and
    ``share_below = below / n`` (NaN when n = 0). ``attrs`` records ``measure`` and
    ``threshold``.
    """
    for column in (group, measure):
        if column not in table.columns:
            raise ValueError(f"table is missing column {column!r}")
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    if table[group].isna().any():
        raise ValueError(f"column {group!r} has missing values")
    rows = {}
    values_all = pd.to_numeric(table[measure], errors="raise").to_numpy(dtype=np.float64)
    labels = table[group].to_numpy(dtype=object)
    for label in sorted(set(labels.tolist())):
        values = values_all[labels == label]
        present = values[~np.isnan(values)]
        n = int(present.size)
        below = int(np.sum(present < threshold))
        if n:
            q25, median, q75 = np.quantile(present, [0.25, 0.5, 0.75])
            mean, share = float(present.mean()), below / n
        else:
            q25 = median = q75 = mean = share = math.nan
        rows[label] = {
            "n": n,
            "n_missing": int(values.size - n),
            "mean": mean,
            "q25": float(q25),
            "median": float(median),
            "q75": float(q75),
            "below": below,
            "share_below": share,
        }
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(QUALITY_BY_GROUP_COLUMNS))
    frame.index.name = "group"
    frame = frame.astype({"n": np.int64, "n_missing": np.int64, "below": np.int64})
    frame.attrs.update(measure=measure, threshold=threshold)
    return frame


EDC_COLUMNS: tuple[str, ...] = (
    "group",
    "fraction",
    "fnmr",
    "n_mated",
    "false_non_matches",
    "discarded_images",
    "discarded_fraction",
)


def edc_curves(
    comparisons: pd.DataFrame,
    quality_of_image: Mapping[int, float] | pd.Series,
    threshold: float,
    fractions: Sequence[float] | np.ndarray = np.linspace(0, 0.5, 11),  # noqa: B008 - read-only
) -> pd.DataFrame:
    """Error-versus-discard curves: FNMR at a fixed threshold per group as the lowest-quality
    images are discarded (ISO/IEC 29794-1; Grother and Tabassi 2007, "Performance of biometric
    quality measures", IEEE TPAMI 29(4)).

    comparisons: one row per comparison with ``image_a``, ``image_b``, ``mated`` (bool),
    ``group_a`` and ``score`` (e.g. :func:`audit.comparisons.build_pairs` plus scores); only
    mated rows are used (FNMR). quality_of_image: image id -> quality (higher is better); every
    image of a mated comparison needs a finite value. threshold: the fixed global decision
    threshold (a comparison matches when ``score >= threshold``); it is **not** re-set as images
    are discarded.

    Rule, for each fraction f:

    - The images are the distinct images of the mated comparisons, over the **whole audit**
      (all groups together, so one quality cutoff applies to everyone). With M images sorted by
      quality, k = floor(f * M) (rounded after a 1e-9 guard against binary fractions such as
      0.3 * 10 = 2.9999...); if k > 0, every image whose quality is at or below the k-th lowest
      is discarded. Ties at the cutoff are discarded together, so the realised share,
      ``discarded_fraction``, can exceed f; nothing is broken arbitrarily.
    - A mated comparison is discarded if either of its images is, i.e. it is kept iff the
      pair's quality, the **minimum** of its two images' qualities, is above the cutoff.
    - FNMR per group = share of the kept mated comparisons with ``score < threshold``; NaN when
      none is kept (``n_mated`` 0).

    Returns a tidy frame, columns :data:`EDC_COLUMNS`, one row per (group, fraction), groups
    sorted and fractions in the given order. A curve that falls means that discarding low
    quality images removes that group's errors; different slopes per group show whether quality
    filtering narrows or widens the gap.
    """
    threshold, fractions = _check_edc_inputs(comparisons, threshold, fractions)
    mated = comparisons[comparisons["mated"].to_numpy(dtype=bool)]
    score = mated["score"].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(score)):
        raise ValueError("score of a mated comparison is NaN or infinite")
    quality, pair_quality = _image_and_pair_quality(mated, quality_of_image)
    labels = mated["group_a"].to_numpy(dtype=object)
    groups = sorted(set(labels.tolist()))
    error = score < threshold
    ordered = np.sort(quality)
    n_images = len(quality)
    rows = []
    for f in fractions:
        discarded, kept = _discard_lowest(f, quality, ordered, pair_quality)
        for label in groups:
            rows.append(_edc_row(label, f, kept & (labels == label), error, discarded, n_images))
    frame = pd.DataFrame(rows, columns=list(EDC_COLUMNS))
    frame = frame.astype(
        {"n_mated": np.int64, "false_non_matches": np.int64, "discarded_images": np.int64}
    )
    frame = frame.sort_values(["group"], kind="stable").reset_index(drop=True)
    frame.attrs.update(threshold=threshold, n_images=n_images)
    return frame


def _check_edc_inputs(
    comparisons: pd.DataFrame, threshold: float, fractions: Sequence[float] | np.ndarray
) -> tuple[float, np.ndarray]:
    """Validate :func:`edc_curves`' inputs -> (threshold as float, fractions as a flat array)."""
    for column in ("image_a", "image_b", "mated", "group_a", "score"):
        if column not in comparisons.columns:
            raise ValueError(f"comparisons is missing column {column!r}")
    threshold = float(threshold)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold!r}")
    fractions = np.asarray(fractions, dtype=np.float64).ravel()
    if (
        fractions.size == 0
        or np.any(~np.isfinite(fractions))
        or np.any((fractions < 0) | (fractions > 1))
    ):
        raise ValueError(f"fractions must be finite values in [0, 1], got {fractions.tolist()}")
    if comparisons["mated"].isna().any():
        raise ValueError("mated has missing values")
    return threshold, fractions


def _image_and_pair_quality(
    mated: pd.DataFrame, quality_of_image: Mapping[int, float] | pd.Series
) -> tuple[np.ndarray, np.ndarray]:
    """Quality of each distinct image of the mated rows (sorted by id), and each pair's minimum."""
    image_a = mated["image_a"].to_numpy()
    image_b = mated["image_b"].to_numpy()
    images = np.unique(np.concatenate([image_a, image_b]))
    missing = [i for i in images.tolist() if i not in quality_of_image]
    if missing:
        raise ValueError(f"no quality for image(s) {missing[:10]} of mated comparisons")
    quality = np.array([float(quality_of_image[i]) for i in images.tolist()], dtype=np.float64)
    if not np.all(np.isfinite(quality)):
        bad = images[~np.isfinite(quality)][:10].tolist()
        raise ValueError(f"quality is NaN or infinite for image(s) {bad} of mated comparisons")
    position = {image: k for k, image in enumerate(images.tolist())}
    pair_quality = np.minimum(
        quality[[position[i] for i in image_a.tolist()]],
        quality[[position[i] for i in image_b.tolist()]],
    )
    return quality, pair_quality


def _discard_lowest(
    f: float, quality: np.ndarray, ordered: np.ndarray, pair_quality: np.ndarray
) -> tuple[int, np.ndarray]:
    """Discard the lowest share ``f`` of images (ties together) -> (images discarded, pairs kept)."""
    k = math.floor(f * len(quality) + 1e-9)
    if k > 0:
        cutoff = ordered[k - 1]
        return int(np.sum(quality <= cutoff)), pair_quality > cutoff
    return 0, np.ones(len(pair_quality), dtype=bool)


def _edc_row(
    label: object, f: float, mask: np.ndarray, error: np.ndarray, discarded: int, n_images: int
) -> dict[str, object]:
    """One group's EDC row at fraction ``f`` from its kept mated comparisons (``mask``)."""
    n_mated = int(mask.sum())
    errors = int(np.sum(error & mask))
    return {
        "group": label,
        "fraction": float(f),
        "fnmr": errors / n_mated if n_mated else math.nan,
        "n_mated": n_mated,
        "false_non_matches": errors,
        "discarded_images": discarded,
        "discarded_fraction": discarded / n_images if n_images else math.nan,
    }
