import math
import warnings

import numpy as np
import pytest
from skimage.color import rgb2lab

from audit.align import align_faces
from audit.sensors import (
    ITA_BANDS,
    SKIN_PATCHES,
    GenderAgeSensor,
    brightness,
    coarse_skin_tone,
    ita_band,
    perceived_gender,
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
