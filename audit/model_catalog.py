"""The catalogue of models the audit knows: files, pinned sha256, roles, licences, sources.

Pure data, no I/O and no imports beyond the standard library: :data:`KNOWN_MODELS` (files in the
model directory), :data:`KNOWN_PACKAGE_MODELS` (files shipped inside pip packages),
:data:`INSIGHTFACE_PACKS` and :data:`INSIGHTFACE_PACK_DETECTORS` (insightface model packs), and
:data:`IDENTITY_MODELS` (the embedding each diffusion route was trained on). A new FR model is
one entry here (plus its adapter in :mod:`audit.recognition` and a line in
:data:`audit.analysis.RECOGNIZERS`). :mod:`audit.registry` finds, verifies and lists these files
and re-exports every name here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "ARC2FACE_ARCFACE_FILE",
    "ARC2FACE_LICENCE",
    "ARC2FACE_RECOGNIZER",
    "IDENTITY_MODELS",
    "INSIGHTFACE_LICENCE",
    "INSIGHTFACE_PACKS",
    "INSIGHTFACE_PACK_DETECTORS",
    "KNOWN_MODELS",
    "KNOWN_PACKAGE_MODELS",
    "ROLES",
    "IdentityModel",
    "ModelSpec",
    "PackageFile",
    "PackageModelSpec",
    "Role",
]

Role = Literal["detector", "recognition", "attribute", "quality"]
ROLES: frozenset[str] = frozenset({"detector", "recognition", "attribute", "quality"})

#: Licence of every insightface model file (packs and the separately released SCRFD/ArcFace).
INSIGHTFACE_LICENCE = "insightface pretrained weights: non-commercial research only"


@dataclass(frozen=True)
class ModelSpec:
    """One pinned model file.

    ``embedding_size`` is the output dimension of recognition models and ``None`` otherwise.
    ``sha256`` None: no published hash exists (an insightface pack member); the hash is
    recorded in the model directory the first time the file is verified and checked against
    that record ever after (:func:`register_hash`).
    """

    name: str
    filename: str
    sha256: str | None
    role: Role
    licence: str
    source: str
    embedding_size: int | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {sorted(ROLES)}, got {self.role!r}")


KNOWN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="scrfd_500m",
        filename="scrfd_500m_bnkps.onnx",
        sha256="b467f878e26ff1e7ee05cd9936fdff63fa2a5af5d732ed17ee231f2dd5cc07ae",
        role="detector",
        licence=INSIGHTFACE_LICENCE,
        source="insightface SCRFD release (same graph as buffalo_s det_500m.onnx); "
        "https://github.com/deepinsight/insightface/tree/master/detection/scrfd",
    ),
    ModelSpec(
        name="scrfd_2.5g",
        filename="scrfd_2.5g_bnkps.onnx",
        sha256="041f73f47371333d1d17a6fee6c8ab4e6aecabefe398ff32cca4e2d5eaee0af9",
        role="detector",
        licence=INSIGHTFACE_LICENCE,
        source="insightface SCRFD release; "
        "https://github.com/deepinsight/insightface/tree/master/detection/scrfd",
    ),
    ModelSpec(
        name="mobilefacenet",
        filename="mobilefacenet.onnx",
        sha256="b7120c095d60094f28a4a54ba6a8bf51b297a6273fb40ef6350dfec1f63d9507",
        role="recognition",
        licence="Apache-2.0 (trained on refined MS-Celeb-1M)",
        source="https://github.com/foamliu/MobileFaceNet (weights/)",
        embedding_size=128,
    ),
    ModelSpec(
        name="genderage",
        filename="genderage_2018.onnx",
        sha256="508029a7f1e9f2e4b221ba20991be80c4d2050aa17a474ff98ebd8550b70b3e8",
        role="attribute",
        licence=INSIGHTFACE_LICENCE,
        source="insightface 2018 gender-age MXNet model converted to ONNX; "
        "https://github.com/deepinsight/insightface/tree/master/attribute",
    ),
    ModelSpec(
        name="genderage_insightface",
        filename="buffalo_s/genderage.onnx",
        sha256=None,
        role="attribute",
        licence=INSIGHTFACE_LICENCE,
        source="insightface model pack buffalo_s (genderage.onnx), "
        "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_s.zip",
    ),
    ModelSpec(
        name="lightqnet",
        filename="lightqnet_dm100.onnx",
        sha256="cfdbbb95046a9c8a844b8446245c9756d07cdafdd9e00f219ca072cb236412a8",
        role="quality",
        licence="code MIT; no statement about the weights",
        source="https://github.com/KaenChan/lightqnet (TensorFlow .pb converted to ONNX)",
    ),
)


@dataclass(frozen=True)
class PackageFile:
    """One pinned file inside an installed Python package: ``key`` names its job."""

    key: str
    path: str
    sha256: str


@dataclass(frozen=True)
class PackageModelSpec:
    """A model whose files ship inside an installed Python package, not the model directory.

    ``package``: the importable package that holds ``files`` (paths relative to its folder).
    ``requires``: other importable modules needed to run the model. ``install``: the pip
    requirement to suggest when something is missing. The first file is the model's weights
    (its hash is :attr:`sha256`); the others are helpers the adapter also needs.
    """

    name: str
    package: str
    files: tuple[PackageFile, ...]
    role: Role
    licence: str
    source: str
    install: str
    requires: tuple[str, ...] = ()
    embedding_size: int | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {sorted(ROLES)}, got {self.role!r}")
        if not self.files:
            raise ValueError(f"package model {self.name!r} lists no files")

    @property
    def sha256(self) -> str:
        """sha256 of the weights file (the first of :attr:`files`)."""
        return self.files[0].sha256


KNOWN_PACKAGE_MODELS: tuple[PackageModelSpec, ...] = (
    PackageModelSpec(
        name="dlib_resnet",
        package="face_recognition_models",
        files=(
            PackageFile(
                "recognition",
                "models/dlib_face_recognition_resnet_model_v1.dat",
                "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            ),
            PackageFile(
                "shape_predictor_5",
                "models/shape_predictor_5_face_landmarks.dat",
                "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
            ),
        ),
        role="recognition",
        licence="CC0 (dlib model files via face_recognition_models)",
        source="dlib's ResNet face recognition model v1 and 5-point shape predictor "
        "(http://dlib.net, https://github.com/davisking/dlib-models), packaged on PyPI as "
        "face_recognition_models",
        install="dlib-bin face_recognition_models",
        requires=("dlib",),
        embedding_size=128,
    ),
)
"""Models that come with pip packages. They are found by the package's location on disk: neither
the package nor ``requires`` is imported to list them (``face_recognition_models`` itself cannot
be imported without setuptools' ``pkg_resources``, and its files need no import)."""


#: insightface model packs (folder name -> recognition file inside it), in the layout insightface
#: downloads them to (``~/.insightface/models/<pack>/``); put the folder in the model directory.
INSIGHTFACE_PACKS: dict[str, str] = {
    "buffalo_l": "w600k_r50.onnx",  # ResNet-50 ArcFace on WebFace600K, 512-d
    "buffalo_s": "w600k_mbf.onnx",  # MobileFaceNet ArcFace on WebFace600K, 512-d
    "antelopev2": "glintr100.onnx",  # ResNet-100 on Glint360K, 512-d
}

#: The detector insightface's ``FaceAnalysis`` loads from each pack folder (the pack's SCRFD).
INSIGHTFACE_PACK_DETECTORS: dict[str, str] = {
    "buffalo_l": "det_10g.onnx",  # SCRFD-10GF with keypoints
    "buffalo_s": "det_500m.onnx",  # SCRFD-500MF with keypoints
    "antelopev2": "scrfd_10g_bnkps.onnx",  # SCRFD-10GF with keypoints
}
_INSIGHTFACE_PACK_URL = "https://github.com/deepinsight/insightface/releases/download/v0.7/{}.zip"

#: Name of Arc2Face's own recogniser, and where it goes in the model directory: the Arc2Face
#: download (https://huggingface.co/FoivosPar/Arc2Face: ``arc2face/``, ``encoder/`` and
#: ``arcface.onnx`` at its root) kept as the folder ``arc2face``.
ARC2FACE_RECOGNIZER = "arc2face_arcface"
ARC2FACE_ARCFACE_FILE = "arc2face/arcface.onnx"
ARC2FACE_LICENCE = ("Arc2Face weights (FoivosPar/Arc2Face, arcface.onnx included): CC BY-NC 4.0, "
                    "non-commercial")


@dataclass(frozen=True)
class IdentityModel:
    """The face-recognition embedding a diffusion route was trained on, and how its authors
    computed it: insightface's ``FaceAnalysis`` pipeline with the SCRFD ``detector`` at
    ``det_size`` x ``det_size``, then the ArcFace ``recognition`` graph on the face chosen by
    ``face`` (``"first"``: ``faces[0]``, the best detector score; ``"largest"``: the largest
    box), its embedding L2-normalised (``face.normed_embedding``).

    ``detector`` and ``recognition`` are paths inside the model directory; ``sources`` says where
    each comes from. The files are the operator's copies (no published hash): they are hashed
    at load and the hashes recorded with the identities they embedded.
    """

    name: str
    detector: str
    recognition: str
    face: Literal["first", "largest"]
    trained_for: str
    sources: dict[str, str]
    licence: str
    det_size: int = 640

    def paths(self, model_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """``{"detector": path, "recognition": path}`` in ``model_dir`` (present or not)."""
        root = Path(model_dir).expanduser()
        return {"detector": root / self.detector, "recognition": root / self.recognition}


IDENTITY_MODELS: dict[str, IdentityModel] = {
    "buffalo_l": IdentityModel(
        name="buffalo_l", detector="buffalo_l/det_10g.onnx", recognition="buffalo_l/w600k_r50.onnx",
        face="first",
        trained_for="IP-Adapter FaceID (SD 1.5 and SDXL), trained on buffalo_l's ArcFace "
                    "(ResNet-50, WebFace600K) embedding: FaceAnalysis(name='buffalo_l'), "
                    "det_size (640, 640), faces[0].normed_embedding",
        sources={"detector": _INSIGHTFACE_PACK_URL.format("buffalo_l"),
                 "recognition": _INSIGHTFACE_PACK_URL.format("buffalo_l")},
        licence=INSIGHTFACE_LICENCE),
    ARC2FACE_RECOGNIZER: IdentityModel(
        name=ARC2FACE_RECOGNIZER, detector="antelopev2/scrfd_10g_bnkps.onnx",
        recognition=ARC2FACE_ARCFACE_FILE, face="largest",
        trained_for="Arc2Face, trained on its authors' ArcFace R100 (WebFace42M) embedding: "
                    "FaceAnalysis(name='antelopev2') with arcface.onnx in place of "
                    "glintr100.onnx, det_size (640, 640), the largest face's embedding "
                    "L2-normalised",
        sources={"detector": "insightface's antelopev2 model pack, the folder Arc2Face's README "
                             "has you download (https://github.com/foivospar/Arc2Face; insightface "
                             "does not serve antelopev2.zip from its releases, see "
                             "https://github.com/deepinsight/insightface/tree/master/"
                             "python-package)",
                 "recognition": "https://huggingface.co/FoivosPar/Arc2Face (arcface.onnx at the "
                                "repository's root, beside arc2face/ and encoder/)"},
        licence=f"{ARC2FACE_LICENCE}; detector: {INSIGHTFACE_LICENCE}"),
}
"""Identity models by name: the only embedding each diffusion route accepts
(:data:`generator.diffusion.backend.ROUTE_IDENTITY_MODELS`)."""
