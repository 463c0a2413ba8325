"""Face detection with SCRFD (insightface), one best face per image.

Preprocessing (see ``shared/models/MODELS.md``):

* SCRFD misses faces that fill the whole frame, and the default generator makes 64x64 faces that
  do exactly that. Every image is therefore upscaled (bicubic) until its short side is at least
  :data:`MIN_SHORT_SIDE` px, then padded with black by half the upscaled short side on each side
  (64 px face -> 128 px -> 256x256 canvas). Seen on 300 generated 64-px faces: 97% found at
  ``det_size=256``.
* insightface's SCRFD takes BGR and letterboxes into ``det_size x det_size``; it normalises
  ``(x - 127.5) / 128`` itself.
* Returned boxes and keypoints are mapped back to the caller's input pixels with OpenCV's
  pixel-centre convention (``x_in = (x_up + 0.5) / s - 0.5``), the inverse of :func:`upscale_small`.

``scrfd_500m_bnkps.onnx`` is exported with a fixed 640x640 input (its two FPN Resize nodes carry
absolute output sizes), so insightface would silently ignore ``det_size`` and run every 64-px
face at 640x640 (about 5x slower). :class:`FaceDetector` rewrites the loaded graph in memory to
take any input size (Resize by a scale of 2 instead of fixed sizes), checks that the rewritten
graph reproduces the original at 640x640, and falls back to 640 with a warning if it does not.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from insightface.model_zoo import get_model
from insightface.model_zoo.scrfd import SCRFD
from onnx import numpy_helper, shape_inference

from .recognition import session_options
from .registry import ModelError, ModelRegistry

logger = logging.getLogger(__name__)

MIN_SHORT_SIDE = 128
"""Images whose short side is smaller are upscaled to this short side before detection."""


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


def check_image(image: np.ndarray) -> np.ndarray:
    """Validate one HxWx3 uint8 image and return it."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.shape} {image.dtype}")
    return image


def upscale_small(image: np.ndarray) -> tuple[np.ndarray, float, float]:
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


def prepare_for_detection(image: np.ndarray) -> tuple[np.ndarray, float, float, int]:
    """Upscale small images, then pad with black by half the upscaled short side on every side.

    Returns ``(canvas, sx, sy, pad)``; a point on the canvas maps back to the input with
    :func:`canvas_to_input`.
    """
    upscaled, sx, sy = upscale_small(image)
    pad = min(upscaled.shape[:2]) // 2
    canvas = cv2.copyMakeBorder(upscaled, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return canvas, sx, sy, pad


def canvas_to_input(points: np.ndarray, sx: float, sy: float, pad: int) -> np.ndarray:
    """Map (..., 2) canvas ``(x, y)`` points back to input image pixels (float32)."""
    points = np.asarray(points, dtype=np.float64) - pad
    x = (points[..., 0] + 0.5) / sx - 0.5
    y = (points[..., 1] + 0.5) / sy - 0.5
    return np.stack([x, y], axis=-1).astype(np.float32)


def _with_dynamic_input_size(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of a fixed-size SCRFD graph that accepts any H x W (multiples of 32).

    Resize nodes with absolute ``sizes`` are turned into Resize by ``scales`` (sizes divided by
    the input shape found by ONNX shape inference, 2.0 for SCRFD's FPN); input H/W and the
    anchor-count axis of the outputs become symbolic.
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
        if node.op_type != "Resize" or len(node.input) < 4 or not node.input[3]:
            continue
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
    return model


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


class FaceDetector:
    """SCRFD face detector (insightface) returning the best face of each image.

    registry: where the model file is found and hash-checked.
    name: registry name of a detector (``"scrfd_500m"`` or ``"scrfd_2.5g"``).
    det_size: side of the square detector input in px, a multiple of 32. The default 256 runs the
    256x256 canvas of a 64-px face at its own resolution; use 640 for photos with several
    small faces.
    det_thresh: minimum detector score for a face to count as found.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        name: str = "scrfd_500m",
        det_size: int = 256,
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
        static = model.static_input_size
        if static is not None and tuple(static) != (det_size, det_size):
            model = self._resizable(path, model, options, static)
        self.det_size = (
            det_size if model.static_input_size is None else int(model.static_input_size[0])
        )
        model.prepare(
            ctx_id=-1, input_size=(self.det_size, self.det_size), det_thresh=self.det_thresh
        )
        self._model = model

    @staticmethod
    def _resizable(
        path: str, model: SCRFD, options: ort.SessionOptions, static: tuple[int, int]
    ) -> SCRFD:
        """An SCRFD over the in-memory dynamic-size graph, or ``model`` if the rewrite fails."""
        try:
            graph = _with_dynamic_input_size(onnx.load(path)).SerializeToString()
            session = ort.InferenceSession(
                graph, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - any failure means "keep the fixed-size graph"
            logger.warning("%s: cannot make input size dynamic (%s); using %s", path, exc, static)
            return model
        if not _outputs_match(model.session, session, (1, 3, static[1], static[0])):
            logger.warning(
                "%s: dynamic-size graph differs from the original; using %s", path, static
            )
            return model
        # model_file=None: insightface then treats the session's (now dynamic) input as the truth.
        return SCRFD(model_file=None, session=session)

    def detect_all(self, image_rgb: np.ndarray) -> list[Detection]:
        """All faces in one HxWx3 uint8 RGB image, highest score first (empty if none)."""
        canvas, sx, sy, pad = prepare_for_detection(check_image(image_rgb))
        boxes, kpss = self._model.detect(np.ascontiguousarray(canvas[:, :, ::-1]))  # RGB -> BGR
        if kpss is None:
            raise ModelError(f"detector {self.name!r} returned no keypoints")
        order = np.argsort(-boxes[:, 4], kind="stable")
        return [
            Detection(
                found=True,
                score=float(boxes[i, 4]),
                bbox=canvas_to_input(boxes[i, :4].reshape(2, 2), sx, sy, pad).reshape(4),
                kps=canvas_to_input(kpss[i], sx, sy, pad),
            )
            for i in order
        ]

    def detect_batch(self, images_rgb: list[np.ndarray]) -> list[Detection]:
        """Best-scoring face of each HxWx3 uint8 RGB image (:data:`NOT_FOUND` where none).

        SCRFD's graphs take one image at a time, so this loops; images may differ in size.
        """
        results = []
        for image in images_rgb:
            faces = self.detect_all(image)
            results.append(faces[0] if faces else NOT_FOUND)
        return results
