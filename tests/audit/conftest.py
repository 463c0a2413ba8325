"""Fixtures for the audit tests: the real model folder, loaded models and sample photos.

Models come from ``$FACEAUDIT_MODEL_DIR`` or ``../shared/models`` beside the repository; tests
that need them are skipped with a reason when that folder is missing. Loaded models are
session-scoped because loading is the slow part.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import insightface
import numpy as np
import pytest

from audit.detection import FaceDetector
from audit.recognition import MobileFaceNetRecognizer
from audit.registry import ModelRegistry

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_IMAGES = Path(insightface.__file__).parent / "data" / "images"


def _model_dir() -> Path:
    value = os.environ.get("FACEAUDIT_MODEL_DIR", "").strip()
    return Path(value) if value else REPO_ROOT.parent / "shared" / "models"


@pytest.fixture(scope="session")
def model_dir() -> Path:
    path = _model_dir()
    if not path.is_dir():
        pytest.skip(f"model folder {path} not found: set FACEAUDIT_MODEL_DIR to the models folder")
    return path


@pytest.fixture(scope="session")
def registry(model_dir: Path) -> ModelRegistry:
    return ModelRegistry(model_dir)


@pytest.fixture(scope="session")
def detector(registry: ModelRegistry) -> FaceDetector:
    """Default detector: scrfd_500m at its default det_size of 192 (the generated-face setting)."""
    return FaceDetector(registry)


@pytest.fixture(scope="session")
def photo_detector(registry: ModelRegistry) -> FaceDetector:
    """scrfd_500m at det_size 640, for the group photo with six smallish faces."""
    return FaceDetector(registry, det_size=640)


@pytest.fixture(scope="session")
def recognizer(registry: ModelRegistry) -> MobileFaceNetRecognizer:
    return MobileFaceNetRecognizer(registry)


def read_rgb(name: str) -> np.ndarray:
    image = cv2.imread(str(SAMPLE_IMAGES / name), cv2.IMREAD_COLOR)
    assert image is not None, f"cannot read {SAMPLE_IMAGES / name}"
    return np.ascontiguousarray(image[:, :, ::-1])


@pytest.fixture(scope="session")
def t1_rgb() -> np.ndarray:
    """insightface's group photo: six different people (1280x886, RGB)."""
    return read_rgb("t1.jpg")


@pytest.fixture(scope="session")
def tom_hanks_rgb() -> np.ndarray:
    """insightface's 112x112 face already aligned to the ArcFace template (grey, RGB)."""
    return read_rgb("Tom_Hanks_54745.png")


@pytest.fixture(scope="session")
def t1_faces(photo_detector: FaceDetector, t1_rgb: np.ndarray) -> list:
    """The six detections in t1.jpg, sorted left to right."""
    return sorted(photo_detector.detect_all(t1_rgb), key=lambda d: float(d.bbox[0]))
