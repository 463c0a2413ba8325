import math
import warnings

import cv2
import numpy as np
import pytest
from skimage.color import rgb2lab

from audit.align import align_faces
from audit.sensors import (
    ILLUMINATION_REGIONS,
    ITA_BANDS,
    SENSOR_UNITS,
    SENSOR_VERSION,
    SHARPNESS_REGION,
    SKIN_PATCHES,
    GenderAgeSensor,
    brightness,
    coarse_skin_tone,
    illumination_uniformity,
    ita_band,
    perceived_gender,
    sharpness,
    sharpness_normalised,
    skin_ita,
)

# Skin-like and other sRGB colours with b* well away from 0.
COLOURS = [
    (255, 224, 196),
    (234, 192, 160),
    (198, 134, 100),
    (141, 85, 36),
    (87, 50, 30),
    (60, 40, 35),
    (120, 100, 60),
]


def lab_by_hand(rgb):
    """sRGB (IEC 61966-2-1) -> XYZ (D65) -> CIELAB (CIE 15), written out independently."""
    c = np.asarray(rgb, float) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    x, y, z = m @ linear / np.array([0.95047, 1.0, 1.08883])

    def f(t):
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def uniform_crop(rgb, n=1):
    return np.broadcast_to(np.array(rgb, np.uint8), (n, 112, 112, 3)).copy()


@pytest.mark.parametrize("rgb", COLOURS)
def test_ita_of_a_uniform_crop_matches_an_independent_lab_computation(rgb):
    lightness, _, b = lab_by_hand(rgb)
    expected = math.degrees(math.atan((lightness - 50) / b))
    sk_l, _, sk_b = rgb2lab(np.array([[rgb]], np.uint8))[0, 0]
    assert expected == pytest.approx(math.degrees(math.atan((sk_l - 50) / sk_b)), abs=0.05)
    assert skin_ita(uniform_crop(rgb))[0] == pytest.approx(expected, abs=0.1)


def test_ita_reads_only_the_cheek_patches():
    skin = (198, 134, 100)
    lightness, _, b = lab_by_hand(skin)
    crop = uniform_crop((20, 160, 40))  # green background everywhere...
    for rows, cols in SKIN_PATCHES:
        crop[0, rows, cols] = skin  # ...except the documented skin patches
    assert skin_ita(crop)[0] == pytest.approx(
        math.degrees(math.atan((lightness - 50) / b)), abs=0.1
    )


def test_skin_patches_avoid_eyes_mouth_and_background():
    # ArcFace template (112 crop): eyes at row ~52, mouth corners at row ~92, nose column ~56.
    for rows, cols in SKIN_PATCHES:
        assert rows.start > 52 + 6 and rows.stop < 92 - 6
        assert cols.start >= 20 and cols.stop <= 92
        assert not (cols.start < 56 < cols.stop)


def test_ita_median_ignores_a_minority_of_stray_pixels():
    skin = (234, 192, 160)
    crop = uniform_crop(skin)
    rows, cols = SKIN_PATCHES[0]
    crop[0, rows.start : rows.start + 4, cols] = (0, 0, 0)  # a strand of hair over one cheek
    assert skin_ita(crop)[0] == pytest.approx(skin_ita(uniform_crop(skin))[0], abs=0.1)


def test_ita_is_finite_when_b_star_is_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = skin_ita(
            np.concatenate([uniform_crop((200, 200, 200)), uniform_crop((40, 40, 40))])
        )
    np.testing.assert_allclose(values, [90.0, -90.0], atol=0.5)


@pytest.mark.parametrize(
    ("ita", "band"),
    [
        (80.0, "very_light"),
        (55.01, "very_light"),
        (55.0, "light"),
        (41.01, "light"),
        (41.0, "intermediate"),
        (28.01, "intermediate"),
        (28.0, "tan"),
        (10.01, "tan"),
        (10.0, "brown"),
        (-29.99, "brown"),
        (-30.0, "dark"),
        (-80.0, "dark"),
        (math.nan, "unknown"),
    ],
)
def test_ita_bands_follow_chardon_with_upper_bounds_inclusive(ita, band):
    assert ita_band(ita) == band


def test_the_bands_are_ordered_from_light_to_dark():
    assert [name for name, _ in ITA_BANDS] == [
        "very_light",
        "light",
        "intermediate",
        "tan",
        "brown",
        "dark",
    ]


@pytest.mark.parametrize(
    ("ita", "tone"),
    [
        (28.01, "lighter"),
        (28.0, "darker"),
        (-50.0, "darker"),
        (60.0, "lighter"),
        (math.nan, "unknown"),
    ],
)
def test_coarse_skin_tone_splits_at_28_degrees(ita, tone):
    assert coarse_skin_tone(ita) == tone


def test_brightness_is_bt601_luma():
    crops = np.concatenate([uniform_crop((200, 100, 50)), uniform_crop((0, 0, 0))])
    crops[1, :56] = 255  # top half white
    np.testing.assert_allclose(brightness(crops), [0.299 * 200 + 0.587 * 100 + 0.114 * 50, 127.5])


@pytest.mark.parametrize(
    ("p", "label"), [(0.9, "male"), (0.5, "male"), (0.49, "female"), (math.nan, "unknown")]
)
def test_perceived_gender_thresholds_at_one_half(p, label):
    assert perceived_gender(p) == label


@pytest.fixture(scope="module")
def genderage(registry):
    return GenderAgeSensor(registry)


def test_genderage_outputs_are_in_range(genderage, t1_rgb, t1_faces):
    male, age = genderage.predict(align_faces([t1_rgb] * 6, t1_faces))
    assert male.shape == (6,) and age.shape == (6,)
    assert np.all((male >= 0) & (male <= 1))
    assert np.all((age >= 0) & (age <= 100)) and age.dtype.kind == "i"


def test_genderage_tells_the_women_from_the_men_in_the_group_photo(genderage, t1_rgb, t1_faces):
    # Known content of t1.jpg, faces sorted left to right: woman, woman, man, man, man, woman;
    # all adults.
    male, age = genderage.predict(align_faces([t1_rgb] * 6, t1_faces))
    women, men = male[[0, 1, 5]], male[[2, 3, 4]]
    assert men.min() > women.max()
    assert np.sum((male >= 0.5) == np.array([0, 0, 1, 1, 1, 0], bool)) >= 5
    assert np.all((age >= 16) & (age <= 65)), age


def test_genderage_batched_equals_one_by_one(genderage, t1_rgb, t1_faces):
    aligned = align_faces([t1_rgb] * 6, t1_faces)
    male, age = genderage.predict(aligned)
    for k in range(6):
        one_male, one_age = genderage.predict(aligned[k : k + 1])
        assert one_male[0] == pytest.approx(male[k], abs=1e-5) and one_age[0] == age[k]
    assert genderage._runner.batched


def test_genderage_handles_an_empty_batch(genderage):
    male, age = genderage.predict(np.zeros((0, 112, 112, 3), np.uint8))
    assert male.shape == (0,) and age.shape == (0,)


# --- sharpness ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def t1_aligned(t1_rgb, t1_faces):
    return align_faces([t1_rgb] * 6, t1_faces)


def luma_by_hand(crops):
    return crops.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def test_sharpness_is_the_variance_of_opencvs_laplacian_over_the_face_region(t1_aligned):
    rows, cols = SHARPNESS_REGION
    expected = [
        cv2.Laplacian(luma_by_hand(crop), cv2.CV_64F, ksize=1)[rows, cols].var()
        for crop in t1_aligned
    ]
    np.testing.assert_allclose(sharpness(t1_aligned), expected, rtol=1e-5)


def test_sharpness_falls_monotonically_as_blur_grows(t1_aligned):
    sigmas = [0.5, 1.0, 1.5, 2.0, 3.0]
    for crop in t1_aligned:
        blurred = np.stack([crop] + [cv2.GaussianBlur(crop, (0, 0), s) for s in sigmas])
        for values in (sharpness(blurred), sharpness_normalised(blurred)):
            assert np.all(np.diff(values) < 0), values
            assert values[-1] < 0.25 * values[0]


def test_normalised_sharpness_ignores_contrast_but_raw_sharpness_does_not(t1_aligned):
    halved = (t1_aligned.astype(np.float64) * 0.5 + 60).round().astype(np.uint8)
    raw, raw_halved = sharpness(t1_aligned), sharpness(halved)
    np.testing.assert_allclose(raw_halved / raw, 0.25, rtol=0.1)
    np.testing.assert_allclose(
        sharpness_normalised(halved), sharpness_normalised(t1_aligned), rtol=0.1
    )


def test_sharpness_reads_only_the_face_region(t1_aligned):
    rows, cols = SHARPNESS_REGION
    noisy = t1_aligned.copy()
    outside = np.ones(noisy.shape[1:3], bool)
    outside[rows.start - 1 : rows.stop + 1, cols.start - 1 : cols.stop + 1] = False
    noise = np.random.default_rng(0).integers(0, 256, noisy.shape, dtype=np.uint8)
    noisy[:, outside] = noise[:, outside]  # hair, background, warp borders
    np.testing.assert_allclose(sharpness(noisy), sharpness(t1_aligned))
    np.testing.assert_allclose(sharpness_normalised(noisy), sharpness_normalised(t1_aligned))


def test_the_sharpness_region_is_the_inner_face_and_symmetric():
    rows, cols = SHARPNESS_REGION
    assert rows.start < 52 - 10 and rows.stop > 92 + 5  # brows to below the mouth
    assert rows.start >= 1 and rows.stop <= 111 and cols.start >= 1 and cols.stop <= 111
    assert cols.start + (cols.stop - 1) == 111  # mirror-symmetric about column 55.5


def test_a_flat_crop_has_zero_sharpness():
    flat = uniform_crop((120, 90, 70), n=2)
    np.testing.assert_array_equal(sharpness(flat), [0.0, 0.0])
    np.testing.assert_array_equal(sharpness_normalised(flat), [0.0, 0.0])


# --- illumination uniformity -------------------------------------------------------------------


def gradient_crop(left, right, axis=1):
    """Grey crop whose value runs linearly from ``left`` to ``right`` along ``axis``."""
    ramp = np.linspace(left, right, 112)
    grey = np.broadcast_to(ramp[None, :] if axis == 1 else ramp[:, None], (112, 112))
    return np.repeat(grey.round().astype(np.uint8)[None, :, :, None], 3, axis=3)


def uniformity_by_hand(crop):
    y = luma_by_hand(crop)
    (lr, lc), (rr, rc) = ILLUMINATION_REGIONS
    left, right = y[lr, lc].mean(), y[rr, rc].mean()
    return 1 - abs(left - right) / (left + right)


def test_the_illumination_zones_mirror_each_other_below_the_eyes_and_above_the_mouth():
    (lr, lc), (rr, rc) = ILLUMINATION_REGIONS
    assert lr == rr and lr.start > 52 + 5 and lr.stop < 92
    assert lc.start + (rc.stop - 1) == 111 and (lc.stop - 1) + rc.start == 111
    assert lc.stop <= 56 <= rc.start


def test_an_evenly_lit_face_scores_one():
    crops = np.concatenate([uniform_crop((180, 140, 120)), gradient_crop(40, 220, axis=0)])
    np.testing.assert_allclose(illumination_uniformity(crops), [1.0, 1.0])


def test_a_side_light_gradient_lowers_uniformity_steadily():
    crops = np.concatenate([gradient_crop(128 - d, 128 + d) for d in (0, 10, 30, 60, 100, 127)])
    values = illumination_uniformity(crops)
    np.testing.assert_allclose(values, [uniformity_by_hand(c) for c in crops], rtol=1e-6)
    assert values[0] == pytest.approx(1.0) and np.all(np.diff(values) < 0)


def test_uniformity_is_the_same_lit_from_either_side_and_under_any_exposure():
    crop = gradient_crop(50, 200)
    mirrored = np.ascontiguousarray(crop[:, :, ::-1])
    darker = (crop.astype(np.float64) * 0.5).round().astype(np.uint8)
    a, b, c = illumination_uniformity(np.concatenate([crop, mirrored, darker]))
    assert a < 0.9 and b == pytest.approx(a, abs=1e-3) and c == pytest.approx(a, abs=0.01)


def test_one_dark_half_scores_zero_and_a_black_face_counts_as_uniform():
    half = uniform_crop((0, 0, 0))
    half[0, :, 56:] = 200
    np.testing.assert_allclose(illumination_uniformity(half), [0.0])
    np.testing.assert_allclose(illumination_uniformity(uniform_crop((0, 0, 0))), [1.0])


def test_real_faces_score_between_zero_and_one(t1_aligned):
    values = illumination_uniformity(t1_aligned)
    assert np.all((values > 0.5) & (values <= 1.0)), values


# --- sensor bookkeeping ------------------------------------------------------------------------


def test_every_sensor_has_a_unit_and_the_definitions_have_a_version():
    assert isinstance(SENSOR_VERSION, str) and SENSOR_VERSION
    assert {
        "yaw",
        "pitch",
        "roll",
        "age",
        "ita",
        "brightness",
        "male_probability",
        "sharpness",
        "sharpness_normalised",
        "illumination_uniformity",
        "skin_tone_index",
        "skin_hue",
        "smile",
        "mouth_open",
    } == set(SENSOR_UNITS)
    assert SENSOR_VERSION == "3"  # expression and the skin tone index came with "3"
    assert SENSOR_UNITS["yaw"] == "degrees" and SENSOR_UNITS["age"] == "years"
    assert all(isinstance(unit, str) and unit for unit in SENSOR_UNITS.values())


@pytest.mark.parametrize("sensor", [sharpness, sharpness_normalised, illumination_uniformity])
def test_the_new_sensors_handle_empty_batches_and_reject_bad_crops(sensor):
    assert sensor(np.zeros((0, 112, 112, 3), np.uint8)).shape == (0,)
    with pytest.raises(ValueError):
        sensor(np.zeros((1, 96, 96, 3), np.uint8))
    with pytest.raises(ValueError):
        sensor(np.zeros((1, 112, 112, 3), np.float32))
