"""Face alignment to the 112x112 ArcFace 5-point template.

The crop of insightface's ``insightface.utils.face_align.norm_crop``: a similarity transform
(rotation, uniform scale, translation) fitted by least squares (Umeyama) from the five detected
keypoints to the ArcFace template (eyes at about (38.3, 51.7) and (73.5, 51.5), nose (56.0, 71.7),
mouth corners (41.5, 92.4) and (70.7, 92.2) in a 112 crop), then a bilinear warp with black
borders. Recognition and attribute models in :mod:`audit.recognition` and :mod:`audit.sensors`
expect this crop.

The transforms are fitted here for a whole batch at once (:func:`similarity_transforms`, the
closed form skimage's ``SimilarityTransform.estimate`` evaluates one face at a time, which cost
about 0.5 ms per face); the warp is OpenCV's ``warpAffine`` as in ``norm_crop``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .detection import Detection, Upscaled, check_image, upscale_small

ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
"""insightface's ``arcface_dst``: (5, 2) ``(x, y)`` of the keypoints in a 112x112 crop (float32,
as insightface stores it)."""


def similarity_transforms(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transforms (rotation, uniform scale, shift) mapping each point
    set of ``src`` onto ``dst``, as (N, 2, 3) float64 matrices for :func:`cv2.warpAffine`.

    src: (N, K, 2) or (K, 2) ``(x, y)`` points, K >= 2; dst: (K, 2). Umeyama's closed form
    (Umeyama 1991, "Least-squares estimation of transformation parameters between two point
    patterns", IEEE TPAMI 13(4)) as skimage's ``SimilarityTransform.estimate`` computes it,
    reflections excluded; a (K, 2) ``src`` gives (2, 3). Point sets that coincide give NaN.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    single = src.ndim == 2
    src = src[None] if single else src
    if src.ndim != 3 or src.shape[1:] != dst.shape or dst.ndim != 2 or dst.shape[1] != 2:
        raise ValueError(f"expected (N, K, 2) and (K, 2) point sets, got {src.shape}, {dst.shape}")
    if dst.shape[0] < 2:
        raise ValueError("need at least two points")
    k = dst.shape[0]
    src_mean, dst_mean = src.mean(axis=1), dst.mean(axis=0)
    src_c, dst_c = src - src_mean[:, None], dst - dst_mean
    src_var = (src_c**2).sum(axis=(1, 2)) / k
    cov = np.einsum("kd,nke->nde", dst_c, src_c) / k  # (N, 2, 2): dst_c.T @ src_c / K
    u, s, vt = np.linalg.svd(cov)
    d = np.ones((len(src), 2))
    d[np.linalg.det(cov) < 0, 1] = -1.0
    rotation = u @ (d[:, :, None] * vt)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = (s * d).sum(axis=1) / src_var
    shift = dst_mean - scale[:, None] * np.einsum("nij,nj->ni", rotation, src_mean)
    matrices = np.concatenate([scale[:, None, None] * rotation, shift[:, :, None]], axis=2)
    matrices[src_var <= 0.0] = np.nan
    return matrices[0] if single else matrices


def arcface_template(size: int = 112) -> np.ndarray:
    """The template for a ``size`` crop, (5, 2) float32 (insightface's rule: multiples of 112
    scale it; multiples of 128 scale it and shift x by 8 px per 128)."""
    if size % 112 == 0:
        ratio, shift_x = size / 112.0, 0.0
    elif size % 128 == 0:
        ratio = size / 128.0
        shift_x = 8.0 * ratio
    else:
        raise ValueError(f"size must be a multiple of 112 or 128, got {size}")
    template = ARCFACE_TEMPLATE * np.float32(ratio)
    template[:, 0] += np.float32(shift_x)
    return template


def _to_upscaled(kps: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """(..., 2) input-pixel points -> the same points in the :func:`upscale_small` image."""
    kps = np.asarray(kps, dtype=np.float64)
    return np.stack([(kps[..., 0] + 0.5) * sx - 0.5, (kps[..., 1] + 0.5) * sy - 0.5], axis=-1)


def align_upscaled(upscaled: Sequence[Upscaled], kps: np.ndarray, size: int = 112) -> np.ndarray:
    """Aligned crops of faces found in already upscaled images, (N, size, size, 3) uint8 RGB.

    upscaled: N ``(image, sx, sy)`` from :func:`audit.detection.upscale_small`; kps: (N, 5, 2)
    keypoints in the *original* images' pixels, every row finite. The keypoints are moved into the
    upscaled image the way they were moved out of it (float32, as insightface receives them),
    then each image is warped with its fitted transform.
    """
    kps = np.asarray(kps, dtype=np.float64)
    if kps.shape != (len(upscaled), 5, 2):
        raise ValueError(f"expected kps of shape ({len(upscaled)}, 5, 2), got {kps.shape}")
    out = np.empty((len(upscaled), size, size, 3), dtype=np.uint8)
    if not len(upscaled):
        return out
    scaled = np.stack(
        [_to_upscaled(points, sx, sy) for points, (_, sx, sy) in zip(kps, upscaled, strict=True)]
    ).astype(np.float32)
    matrices = similarity_transforms(scaled, arcface_template(size))
    for i, ((image, _, _), matrix) in enumerate(zip(upscaled, matrices, strict=True)):
        cv2.warpAffine(image, matrix, (size, size), dst=out[i], borderValue=0.0)
    return out


def align_face(image_rgb: np.ndarray, kps: np.ndarray, size: int = 112) -> np.ndarray:
    """One aligned crop, (size, size, 3) uint8 RGB.

    image_rgb: HxWx3 uint8 RGB; kps: (5, 2) keypoints in that image's pixels.
    Small images (short side < 128 px) are first upscaled bicubically, by the same rule as
    detection, and the keypoints scaled with them: warping a bicubic upscale gives a sharper
    crop than stretching a 64-px face with the warp's bilinear interpolation alone.
    """
    upscaled = upscale_small(check_image(image_rgb))
    return align_upscaled([upscaled], np.asarray(kps, dtype=np.float64).reshape(1, 5, 2), size)[0]


def align_faces(
    images_rgb: Sequence[np.ndarray], detections: Sequence[Detection], size: int = 112
) -> np.ndarray:
    """Aligned crops for a batch, (N, size, size, 3) uint8 RGB.

    images_rgb: N HxWx3 uint8 RGB images (sizes may differ); detections: one per image, in those
    images' pixels (as :meth:`audit.detection.FaceDetector.detect_batch` returns them).
    Rows for images whose detection has ``found=False`` are all zeros: callers must mask them with
    the detections, not feed them to a model as faces. ``size`` must be a multiple of 112 or 128
    (insightface's template rule).
    """
    if len(images_rgb) != len(detections):
        raise ValueError(f"{len(images_rgb)} images but {len(detections)} detections")
    out = np.zeros((len(images_rgb), size, size, 3), dtype=np.uint8)
    idx = [i for i, d in enumerate(detections) if d.found and d.kps is not None]
    if idx:
        upscaled = [upscale_small(check_image(images_rgb[i])) for i in idx]
        kps = np.stack([detections[i].kps for i in idx])
        out[idx] = align_upscaled(upscaled, kps, size)
    return out
