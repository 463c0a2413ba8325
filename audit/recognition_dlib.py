"""dlib's ResNet face recognition model: a second FR family, independent of the ArcFace/ONNX ones.

Why it is here: identity drift of generated edits must not be judged with the FR model that
conditioned the generator. dlib's model (Davis King's slimmed ResNet-34 with 27 convolutional
layers, trained with a metric loss on about 3 million faces, 128-d output; http://dlib.net and
https://github.com/davisking/dlib-models, ``dlib_face_recognition_resnet_model_v1``) shares
neither architecture, training data nor alignment with MobileFaceNet/ArcFace. Davis King released
the model files into the public domain.

Files: ``dlib_face_recognition_resnet_model_v1.dat`` and ``shape_predictor_5_face_landmarks.dat``
from the PyPI package ``face_recognition_models`` (CC0), run with the ``dlib-bin`` wheel; both
pinned by sha256 in :data:`audit.registry.KNOWN_PACKAGE_MODELS`.

Input (differs from the 112x112 ArcFace crop, hence :meth:`DlibResNetRecognizer.embed_images`):

1. The original RGB image; images whose short side is under 128 px are upscaled bicubically
   first, exactly as for detection and alignment (:func:`audit.detection.upscale_small`).
2. A box for dlib's 5-point shape predictor (eye corners and the base of the nose), made from the
   SCRFD box: a square of side = SCRFD box width, centred on the SCRFD box centre moved down by
   4% of the box height. dlib's predictor was trained on its HOG/MMOD detectors' boxes, which are
   square and sit lower than SCRFD's (those include the forehead); on insightface's ``t1.jpg``
   this box gives descriptors within a median Euclidean distance of 0.05 of those from dlib's own
   HOG boxes (0.11 with the raw SCRFD box), against dlib's same-person threshold of 0.6.
3. dlib aligns a 150x150 chip with 25% padding from those landmarks (``get_face_chip``) and runs
   the network: ``compute_face_descriptor(images, shapes, num_jitters=0)``, batched over images.

Output: 128-d descriptors, **L2-normalised here** (``normalise=True``, the default) so that every
recognizer is compared by cosine similarity. dlib's native comparison is the Euclidean distance
between the *raw* descriptors, "same person" below 0.6 (``normalise=False`` returns those).
The raw descriptors are not unit vectors and share a large common component, so after
normalising, cosines are compressed near 1: raw norms 1.36-1.58 on ``t1.jpg``'s six faces, cosine
between different people 0.81-0.90 there (0.88 mean, 0.93 at the 99th percentile between 80
DCGAN faces), a lightly changed copy of a face 0.998 or more. The exact conversion for raw
descriptors of norms ``a`` and ``b`` is ``cos = (a**2 + b**2 - d**2) / (2 a b)``
(:func:`cosine_from_euclidean`); at norms of about 1.5, dlib's 0.6 corresponds to a cosine of
about 0.92. Thresholds are set per model at a target FMR, so read drift on this model against its
own impostor scores, never against another model's cosine scale.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from .detection import Detection, check_image, upscale_small
from .recognition import Recognizer, l2_normalise
from .registry import ModelError, ModelRegistry

__all__ = [
    "BOX_SHIFT_DOWN",
    "DLIB_SAME_PERSON_DISTANCE",
    "DlibResNetRecognizer",
    "ImageRecognizer",
    "cosine_from_euclidean",
    "dlib_box",
]

DLIB_SAME_PERSON_DISTANCE = 0.6
"""dlib's documented Euclidean-distance threshold on raw descriptors (99.38% on LFW)."""

BOX_SHIFT_DOWN = 0.04
"""The dlib box centre sits this fraction of the SCRFD box height below the SCRFD box centre."""


def cosine_from_euclidean(
    distance: float | np.ndarray, norm_a: float | np.ndarray = 1.0, norm_b: float | np.ndarray = 1.0
) -> float | np.ndarray:
    """Cosine similarity of two vectors of norms ``norm_a``, ``norm_b`` that are ``distance`` apart.

    Law of cosines: ``(a**2 + b**2 - d**2) / (2 a b)``; ``1 - d**2 / 2`` for unit vectors.
    """
    a, b = np.asarray(norm_a, dtype=np.float64), np.asarray(norm_b, dtype=np.float64)
    result = (a**2 + b**2 - np.square(np.asarray(distance, dtype=np.float64))) / (2.0 * a * b)
    return float(result) if np.ndim(result) == 0 else result


class ImageRecognizer(Recognizer):
    """A recognizer that aligns faces itself and so needs the original images, not ArcFace crops.

    :class:`~audit.analysis.FaceAnalyzer` calls :meth:`embed_images` for these.
    """

    @abstractmethod
    def embed_images(
        self, images_rgb: Sequence[np.ndarray], detections: Sequence[Detection]
    ) -> np.ndarray:
        """Embed one face per image.

        images_rgb: N HxWx3 uint8 RGB images (sizes may differ); detections: one per image, in
        that image's pixels (as :meth:`audit.detection.FaceDetector.detect_batch` returns them).
        Returns (N, D) float32: L2-normalised rows, NaN rows where ``found`` is False.
        """

    def embed(self, aligned: np.ndarray) -> np.ndarray:
        raise ModelError(
            f"recognizer {self.name!r} aligns faces itself and cannot embed ArcFace crops: "
            "call embed_images(images_rgb, detections) with the original images"
        )


def dlib_box(bbox: np.ndarray, sx: float = 1.0, sy: float = 1.0) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` integer box for dlib's shape predictor from an SCRFD box.

    bbox: ``x1, y1, x2, y2`` in input pixels; ``sx, sy``: the upscale factors of
    :func:`audit.detection.upscale_small` (the box is returned in upscaled pixels).
    """
    x1, y1, x2, y2 = (float(v) for v in bbox)
    x1, x2 = (x1 + 0.5) * sx - 0.5, (x2 + 0.5) * sx - 0.5
    y1, y2 = (y1 + 0.5) * sy - 0.5, (y2 + 0.5) * sy - 0.5
    side = x2 - x1
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0 + BOX_SHIFT_DOWN * (y2 - y1)
    return (
        round(cx - side / 2.0),
        round(cy - side / 2.0),
        round(cx + side / 2.0),
        round(cy + side / 2.0),
    )


class DlibResNetRecognizer(ImageRecognizer):
    """dlib's ResNet face recognition model v1 (128-d), via ``dlib-bin``.

    registry: where the package model is found and hash-checked
    (:meth:`audit.registry.ModelRegistry.verify_package`).
    intra_op_num_threads: accepted for the common recognizer signature and ignored: dlib's CPU
    build decides its own threading.
    batch_size: faces per call into dlib's network.

    Speed: the ``dlib-bin`` wheel is built without BLAS and runs one thread, so the network takes
    about 95 ms per face on one core here (AMD EPYC, AVX2), batched or not; the landmark step
    about 0.6 ms. That is far slower than MobileFaceNet: embed a sample for identity-drift checks
    rather than every image the generator tries.

    :attr:`models` maps both files' registry names to their sha256 (weights and landmark model).
    """

    model_name = "dlib_resnet"
    shape_predictor_name = "dlib_shape_predictor_5"

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        intra_op_num_threads: int | None = None,
        batch_size: int = 32,
    ) -> None:
        del intra_op_num_threads  # dlib has no per-call thread setting
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        spec = registry.package_spec(self.model_name)
        paths = registry.verify_package(self.model_name)
        try:
            import dlib
        except ImportError as exc:  # found by find_spec but broken (e.g. a missing shared library)
            raise ModelError(
                f"model {self.model_name!r} needs dlib, which failed to import ({exc}); "
                f"reinstall it with: pip install {spec.install}"
            ) from exc
        self._dlib: Any = dlib
        self.name = spec.name
        self.weights_sha256 = spec.sha256
        self.licence = spec.licence
        self.embedding_size = int(spec.embedding_size or 0)
        self.batch_size = int(batch_size)
        self.models = {
            self.name: spec.sha256,
            self.shape_predictor_name: next(
                f.sha256 for f in spec.files if f.key == "shape_predictor_5"
            ),
        }
        self._shape_predictor = dlib.shape_predictor(str(paths["shape_predictor_5"]))
        self._net = dlib.face_recognition_model_v1(str(paths["recognition"]))

    def _prepare(
        self, image_rgb: np.ndarray, detection: Detection
    ) -> tuple[np.ndarray, Any, float, float]:
        """Upscaled contiguous image, dlib's 5-point shape in it, and the upscale factors."""
        if detection.bbox is None:
            raise ValueError("a found detection must carry a bbox")
        upscaled, sx, sy = upscale_small(check_image(image_rgb))
        upscaled = np.ascontiguousarray(upscaled)
        box = self._dlib.rectangle(*dlib_box(detection.bbox, sx, sy))
        return upscaled, self._shape_predictor(upscaled, box), sx, sy

    def landmarks(
        self, images_rgb: Sequence[np.ndarray], detections: Sequence[Detection]
    ) -> np.ndarray:
        """dlib's 5 landmarks per face, (N, 5, 2) float32 ``(x, y)`` in *input* pixels (NaN where
        not found): right-eye outer and inner corner, left-eye outer and inner corner (as seen in
        the image: right side first), base of the nose (dlib's 5-point order)."""
        out = np.full((len(images_rgb), 5, 2), np.nan, dtype=np.float32)
        for i, (image, detection) in enumerate(zip(images_rgb, detections, strict=True)):
            if not detection.found:
                continue
            _, shape, sx, sy = self._prepare(image, detection)
            points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            out[i, :, 0] = (points[:, 0] + 0.5) / sx - 0.5
            out[i, :, 1] = (points[:, 1] + 0.5) / sy - 0.5
        return out

    def embed_images(
        self,
        images_rgb: Sequence[np.ndarray],
        detections: Sequence[Detection],
        *,
        normalise: bool = True,
    ) -> np.ndarray:
        """See :meth:`ImageRecognizer.embed_images`. ``normalise=False`` returns dlib's raw
        descriptors (for its native Euclidean comparison) instead of unit rows."""
        if len(images_rgb) != len(detections):
            raise ValueError(f"{len(images_rgb)} images but {len(detections)} detections")
        out = np.full((len(images_rgb), self.embedding_size), np.nan, dtype=np.float32)
        rows = [i for i, d in enumerate(detections) if d.found]
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start : start + self.batch_size]
            images, shapes = [], []
            for i in chunk:
                image, shape, _, _ = self._prepare(images_rgb[i], detections[i])
                faces = self._dlib.full_object_detections()
                faces.append(shape)
                images.append(image)
                shapes.append(faces)
            descriptors = self._net.compute_face_descriptor(images, shapes, num_jitters=0)
            raw = np.array([np.asarray(d[0]) for d in descriptors], dtype=np.float32)
            if raw.shape != (len(chunk), self.embedding_size) or not np.all(np.isfinite(raw)):
                raise ModelError(
                    f"dlib returned descriptors of shape {raw.shape}, not finite 128-d"
                )
            out[chunk] = l2_normalise(raw) if normalise else raw
        return out
