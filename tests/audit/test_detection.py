import math

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from audit.detection import (
    FaceDetector,
    _with_dynamic_input_size,
    canvas_to_input,
    prepare_for_detection,
)
from audit.registry import ModelError

# insightface's ArcFace template for 112x112 crops (Deng et al., ArcFace, 2019): the sample
# Tom_Hanks_54745.png is already aligned to it, so detected keypoints must land near it.
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)


def keypoint_errors(kps, expected):
    return np.linalg.norm(np.asarray(kps, float) - expected, axis=1)


@pytest.mark.parametrize(
    ("shape", "canvas_shape", "scale", "pad"),
    [
        ((64, 64), (192, 192), 2.0, 32),  # the generator's faces: 128 px face, 32 px border
        ((100, 200), (192, 320), 1.28, 32),  # short side 100 -> 128, long side 256
        ((300, 400), (450, 550), 1.0, 75),  # large enough: no upscale, pad a quarter of 300
    ],
)
def test_small_images_are_upscaled_and_padded(shape, canvas_shape, scale, pad):
    image = np.full((*shape, 3), 200, np.uint8)
    canvas, sx, sy, got_pad = prepare_for_detection(image)
    assert canvas.shape == (*canvas_shape, 3)
    assert (sx, sy, got_pad) == (pytest.approx(scale), pytest.approx(scale), pad)
    assert canvas[0, 0].tolist() == [0, 0, 0]
    assert canvas[pad + 5, pad + 5].tolist() == [200, 200, 200]
    # A pixel centre maps forward as (x + 0.5) * s - 0.5 + pad; the inverse must undo it.
    point = np.array([[10.0, 20.0]])
    forward = (point + 0.5) * scale - 0.5 + pad
    np.testing.assert_allclose(canvas_to_input(forward, sx, sy, got_pad), point, atol=1e-4)


@pytest.mark.parametrize("name", ["scrfd_500m", "scrfd_2.5g"])
def test_it_finds_the_six_faces_in_the_group_photo(registry, t1_rgb, name):
    faces = FaceDetector(registry, name, det_size=640).detect_all(t1_rgb)
    assert len(faces) == 6
    h, w = t1_rgb.shape[:2]
    for face in faces:
        assert face.found and 0.5 <= face.score <= 1.0
        assert face.kps.shape == (5, 2) and face.kps.dtype == np.float32
        assert face.bbox.shape == (4,) and face.bbox.dtype == np.float32
        assert np.all((face.kps >= 0) & (face.kps < [w, h]))
        x1, y1, x2, y2 = face.bbox
        assert np.all((face.kps[:, 0] > x1) & (face.kps[:, 0] < x2))
        assert np.all((face.kps[:, 1] > y1) & (face.kps[:, 1] < y2))
    centres = np.array([f.bbox.reshape(2, 2).mean(axis=0) for f in faces])
    distances = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    assert distances[~np.eye(6, dtype=bool)].min() > 50  # six different faces, not duplicates
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)


def test_detect_batch_keeps_the_highest_scoring_face(photo_detector, t1_rgb):
    best = photo_detector.detect_batch([t1_rgb])[0]
    assert best.score == max(f.score for f in photo_detector.detect_all(t1_rgb))


def test_an_aligned_face_filling_the_frame_is_found_after_padding(detector, tom_hanks_rgb):
    face = detector.detect_batch([tom_hanks_rgb])[0]
    assert face.found
    errors = keypoint_errors(face.kps, ARCFACE_112)
    assert errors.mean() < 5 and errors.max() < 8, errors


def test_keypoints_of_a_64px_face_map_back_to_its_pixels(detector, tom_hanks_rgb):
    small = cv2.resize(tom_hanks_rgb, (64, 64), interpolation=cv2.INTER_AREA)
    face = detector.detect_batch([small])[0]
    assert face.found
    expected = (ARCFACE_112 + 0.5) * 64 / 112 - 0.5
    errors = keypoint_errors(face.kps, expected)
    assert errors.mean() < 3 and errors.max() < 5, errors
    assert np.all((face.kps >= 0) & (face.kps < 64))

    # The same face placed 30 px down in a taller image (a different canvas and letterbox
    # scale inside the detector): keypoints follow it.
    tall = np.full((110, 64, 3), 120, np.uint8)
    tall[30:94] = small
    moved = detector.detect_batch([tall])[0]
    assert moved.found
    errors = keypoint_errors(moved.kps, expected + [0, 30])
    assert errors.mean() < 3 and errors.max() < 5, errors


def test_a_blank_image_yields_no_face(detector):
    grey = np.full((64, 64, 3), 128, np.uint8)
    (result,) = detector.detect_batch([grey])
    assert not result.found
    assert math.isnan(result.score) and result.bbox is None and result.kps is None


def test_detect_batch_returns_one_result_per_image(detector, tom_hanks_rgb):
    grey = np.full((80, 80, 3), 90, np.uint8)
    results = detector.detect_batch([tom_hanks_rgb, grey, tom_hanks_rgb])
    assert [r.found for r in results] == [True, False, True]
    np.testing.assert_array_equal(results[0].kps, results[2].kps)
    assert detector.detect_batch([]) == []


def test_the_fixed_size_detector_runs_at_the_requested_size(detector):
    assert detector.det_size == 192 and detector.batched


def test_the_resized_500m_graph_matches_the_original_at_640(registry, t1_rgb):
    path = str(registry.verify("scrfd_500m"))
    original = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rewritten = ort.InferenceSession(
        _with_dynamic_input_size(onnx.load(path)).SerializeToString(),
        providers=["CPUExecutionProvider"],
    )
    bgr = cv2.resize(t1_rgb[:, :, ::-1], (640, 443))
    canvas = np.zeros((640, 640, 3), np.uint8)
    canvas[:443] = bgr
    blob = cv2.dnn.blobFromImage(canvas, 1 / 128, (640, 640), (127.5,) * 3, swapRB=True)
    name = original.get_inputs()[0].name
    for a, b in zip(
        original.run(None, {name: blob}), rewritten.run(None, {name: blob}), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # ...and it now accepts other sizes: 256x256 gives 4x fewer anchors per level than 512x512.
    small = rewritten.run(None, {name: np.zeros((1, 3, 256, 256), np.float32)})
    assert small[0].shape[-2] == (256 // 8) ** 2 * 2


def test_it_refuses_a_model_that_is_not_a_detector(registry):
    with pytest.raises(ModelError, match="not a face detector"):
        FaceDetector(registry, "mobilefacenet")


def test_it_refuses_a_detector_size_that_is_not_a_multiple_of_32(registry):
    with pytest.raises(ValueError, match="multiple of 32"):
        FaceDetector(registry, det_size=250)
