import numpy as np
import pytest
from scipy import ndimage

from generator.factors import apply_factor


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)


def test_brightness_multiplies_and_clips(image):
    out = apply_factor(image, "brightness", 1.5, seed=0)
    expected = np.clip(np.rint(image * 1.5), 0, 255).astype(np.uint8)
    assert np.array_equal(out, expected)


def test_blur_matches_scipy_gaussian_filter(image):
    out = apply_factor(image, "blur", 2.0, seed=0).astype(float)
    ref = np.stack([ndimage.gaussian_filter(image[:, :, c].astype(float), 2.0, mode="mirror",
                                            truncate=3.0) for c in range(3)], axis=2)
    inner = (slice(8, -8), slice(8, -8))  # borders differ only in the padding convention
    diff = np.abs(out[inner] - ref[inner])  # OpenCV blurs uint8 in fixed point: ~1 level off
    assert diff.max() <= 1.5 and diff.mean() < 0.5


def test_downscale_removes_fine_detail(image):
    out = apply_factor(image, "downscale", 16, seed=0)
    assert out.shape == image.shape
    # high-frequency energy (pixel-to-pixel differences) drops sharply
    hf = lambda x: np.abs(np.diff(x.astype(float), axis=1)).mean()  # noqa: E731
    assert hf(out) < 0.5 * hf(image)


def test_noise_is_deterministic_for_a_seed_and_has_the_requested_sigma():
    flat = np.full((64, 64, 3), 128, dtype=np.uint8)
    a = apply_factor(flat, "noise", 10.0, seed=5)
    b = apply_factor(flat, "noise", 10.0, seed=5)
    c = apply_factor(flat, "noise", 10.0, seed=6)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert abs((a.astype(float) - 128).std() - 10.0) < 0.5


def test_jpeg_changes_pixels_less_at_higher_quality(image):
    err = lambda q: np.abs(apply_factor(image, "jpeg", q, 0).astype(float) - image).mean()  # noqa: E731
    assert err(90) < err(10)


def test_occlusion_covers_a_band_over_the_eyes(image):
    out = apply_factor(image, "occlusion", 0.25, seed=0)
    grey_rows = np.where((out == 128).all(axis=(1, 2)))[0]
    assert len(grey_rows) == 16  # 0.25 * 64
    assert grey_rows.min() <= 0.42 * 64 <= grey_rows.max()


def test_it_rejects_unknown_factors_and_bad_images(image):
    with pytest.raises(ValueError, match="unknown factor"):
        apply_factor(image, "warp", 1, 0)
    with pytest.raises(ValueError, match="uint8"):
        apply_factor(image.astype(float), "blur", 1, 0)


def test_control_is_a_one_pixel_shift_reencoded_at_high_quality(image):
    image = apply_factor(image, "blur", 3.0, 0)  # smooth, like a face; noise defeats JPEG
    out = apply_factor(image, "control", None, seed=0)
    shifted = np.concatenate([image[:, :1], image[:, :-1]], axis=1)
    # JPEG q95 keeps the shifted image close, and the shift is what remains
    assert np.abs(out.astype(float) - shifted).mean() < np.abs(out.astype(float) - image).mean()
    assert np.abs(out.astype(float) - shifted).mean() < 2
