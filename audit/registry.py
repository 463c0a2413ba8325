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

The catalogue itself (which files, their hashes and licences) is :mod:`audit.model_catalog`;
every name there is importable from here too.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
from pathlib import Path

from .model_catalog import (
    ARC2FACE_ARCFACE_FILE,
    ARC2FACE_LICENCE,
    ARC2FACE_RECOGNIZER,
    IDENTITY_MODELS,
    INSIGHTFACE_LICENCE,
    INSIGHTFACE_PACK_DETECTORS,
    INSIGHTFACE_PACKS,
    KNOWN_MODELS,
    KNOWN_PACKAGE_MODELS,
    ROLES,
    IdentityModel,
    ModelSpec,
    PackageFile,
    PackageModelSpec,
    Role,
)

__all__ = [
    "ARC2FACE_ARCFACE_FILE",
    "ARC2FACE_LICENCE",
    "ARC2FACE_RECOGNIZER",
    "DEFAULT_MODEL_DIR",
    "IDENTITY_MODELS",
    "INSIGHTFACE_LICENCE",
    "INSIGHTFACE_PACKS",
    "INSIGHTFACE_PACK_DETECTORS",
    "KNOWN_MODELS",
    "KNOWN_PACKAGE_MODELS",
    "MODEL_DIR_ENV",
    "REGISTERED_HASHES",
    "ROLES",
    "IdentityModel",
    "ModelError",
    "ModelHashMismatch",
    "ModelNotFoundError",
    "ModelRegistry",
    "ModelSpec",
    "PackageFile",
    "PackageModelSpec",
    "Role",
    "UnknownModelError",
    "available_packs",
    "file_sha256",
    "identity_model",
    "identity_model_paths",
    "missing_identity_files",
    "register_hash",
    "registered_hashes",
]

MODEL_DIR_ENV = "FACEAUDIT_MODEL_DIR"
DEFAULT_MODEL_DIR = Path("~/.cache/faceaudit/models").expanduser()


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


def available_packs(model_dir: str | os.PathLike[str]) -> list[str]:
    """insightface packs whose recognition file is present in ``model_dir``."""
    return [p for p, f in INSIGHTFACE_PACKS.items() if (Path(model_dir) / p / f).is_file()]


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
