import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import audit.registry as registry_module
from audit.align import align_faces
from audit.detection import NOT_FOUND
from audit.recognition import Recognizer, cosine_similarity
from audit.recognition_dlib import (
    DLIB_SAME_PERSON_DISTANCE,
    DlibResNetRecognizer,
    ImageRecognizer,
    cosine_from_euclidean,
    dlib_box,
)
from audit.registry import (
    KNOWN_MODELS,
    ModelError,
    ModelHashMismatch,
    ModelNotFoundError,
    ModelRegistry,
    UnknownModelError,
)

from .test_recognition import lightly_changed

# --- no dlib needed ----------------------------------------------------------------------------


def test_cosine_from_euclidean_is_the_law_of_cosines():
    assert cosine_from_euclidean(0.0) == pytest.approx(1.0)
    assert cosine_from_euclidean(math.sqrt(2)) == pytest.approx(0.0)
    assert cosine_from_euclidean(2.0) == pytest.approx(-1.0)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 128)), rng.normal(size=(50, 128))
    got = cosine_from_euclidean(
        np.linalg.norm(a - b, axis=1), np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    )
    np.testing.assert_allclose(got, cosine_similarity(a, b), atol=1e-6)
    # dlib's 0.6 on unit vectors; on raw descriptors of norm ~1.5 it is a higher cosine.
    assert cosine_from_euclidean(DLIB_SAME_PERSON_DISTANCE) == pytest.approx(0.82)
    assert cosine_from_euclidean(0.6, 1.5, 1.5) == pytest.approx(0.92)


def test_the_dlib_box_is_a_square_of_the_scrfd_width_a_little_lower():
    # SCRFD box 100 wide, 140 tall, centred at (150, 170): square of side 100 centred 5.6 lower.
    assert dlib_box(np.array([100.0, 100.0, 200.0, 240.0])) == (100, 126, 200, 226)
    # In a 64-px image upscaled by 2 the box is returned in upscaled pixels.
    left, top, right, bottom = dlib_box(np.array([10.0, 5.0, 50.0, 60.0]), 2.0, 2.0)
    assert (
        right - left == 80
        and bottom - top == 80
        and (left + right) / 2 == pytest.approx(60.5, abs=0.5)
    )


def test_the_package_model_is_pinned_apart_from_the_model_directory(tmp_path):
    registry = ModelRegistry(tmp_path)
    spec = registry.package_spec("dlib_resnet")
    assert spec.role == "recognition" and spec.embedding_size == 128
    assert spec.licence == "CC0 (dlib model files via face_recognition_models)"
    assert [f.key for f in spec.files] == ["recognition", "shape_predictor_5"]
    assert spec.sha256 == spec.files[0].sha256
    assert "dlib_resnet" not in {s.name for s in KNOWN_MODELS}  # file models unchanged
    with pytest.raises(UnknownModelError, match="dlib_resnet"):
        registry.package_spec("facenet")


def test_a_missing_package_is_reported_with_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setattr(registry_module, "_package_dir", lambda package: None)
    monkeypatch.setattr(registry_module, "_installed", lambda module: False)
    registry = ModelRegistry(tmp_path)
    with pytest.raises(ModelNotFoundError) as info:
        registry.package_paths("dlib_resnet")
    message = str(info.value)
    assert "face_recognition_models" in message and "dlib" in message
    assert "pip install dlib-bin face_recognition_models" in message
    assert registry.available_packages() == []
    assert "dlib_resnet" not in registry.available_recognizers()
    with pytest.raises(ModelNotFoundError):
        DlibResNetRecognizer(registry)


def test_a_changed_package_file_fails_its_hash(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    for name in (
        "dlib_face_recognition_resnet_model_v1.dat",
        "shape_predictor_5_face_landmarks.dat",
    ):
        (tmp_path / "models" / name).write_bytes(b"not a dlib model")
    monkeypatch.setattr(registry_module, "_package_dir", lambda package: tmp_path)
    monkeypatch.setattr(registry_module, "_installed", lambda module: True)
    registry = ModelRegistry(tmp_path)
    assert registry.available_packages() == ["dlib_resnet"]  # present, not yet hash-checked
    with pytest.raises(ModelHashMismatch) as info:
        registry.verify_package("dlib_resnet")
    assert info.value.expected == registry.package_spec("dlib_resnet").sha256


def test_listing_package_models_imports_neither_dlib_nor_the_model_package(model_dir):
    code = (
        "import sys; from audit.registry import ModelRegistry; import audit.analysis;"
        f"ModelRegistry({str(model_dir)!r}).available_recognizers();"
        "print(sorted(m for m in ('dlib', 'face_recognition_models') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "[]"


# --- with dlib ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dlib_recognizer(registry):
    pytest.importorskip(
        "dlib", reason="dlib is not installed: pip install dlib-bin face_recognition_models"
    )
    if "dlib_resnet" not in registry.available_packages():
        pytest.skip("face_recognition_models is not installed: pip install face_recognition_models")
    return DlibResNetRecognizer(registry)


@pytest.fixture(scope="module")
def t1_dlib(dlib_recognizer, t1_rgb, t1_faces):
    assert len(t1_faces) == 6
    return dlib_recognizer.embed_images([t1_rgb] * 6, t1_faces)


def test_it_describes_itself(dlib_recognizer, registry):
    assert isinstance(dlib_recognizer, Recognizer) and isinstance(dlib_recognizer, ImageRecognizer)
    assert dlib_recognizer.name == "dlib_resnet"
    assert dlib_recognizer.embedding_size == 128
    spec = registry.package_spec("dlib_resnet")
    assert dlib_recognizer.weights_sha256 == spec.sha256
    assert dlib_recognizer.licence == "CC0 (dlib model files via face_recognition_models)"
    assert dlib_recognizer.models == {
        "dlib_resnet": spec.files[0].sha256,
        "dlib_shape_predictor_5": spec.files[1].sha256,
    }
    assert "dlib_resnet" in registry.available_recognizers()


def test_embeddings_are_unit_rows(t1_dlib):
    assert t1_dlib.shape == (6, 128) and t1_dlib.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t1_dlib, axis=1), 1.0, atol=1e-5)


def test_different_people_are_apart_by_dlibs_own_rule(dlib_recognizer, t1_rgb, t1_faces, t1_dlib):
    raw = dlib_recognizer.embed_images([t1_rgb] * 6, t1_faces, normalise=False)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), t1_dlib, atol=1e-6)
    i, j = np.triu_indices(6, k=1)
    distances = np.linalg.norm(raw[i] - raw[j], axis=1)
    assert distances.min() > DLIB_SAME_PERSON_DISTANCE, np.round(distances, 3)
    # After normalising, dlib's cosines are compressed near 1 (see the module docstring):
    # different people 0.81-0.90 here.
    cross = cosine_similarity(t1_dlib[i], t1_dlib[j])
    assert cross.max() < 0.95, np.round(cross, 3)


def test_a_lightly_changed_copy_scores_as_the_same_person(
    dlib_recognizer, photo_detector, t1_rgb, t1_faces, t1_dlib
):
    changed = lightly_changed(t1_rgb)
    changed_faces = photo_detector.detect_all(changed)
    assert len(changed_faces) == 6
    centres = np.array([f.bbox.reshape(2, 2).mean(axis=0) for f in changed_faces])
    matched = [
        changed_faces[
            int(np.argmin(np.linalg.norm(centres - f.bbox.reshape(2, 2).mean(0), axis=1)))
        ]
        for f in t1_faces
    ]
    again = dlib_recognizer.embed_images([changed] * 6, matched)
    same = cosine_similarity(t1_dlib, again)
    assert same.min() > 0.99, np.round(same, 4)
    i, j = np.triu_indices(6, k=1)
    assert same.min() > cosine_similarity(t1_dlib[i], t1_dlib[j]).max() + 0.05


def test_it_is_a_different_model_from_mobilefacenet(recognizer, t1_rgb, t1_faces, t1_dlib):
    mobile = recognizer.embed(align_faces([t1_rgb] * 6, t1_faces))
    i, j = np.triu_indices(6, k=1)
    dlib_scores = (t1_dlib @ t1_dlib.T)[i, j]
    mobile_scores = (mobile @ mobile.T)[i, j]
    assert np.abs(dlib_scores - mobile_scores).max() > 0.3
    # Not the same ranking of the fifteen pairs either.
    assert not np.array_equal(np.argsort(dlib_scores), np.argsort(mobile_scores))
    assert abs(np.corrcoef(dlib_scores, mobile_scores)[0, 1]) < 0.9


def test_small_generated_size_faces_are_upscaled_and_still_recognised(
    dlib_recognizer, detector, t1_rgb, t1_faces, t1_dlib
):
    # Each t1 face cut out and shrunk to 64x64 (the generator's size) should still be closer to
    # its own full-resolution embedding than to any other person's.
    small = []
    for face in t1_faces:
        x1, y1, x2, y2 = face.bbox.astype(int)
        small.append(cv2.resize(t1_rgb[y1:y2, x1:x2], (64, 64), interpolation=cv2.INTER_AREA))
    detections = detector.detect_batch(small)
    found = [k for k, d in enumerate(detections) if d.found]
    assert len(found) >= 5
    embedded = dlib_recognizer.embed_images(small, detections)
    scores = embedded[found] @ t1_dlib.T
    assert np.all(np.argmax(scores, axis=1) == np.array(found)), np.round(scores, 3)


def test_batched_equals_one_at_a_time_and_missing_faces_are_nan(
    dlib_recognizer, registry, t1_rgb, t1_faces, t1_dlib
):
    one_by_one = DlibResNetRecognizer(registry, batch_size=1)
    images = [t1_rgb, t1_rgb, t1_rgb]
    got = one_by_one.embed_images(images, [t1_faces[0], NOT_FOUND, t1_faces[3]])
    np.testing.assert_allclose(got[[0, 2]], t1_dlib[[0, 3]], atol=1e-5)
    assert np.isnan(got[1]).all()
    assert dlib_recognizer.embed_images([], []).shape == (0, 128)


def test_it_refuses_arcface_crops_and_mismatched_inputs(dlib_recognizer, t1_rgb, t1_faces):
    with pytest.raises(ModelError, match="embed_images"):
        dlib_recognizer.embed(np.zeros((1, 112, 112, 3), np.uint8))
    with pytest.raises(ValueError):
        dlib_recognizer.embed_images([t1_rgb], t1_faces[:2])
    with pytest.raises(ValueError, match="batch_size"):
        DlibResNetRecognizer(ModelRegistry("."), batch_size=0)


def test_dlibs_landmarks_sit_on_the_scrfd_face(dlib_recognizer, t1_rgb, t1_faces):
    marks = dlib_recognizer.landmarks([t1_rgb] * 6, t1_faces)
    assert marks.shape == (6, 5, 2)
    for face, points in zip(t1_faces, marks, strict=True):
        # dlib: image-right eye corners, image-left eye corners, nose base. Their eye centres fall
        # near SCRFD's (within a third of the inter-eye distance: the two models place eyes
        # differently on closed or downcast eyes) and the nose base lies below SCRFD's nose tip.
        inter_eye = np.linalg.norm(face.kps[1] - face.kps[0])
        assert np.linalg.norm(points[2:4].mean(0) - face.kps[0]) < inter_eye / 3
        assert np.linalg.norm(points[0:2].mean(0) - face.kps[1]) < inter_eye / 3
        assert points[4, 1] > face.kps[2, 1] - 2
