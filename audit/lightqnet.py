"""LightQNet face image quality: the crop, its preprocessing and the ONNX model.

:class:`LightQNetQuality` scores faces with the LightQNet face image quality network (Chen et
al., "LightQNet: Lightweight Deep Face Quality Assessment for Risk-Controlled Face Recognition",
IEEE Signal Processing Letters 2021), one number per face, higher is better. Its input is a
96x96 RGB crop that puts the eyes and the mouth centre at :data:`LIGHTQNET_TEMPLATE`
(:func:`lightqnet_crop`, a similarity transform of the detector's 5 keypoints), scaled by
:func:`lightqnet_input`. :class:`audit.analysis.FaceAnalyzer` runs it when asked
(``quality="lightqnet"``); the statistics on quality are in :mod:`audit.quality`, which
re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .align import similarity_transforms
from .detection import Upscaled, check_image, upscale_small
from .recognition import OnnxBatchRunner
from .registry import ModelError, ModelRegistry

__all__ = [
    "LIGHTQNET_SIZE",
    "LIGHTQNET_TEMPLATE",
    "LightQNetQuality",
    "lightqnet_crop",
    "lightqnet_crops",
    "lightqnet_crops_upscaled",
    "lightqnet_input",
    "lightqnet_points",
    "similarity_transform",
]

LIGHTQNET_SIZE = 96
"""Side of LightQNet's square input crop in pixels."""

LIGHTQNET_TEMPLATE = (
    np.array([[34.19, 46.16], [65.65, 45.98], [50.12, 82.40]], dtype=np.float64)
    / 100.0
    * LIGHTQNET_SIZE
)
"""Where LightQNet's crop puts (left eye, right eye, mouth centre), (3, 2) ``(x, y)`` pixels of
the 96x96 crop: (34.19, 46.16), (65.65, 45.98), (50.12, 82.40) percent of the side
(``shared/models/MODELS.md``; KaenChan/lightqnet ``face_normalizer.py``)."""


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, shift) mapping ``src`` to
    ``dst``, as a (2, 3) float64 matrix for :func:`cv2.warpAffine`.

    src, dst: (K, 2) ``(x, y)`` points, K >= 2. Umeyama's closed form (Umeyama 1991, "Least-squares
    estimation of transformation parameters between two point patterns", IEEE TPAMI 13(4)), the
    estimator of skimage's ``SimilarityTransform.estimate`` that LightQNet's own alignment uses;
    reflections are excluded. One face of :func:`audit.align.similarity_transforms`.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(
            f"expected two (K, 2) point sets with K >= 2, got {src.shape}, {dst.shape}"
        )
    if float(((src - src.mean(axis=0)) ** 2).sum()) <= 0.0:
        raise ValueError("the source points coincide; no similarity transform")
    return similarity_transforms(src, dst)


def lightqnet_points(kps: np.ndarray) -> np.ndarray:
    """LightQNet's three alignment points from SCRFD's five keypoints.

    kps: (5, 2) or (N, 5, 2) ``(x, y)``: left eye, right eye, nose, left and right mouth corner.
    Returns (3, 2) or (N, 3, 2): left eye, right eye, mouth centre (mean of the two corners).
    """
    kps = np.asarray(kps, dtype=np.float64)
    if kps.shape[-2:] != (5, 2):
        raise ValueError(f"expected (..., 5, 2) keypoints, got {kps.shape}")
    mouth = kps[..., 3:5, :].mean(axis=-2, keepdims=True)
    return np.concatenate([kps[..., 0:2, :], mouth], axis=-2)


def lightqnet_crop(image_rgb: np.ndarray, kps: np.ndarray) -> np.ndarray:
    """One 96x96 LightQNet crop, (96, 96, 3) uint8 **RGB** (the channel order of the input).

    image_rgb: HxWx3 uint8 RGB; kps: (5, 2) SCRFD keypoints in that image's pixels. The crop is
    the similarity transform of (left eye, right eye, mouth centre) onto
    :data:`LIGHTQNET_TEMPLATE` (:func:`similarity_transform`), warped bilinearly with black
    borders (``cv2.warpAffine``'s defaults, as LightQNet's ``face_normalizer.py``).

    As in :func:`audit.align.align_face`, images whose short side is below 128 px are first
    upscaled bicubically (:func:`audit.detection.upscale_small`) and the points scaled with them,
    so a 64-px generated face is resampled the same way for every model. (LightQNet's own demo
    warps to 160 px and resizes to 96; warping straight to 96, as ``shared/models/MODELS.md``
    specifies, differs from that only by the interpolation.)
    """
    upscaled = upscale_small(check_image(image_rgb))
    return lightqnet_crops_upscaled([upscaled], np.asarray(kps, np.float64).reshape(1, 5, 2))[0]


def lightqnet_crops_upscaled(upscaled: Sequence[Upscaled], kps: np.ndarray) -> np.ndarray:
    """:func:`lightqnet_crop` of N faces in images already upscaled by
    :func:`audit.detection.upscale_small` (``(image, sx, sy)`` each), (N, 96, 96, 3) uint8 RGB.

    kps: (N, 5, 2) keypoints in the *original* images' pixels, every row finite. The N
    transforms are fitted at once (:func:`audit.align.similarity_transforms`).
    """
    kps = np.asarray(kps, dtype=np.float64)
    if kps.shape != (len(upscaled), 5, 2):
        raise ValueError(f"expected kps of shape ({len(upscaled)}, 5, 2), got {kps.shape}")
    out = np.empty((len(upscaled), LIGHTQNET_SIZE, LIGHTQNET_SIZE, 3), dtype=np.uint8)
    if not len(upscaled):
        return out
    points = lightqnet_points(kps)
    sx = np.array([u[1] for u in upscaled])[:, None]
    sy = np.array([u[2] for u in upscaled])[:, None]
    points = np.stack([(points[..., 0] + 0.5) * sx - 0.5, (points[..., 1] + 0.5) * sy - 0.5], -1)
    matrices = similarity_transforms(points, LIGHTQNET_TEMPLATE)
    size = (LIGHTQNET_SIZE, LIGHTQNET_SIZE)
    for i, ((image, _, _), matrix) in enumerate(zip(upscaled, matrices, strict=True)):
        cv2.warpAffine(image, matrix, size, dst=out[i], borderValue=0.0)
    return out


def lightqnet_crops(images_rgb: Sequence[np.ndarray], kps: np.ndarray) -> np.ndarray:
    """:func:`lightqnet_crop` of N images, (N, 96, 96, 3) uint8 RGB.

    kps: (N, 5, 2); rows that hold any NaN (no face) give all-zero crops: mask them out.
    """
    kps = np.asarray(kps, dtype=np.float64)
    if kps.shape != (len(images_rgb), 5, 2):
        raise ValueError(f"expected kps of shape ({len(images_rgb)}, 5, 2), got {kps.shape}")
    out = np.zeros((len(images_rgb), LIGHTQNET_SIZE, LIGHTQNET_SIZE, 3), dtype=np.uint8)
    found = np.flatnonzero(np.all(np.isfinite(kps), axis=(1, 2)))
    if len(found):
        upscaled = [upscale_small(check_image(images_rgb[i])) for i in found]
        out[found] = lightqnet_crops_upscaled(upscaled, kps[found])
    return out


def lightqnet_input(crops_rgb: np.ndarray) -> np.ndarray:
    """Network input of (N, 96, 96, 3) uint8 RGB crops: (N, 96, 96, 3) float32 NHWC,
    channels reversed to **BGR** (LightQNet was trained on OpenCV images as read) and scaled
    ``(x - 128) / 128`` (KaenChan/lightqnet ``tf_face_quality_model.py``)."""
    crops_rgb = np.asarray(crops_rgb)
    if crops_rgb.ndim != 4 or crops_rgb.shape[1:] != (LIGHTQNET_SIZE, LIGHTQNET_SIZE, 3):
        raise ValueError(f"expected (N, 96, 96, 3) crops, got {crops_rgb.shape}")
    if crops_rgb.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB crops, got dtype {crops_rgb.dtype}")
    bgr = crops_rgb[..., ::-1].astype(np.float32)
    return np.ascontiguousarray((bgr - np.float32(128.0)) / np.float32(128.0))


class LightQNetQuality:
    """LightQNet face image quality (``lightqnet_dm100.onnx``, width multiplier 1.0).

    Preprocessing (``shared/models/MODELS.md``, verified there against the TensorFlow original):
    input ``input:0`` (N, 96, 96, 3) NHWC float32 with a dynamic batch; BGR channel order;
    ``(x - 128) / 128``; on the 96x96 crop of :func:`lightqnet_crop`. Output ``confidence_st:0``
    (N, 1): a quality score, higher is better. MODELS.md's reference: about 0.58 on clean photos,
    0.12 after a Gaussian blur of sigma 3 or a 16-px down-and-up of the 96-px crop; on insightface's
    sample faces this adapter gives 0.56, 0.15 and 0.14 (``tests/audit/test_quality.py``). The
    same blur applied to a whole photo whose faces are larger than the crop costs less (t1.jpg:
    0.36), since shrinking the face into the crop undoes part of it.

    registry: model directory; intra_op_num_threads: onnxruntime threads (None = its choice).
    """

    model_name = "lightqnet"

    def __init__(self, registry: ModelRegistry, *, intra_op_num_threads: int | None = None) -> None:
        spec = registry.spec(self.model_name)
        if spec.role != "quality":
            raise ModelError(f"model {spec.name!r} is a {spec.role} model, not a quality model")
        self.name, self.weights_sha256, self.licence = spec.name, spec.sha256, spec.licence
        # Batches of 8: on one CPU core 1.24 ms per face, against 1.48 at 16 (cache).
        self._runner = OnnxBatchRunner(
            registry.verify(self.model_name),
            intra_op_num_threads=intra_op_num_threads,
            max_batch=8,
        )
        shape = self._runner.input_shape
        if self._runner.input_name != "input:0" or tuple(shape[1:]) != (96, 96, 3):
            raise ModelError(
                f"{self._runner.path}: expected input 'input:0' of shape (N, 96, 96, 3), got "
                f"{self._runner.input_name!r} {shape}"
            )

    def score_crops(self, crops_rgb: np.ndarray) -> np.ndarray:
        """Quality of (N, 96, 96, 3) uint8 RGB crops from :func:`lightqnet_crops` -> (N,)
        float32."""
        x = lightqnet_input(crops_rgb)
        if len(x) == 0:
            return np.zeros(0, dtype=np.float32)
        return self._runner.run(x).reshape(len(x))

    def score(
        self,
        images_rgb: Sequence[np.ndarray],
        kps: np.ndarray,
        *,
        upscaled: Sequence[Upscaled] | None = None,
    ) -> np.ndarray:
        """Quality of one face per image -> (N,) float32, higher is better.

        images_rgb: N HxWx3 uint8 RGB images (sizes may differ); kps: (N, 5, 2) SCRFD keypoints
        in those images' pixels, NaN rows where no face was found (their score is NaN).
        upscaled: optionally the N images' :func:`audit.detection.upscale_small` results, when
        the caller already has them (:class:`audit.analysis.FaceAnalyzer` shares one upscale
        per image between detection, alignment and this crop).
        """
        kps = np.asarray(kps, dtype=np.float64)
        if kps.shape != (len(images_rgb), 5, 2):
            raise ValueError(f"expected kps of shape ({len(images_rgb)}, 5, 2), got {kps.shape}")
        if upscaled is not None and len(upscaled) != len(images_rgb):
            raise ValueError(f"{len(upscaled)} upscaled images for {len(images_rgb)} images")
        out = np.full(len(images_rgb), np.nan, dtype=np.float32)
        found = np.flatnonzero(np.all(np.isfinite(kps), axis=(1, 2)))
        if len(found):
            if upscaled is None:
                ups = [upscale_small(check_image(images_rgb[i])) for i in found]
            else:
                ups = [upscaled[i] for i in found]
            out[found] = self.score_crops(lightqnet_crops_upscaled(ups, kps[found]))
        return out

