"""Skin tone of aligned 112x112 crops: ITA, the exposure-invariant skin tone index, skin hue.

All functions take the ArcFace-aligned crops of :func:`audit.align.align_faces`, (N, 112, 112,
3) uint8 RGB, read the cheek patches :data:`SKIN_PATCHES`, convert sRGB to CIELAB (D65 white;
:func:`srgb_to_lab`) and return (N,) float64 degrees:

- :func:`skin_ita`: the individual typology angle ``ITA = arctan((L* - 50) / b*)``, banded by
  :data:`ITA_BANDS`; it moves with the lighting.
- :func:`skin_tone_index`: ``arctan2(L* + 16, b*)``, which a darker or brighter rendering of the
  same face leaves in place; skin-tone group labels come from
  :func:`coarse_skin_tone_from_index` on it.
- :func:`skin_hue`: the CIELAB hue angle ``h_ab`` of the cheek skin.

These are *perceived* attributes estimated from pixels, for grouping synthetic faces; every name
here is also importable from :mod:`audit.sensors`, whose :data:`audit.sensors.SENSOR_VERSION`
must change with any definition here.
"""

from __future__ import annotations

import math

import numpy as np

from .recognition import check_aligned

__all__ = [
    "D65_WHITE",
    "GREY_CHROMA",
    "ITA_BANDS",
    "LAB_LINEAR_LIGHTNESS",
    "SKIN_PATCHES",
    "SKIN_TONE_INDEX_LIGHTER_ABOVE",
    "SRGB_TO_XYZ",
    "coarse_skin_tone",
    "coarse_skin_tone_from_index",
    "ita_band",
    "ita_from_lab",
    "skin_colour_measures",
    "skin_hue",
    "skin_hue_from_lab",
    "skin_ita",
    "skin_tone_index",
    "skin_tone_index_from_lab",
    "srgb_to_lab",
]

# --- skin tone: individual typology angle (ITA) ------------------------------------------------

SKIN_PATCHES: tuple[tuple[slice, slice], ...] = (
    (slice(62, 80), slice(26, 42)),  # left cheek (image left): rows 62-79, columns 26-41
    (slice(62, 80), slice(70, 86)),  # right cheek: rows 62-79, columns 70-85
)
"""Skin patches in ArcFace-aligned 112x112 crop pixels, as ``(rows, columns)`` slices.

Below the eyes (template eye centres at row ~52, so rows >= 62 clear the eye and most glasses
frames), above the mouth (corners at row ~92), and beside the nose (columns ~46-66), but inside
the face outline (cheek edge at column ~20/~92 in a frontal face). The forehead is not used
because hair, hats and caps often cover it in generated faces.
"""

ITA_BANDS: tuple[tuple[str, float], ...] = (
    ("very_light", 55.0),
    ("light", 41.0),
    ("intermediate", 28.0),
    ("tan", 10.0),
    ("brown", -30.0),
    ("dark", -math.inf),
)
"""Skin colour categories by ITA in degrees (Chardon et al. 1991; Del Bino et al. 2006).

Each band is ``(name, lower bound)`` and holds ``lower < ITA <= upper`` where ``upper`` is the
previous band's lower bound: very_light > 55, light (41, 55], intermediate (28, 41],
tan (10, 28], brown (-30, 10], dark <= -30.
"""


SRGB_TO_XYZ = np.array(
    [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]
)
"""Linear sRGB -> CIE XYZ (D65), IEC 61966-2-1:1999."""

D65_WHITE = SRGB_TO_XYZ.sum(axis=1)
"""XYZ of sRGB white (0.9505, 1.0, 1.089): greys get a* = b* = 0 exactly."""


def _srgb_decode(c: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB decoding of gamma-encoded values in 0..1 -> linear light, float64."""
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


_SRGB_DECODE_UINT8 = _srgb_decode(np.arange(256, dtype=np.float64) / 255.0)
"""(256,) float64 linear value of each 8-bit code: indexing it gives :func:`_srgb_decode`'s
results bit for bit, without the per-pixel power."""


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65, 2-degree observer) of 8-bit sRGB pixels, (..., 3) RGB -> (..., 3) float64.

    L* in 0..100; a*, b* in the usual signed units. sRGB decoding and the XYZ matrix follow
    IEC 61966-2-1, the Lab formulas CIE 15:2004. Written out in numpy rather than using OpenCV,
    whose 8-bit Lab is rescaled (L*255/100, a+128, b+128) and whose float Lab is table-based
    (about 0.15 units off, 0.2-0.4 degrees of ITA).
    """
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        linear = _SRGB_DECODE_UINT8[rgb]  # the same formula, tabulated for the 256 codes
    else:
        linear = _srgb_decode(rgb.astype(np.float64) / 255.0)
    xyz = linear @ SRGB_TO_XYZ.T / D65_WHITE
    delta = 6.0 / 29.0
    f = np.where(xyz > delta**3, np.cbrt(xyz), xyz / (3 * delta**2) + 4.0 / 29.0)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def ita_from_lab(lightness: np.ndarray, b_star: np.ndarray) -> np.ndarray:
    """ITA in degrees: ``arctan((L* - 50) / b*) * 180 / pi`` (Chardon et al. 1991).

    Computed as ``degrees(arctan2(L* - 50, b*))`` clipped to [-90, 90]: identical for b* > 0
    (all skin colours), and finite without a division by zero when b* is 0 (+90 for L* > 50,
    -90 for L* < 50, 0 at L* = 50). Colours with b* < 0 (bluish, not skin) saturate at +-90.
    """
    angle = np.degrees(np.arctan2(np.asarray(lightness, float) - 50.0, np.asarray(b_star, float)))
    return np.clip(angle, -90.0, 90.0)


def skin_ita(aligned: np.ndarray) -> np.ndarray:
    """Skin ITA of aligned crops (N, 112, 112, 3) uint8 RGB -> (N,) float64 degrees.

    L* and b* are the medians over the pixels of :data:`SKIN_PATCHES` (robust to stray hair,
    glasses or shadow pixels); ITA then follows :func:`ita_from_lab`.
    """
    aligned = check_aligned(aligned)
    patch = np.concatenate(
        [aligned[:, rows, cols].reshape(len(aligned), -1, 3) for rows, cols in SKIN_PATCHES], axis=1
    )
    lab = srgb_to_lab(patch)
    return ita_from_lab(np.median(lab[..., 0], axis=1), np.median(lab[..., 2], axis=1))


def ita_band(ita: float) -> str:
    """Name of the :data:`ITA_BANDS` band holding ``ita`` degrees; ``"unknown"`` for NaN."""
    if math.isnan(ita):
        return "unknown"
    return next(name for name, lower in ITA_BANDS if ita > lower)


def coarse_skin_tone(ita: float) -> str:
    """``"lighter"`` if ITA > 28 degrees (very_light, light, intermediate) else ``"darker"``.

    ``"unknown"`` for NaN. The two-group split at the intermediate/tan boundary follows common
    practice in face recognition bias audits that dichotomise ITA categories. ITA follows the
    lighting (a dimly lit light-skinned face reads "darker"): label groups with
    :func:`coarse_skin_tone_from_index` instead.
    """
    if math.isnan(ita):
        return "unknown"
    return "lighter" if ita > 28.0 else "darker"


# --- skin tone that does not follow the lighting ----------------------------------------------

LAB_LINEAR_LIGHTNESS = 116.0 * 6.0 / 29.0 - 16.0
"""L* = 8.0: below it (relative luminance Y < (6/29)**3 = 0.0089) CIELAB's lightness is linear in
Y rather than a cube root, and :func:`skin_tone_index_from_lab` loses its exposure invariance."""

SKIN_TONE_INDEX_LIGHTER_ABOVE = 73.5
""":func:`coarse_skin_tone_from_index` calls a face "lighter" above this skin tone index
(degrees), "darker" at or below it. This project's own calibration: on 120 MobileStyleGAN faces
(seeds 0-119) at their generated lighting, the split that agrees best with ITA's 28-degree split
(98 of 120 faces, 82%; most disagreements are light skin that ITA calls darker because the
photo is dim, and light skin under warm, orange light, which the index calls darker). It sits
in a sparse stretch of the index's distribution there (5th percentile 71.5, median 79.2), so few
faces lie close enough to it for a change of lighting to carry them across."""


def skin_tone_index_from_lab(lightness: np.ndarray, b_star: np.ndarray) -> np.ndarray:
    """Exposure-invariant skin tone angle in degrees: ``degrees(arctan2(L* + 16, b*))``.

    Why it does not follow the lighting: in CIELAB (CIE 15:2004), ``L* + 16 = 116 f(Y/Yn)``,
    ``a* = 500 (f(X/Xn) - f(Y/Yn))``, ``b* = 200 (f(Y/Yn) - f(Z/Zn))`` with ``f(t) = t**(1/3)``
    above ``t = (6/29)**3``. Scaling the light reaching the camera by ``k`` (a face rendered darker
    or brighter, or a shorter or longer exposure) scales linear RGB and so X, Y, Z by ``k``, and
    therefore ``L* + 16``, ``a*`` and ``b*`` all by ``k**(1/3)``: the colour slides along a ray
    from the point ``L* = -16, a* = b* = 0``. Every angle about that point is unchanged, this one
    among them; ITA's angle about ``L* = 50`` (:func:`ita_from_lab`) is not.

    What it measures: the skin's chromaticity (the ratio of short-wavelength to overall
    reflectance, ``b* / (L* + 16) = (200 / 116) (1 - (Z/Zn / (Y/Yn))**(1/3))``), not its lightness.
    Melanin absorbs short wavelengths most, so more melanin means a yellower, more saturated
    skin colour (larger ``b*`` for its lightness) and a smaller index. On 120 MobileStyleGAN faces
    it ranges from 61.7 to 88.0 degrees (median 79.2), the darkest-skinned faces lowest
    (61.7-68.4). It is this project's construction, in the spirit of ITA (Chardon, Cretois and
    Hourseau, "Skin colour typology and suntanning pathways", Int. J. Cosmet. Sci. 13, 1991) and
    of Thong, Joniak and Xiang, "Beyond skin tone: a multidimensional measure of apparent skin
    color", ICCV 2023, who add the hue angle (:func:`skin_hue_from_lab`) to lightness for the
    same reason: hue does not change with the amount of light.

    Limits: it follows the *colour* of the light (a warm, orange light reads darker, a blue one
    lighter) and gamma or contrast changes (which alter chromaticity); clipped channels of an
    over-exposed face move it slightly; and chromaticity alone cannot tell very dark skin of low
    saturation from lighter skin. Returns NaN where ``L* < 8`` (:data:`LAB_LINEAR_LIGHTNESS`,
    too dark for the invariance to hold). Values lie in (0, 180) otherwise; 90 for a grey.
    """
    lightness = np.asarray(lightness, dtype=np.float64)
    angle = np.degrees(np.arctan2(lightness + 16.0, np.asarray(b_star, dtype=np.float64)))
    return np.where(lightness >= LAB_LINEAR_LIGHTNESS, angle, np.nan)


def skin_hue_from_lab(a_star: np.ndarray, b_star: np.ndarray) -> np.ndarray:
    """CIELAB hue angle ``h_ab = degrees(arctan2(b*, a*))`` in [0, 360) (CIE 15:2004).

    The hue dimension of apparent skin colour of Thong, Joniak and Xiang (ICCV 2023); 0 is red,
    90 yellow (MobileStyleGAN faces: 11-57 degrees). Unchanged by scaling the light in the cube-root
    regime (``a*`` and ``b*`` scale alike), but channels clipped at 255 by over-exposure pull it
    (on MobileStyleGAN faces a 30% brighter image moved it by 10 degrees on average, a 30%
    darker one by 0.2). 0 for a grey: a chroma below :data:`GREY_CHROMA` (where the angle is
    only the direction of rounding noise, e.g. ``b* = -2e-14`` gives 270) reads as 0.
    """
    a = np.asarray(a_star, dtype=np.float64)
    b = np.asarray(b_star, dtype=np.float64)
    hue = np.mod(np.degrees(np.arctan2(b, a)), 360.0)
    return np.where(np.hypot(a, b) < GREY_CHROMA, 0.0, hue)


#: CIELAB chroma below which a colour is grey and its hue angle is taken as 0.
GREY_CHROMA = 1e-6


def _skin_lab(aligned: np.ndarray) -> np.ndarray:
    """Median L*, a*, b* over :data:`SKIN_PATCHES` of each crop, (N, 3) float64."""
    aligned = check_aligned(aligned)
    if len(aligned) == 0:
        return np.zeros((0, 3), dtype=np.float64)
    patch = np.concatenate(
        [aligned[:, rows, cols].reshape(len(aligned), -1, 3) for rows, cols in SKIN_PATCHES], axis=1
    )
    return np.median(srgb_to_lab(patch), axis=1)


def skin_tone_index(aligned: np.ndarray) -> np.ndarray:
    """Exposure-invariant skin tone of aligned crops (N, 112, 112, 3) uint8 RGB -> (N,) float64
    degrees: :func:`skin_tone_index_from_lab` of the median L* and b* over :data:`SKIN_PATCHES`
    (the same cheek pixels and medians as :func:`skin_ita`). Label it with
    :func:`coarse_skin_tone_from_index`.

    Measured on 120 MobileStyleGAN faces (seeds 0-119, re-detected after each change): across
    identities it spreads with a standard deviation of 4.9 degrees (5th-95th percentile
    71.5-86.1; ITA: 27.5 degrees). The project's brightness factor
    (:func:`generator.factors.brightness`, a gain on 8-bit values) at 0.7 moved it by 0.41
    degrees on average (ITA: 50.6) and flipped the coarse label of 3 faces (ITA: 75); at 1.3 by
    1.5 degrees, 3 flips (ITA: 18.3 degrees, 18 flips); every face that flipped lay within 1.3
    degrees of :data:`SKIN_TONE_INDEX_LIGHTER_ABOVE`. (A gain on 8-bit values is not exactly a
    gain on linear light, because of sRGB's offset, and 1.3 clips bright skin, hence these
    small moves; a true linear-light gain of 0.5-1.3 on the six faces of insightface's ``t1.jpg``
    moved the index by at most 0.3 degrees, ITA by 2-35.) A gamma of 0.8 or 1.25 on the 8-bit
    values moved it by 2.1 and 2.6 degrees, 7 and 19 flips (ITA: 12.9 and 16.0 degrees, 17 and
    25 flips).
    """
    lab = _skin_lab(aligned)
    return skin_tone_index_from_lab(lab[:, 0], lab[:, 2])


def skin_hue(aligned: np.ndarray) -> np.ndarray:
    """Skin hue angle of aligned crops (N, 112, 112, 3) uint8 RGB -> (N,) float64 degrees in
    [0, 360): :func:`skin_hue_from_lab` of the median a* and b* over :data:`SKIN_PATCHES`."""
    lab = _skin_lab(aligned)
    return skin_hue_from_lab(lab[:, 1], lab[:, 2])


def skin_colour_measures(aligned: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(skin_ita, skin_tone_index, skin_hue)`` of aligned crops from one Lab conversion, each
    (N,) float64 degrees (the analyzer needs all three)."""
    lab = _skin_lab(aligned)
    lightness, a_star, b_star = lab[:, 0], lab[:, 1], lab[:, 2]
    return (
        ita_from_lab(lightness, b_star),
        skin_tone_index_from_lab(lightness, b_star),
        skin_hue_from_lab(a_star, b_star),
    )


def coarse_skin_tone_from_index(index: float) -> str:
    """``"lighter"`` if the skin tone index (:func:`skin_tone_index`, degrees) is above
    :data:`SKIN_TONE_INDEX_LIGHTER_ABOVE` (73.5), else ``"darker"``; ``"unknown"`` for NaN.

    The same two groups as :func:`coarse_skin_tone` (ITA above 28 degrees), read from a measure
    that a darker or brighter rendering of the same face leaves in place. Use it for skin-tone
    group labels; ITA stays available as a reading (and :func:`ita_band` for its six bands,
    which the lighting moves).
    """
    if math.isnan(index):
        return "unknown"
    return "lighter" if index > SKIN_TONE_INDEX_LIGHTER_ABOVE else "darker"
