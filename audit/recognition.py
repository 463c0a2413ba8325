"""Face recognition adapters: aligned crops in, L2-normalised embeddings out.

Also holds :class:`OnnxBatchRunner`, the small onnxruntime wrapper shared by the recognition and
attribute adapters (it lets graphs exported with a fixed batch of 1 run whole batches).

Preprocessing of MobileFaceNet (``mobilefacenet.onnx``, foamliu/MobileFaceNet), verified against
real photos (see ``shared/models/MODELS.md``):

* input: crop aligned with insightface's 5-point ArcFace template,
  ``insightface.utils.face_align.norm_crop(img, kps, 112)`` (see :mod:`audit.align`);
* colour order RGB, values ``(x - 127.5) / 128``, layout NCHW float32;
* output: 128-d vector, L2-normalised here.

Trap: insightface's ``ArcFaceONNX`` guesses mean 0 / std 1 for this file from its first graph
nodes; with that scaling different people score cosine 0.9-1.0. Do not use it for this model.

insightface's own packs (:class:`InsightFacePackRecognizer`) are fed as insightface feeds them:
the mean and std are read from the graph with insightface's rule (:func:`arcface_input_scaling`).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from os import PathLike

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from .registry import INSIGHTFACE_LICENCE, INSIGHTFACE_PACKS, ModelError, ModelRegistry

logger = logging.getLogger(__name__)

ALIGNED_SIZE = 112
_BATCH_DIM = "batch"


def session_options(intra_op_num_threads: int | None = None) -> ort.SessionOptions:
    """onnxruntime options; ``intra_op_num_threads=None`` lets onnxruntime choose."""
    options = ort.SessionOptions()
    if intra_op_num_threads is not None:
        if intra_op_num_threads < 1:
            raise ValueError(f"intra_op_num_threads must be >= 1, got {intra_op_num_threads}")
        options.intra_op_num_threads = int(intra_op_num_threads)
    return options


def _with_dynamic_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """Copy of ``model`` whose input/output batch dimension is symbolic.

    Graphs exported with batch 1 may also bake the batch into Reshape targets (MobileFaceNet ends
    in ``Reshape(x, [1, -1])``, which would silently turn N rows into one row of N*128). Such
    constant targets starting with 1 are rewritten to 0 ("copy the input's dimension", valid when
    ``allowzero`` is 0). The caller must still check the result numerically, since other ops may
    assume batch 1 too. The file on disk is never touched.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    constants = {
        node.output[0]: node
        for node in graph.node
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value"
    }
    for value in [*graph.input, *graph.output]:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = _BATCH_DIM
    del graph.value_info[:]  # intermediate shapes recorded for batch 1; let onnxruntime infer them
    for node in graph.node:
        if node.op_type != "Reshape" or any(a.name == "allowzero" and a.i for a in node.attribute):
            continue
        target = node.input[1]
        if target in initializers:
            tensor = initializers[target]
        elif target in constants:
            tensor = constants[target].attribute[0].t
        else:
            continue  # computed at run time from Shape(), already batch-agnostic
        shape = numpy_helper.to_array(tensor).copy()
        if shape.ndim == 1 and shape.size and shape[0] == 1:
            shape[0] = 0
            tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))
    return model


class OnnxBatchRunner:
    """One-input, one-output onnxruntime model that takes a batch of any size.

    If the graph fixes the batch at 1 and ``dynamic_batch`` is true, the loaded graph is rewritten
    in memory (:func:`_with_dynamic_batch`) and checked against the original graph on a random
    batch of two; if the check fails the runner falls back to looping over single rows.
    :attr:`batched` tells which path is in use.

    ``max_batch`` rows go to onnxruntime per call. Small batches are faster per face on CPU,
    because the activations stay in cache: on one core, ms per 112x112 face at batch 1 / 4 / 16 /
    64 were MobileFaceNet 6.43 / 6.00 / 6.90 / 7.67 and gender-age 1.18 / 1.25 / 1.40 / 1.81.
    """

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        intra_op_num_threads: int | None = None,
        dynamic_batch: bool = True,
        max_batch: int = 4,
    ) -> None:
        self.path = str(path)
        self.max_batch = int(max_batch)
        options = session_options(intra_op_num_threads)
        providers = ["CPUExecutionProvider"]
        original = ort.InferenceSession(self.path, sess_options=options, providers=providers)
        (inp,), (out,) = original.get_inputs(), original.get_outputs()
        self.input_name, self.output_name = inp.name, out.name
        self.input_shape = tuple(inp.shape)
        self.session, self.batched = (
            original,
            not isinstance(inp.shape[0], int) or inp.shape[0] != 1,
        )
        if not self.batched and dynamic_batch:
            candidate = ort.InferenceSession(
                _with_dynamic_batch(onnx.load(self.path)).SerializeToString(),
                sess_options=options,
                providers=providers,
            )
            if self._batch_matches_loop(original, candidate):
                self.session, self.batched = candidate, True
            else:
                logger.warning("%s: batched graph differs from batch-1 graph; looping", self.path)

    def _batch_matches_loop(
        self, single: ort.InferenceSession, batch: ort.InferenceSession
    ) -> bool:
        sample_shape = [d if isinstance(d, int) else 1 for d in self.input_shape[1:]]
        x = np.random.default_rng(0).normal(0.0, 1.0, (2, *sample_shape)).astype(np.float32)
        try:
            together = batch.run([self.output_name], {self.input_name: x})[0]
        except Exception:  # noqa: BLE001 - any runtime failure means "not batchable"
            return False
        apart = np.concatenate(
            [single.run([self.output_name], {self.input_name: x[i : i + 1]})[0] for i in range(2)]
        )
        scale = float(np.abs(apart).max()) or 1.0
        return together.shape == apart.shape and np.allclose(
            together, apart, rtol=1e-4, atol=1e-5 * scale
        )

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run ``x`` (N, ...) float32 through the model; returns (N, ...) float32.

        Every call has exactly ``max_batch`` rows (:func:`fixed_batches`), so a row's output
        does not depend on how many other rows came with it."""
        if len(x) == 0:
            raise ValueError("empty batch")
        step = self.max_batch if self.batched else 1
        outputs = [
            self.session.run([self.output_name], {self.input_name: chunk})[0][:n]
            for chunk, n in fixed_batches(x, step)
        ]
        return np.concatenate(outputs).astype(np.float32, copy=False)


def fixed_batches(x: np.ndarray, step: int) -> Iterator[tuple[np.ndarray, int]]:
    """``(chunk, n_real)`` pairs covering ``x`` (N, ...) in order, every chunk exactly ``step``
    rows: the last one is padded with zero rows (drop the outputs past ``n_real``).

    Inference libraries choose kernels by input shape (onnxruntime's MLAS, oneDNN), and a
    different kernel can move the last float bits of a row's output; a fixed shape keeps each
    image's numbers the same whatever batch of images it was scored in."""
    for start in range(0, len(x), step):
        chunk = x[start : start + step]
        n = len(chunk)
        if n < step:
            pad = np.zeros((step - n, *chunk.shape[1:]), dtype=chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        yield chunk, n


def check_aligned(aligned: np.ndarray, size: int = ALIGNED_SIZE) -> np.ndarray:
    """Validate an (N, size, size, 3) uint8 batch of aligned crops and return it."""
    aligned = np.asarray(aligned)
    if aligned.ndim != 4 or aligned.shape[1:] != (size, size, 3):
        raise ValueError(
            f"expected aligned crops of shape (N, {size}, {size}, 3), got {aligned.shape}"
        )
    if aligned.dtype != np.uint8:
        raise ValueError(f"expected uint8 RGB crops, got dtype {aligned.dtype}")
    return aligned


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``x`` (N, D) divided by their L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of row-aligned pairs: ``a[i]`` with ``b[i]``.

    a, b: (N, D) (or (D,) for a single pair). Returns (N,) float32 in [-1, 1]
    (a 0-d array for single vectors). Inputs need not be normalised.
    """
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    if a.shape != b.shape:
        raise ValueError(f"row-aligned pairs need equal shapes, got {a.shape} and {b.shape}")
    return np.sum(l2_normalise(a) * l2_normalise(b), axis=-1)


class Recognizer(ABC):
    """A face recognition model behind one interface.

    Attributes: ``name`` (registry name), ``weights_sha256``, ``embedding_size`` (D),
    ``licence``.
    """

    name: str
    weights_sha256: str
    embedding_size: int
    licence: str

    @abstractmethod
    def embed(self, aligned: np.ndarray) -> np.ndarray:
        """Embed aligned crops.

        aligned: (N, 112, 112, 3) uint8 RGB, aligned with the ArcFace 5-point template.
        Returns (N, D) float32 with L2-normalised rows.
        """


class OnnxCropRecognizer(Recognizer):
    """A recognizer whose ONNX graph takes aligned 112x112 RGB crops scaled as
    ``(x - MEAN) / STD`` in NCHW (subclasses set the constants and ``self._runner``)."""

    MEAN: float = 127.5
    STD: float = 128.0
    _runner: OnnxBatchRunner

    @property
    def batched(self) -> bool:
        """Whether whole batches go through onnxruntime at once (else one row at a time)."""
        return self._runner.batched

    @classmethod
    def preprocess(cls, aligned: np.ndarray, mean: float | None = None,
                   std: float | None = None) -> np.ndarray:
        """(N, 112, 112, 3) uint8 RGB -> (N, 3, 112, 112) float32, ``(x - mean) / std``
        (default the class's ``MEAN`` and ``STD``)."""
        # Transposed while still uint8 (a quarter of the bytes), then scaled in place.
        x = check_aligned(aligned).transpose(0, 3, 1, 2).astype(np.float32, order="C")
        x -= np.float32(cls.MEAN if mean is None else mean)
        x /= np.float32(cls.STD if std is None else std)
        return x

    def embed(self, aligned: np.ndarray) -> np.ndarray:
        x = self.preprocess(aligned, self.MEAN, self.STD)  # an instance may read its own
        if len(x) == 0:
            return np.zeros((0, self.embedding_size), dtype=np.float32)
        return l2_normalise(self._runner.run(x))


class MobileFaceNetRecognizer(OnnxCropRecognizer):
    """MobileFaceNet (foamliu, 128-d) run directly with onnxruntime.

    Preprocessing: RGB, ``(x - 127.5) / 128``, NCHW. The graph fixes the batch at 1; by default
    the loaded graph is made batch-dynamic in memory (checked against the batch-1 graph at load).
    """

    model_name = "mobilefacenet"
    MEAN = 127.5
    STD = 128.0

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        intra_op_num_threads: int | None = None,
        dynamic_batch: bool = True,
    ) -> None:
        spec = registry.spec(self.model_name)
        self.name = spec.name
        self.weights_sha256 = spec.sha256
        self.licence = spec.licence
        self.embedding_size = int(spec.embedding_size or 0)
        self._runner = OnnxBatchRunner(
            registry.verify(self.name),
            intra_op_num_threads=intra_op_num_threads,
            dynamic_batch=dynamic_batch,
        )


def arcface_input_scaling(model: str | PathLike[str] | onnx.ModelProto) -> tuple[float, float]:
    """``(mean, std)`` with which insightface feeds this ArcFace graph, decided from the graph
    exactly as ``insightface.model_zoo.arcface_onnx.ArcFaceONNX`` decides it: when one of the
    first eight nodes is *named* like a subtraction (``Sub...`` or MXNet's ``_minus...``) and one
    like a multiplication (``Mul...``/``_mul...``), the graph normalises its input itself (MXNet
    exports) and gets raw pixels, ``(0.0, 1.0)``; otherwise ``(127.5, 127.5)``. Node names, not
    op types, are what insightface reads, so they are what is read here. Loads the graph
    structure only (no weights from external data, no onnxruntime)."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    names = [node.name for node in model.graph.node[:8]]
    find_sub = any(n.startswith(("Sub", "_minus")) for n in names)
    find_mul = any(n.startswith(("Mul", "_mul")) for n in names)
    return (0.0, 1.0) if find_sub and find_mul else (127.5, 127.5)


class InsightFacePackRecognizer(OnnxCropRecognizer):
    """The ArcFace recognition model of an insightface pack (buffalo_l, buffalo_s, antelopev2).

    Preprocessing as insightface runs these graphs: RGB, NCHW, 112x112 crops aligned to the
    ArcFace template, scaled ``(x - mean) / std`` with mean and std read from the graph the way
    insightface reads them (:func:`arcface_input_scaling`: ``127.5 / 127.5`` unless the graph
    starts by normalising its input itself; :attr:`MEAN` and :attr:`STD` of the instance). The
    file is the operator's copy: its SHA-256 is computed at load and recorded (there is no
    pinned hash to check it against offline).
    """

    MEAN = 127.5
    STD = 127.5

    def __init__(self, registry: ModelRegistry, pack: str = "buffalo_l", *,
                 intra_op_num_threads: int | None = None, dynamic_batch: bool = True) -> None:
        import hashlib
        from pathlib import Path

        if pack not in INSIGHTFACE_PACKS:
            raise ModelError(f"unknown insightface pack {pack!r}; choose from "
                             f"{', '.join(INSIGHTFACE_PACKS)}")
        path = Path(registry.model_dir) / pack / INSIGHTFACE_PACKS[pack]
        if not path.is_file():
            raise ModelError(f"{pack}: {path} not found; put the insightface {pack} folder in "
                             f"the model directory {registry.model_dir}")
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        self.name = pack
        self.weights_sha256 = digest.hexdigest()
        self.licence = INSIGHTFACE_LICENCE
        self.MEAN, self.STD = arcface_input_scaling(path)
        self._runner = OnnxBatchRunner(path, intra_op_num_threads=intra_op_num_threads,
                                       dynamic_batch=dynamic_batch)
        self.embedding_size = int(self._runner.session.get_outputs()[0].shape[-1])
