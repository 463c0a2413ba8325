"""Model registry: which model files the audit knows, where they live, and whether they are intact.

The registry never downloads anything and never imports onnxruntime, so the web process can use it
to list models. Model files live in one directory chosen at run time (``FACEAUDIT_MODEL_DIR``);
tests point it at ``../shared/models``. Model files are never copied into the repository.

Every known file is pinned by sha256: a silently replaced or truncated model would ruin every
number an audit reports, so adapters call :meth:`ModelRegistry.verify` before loading.

A few models ship inside pip packages instead (dlib's ResNet in ``face_recognition_models``):
:data:`KNOWN_PACKAGE_MODELS` pins their files the same way, :meth:`ModelRegistry.verify_package`
finds and checks them, and :meth:`ModelRegistry.available_packages` lists those installed, all
without importing the packages. :meth:`ModelRegistry.available` still lists model-directory files
only; :meth:`ModelRegistry.available_recognizers` lists every usable FR model of both kinds.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MODEL_DIR_ENV = "FACEAUDIT_MODEL_DIR"
DEFAULT_MODEL_DIR = Path("~/.cache/faceaudit/models").expanduser()

Role = Literal["detector", "recognition", "attribute", "quality"]
ROLES: frozenset[str] = frozenset({"detector", "recognition", "attribute", "quality"})

_INSIGHTFACE_LICENCE = "insightface pretrained weights: non-commercial research only"


class ModelError(Exception):
    """Base class for every model registry error."""


class UnknownModelError(ModelError):
    """A model name that is not in :data:`KNOWN_MODELS`."""


class ModelNotFoundError(ModelError):
    """A known model whose file is missing from the model directory."""


class ModelHashMismatch(ModelError):
    """A model file whose sha256 differs from the pinned value."""

    def __init__(self, name: str, path: Path, expected: str, actual: str) -> None:
        self.name, self.path, self.expected, self.actual = name, path, expected, actual
        super().__init__(
            f"model {name!r} at {path} has sha256 {actual}, expected {expected}; "
            "the file is corrupt or a different version: download it again"
        )


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
        licence=_INSIGHTFACE_LICENCE,
        source="insightface SCRFD release (same graph as buffalo_s det_500m.onnx); "
        "https://github.com/deepinsight/insightface/tree/master/detection/scrfd",
    ),
    ModelSpec(
        name="scrfd_2.5g",
        filename="scrfd_2.5g_bnkps.onnx",
        sha256="041f73f47371333d1d17a6fee6c8ab4e6aecabefe398ff32cca4e2d5eaee0af9",
        role="detector",
        licence=_INSIGHTFACE_LICENCE,
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
        licence=_INSIGHTFACE_LICENCE,
        source="insightface 2018 gender-age MXNet model converted to ONNX; "
        "https://github.com/deepinsight/insightface/tree/master/attribute",
    ),
    ModelSpec(
        name="genderage_insightface",
        filename="buffalo_s/genderage.onnx",
        sha256=None,
        role="attribute",
        licence=_INSIGHTFACE_LICENCE,
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

_BY_NAME: dict[str, ModelSpec] = {spec.name: spec for spec in KNOWN_MODELS}

#: File in the model directory recording the hashes of files no source publishes a hash for.
REGISTERED_HASHES = "registered-hashes.json"


def registered_hashes(model_dir: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """``{filename: {"sha256": ..., "source": ...}}`` recorded in ``model_dir``."""
    path = Path(model_dir) / REGISTERED_HASHES
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def register_hash(model_dir: str | os.PathLike[str], filename: str, sha256: str,
                  source: str) -> None:
    """Record ``filename``'s sha256 (first verification), written atomically."""
    data = registered_hashes(model_dir)
    data[filename] = {"sha256": sha256, "source": source}
    path = Path(model_dir) / REGISTERED_HASHES
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


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

_PACKAGE_BY_NAME: dict[str, PackageModelSpec] = {spec.name: spec for spec in KNOWN_PACKAGE_MODELS}


def _installed(module: str) -> bool:
    """Whether a top-level module can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _package_dir(package: str) -> Path | None:
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations)))


# (resolved path, size, mtime_ns) -> sha256 hex digest; hashing is done once per process and file.
_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file, computed once per process for each (path, size, mtime)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    cached = _HASH_CACHE.get(key)
    if cached is None:
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
        cached = _HASH_CACHE[key] = digest.hexdigest()
    return cached


class ModelRegistry:
    """Looks up :data:`KNOWN_MODELS` in one model directory.

    >>> registry = ModelRegistry("/path/to/models")  # doctest: +SKIP
    >>> registry.verify("mobilefacenet")  # path, after a sha256 check  # doctest: +SKIP
    """

    def __init__(self, model_dir: str | os.PathLike[str]) -> None:
        self.model_dir = Path(model_dir).expanduser()

    @classmethod
    def from_env(cls) -> ModelRegistry:
        """Registry for ``$FACEAUDIT_MODEL_DIR``, or ``~/.cache/faceaudit/models`` when unset."""
        value = os.environ.get(MODEL_DIR_ENV, "").strip()
        return cls(value or DEFAULT_MODEL_DIR)

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.model_dir)!r})"

    def spec(self, name: str) -> ModelSpec:
        """The pinned spec for ``name``; raises :class:`UnknownModelError` listing known names."""
        try:
            return _BY_NAME[name]
        except KeyError:
            known = ", ".join(sorted(_BY_NAME))
            raise UnknownModelError(f"unknown model {name!r}; known models: {known}") from None

    def path(self, name: str) -> Path:
        """Path of the model file; raises :class:`ModelNotFoundError` if it is not there."""
        spec = self.spec(name)
        path = self.model_dir / spec.filename
        if not path.is_file():
            raise ModelNotFoundError(
                f"model {name!r} ({spec.filename}) not found in model directory "
                f"{self.model_dir}; set {MODEL_DIR_ENV} to the folder that holds it, "
                f"or download it from {spec.source} (licence: {spec.licence})"
            )
        return path

    def verify(self, name: str) -> Path:
        """Path of the model file after checking its sha256 (hashed once per process and file).

        Raises :class:`ModelNotFoundError` or :class:`ModelHashMismatch`.
        """
        spec = self.spec(name)
        path = self.path(name)
        actual = file_sha256(path)
        expected = spec.sha256
        if expected is None:  # no published hash: the one recorded at first verification
            record = registered_hashes(self.model_dir).get(spec.filename)
            if record is None:
                with contextlib.suppress(OSError):  # a read-only folder: nothing to record
                    register_hash(self.model_dir, spec.filename, actual, "found in the model "
                                  "directory (not fetched by FaceAudit)")
                return path
            expected = record.get("sha256")
        if actual != expected:
            raise ModelHashMismatch(name, path, str(expected), actual)
        return path

    def sha256(self, name: str) -> str:
        """The verified sha256 of a model file (pinned, or recorded at first verification)."""
        return file_sha256(self.verify(name))

    def available(self) -> list[str]:
        """Names of known models whose files exist and verify (sha256, hashed once per process
        and file), in registry order: a damaged or re-saved copy is not offered, see
        :meth:`damaged`. Model-directory files only; see :meth:`available_packages`."""
        names = []
        for spec in KNOWN_MODELS:
            if not (self.model_dir / spec.filename).is_file():
                continue
            try:
                self.verify(spec.name)
            except ModelError:
                continue
            names.append(spec.name)
        return names

    def damaged(self) -> dict[str, str]:
        """``{name: why}`` for known model files present whose sha256 is not the pinned one."""
        out = {}
        for spec in KNOWN_MODELS:
            if (self.model_dir / spec.filename).is_file():
                try:
                    self.verify(spec.name)
                except ModelHashMismatch as exc:
                    out[spec.name] = str(exc)
        return out

    # --- models shipped inside pip packages -----------------------------------------------------

    def package_spec(self, name: str) -> PackageModelSpec:
        """The pinned spec of package model ``name``; raises :class:`UnknownModelError`."""
        try:
            return _PACKAGE_BY_NAME[name]
        except KeyError:
            known = ", ".join(sorted(_PACKAGE_BY_NAME))
            raise UnknownModelError(
                f"unknown package model {name!r}; known package models: {known}"
            ) from None

    def package_paths(self, name: str) -> dict[str, Path]:
        """``{file key: path}`` of a package model, without importing anything.

        Raises :class:`ModelNotFoundError` naming the pip requirement when the package, a module
        in ``requires``, or one of the files is missing.
        """
        spec = self.package_spec(name)
        folder = _package_dir(spec.package)
        missing = [module for module in spec.requires if not _installed(module)]
        if folder is None or missing:
            missing = ([spec.package] if folder is None else []) + missing
            raise ModelNotFoundError(
                f"model {name!r} needs the Python package(s) {', '.join(missing)}, which are "
                f"not installed; install them with: pip install {spec.install} "
                f"(licence: {spec.licence})"
            )
        paths = {file.key: folder / file.path for file in spec.files}
        for key, path in paths.items():
            if not path.is_file():
                raise ModelNotFoundError(
                    f"model {name!r}: file {path} ({key}) is missing from the installed package "
                    f"{spec.package}; reinstall it with: pip install --force-reinstall "
                    f"{spec.install}"
                )
        return paths

    def verify_package(self, name: str) -> dict[str, Path]:
        """:meth:`package_paths` after checking every file's sha256 (once per process and file).

        Raises :class:`ModelNotFoundError` or :class:`ModelHashMismatch`.
        """
        spec = self.package_spec(name)
        paths = self.package_paths(name)
        for file in spec.files:
            actual = file_sha256(paths[file.key])
            if actual != file.sha256:
                raise ModelHashMismatch(name, paths[file.key], file.sha256, actual)
        return paths

    def available_packages(self) -> list[str]:
        """Names of package models whose package, requirements and files are all installed
        (not hash-checked, nothing imported), in registry order."""
        names = []
        for spec in KNOWN_PACKAGE_MODELS:
            try:
                self.package_paths(spec.name)
            except ModelNotFoundError:
                continue
            names.append(spec.name)
        return names

    def available_recognizers(self) -> list[str]:
        """Recognition models usable now: model-directory files, then installed package models."""
        files = [name for name in self.available() if self.spec(name).role == "recognition"]
        packages = [
            name
            for name in self.available_packages()
            if self.package_spec(name).role == "recognition"
        ]
        return files + packages


#: insightface model packs (folder name -> recognition file inside it), in the layout insightface
#: downloads them to (``~/.insightface/models/<pack>/``); put the folder in the model directory.
INSIGHTFACE_PACKS: dict[str, str] = {
    "buffalo_l": "w600k_r50.onnx",  # ResNet-50 ArcFace on WebFace600K, 512-d
    "buffalo_s": "w600k_mbf.onnx",  # MobileFaceNet ArcFace on WebFace600K, 512-d
    "antelopev2": "glintr100.onnx",  # ResNet-100 on Glint360K, 512-d
}
INSIGHTFACE_LICENCE = "insightface pretrained weights: non-commercial research only"


def available_packs(model_dir: str | os.PathLike[str]) -> list[str]:
    """insightface packs whose recognition file is present in ``model_dir``."""
    return [p for p, f in INSIGHTFACE_PACKS.items() if (Path(model_dir) / p / f).is_file()]


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


def identity_model(name: str) -> IdentityModel:
    """The :class:`IdentityModel` named ``name``; :class:`UnknownModelError` lists the known."""
    try:
        return IDENTITY_MODELS[name]
    except KeyError:
        raise UnknownModelError(f"unknown identity model {name!r}; known identity models: "
                                f"{', '.join(IDENTITY_MODELS)}") from None


def missing_identity_files(model_dir: str | os.PathLike[str], name: str) -> list[str]:
    """One line per file of identity model ``name`` missing from ``model_dir``: the file, where
    it goes and where it comes from (empty when both are there). Imports nothing."""
    spec = identity_model(name)
    lines = []
    for role, path in spec.paths(model_dir).items():
        if not path.is_file():
            what = "face detector" if role == "detector" else "ArcFace recogniser"
            lines.append(f"identity model {name}: its {what} {Path(getattr(spec, role)).name} "
                         f"is missing; put it at {path} (it comes from {spec.sources[role]})")
    return lines


def identity_model_paths(model_dir: str | os.PathLike[str], name: str) -> dict[str, Path]:
    """:meth:`IdentityModel.paths` after checking both files are there; otherwise
    :class:`ModelNotFoundError` naming each missing file, where it goes and where it comes
    from, and what the model is for."""
    missing = missing_identity_files(model_dir, name)
    if missing:
        spec = identity_model(name)
        raise ModelNotFoundError("; ".join(missing) + f". It is the embedding of "
                                 f"{spec.trained_for} (licence: {spec.licence})")
    return identity_model(name).paths(model_dir)
