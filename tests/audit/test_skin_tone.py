"""The exposure-invariant skin tone index and the skin hue: values worked out by hand, invariance
to the amount of light, and the labels read from the index."""

import math

import numpy as np
import pytest
from skimage.color import rgb2lab

from audit.align import align_faces
from audit.sensors import (
    SKIN_TONE_INDEX_LIGHTER_ABOVE,
    coarse_skin_tone,
    coarse_skin_tone_from_index,
    skin_colour_measures,
    skin_hue,
    skin_hue_from_lab,
    skin_ita,
    skin_tone_index,
    skin_tone_index_from_lab,
    srgb_to_lab,
)


def uniform_crop(rgb, n=1):
    return np.broadcast_to(np.array(rgb, np.uint8), (n, 112, 112, 3)).copy()


def decode(code):
    """IEC 61966-2-1 sRGB 0-255 -> linear light 0-1 (written out here, not the project's)."""
    c = np.asarray(code, float) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def encode(linear):
    """Linear light 0-1 -> sRGB 0-255 floats (unrounded)."""
    x = np.asarray(linear, float)
    return 255.0 * np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.abs(x) ** (1 / 2.4) - 0.055)


def test_pure_srgb_red_matches_published_lab_and_hue():
    # sRGB (255, 0, 0), D65: L* 53.2408, a* 80.0925, b* 67.2032 (Lindbloom's calculator; the
    # project's 4-digit IEC matrix gives the same to 0.1).
    lightness, a_star, b_star = srgb_to_lab(np.array([255, 0, 0], np.uint8))
    assert (lightness, a_star, b_star) == pytest.approx((53.2408, 80.0925, 67.2032), abs=0.1)
    # h_ab = atan2(67.2032, 80.0925) = 39.999 degrees; the index = atan2(69.2408, 67.2032)
    assert skin_hue(uniform_crop((255, 0, 0)))[0] == pytest.approx(39.999, abs=0.1)
    assert skin_tone_index(uniform_crop((255, 0, 0)))[0] == pytest.approx(45.855, abs=0.1)


def test_a_skin_colour_worked_by_hand():
    # sRGB (198, 134, 100), step by step:
    #   decode: R 198/255 = 0.776471 -> ((0.776471 + 0.055) / 1.055)^2.4 = 0.564712
    #           G 134/255 = 0.525490 -> 0.238398;  B 100/255 = 0.392157 -> 0.127438
    #   XYZ (IEC 61966-2-1): X = 0.4124 R + 0.3576 G + 0.1805 B = 0.341140
    #                        Y = 0.2126 R + 0.7152 G + 0.0722 B = 0.299761
    #                        Z = 0.0193 R + 0.1192 G + 0.9505 B = 0.160445
    #   / white (0.9505, 1, 1.0890): 0.358906, 0.299761, 0.147333; cube roots 0.710658,
    #   0.669255, 0.528161
    #   L* = 116 * 0.669255 - 16 = 61.6336;  a* = 500 * (0.710658 - 0.669255) = 20.701;
    #   b* = 200 * (0.669255 - 0.528161) = 28.219
    lightness, a_star, b_star = 61.6336, 20.701, 28.219
    got = srgb_to_lab(np.array([198, 134, 100], np.uint8))
    assert got == pytest.approx((lightness, a_star, b_star), abs=0.01)
    # another route: scikit-image's conversion (its own, more precise XYZ matrix)
    assert rgb2lab(np.array([[[198, 134, 100]]], np.uint8))[0, 0] == pytest.approx(got, abs=0.1)
    crop = uniform_crop((198, 134, 100))
    hue = math.degrees(math.atan2(b_star, a_star))  # 53.74
    index = math.degrees(math.atan2(lightness + 16, b_star))  # 70.02
    ita = math.degrees(math.atan((lightness - 50) / b_star))  # 22.40
    assert skin_hue(crop)[0] == pytest.approx(hue, abs=0.02)
    assert skin_tone_index(crop)[0] == pytest.approx(index, abs=0.02)
    assert skin_ita(crop)[0] == pytest.approx(ita, abs=0.02)
    assert (hue, index, ita) == pytest.approx((53.74, 70.02, 22.40), abs=0.01)


@pytest.mark.parametrize("k", [0.3, 0.5, 0.7, 1.3, 1.6])
def test_scaling_the_light_leaves_the_index_and_hue_while_ita_moves(k):
    skin = np.array([198.0, 134.0, 100.0])
    scaled = encode(decode(skin) * k)  # the same skin under k times the light, unrounded
    before, after = srgb_to_lab(skin), srgb_to_lab(scaled)
    # every component of (L* + 16, a*, b*) scales by k^(1/3) in the cube-root regime
    assert (after[0] + 16) / (before[0] + 16) == pytest.approx(k ** (1 / 3), rel=1e-9)
    assert after[2] / before[2] == pytest.approx(k ** (1 / 3), rel=1e-9)
    assert skin_tone_index_from_lab(after[0], after[2]) == pytest.approx(
        skin_tone_index_from_lab(before[0], before[2]), abs=1e-9
    )
    assert skin_hue_from_lab(after[1], after[2]) == pytest.approx(
        skin_hue_from_lab(before[1], before[2]), abs=1e-9
    )
    ita_before = math.degrees(math.atan((before[0] - 50) / before[2]))
    ita_after = math.degrees(math.atan((after[0] - 50) / after[2]))
    assert abs(ita_after - ita_before) > 5.0
    # and on 8-bit crops, where rounding is the only error
    crop_before = uniform_crop(np.rint(skin).astype(np.uint8))
    crop_after = uniform_crop(np.rint(scaled).astype(np.uint8))
    assert skin_tone_index(crop_after)[0] == pytest.approx(skin_tone_index(crop_before)[0], abs=0.3)
    assert abs(skin_ita(crop_after)[0] - skin_ita(crop_before)[0]) > 5.0


def test_darker_and_brighter_renderings_of_real_faces_keep_their_label(photo_detector, t1_rgb):
    faces = sorted(photo_detector.detect_all(t1_rgb), key=lambda d: float(d.bbox[0]))
    aligned = align_faces([t1_rgb] * len(faces), faces)
    ita, index, hue = skin_colour_measures(aligned)
    for k in (0.5, 0.7, 1.3):
        linear = decode(aligned) * k
        assert linear.max() <= 1.0 or k > 1
        rendered = np.clip(np.rint(encode(np.clip(linear, 0, 1))), 0, 255).astype(np.uint8)
        ita_k, index_k, hue_k = skin_colour_measures(rendered)
        assert np.max(np.abs(index_k - index)) < 0.5, k  # 8-bit rounding and a few clipped pixels
        assert np.mean(np.abs(ita_k - ita)) > 4.0, k  # ITA follows the light
        labels = [coarse_skin_tone_from_index(v) for v in index]
        assert [coarse_skin_tone_from_index(v) for v in index_k] == labels


def test_the_index_orders_skin_colours_from_darker_to_lighter():
    colours = [(141, 85, 36), (198, 134, 100), (234, 192, 160), (255, 224, 196)]
    crops = np.concatenate([uniform_crop(c) for c in colours])
    index = skin_tone_index(crops)
    assert np.all(np.diff(index) > 0), index
    assert np.all(np.diff(skin_ita(crops)) > 0)  # ITA agrees on these evenly lit colours


def test_the_documented_limit_very_dark_low_saturation_skin():
    # (87, 50, 30) is darker than (141, 85, 36) but less saturated for its lightness: by
    # chromaticity alone (what survives a change of exposure) it reads as the lighter of the two
    dark, tan = skin_tone_index(
        np.concatenate([uniform_crop((87, 50, 30)), uniform_crop((141, 85, 36))])
    )
    assert dark > tan


@pytest.mark.parametrize(
    ("index", "tone"),
    [
        (SKIN_TONE_INDEX_LIGHTER_ABOVE + 0.01, "lighter"),
        (SKIN_TONE_INDEX_LIGHTER_ABOVE, "darker"),
        (88.0, "lighter"),
        (62.0, "darker"),
        (math.nan, "unknown"),
    ],
)
def test_coarse_labels_from_the_index(index, tone):
    assert coarse_skin_tone_from_index(index) == tone


def test_the_threshold_is_the_documented_value():
    assert SKIN_TONE_INDEX_LIGHTER_ABOVE == 73.5


def test_a_face_too_dark_to_read_has_no_index():
    # (10, 8, 6): Y = 0.0028, L* = 2.6 < 8, the linear segment of CIELAB
    crop = uniform_crop((10, 8, 6))
    assert math.isnan(skin_tone_index(crop)[0])
    assert coarse_skin_tone_from_index(skin_tone_index(crop)[0]) == "unknown"
    assert not math.isnan(skin_ita(crop)[0])  # ITA still reads (and says "darker")
    assert coarse_skin_tone(skin_ita(crop)[0]) == "darker"


def test_greys_sit_at_90_degrees_and_hue_0():
    crop = uniform_crop((128, 128, 128))
    assert skin_tone_index(crop)[0] == pytest.approx(90.0, abs=1e-6)
    assert skin_hue(crop)[0] == pytest.approx(0.0, abs=1e-6) or skin_hue(crop)[0] == pytest.approx(
        360.0, abs=1e-6
    )


def test_the_combined_call_matches_the_single_ones():
    crops = np.concatenate([uniform_crop((198, 134, 100)), uniform_crop((234, 192, 160))])
    rng = np.random.default_rng(0)
    crops = np.clip(crops + rng.integers(-20, 21, crops.shape), 0, 255).astype(np.uint8)
    ita, index, hue = skin_colour_measures(crops)
    np.testing.assert_allclose(ita, skin_ita(crops))
    np.testing.assert_allclose(index, skin_tone_index(crops))
    np.testing.assert_allclose(hue, skin_hue(crops))
    empty = skin_colour_measures(np.zeros((0, 112, 112, 3), np.uint8))
    assert all(values.shape == (0,) for values in empty)
