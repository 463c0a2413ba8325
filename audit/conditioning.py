"""The identity embedding a diffusion route is conditioned on, computed as the route's authors did.

A diffusion route turns an ArcFace vector into a face only in the embedding space it was trained
on, from crops made the way its training crops were made. Both authors used insightface's
``FaceAnalysis``:

- IP-Adapter FaceID (h94/IP-Adapter-FaceID model card)::

      app = FaceAnalysis(name="buffalo_l", providers=[...])
      app.prepare(ctx_id=0, det_size=(640, 640))
      faces = app.get(bgr_image)
      faceid_embeds = torch.from_numpy(faces[0].normed_embedding)

- Arc2Face (its README): ``FaceAnalysis(name="antelopev2")`` with Arc2Face's ``arcface.onnx``
  in the pack folder in place of ``glintr100.onnx``, ``det_size=(640, 640)``, the largest face,
  its ``embedding`` divided by its norm.

:class:`IdentityEncoder` runs the same insightface classes that ``FaceAnalysis`` builds for those
files (``insightface.model_zoo.get_model``: ``SCRFD`` for the detector, ``ArcFaceONNX`` for the
recogniser, which reads its input mean and std from the graph,
:func:`audit.recognition.arcface_input_scaling`) and does what ``FaceAnalysis.get`` does with
them: detect on the whole BGR image letterboxed into 640x640 (threshold 0.5, insightface's NMS),
``norm_crop`` the chosen face to 112x112 by its 5 keypoints, embed, L2-normalise. Only the two
files are loaded (``FaceAnalysis`` would also open every other graph of the folder). The files
are :data:`audit.registry.IDENTITY_MODELS`; a missing one is named with where it goes and where
it comes from.

How much the crop matters (measured, ``tests/audit/test_conditioning.py`` and README): the
project's own analysis crop (SCRFD-500MF on the padded canvas at 192, see
:mod:`audit.detection`) and this one give embeddings of the same face that differ; which is why
the routes use this one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .recognition import arcface_input_scaling, session_options
from .registry import ModelError, file_sha256, identity_model, identity_model_paths


class IdentityEncoder:
    """``encoder(images)``: the identity embedding of each image's face, as the route's authors
    computed it (see the module docstring).

    ``name``: a key of :data:`audit.registry.IDENTITY_MODELS` (``"buffalo_l"`` for IP-Adapter
    FaceID, ``"arc2face_arcface"`` for Arc2Face). Raises
    :class:`audit.registry.ModelNotFoundError` naming every missing file, and
    :class:`audit.registry.ModelError` when a file is not the kind of graph expected.

    Attributes: ``name``, ``embedding_size``, ``input_mean`` and ``input_std`` (the recogniser's
    input scaling as insightface read it from the graph), ``det_size``, ``face`` (which face is
    taken), ``models`` (file -> SHA-256 of the operator's copies), ``weights_sha256`` (of the
    recogniser).
    """

    def __init__(self, model_dir: str | os.PathLike[str], name: str, *,
                 intra_op_num_threads: int | None = None) -> None:
        from insightface.model_zoo import get_model
        from insightface.model_zoo.arcface_onnx import ArcFaceONNX
        from insightface.model_zoo.scrfd import SCRFD

        spec = identity_model(name)
        paths = identity_model_paths(model_dir, name)
        kwargs: dict[str, Any] = {"providers": ["CPUExecutionProvider"],
                                  "sess_options": session_options(intra_op_num_threads)}
        self.detector = get_model(str(paths["detector"]), **kwargs)
        if not isinstance(self.detector, SCRFD):
            raise ModelError(f"{paths['detector']} is not an SCRFD face detector graph "
                             f"(insightface read it as {type(self.detector).__name__}); "
                             f"{name} needs the detector from {spec.sources['detector']}")
        self.recognizer = get_model(str(paths["recognition"]), **kwargs)
        if not isinstance(self.recognizer, ArcFaceONNX):
            raise ModelError(f"{paths['recognition']} is not an ArcFace recognition graph "
                             f"(insightface read it as {type(self.recognizer).__name__}); "
                             f"{name} needs the file from {spec.sources['recognition']}")
        self.detector.prepare(-1, input_size=(spec.det_size, spec.det_size), det_thresh=0.5)
        self.recognizer.prepare(-1)
        self.name = name
        self.face = spec.face
        self.det_size = spec.det_size
        self.input_mean = float(self.recognizer.input_mean)
        self.input_std = float(self.recognizer.input_std)
        if (self.input_mean, self.input_std) != arcface_input_scaling(paths["recognition"]):
            raise ModelError(f"{paths['recognition']}: insightface scales its input by "
                             f"({self.input_mean}, {self.input_std}), which "
                             "audit.recognition.arcface_input_scaling does not reproduce")
        self.embedding_size = int(self.recognizer.output_shape[-1])
        self.models = {spec.detector: file_sha256(paths["detector"]),
                       spec.recognition: file_sha256(paths["recognition"])}
        self.weights_sha256 = self.models[spec.recognition]
        self.licence = spec.licence

    def describe(self) -> dict[str, Any]:
        """What embedded the identities, for the sampling report (JSON-serialisable)."""
        return {"model": self.name, "files": dict(self.models),
                "crop": f"insightface SCRFD at {self.det_size}x{self.det_size} on the whole "
                        f"image, the {self.face} face (FaceAnalysis order: "
                        f"{'best detector score' if self.face == 'first' else 'largest box'}), "
                        "norm_crop 112x112, ArcFace, L2-normalised",
                "input_mean": self.input_mean, "input_std": self.input_std,
                "licence": self.licence}

    def choose(self, bboxes: np.ndarray) -> int:
        """Index of the face taken among the detector's faces (``(F, 5)``, in its order)."""
        if self.face == "first":
            return 0
        area = (bboxes[:, 2] - bboxes[:, 0]) * (bboxes[:, 3] - bboxes[:, 1])
        # Arc2Face: sorted(faces, key=area)[-1], the last of equal largest (a stable sort)
        return int(np.flatnonzero(area == area.max())[-1])

    def embed_one(self, image_rgb: np.ndarray) -> np.ndarray | None:
        """The L2-normalised embedding of the chosen face of one ``(H, W, 3) uint8`` RGB image,
        or None when no face is found."""
        from insightface.app.common import Face

        bgr = np.ascontiguousarray(np.asarray(image_rgb)[:, :, ::-1])
        bboxes, kpss = self.detector.detect(bgr, max_num=0, metric="default")
        if bboxes.shape[0] == 0 or kpss is None:
            return None
        i = self.choose(bboxes)
        face = Face(bbox=bboxes[i, 0:4], kps=kpss[i], det_score=bboxes[i, 4])
        embedding = np.asarray(self.recognizer.get(bgr, face), dtype=np.float64)
        norm = float(np.linalg.norm(embedding))
        if not np.isfinite(norm) or norm == 0.0:
            return None
        return (embedding / norm).astype(np.float32)

    def __call__(self, images_rgb: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """``(N, embedding_size) float32``: row i the embedding of image i's chosen face, a row
        of NaN where no face was found (the contract of
        :data:`generator.diffusion.audit.Encoder`)."""
        out = np.full((len(images_rgb), self.embedding_size), np.nan, dtype=np.float32)
        for i, image in enumerate(images_rgb):
            emb = self.embed_one(image)
            if emb is not None:
                out[i] = emb
        return out


def identity_encoder(model_dir: str | os.PathLike[str], name: str, *,
                     intra_op_num_threads: int | None = None) -> IdentityEncoder:
    """:class:`IdentityEncoder` for ``name`` in ``model_dir`` (loaded once per process for the
    same files: a replaced file is loaded again)."""
    paths = identity_model_paths(model_dir, name)
    key = (name, intra_op_num_threads,
           *((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in paths.values()))
    encoder = _ENCODERS.get(key)
    if encoder is None:
        if len(_ENCODERS) >= 4:
            _ENCODERS.clear()
        encoder = _ENCODERS[key] = IdentityEncoder(Path(model_dir), name,
                                                   intra_op_num_threads=intra_op_num_threads)
    return encoder


_ENCODERS: dict[tuple, IdentityEncoder] = {}
