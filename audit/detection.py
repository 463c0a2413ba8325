"""Face detection with SCRFD (insightface), one best face per image.

Preprocessing (see ``shared/models/MODELS.md``):

* SCRFD misses faces that fill the whole frame, and the default generator makes 64x64 faces that
  do exactly that. Every image is therefore upscaled (bicubic) until its short side is at least
  :data:`MIN_SHORT_SIDE` px, then padded with black by :data:`PAD_FRACTION` of the upscaled short
  side on each side (64 px face -> 128 px -> 192x192 canvas, run at ``det_size=192``, the face at
  the scale it had on the 256x256 canvas of earlier versions, which padded by half the short
  side). On 512 generated 64-px faces the 192 canvas found every face the 256 one found (and 3
  more), with boxes a median 0.5 px (95th percentile 1.3 px) and keypoints 0.4 px (1.0 px) away
  in the 64-px image, at 60% of the cost; shrinking the face instead (the 256 canvas letterboxed
  into 192 or 160) moved boxes by 1.3-1.5 px and lost up to 3% of the faces
  (``tests/audit/test_detection.py`` checks the 192 canvas against the 256 one).
* The detector input is the canvas letterboxed into ``det_size x det_size`` as insightface's SCRFD
  does it (resized to fit, top-left, zeros elsewhere), RGB, ``(x - 127.5) / 128``, NCHW.
* Outputs are decoded as insightface's ``SCRFD.forward`` does (anchor centres, distances times the
  stride) and boxes and keypoints mapped back to the caller's input pixels with OpenCV's
  pixel-centre convention (``x_in = (x_up + 0.5) / s - 0.5``), the inverse of
  :func:`upscale_small`. :meth:`FaceDetector.detect_all` then applies insightface's greedy NMS;
  :meth:`FaceDetector.detect_batch` keeps the best-scoring anchor, which is what NMS keeps first.

``scrfd_500m_bnkps.onnx`` is exported with a fixed 1x3x640x640 input (its two FPN Resize nodes
carry absolute output sizes), so insightface would silently ignore ``det_size`` and run every
64-px face at 640x640 (about 5x slower). :class:`FaceDetector` rewrites the loaded graph in memory
to take any batch and input size (Resize by a scale of 2 instead of fixed sizes), checks that the
rewritten graph reproduces the original at its own size and that a batch of two gives the rows
of two single runs, and falls back to the original graph (one image per run, 640) with a warning
if it does not. Whole batches of images then go through onnxruntime in one call each.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from insightface.model_zoo import get_model
from insightface.model_zoo.scrfd import SCRFD
from onnx import numpy_helper, shape_inference

from .recognition import _with_dynamic_batch, fixed_batches, session_options
from .registry import ModelError, ModelRegistry

logger = logging.getLogger(__name__)

MIN_SHORT_SIDE = 128
"""Images whose short side is smaller are upscaled to this short side before detection."""

PAD_FRACTION = 0.25
"""Black border added on every side of the (upscaled) image, as a fraction of its short side."""

DEFAULT_DET_SIZE = 192
"""Detector input side for the generated-face setting: the canvas of a 64-px face, unscaled."""

MAX_DET_BATCH = 8
"""Images per onnxruntime call. One core, 192x192 (detection + decoding per image): 2.94 ms
at 1, 2.74 at 4 and 8, 2.86 at 32; larger batches spill out of the CPU caches."""

NMS_THRESHOLD = 0.4
"""IoU above which :meth:`FaceDetector.detect_all` drops the lower-scoring box (insightface's)."""


@dataclass(frozen=True, eq=False)
class Detection:
    """One detected face, in the caller's input image pixels.

    found: whether a face scored above the detector threshold.
    score: detector confidence in [0, 1]; NaN when not found.
    bbox: (4,) float32 ``x1, y1, x2, y2``; None when not found.
    kps: (5, 2) float32 ``(x, y)`` of left eye, right eye, nose tip, left and right mouth corner
    (left/right as seen in the image); None when not found.
    """

    found: bool
    score: float
    bbox: np.ndarray | None
    kps: np.ndarray | None


NOT_FOUND = Detection(found=False, score=math.nan, bbox=None, kps=None)

Upscaled = tuple[np.ndarray, float, float]
"""``(image, sx, sy)`` as :func:`upscale_small` returns it."""


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate one HxWx3 uint8 image and return it."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
    return image


def upscale_small(image: np.ndarray) -> Upscaled:
    """Bicubic upscale so the short side is at least :data:`MIN_SHORT_SIDE` px.

    Returns ``(upscaled, sx, sy)`` with the exact per-axis factors (new size / old size);
    the image itself and factors of 1 when it is already large enough. Map a point with
    ``x_up = (x + 0.5) * sx - 0.5`` (OpenCV's pixel-centre convention).
    """
    h, w = image.shape[:2]
    factor = MIN_SHORT_SIDE / min(h, w)
    if factor <= 1.0:
        return image, 1.0, 1.0
    new_w, new_h = max(1, round(w * factor)), max(1, round(h * factor))
    upscaled = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_CUBIC)
    return upscaled, new_w / w, new_h / h


def upscale_all(images_rgb: Sequence[np.ndarray]) -> list[Upscaled]:
    """:func:`upscale_small` of each checked HxWx3 uint8 image, so that detection, alignment
    and quality crops can share one upscale per image."""
    return [upscale_small(check_image(image)) for image in images_rgb]


def pad_for_detection(upscaled: np.ndarray) -> tuple[np.ndarray, int]:
    """Black border of :data:`PAD_FRACTION` of the short side on every side -> ``(canvas, pad)``."""
    pad = int(min(upscaled.shape[:2]) * PAD_FRACTION)
    canvas = cv2.copyMakeBorder(upscaled, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return canvas, pad


def prepare_for_detection(image: np.ndarray) -> tuple[np.ndarray, float, float, int]:
    """Upscale small images, then pad with black by :data:`PAD_FRACTION` of the upscaled short
    side on every side.

    Returns ``(canvas, sx, sy, pad)``; a point on the canvas maps back to the input with
    :func:`canvas_to_input`.
    """
    upscaled, sx, sy = upscale_small(image)
    canvas, pad = pad_for_detection(upscaled)
    return canvas, sx, sy, pad


def canvas_to_input(points: np.ndarray, sx: float, sy: float, pad: int) -> np.ndarray:
    """Map (..., 2) canvas ``(x, y)`` points back to input image pixels (float32)."""
    points = np.asarray(points, dtype=np.float64) - pad
    x = (points[..., 0] + 0.5) / sx - 0.5
    y = (points[..., 1] + 0.5) / sy - 0.5
    return np.stack([x, y], axis=-1).astype(np.float32)


def letterbox(canvas: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """insightface SCRFD's letterbox: ``canvas`` resized (bilinear) to fit ``size x size`` with its
    aspect ratio kept, placed top-left on black. Returns ``(size x size x 3 uint8, scale)``,
    scale = detector pixels per canvas pixel. A canvas of exactly ``size x size`` is used as is.
    """
    h, w = canvas.shape[:2]
    if (h, w) == (size, size):
        return canvas, 1.0
    if h / w > 1.0:  # taller than the square input: fit the height
        new_h, new_w = size, int(size / (h / w))
    else:
        new_w, new_h = size, int(size * (h / w))
    out = np.zeros((size, size, 3), dtype=np.uint8)
    out[:new_h, :new_w] = cv2.resize(canvas, (new_w, new_h))
    return out, new_h / h


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = NMS_THRESHOLD) -> np.ndarray:
    """Greedy non-maximum suppression exactly as insightface's ``SCRFD.nms`` (areas counted with
    +1 px, boxes overlapping a kept one by IoU > ``threshold`` dropped).

    boxes: (K, 4) ``x1, y1, x2, y2``; scores: (K,). Returns the kept indices, best first.
    """
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        order = rest[inter / (areas[i] + areas[rest] - inter) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _with_dynamic_input_size(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of a fixed-size SCRFD graph that accepts any batch and H x W (multiples of 32).

    Resize nodes with absolute ``sizes`` are turned into Resize by ``scales`` (sizes divided by
    the input shape found by ONNX shape inference, 2.0 for SCRFD's FPN); input H/W and the
    anchor-count axis of the outputs become symbolic. The batch axis is made symbolic by
    :func:`audit.recognition._with_dynamic_batch` (SCRFD's output Reshapes bake in a batch of 1);
    callers check the result numerically.
    """
    inferred = shape_inference.infer_shapes(model)
    shapes = {
        value.name: [d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    }
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type != "Resize" or len(node.input) < 4 or node.input[3] not in initializers:
            continue  # not a Resize to constant sizes (SCRFD-2.5G computes them: already dynamic)
        sizes = numpy_helper.to_array(initializers[node.input[3]]).astype(np.float64)
        in_shape = np.asarray(shapes[node.input[0]], dtype=np.float64)
        if in_shape.shape != sizes.shape or not np.all(in_shape > 0):
            raise ValueError(f"cannot infer input shape of Resize node {node.name!r}")
        scales_name = f"{node.output[0]}__scales"
        graph.initializer.append(
            numpy_helper.from_array((sizes / in_shape).astype(np.float32), scales_name)
        )
        data, roi = node.input[0], node.input[1]
        del node.input[:]
        node.input.extend([data, roi, scales_name])
    dims = graph.input[0].type.tensor_type.shape.dim
    for axis, label in ((2, "height"), (3, "width")):
        dims[axis].ClearField("dim_value")
        dims[axis].dim_param = label
    for output in graph.output:
        out_dims = output.type.tensor_type.shape.dim
        out_dims[-2].ClearField("dim_value")
        out_dims[-2].dim_param = f"{output.name}__anchors"
    del graph.value_info[:]
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    # Batch axis: symbolic, and the output Reshapes' baked-in batch of 1 becomes "copy it".
    return _with_dynamic_batch(model)


def _outputs_match(
    a: ort.InferenceSession, b: ort.InferenceSession, shape: tuple[int, ...]
) -> bool:
    """Whether two sessions give the same outputs on one seeded random input of ``shape``."""
    name = a.get_inputs()[0].name
    x = np.random.default_rng(0).uniform(-1.0, 1.0, shape).astype(np.float32)
    try:
        out_a, out_b = a.run(None, {name: x}), b.run(None, {name: x})
    except Exception:  # noqa: BLE001 - a graph that fails to run does not match
        return False
    return all(
        u.shape == v.shape and np.allclose(u, v, rtol=1e-4, atol=1e-4)
        for u, v in zip(out_a, out_b, strict=True)
    )


def _batch_matches_singles(session: ort.InferenceSession, side: int) -> bool:
    """Whether a batch of two random ``side x side`` inputs gives the rows of two single runs."""
    name = session.get_inputs()[0].name
    x = np.random.default_rng(1).uniform(-1.0, 1.0, (2, 3, side, side)).astype(np.float32)
    try:
        together = session.run(None, {name: x})
        apart = [session.run(None, {name: x[i : i + 1]}) for i in range(2)]
    except Exception:  # noqa: BLE001 - a graph that fails to run batches does not batch
        return False
    return all(
        t.shape[0] == 2 and np.allclose(t, np.concatenate(parts), rtol=1e-4, atol=1e-4)
        for t, *parts in zip(together, *apart, strict=True)
    )


class FaceDetector:
    """SCRFD face detector (insightface's graphs) returning the best face of each image.

    registry: where the model file is found and hash-checked.
    name: registry name of a detector (``"scrfd_500m"`` or ``"scrfd_2.5g"``).
    det_size: side of the square detector input in px, a multiple of 32. The default 192 runs the
    192x192 canvas of a 64-px face at its own resolution; use 640 for photos with several
    small faces.
    det_thresh: minimum detector score for a face to count as found.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        name: str = "scrfd_500m",
        det_size: int = DEFAULT_DET_SIZE,
        *,
        det_thresh: float = 0.5,
        intra_op_num_threads: int | None = None,
    ) -> None:
        spec = registry.spec(name)
        if spec.role != "detector":
            raise ModelError(f"model {name!r} is a {spec.role} model, not a face detector")
        if det_size <= 0 or det_size % 32:
            raise ValueError(f"det_size must be a positive multiple of 32, got {det_size}")
        self.name, self.weights_sha256, self.licence = spec.name, spec.sha256, spec.licence
        self.det_thresh = float(det_thresh)
        path = str(registry.verify(name))
        options = session_options(intra_op_num_threads)
        model = get_model(path, providers=["CPUExecutionProvider"], sess_options=options)
        if not isinstance(model, SCRFD):
            raise ModelError(
                f"{path} is not an SCRFD detector (insightface loaded {type(model).__name__})"
            )
        if not model.use_kps:
            raise ModelError(f"detector {self.name!r} has no keypoint outputs")
        self._strides = list(model._feat_stride_fpn)
        self._num_anchors = int(model._num_anchors)
        self.session, self.batched = self._resizable(path, model, options, det_size)
        static = self.session.get_inputs()[0].shape[2:]
        self.det_size = int(static[0]) if isinstance(static[0], int) else det_size
        self._input_name = self.session.get_inputs()[0].name
        self._output_names = [o.name for o in self.session.get_outputs()]
        self._anchors = self._anchor_centres(self.det_size)

    @staticmethod
    def _resizable(
        path: str, model: SCRFD, options: ort.SessionOptions, det_size: int
    ) -> tuple[ort.InferenceSession, bool]:
        """``(session, batched)``: the in-memory graph with dynamic batch and input size, or the
        original graph (one image per run) if the rewrite fails or differs from it."""
        original = model.session
        shape = original.get_inputs()[0].shape
        static = [d if isinstance(d, int) else det_size for d in shape[2:]]
        try:
            graph = _with_dynamic_input_size(onnx.load(path)).SerializeToString()
            session = ort.InferenceSession(
                graph, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - any failure means "keep the original graph"
            logger.warning("%s: cannot make input size dynamic (%s); using %s", path, exc, shape)
            return original, not isinstance(shape[0], int)
        if not _outputs_match(original, session, (1, 3, static[0], static[1])):
            logger.warning("%s: dynamic-size graph differs from the original; using %s", path, shape)
            return original, not isinstance(shape[0], int)
        if not _batch_matches_singles(session, det_size):
            logger.warning("%s: batched detector graph differs from single runs; looping", path)
            return session, False
        return session, True

    def _anchor_centres(self, side: int) -> np.ndarray:
        """(A, 2) float32 anchor centres ``(x, y)`` of a ``side x side`` input, over all strides in
        output order (row-major per stride, each centre repeated per anchor), as insightface."""
        centres = []
        for stride in self._strides:
            n = side // stride
            grid = np.stack(np.mgrid[:n, :n][::-1], axis=-1).astype(np.float32)
            grid = (grid * stride).reshape(-1, 2)
            centres.append(np.repeat(grid, self._num_anchors, axis=0))
        return np.concatenate(centres)

    def _forward(self, det_images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run (N, S, S, 3) uint8 RGB letterboxed inputs (S = det_size).

        Returns ``(scores (N, A), boxes (N, A, 4), kps (N, A, 5, 2))`` float32 in detector input
        pixels, A anchors over all strides.
        """
        blob = np.empty((len(det_images), 3, self.det_size, self.det_size), dtype=np.float32)
        np.subtract(det_images.transpose(0, 3, 1, 2), np.float32(127.5), out=blob)
        blob *= np.float32(1.0 / 128.0)  # exact: a power of two
        step = MAX_DET_BATCH if self.batched else 1
        runs = [  # fixed-shape calls: an image's detections do not depend on its batch
            [out if n == step else out[:n]  # single-image graphs have no batch axis
             for out in self.session.run(self._output_names, {self._input_name: chunk})]
            for chunk, n in fixed_batches(blob, step)
        ]
        outs = [np.concatenate([run[k] for run in runs]) for k in range(len(self._output_names))]
        n, fmc = len(blob), len(self._strides)
        scores = np.concatenate([outs[k].reshape(n, -1) for k in range(fmc)], axis=1)
        dist = np.concatenate(
            [outs[fmc + k].reshape(n, -1, 4) * np.float32(s) for k, s in enumerate(self._strides)],
            axis=1,
        )
        kps = np.concatenate(
            [outs[2 * fmc + k].reshape(n, -1, 5, 2) * np.float32(s)
             for k, s in enumerate(self._strides)],
            axis=1,
        )
        centre = self._anchors
        boxes = np.concatenate([centre - dist[..., :2], centre + dist[..., 2:]], axis=-1)
        return scores, boxes, centre[:, None, :] + kps

    def detect_all(self, image_rgb: np.ndarray) -> list[Detection]:
        """All faces in one HxWx3 uint8 RGB image, highest score first (empty if none)."""
        canvas, sx, sy, pad = prepare_for_detection(check_image(image_rgb))
        det_image, scale = letterbox(canvas, self.det_size)
        scores, boxes, kps = (out[0] for out in self._forward(det_image[None]))
        above = np.flatnonzero(scores >= self.det_thresh)
        order = above[np.argsort(-scores[above], kind="stable")]
        keep = order[nms(boxes[order] / scale, scores[order])]
        return [
            Detection(
                found=True,
                score=float(scores[i]),
                bbox=canvas_to_input(boxes[i].reshape(2, 2) / scale, sx, sy, pad).reshape(4),
                kps=canvas_to_input(kps[i] / scale, sx, sy, pad),
            )
            for i in keep
        ]

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[Detection]:
        """Best-scoring face of each HxWx3 uint8 RGB image (:data:`NOT_FOUND` where none).

        Images may differ in size: each is letterboxed into the same square input, so the whole
        list runs as batches.
        """
        return self.detect_upscaled(upscale_all(images_rgb))

    def detect_upscaled(self, upscaled: Sequence[Upscaled]) -> list[Detection]:
        """:meth:`detect_batch` of images already passed through :func:`upscale_small` (as
        :func:`upscale_all` returns them); boxes and keypoints are in the original images'
        pixels."""
        if not upscaled:
            return []
        det_images = np.empty((len(upscaled), self.det_size, self.det_size, 3), dtype=np.uint8)
        frames = []
        for i, (image, sx, sy) in enumerate(upscaled):
            canvas, pad = pad_for_detection(image)
            det_images[i], scale = letterbox(canvas, self.det_size)
            frames.append((sx, sy, pad, scale))
        scores, boxes, kps = self._forward(det_images)
        best = np.argmax(scores, axis=1)  # the first of equal scores, as insightface's stable sort
        rows = np.arange(len(upscaled))
        best_scores, best_boxes, best_kps = scores[rows, best], boxes[rows, best], kps[rows, best]
        results = []
        for i, (sx, sy, pad, scale) in enumerate(frames):
            if not best_scores[i] >= self.det_thresh:
                results.append(NOT_FOUND)
                continue
            results.append(
                Detection(
                    found=True,
                    score=float(best_scores[i]),
                    bbox=canvas_to_input(best_boxes[i].reshape(2, 2) / scale, sx, sy, pad)
                    .reshape(4),
                    kps=canvas_to_input(best_kps[i] / scale, sx, sy, pad),
                )
            )
        return results
