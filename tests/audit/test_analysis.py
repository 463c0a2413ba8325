import json

import cv2
import numpy as np
import pytest

from audit.align import align_faces
from audit.analysis import AnalysisBatch, FaceAnalyzer, load_recognizer
from audit.recognition import MobileFaceNetRecognizer
from audit.registry import ModelError
from audit.sensors import brightness, skin_ita


@pytest.fixture(scope="module")
def analyzer(registry):
    return FaceAnalyzer(registry)


@pytest.fixture(scope="module")
def small_faces(t1_rgb, t1_faces, tom_hanks_rgb):
    """64x64 face crops like the generator's: Tom Hanks and the six t1 faces, tightly cropped."""
    faces = [cv2.resize(tom_hanks_rgb, (64, 64), interpolation=cv2.INTER_AREA)]
    for face in t1_faces:
        x1, y1, x2, y2 = face.bbox.astype(int)
        faces.append(cv2.resize(t1_rgb[y1:y2, x1:x2], (64, 64), interpolation=cv2.INTER_AREA))
    return faces


@pytest.fixture(scope="module")
def batch(analyzer, small_faces) -> AnalysisBatch:
    grey = np.full((64, 64, 3), 128, np.uint8)
    return analyzer.analyze([small_faces[0], grey, *small_faces[1:]])


def test_it_returns_one_row_per_image_with_documented_shapes(batch):
    n = 8
    assert len(batch) == n
    assert batch.face_found.dtype == bool and batch.face_found.shape == (n,)
    assert batch.bbox.shape == (n, 4) and batch.kps.shape == (n, 5, 2)
    for values in (batch.det_score, batch.male_probability, batch.age, batch.ita, batch.brightness):
        assert values.shape == (n,)
    assert set(batch.embeddings) == {"mobilefacenet"}
    assert batch.embeddings["mobilefacenet"].shape == (n, 128)
    assert batch.embeddings["mobilefacenet"].dtype == np.float32


def test_rows_without_a_face_are_nan(batch):
    assert not batch.face_found[1]
    assert batch.face_found.sum() >= 6  # the grey image, at most one small face missed
    missing = ~batch.face_found
    for values in (batch.det_score, batch.male_probability, batch.age, batch.ita, batch.brightness):
        assert np.all(np.isnan(values[missing])) and not np.any(np.isnan(values[~missing]))
    assert np.all(np.isnan(batch.bbox[missing])) and np.all(np.isnan(batch.kps[missing]))
    embeddings = batch.embeddings["mobilefacenet"]
    assert np.all(np.isnan(embeddings[missing]))
    np.testing.assert_allclose(np.linalg.norm(embeddings[~missing], axis=1), 1.0, atol=1e-5)


def test_it_agrees_with_running_the_stages_by_hand(registry, analyzer, small_faces, batch):
    detections = analyzer.detector.detect_batch([small_faces[0]])
    aligned = align_faces([small_faces[0]], detections)
    embedding = MobileFaceNetRecognizer(registry, dynamic_batch=False).embed(aligned)[0]
    np.testing.assert_allclose(batch.embeddings["mobilefacenet"][0], embedding, atol=1e-5)
    np.testing.assert_allclose(batch.kps[0], detections[0].kps)
    assert batch.ita[0] == pytest.approx(skin_ita(aligned)[0])
    assert batch.brightness[0] == pytest.approx(brightness(aligned)[0])


def test_results_are_read_only(batch):
    with pytest.raises(ValueError):
        batch.age[0] = 3


def test_a_row_is_plain_json_ready_data(batch):
    row = batch.row(0)
    json.dumps(row)
    assert row["face_found"] is True
    assert isinstance(row["det_score"], float) and isinstance(row["age"], int)
    assert len(row["bbox"]) == 4 and len(row["kps"]) == 5
    assert len(row["embeddings"]["mobilefacenet"]) == 128
    assert row["perceived_gender"] in {"male", "female"}
    assert row["skin_tone"] in {"lighter", "darker"}

    empty = batch.row(1)
    json.dumps(empty)
    assert empty["face_found"] is False
    assert empty["bbox"] is None and empty["age"] is None and empty["ita"] is None
    assert empty["embeddings"] == {"mobilefacenet": None}
    assert empty["perceived_gender"] == "unknown" and empty["ita_band"] == "unknown"


def test_it_records_the_weights_it_used(batch, registry):
    assert batch.models == {
        name: registry.spec(name).sha256 for name in ("scrfd_500m", "mobilefacenet", "genderage")
    }


def test_an_empty_batch_gives_empty_arrays(analyzer):
    result = analyzer.analyze([])
    assert len(result) == 0 and result.embeddings["mobilefacenet"].shape == (0, 128)


def test_load_recognizer_names_the_choices(registry):
    assert isinstance(load_recognizer(registry, "mobilefacenet"), MobileFaceNetRecognizer)
    with pytest.raises(ModelError, match="mobilefacenet"):
        load_recognizer(registry, "arcface_r100")
