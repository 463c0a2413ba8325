import cv2
import numpy as np
import pytest

from audit.align import align_faces
from audit.recognition import MobileFaceNetRecognizer, Recognizer, cosine_similarity


def lightly_changed(image_rgb: np.ndarray) -> np.ndarray:
    """+8 brightness, 1-px shift right and down, then JPEG at quality 85."""
    brighter = np.clip(image_rgb.astype(np.int16) + 8, 0, 255).astype(np.uint8)
    h, w = brighter.shape[:2]
    shift = np.float32([[1, 0, 1], [0, 1, 1]])
    moved = cv2.warpAffine(brighter, shift, (w, h), borderMode=cv2.BORDER_REPLICATE)
    ok, encoded = cv2.imencode(".jpg", moved[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1])


@pytest.fixture(scope="module")
def t1_aligned(t1_rgb, t1_faces):
    assert len(t1_faces) == 6
    return align_faces([t1_rgb] * 6, t1_faces)


def test_it_describes_itself(recognizer, registry):
    assert isinstance(recognizer, Recognizer)
    assert recognizer.name == "mobilefacenet"
    assert recognizer.embedding_size == 128
    assert recognizer.weights_sha256 == registry.spec("mobilefacenet").sha256
    assert "Apache" in recognizer.licence


def test_embeddings_are_unit_rows(recognizer, t1_aligned):
    embeddings = recognizer.embed(t1_aligned)
    assert embeddings.shape == (6, 128) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_different_people_come_out_different(recognizer, t1_aligned):
    # MODELS.md: -0.19..0.31 with (x - 127.5) / 128; 0.91-1.00 with insightface's guessed scaling.
    embeddings = recognizer.embed(t1_aligned)
    i, j = np.triu_indices(6, k=1)
    cross = cosine_similarity(embeddings[i], embeddings[j])
    assert cross.max() < 0.5, np.round(cross, 3)


def test_a_lightly_changed_copy_scores_as_the_same_person(
    recognizer, photo_detector, t1_rgb, t1_faces
):
    changed = lightly_changed(t1_rgb)
    changed_faces = photo_detector.detect_all(changed)
    assert len(changed_faces) == 6
    changed_centres = np.array([f.bbox.reshape(2, 2).mean(axis=0) for f in changed_faces])
    for face in t1_faces:
        centre = face.bbox.reshape(2, 2).mean(axis=0)
        match = changed_faces[int(np.argmin(np.linalg.norm(changed_centres - centre, axis=1)))]
        a = recognizer.embed(align_faces([t1_rgb], [face]))
        b = recognizer.embed(align_faces([changed], [match]))
        assert cosine_similarity(a, b)[0] > 0.8


def test_the_batched_graph_equals_the_batch_of_one_graph(recognizer, registry, t1_aligned):
    assert recognizer.batched  # the in-memory rewrite was accepted
    single = MobileFaceNetRecognizer(registry, dynamic_batch=False)
    assert not single.batched
    np.testing.assert_allclose(recognizer.embed(t1_aligned), single.embed(t1_aligned), atol=1e-5)
    for k in range(6):
        np.testing.assert_allclose(
            recognizer.embed(t1_aligned[k : k + 1])[0], single.embed(t1_aligned)[k], atol=1e-5
        )


def test_preprocessing_is_rgb_centred_and_scaled_by_128():
    crops = np.zeros((1, 112, 112, 3), np.uint8)
    crops[..., 0] = 255  # red
    x = MobileFaceNetRecognizer.preprocess(crops)
    assert x.shape == (1, 3, 112, 112) and x.dtype == np.float32
    assert x[0, 0, 0, 0] == pytest.approx((255 - 127.5) / 128)  # channel 0 is red
    assert x[0, 2, 0, 0] == pytest.approx(-127.5 / 128)


def test_it_embeds_an_empty_batch(recognizer):
    assert recognizer.embed(np.zeros((0, 112, 112, 3), np.uint8)).shape == (0, 128)


@pytest.mark.parametrize(
    "crops",
    [
        np.zeros((2, 112, 112, 3), np.float32),
        np.zeros((2, 96, 96, 3), np.uint8),
        np.zeros((112, 112, 3), np.uint8),
    ],
)
def test_it_rejects_crops_that_are_not_aligned_uint8_batches(recognizer, crops):
    with pytest.raises(ValueError):
        recognizer.embed(crops)


def test_cosine_similarity_of_hand_made_pairs():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [3.0, 4.0]])
    b = np.array([[0.0, 1.0], [2.0, 2.0], [-3.0, 0.0], [4.0, 3.0]])
    np.testing.assert_allclose(cosine_similarity(a, b), [0.0, 1.0, -1.0, 24 / 25], atol=1e-6)
    with pytest.raises(ValueError):
        cosine_similarity(a, b[:3])


def test_the_wrong_scaling_would_be_caught(recognizer, t1_aligned, monkeypatch):
    # The trap MODELS.md describes: mean 0 / std 1 (what ArcFaceONNX guesses for this file).
    # Different people then look alike, so the test above would fail on that bug.
    monkeypatch.setattr(MobileFaceNetRecognizer, "MEAN", 0.0)
    monkeypatch.setattr(MobileFaceNetRecognizer, "STD", 1.0)
    embeddings = recognizer.embed(t1_aligned)
    i, j = np.triu_indices(6, k=1)
    assert cosine_similarity(embeddings[i], embeddings[j]).max() > 0.5
