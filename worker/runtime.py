"""Models loaded once per worker process (generator, face analyzer), keyed by what defines them."""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

from django.conf import settings

_lock = threading.Lock()


def model_dir() -> Path:
    return Path(settings.FACEAUDIT_MODEL_DIR)


@lru_cache(maxsize=4)
def _generator(name: str, device: str):
    from generator.backends import load_generator

    return load_generator(name, device=device)


def get_generator(name: str):
    with _lock:
        return _generator(name, settings.FACEAUDIT_TORCH_DEVICE)


@lru_cache(maxsize=4)
def _analyzer(model_dir_str: str, recognizers: tuple[str, ...]):
    from audit.analysis import FaceAnalyzer

    from audit.registry import ModelRegistry

    return FaceAnalyzer(ModelRegistry(Path(model_dir_str)), recognizers=recognizers)


def get_analyzer(recognizers: tuple[str, ...] = ()):
    """A :class:`audit.analysis.FaceAnalyzer` with the given FR models (``()`` for sensors only)."""
    with _lock:
        return _analyzer(str(model_dir()), tuple(recognizers))


def available_fr_models() -> list[str]:
    """FR models whose files are present in the model directory (no onnxruntime import)."""
    from audit.registry import ModelRegistry

    registry = ModelRegistry(model_dir())
    return [name for name in registry.available() if registry.spec(name).role == "recognition"]
