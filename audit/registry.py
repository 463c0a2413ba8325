"""Model registry: which model files the audit knows, where they live, and whether they are intact.

The registry never downloads anything and never imports onnxruntime, so the web process can use it
to list models. Model files live in one directory chosen at run time (``FACEAUDIT_MODEL_DIR``);
tests point it at ``../shared/models``. Model files are never copied into the repository.

Every known file is pinned by sha256: a silently replaced or truncated model would ruin every
number an audit reports, so adapters call :meth:`ModelRegistry.verify` before loading.
"""

from __future__ import annotations

import hashlib
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
    """

    name: str
    filename: str
    sha256: str
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
        name="lightqnet",
        filename="lightqnet_dm100.onnx",
        sha256="cfdbbb95046a9c8a844b8446245c9756d07cdafdd9e00f219ca072cb236412a8",
        role="quality",
        licence="code MIT; no statement about the weights",
        source="https://github.com/KaenChan/lightqnet (TensorFlow .pb converted to ONNX)",
    ),
)

_BY_NAME: dict[str, ModelSpec] = {spec.name: spec for spec in KNOWN_MODELS}

# (resolved path, size, mtime_ns) -> sha256 hex digest; hashing is done once per process and file.
_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def _sha256(path: Path) -> str:
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
        actual = _sha256(path)
        if actual != spec.sha256:
            raise ModelHashMismatch(name, path, spec.sha256, actual)
        return path

    def available(self) -> list[str]:
        """Names of known models whose files exist (not hash-checked), in registry order."""
        return [spec.name for spec in KNOWN_MODELS if (self.model_dir / spec.filename).is_file()]
