"""The fast scoring path against independently computed references on a few hundred generated
faces: detection on the 192-px canvas against the former 256-px canvas (insightface's own SCRFD
decoding), alignment against insightface's ``norm_crop``, and embeddings against MobileFaceNet run
one image at a time with plain onnxruntime and the documented preprocessing."""

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from insightface.model_zoo.scrfd import SCRFD
from insightface.utils.face_align import norm_crop

from audit.align import align_upscaled
from audit.analysis import FaceAnalyzer
from audit.detection import _with_dynamic_input_size, upscale_all

N_FACES = 300


@pytest.fixture(scope="module")
def generated_faces():
    """N_FACES DCGAN faces as the worker stores and reads them: PNG round trip, 64x64 RGB."""
    try:
        from generator.backends import load_dcgan_digiface

        generator = load_dcgan_digiface()
    except Exception as exc:  # noqa: BLE001 - weights or torch missing: nothing to compare on
        pytest.skip(f"DCGAN generator not available: {exc}")
    pixels = generator.generate(generator.sample_latents(list(range(30_000, 30_000 + N_FACES))))
    faces = []
    for rgb in pixels:
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
        assert ok
        faces.append(np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]))
    return faces


@pytest.fixture(scope="module")
def analyzer(registry):
    return FaceAnalyzer(registry, quality="lightqnet", intra_op_num_threads=1)


@pytest.fixture(scope="module")
def batch(analyzer, generated_faces):
    return analyzer.analyze(generated_faces)


def insightface_best(registry, images, up: int, pad: int, det_size: int):
    """Best face per 64-px image by insightface's SCRFD (its letterbox, decoding and NMS) on the
    image upscaled bicubically to ``up`` px and padded by ``pad``: (found (N,), points (N, 7, 2) =
    box corners then keypoints in input pixels, scores (N,))."""
    path = str(registry.verify("scrfd_500m"))
    session = ort.InferenceSession(
        _with_dynamic_input_size(onnx.load(path)).SerializeToString(),
        providers=["CPUExecutionProvider"],
    )
    model = SCRFD(model_file=None, session=session)
    model.prepare(ctx_id=-1, input_size=(det_size, det_size), det_thresh=0.5)
    found = np.zeros(len(images), bool)
    points = np.full((len(images), 7, 2), np.nan)
    scores = np.full(len(images), np.nan)
    for i, image in enumerate(images):
        canvas = cv2.resize(image, (up, up), interpolation=cv2.INTER_CUBIC)
        canvas = cv2.copyMakeBorder(canvas, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        boxes, kpss = model.detect(np.ascontiguousarray(canvas[:, :, ::-1]))
        if len(boxes):
            found[i], scores[i] = True, boxes[0, 4]
            canvas_points = np.concatenate([boxes[0, :4].reshape(2, 2), kpss[0]]) - pad
            points[i] = (canvas_points + 0.5) * (64 / up) - 0.5
    return found, points, scores


def ours(batch):
    return np.concatenate([batch.bbox.reshape(-1, 2, 2), batch.kps], axis=1).astype(np.float64)


def test_batched_detection_decodes_like_insightface_on_the_same_canvas(
    registry, generated_faces, batch
):
    found, points, scores = insightface_best(registry, generated_faces, 128, 32, 192)
    np.testing.assert_array_equal(batch.face_found, found)
    np.testing.assert_allclose(ours(batch)[found], points[found], atol=1e-3)
    np.testing.assert_allclose(batch.det_score[found], scores[found], atol=1e-5)


def test_the_192_canvas_finds_the_faces_of_the_256_canvas_at_the_same_places(
    registry, generated_faces, batch
):
    # The former preprocessing: 64 -> 128 px, padded by 64 to 256x256, run at 256.
    found, points, scores = insightface_best(registry, generated_faces, 128, 64, 256)
    assert found.sum() >= 0.9 * N_FACES  # the reference itself finds almost every face
    new = batch.face_found
    # The same faces up to a few borderline ones (on the benchmark's 512 faces: none lost, three
    # gained), and a lost one must have been a weak detection.
    lost, gained = found & ~new, new & ~found
    assert lost.sum() <= 0.01 * N_FACES and gained.sum() <= 0.02 * N_FACES, (lost, gained)
    assert np.all(scores[lost] < 0.7), scores[lost]
    both = found & new
    error = np.abs(ours(batch)[both] - points[both])  # input (64-px image) pixels
    box, kps = error[:, :2].reshape(len(error), -1).max(1), error[:, 2:].reshape(len(error), -1)
    kps = kps.max(1)
    assert np.median(box) < 1.0 and np.percentile(box, 95) < 2.0, np.percentile(box, [50, 95])
    assert np.median(kps) < 0.75 and np.percentile(kps, 95) < 1.5, np.percentile(kps, [50, 95])
    assert np.median(np.abs(batch.det_score[both] - scores[both])) < 0.05


def reference_crops(images, kps):
    """insightface's norm_crop of each image upscaled 2x bicubically, keypoints scaled with it."""
    crops = []
    for image, points in zip(images, kps, strict=True):
        up = cv2.resize(image, (128, 128), interpolation=cv2.INTER_CUBIC)
        crops.append(norm_crop(up, ((points.astype(np.float64) + 0.5) * 2 - 0.5).astype(np.float32)))
    return np.stack(crops)


def test_batched_alignment_matches_insightface_norm_crop(generated_faces, batch):
    idx = np.flatnonzero(batch.face_found)[:100]
    images = [generated_faces[i] for i in idx]
    expected = reference_crops(images, batch.kps[idx])
    got = align_upscaled(upscale_all(images), batch.kps[idx])
    diff = np.abs(got.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999


def plain_mobilefacenet(registry, crops):
    """MobileFaceNet one crop at a time on the file's own batch-1 graph: RGB, (x - 127.5) / 128,
    NCHW (shared/models/MODELS.md), L2-normalised."""
    session = ort.InferenceSession(
        str(registry.verify("mobilefacenet")), providers=["CPUExecutionProvider"]
    )
    rows = []
    for crop in crops:
        x = ((crop.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        (out,) = session.run(None, {"input0": np.ascontiguousarray(x)})
        rows.append(out[0] / np.linalg.norm(out[0]))
    return np.stack(rows)


def test_embeddings_match_mobilefacenet_run_one_by_one(registry, generated_faces, batch):
    idx = np.flatnonzero(batch.face_found)
    expected = plain_mobilefacenet(
        registry, reference_crops([generated_faces[i] for i in idx], batch.kps[idx])
    )
    cosine = np.sum(batch.embeddings["mobilefacenet"][idx] * expected, axis=1)
    assert cosine.min() > 0.999, np.sort(cosine)[:5]


def test_embeddings_stay_close_to_those_of_the_256_canvas_keypoints(
    registry, generated_faces, batch
):
    # End to end: the 192 canvas moves keypoints by a fraction of a pixel, so the crop moves too.
    found, points, _ = insightface_best(registry, generated_faces, 128, 64, 256)
    idx = np.flatnonzero(found & batch.face_found)
    old = plain_mobilefacenet(
        registry, reference_crops([generated_faces[i] for i in idx], points[idx, 2:])
    )
    cosine = np.sum(batch.embeddings["mobilefacenet"][idx] * old, axis=1)
    assert np.median(cosine) > 0.99 and np.percentile(cosine, 5) > 0.95, np.percentile(
        cosine, [1, 5, 50]
    )
