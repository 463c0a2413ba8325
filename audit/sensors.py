"""Attribute sensors on aligned 112x112 crops: perceived gender and age, skin tone (ITA, an
exposure-invariant skin tone index and the skin hue), brightness, sharpness and illumination
uniformity.

All functions take the ArcFace-aligned crops of :func:`audit.align.align_faces`:
(N, 112, 112, 3) uint8 RGB. These are *perceived* attributes estimated from pixels, used to
group synthetic faces for a bias audit and to check that each generated edit moved what it
claims and nothing else; they say nothing about a real person's identity. Head pose comes from
the detector's keypoints instead (:func:`audit.pose.head_pose`), expression (smile, mouth opening)
from dlib's 68 landmarks (:mod:`audit.expression`).

Skin-tone group labels come from :func:`coarse_skin_tone_from_index` on :func:`skin_tone_index`,
which a darker or brighter rendering of the same face leaves in place; ITA (:func:`skin_ita`)
stays a reading but moves with the lighting (a 30% darker image lowered it by 51 degrees on
average on MobileStyleGAN faces).

:data:`SENSOR_VERSION` names the current definitions and :data:`SENSOR_UNITS` the unit of every
reading.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .recognition import OnnxBatchRunner, check_aligned
from .registry import ModelError, ModelRegistry

SENSOR_VERSION = "3"
"""Version of the sensor definitions; anything learned from sensor readings (e.g. the
generator's latent directions) is cached under it, so it must change whenever any sensor's
definition changes (formula, region, constant, model). Model weights are pinned separately by
sha256 in :mod:`audit.registry` (dlib's 68-point landmark model in :mod:`audit.expression`).

History: "1" perceived male probability, age, ITA, brightness (and the generator's own yaw
proxy); "2" adds yaw, pitch and roll from a weak-perspective fit of a 3D face model
(:mod:`audit.pose`), Laplacian-variance sharpness (raw and contrast-normalised) and left/right
illumination uniformity; "3" adds expression (smile score and mouth opening from dlib's 68-point
landmarks, :mod:`audit.expression`), the exposure-invariant skin tone index
(:func:`skin_tone_index`) and the skin hue angle (:func:`skin_hue`), and skin-tone labels come
from the index instead of ITA (:func:`coarse_skin_tone_from_index`)."""

SENSOR_UNITS: dict[str, str] = {
    "male_probability": "probability",
    "age": "years",
    "ita": "degrees",
    "brightness": "0-255 luma",
    "yaw": "degrees",
    "pitch": "degrees",
    "roll": "degrees",
    "sharpness": "luma^2 (variance of the 3x3 Laplacian of 0-255 luma)",
    "sharpness_normalised": "ratio (Laplacian variance / luma variance)",
    "illumination_uniformity": "ratio (0-1, 1 = left and right equally lit)",
    "skin_tone_index": "degrees (arctan2(L* + 16, b*) of cheek skin; higher = lighter)",
    "skin_hue": "degrees (CIELAB hue angle h_ab of cheek skin, 0-360)",
    "smile": "inter-ocular distances (mouth width + 2 x mouth-corner lift)",
    "mouth_open": "ratio (inner-lip gap / mouth width)",
}
"""Unit of each sensor reading, by the field name used in :class:`audit.analysis.AnalysisBatch`."""

# --- perceived gender and age ------------------------------------------------------------------


class GenderAgeSensor:
    """insightface's 2018 gender-age model (``genderage_2018.onnx``).

    Preprocessing (``shared/models/MODELS.md``): input ``data`` 1x3x112x112, RGB, raw 0-255
    float values (the graph subtracts its own mean), on the ArcFace-aligned 112 crop. The graph's
    batch is fixed at 1; it is made batch-dynamic in memory and checked at load.

    Output 202 values: [0:2] gender logits (index 1 = male); [2:202] one hundred binary
    "age > k" classifiers as (no, yes) logit pairs, k = 0..99; age = number of pairs whose "yes"
    wins (an ordinal-regression read-out, as in insightface's gender-age ``Attribute``).
    """

    model_name = "genderage"

    def __init__(self, registry: ModelRegistry, *, intra_op_num_threads: int | None = None) -> None:
        spec = registry.spec(self.model_name)
        if spec.role != "attribute":
            raise ModelError(f"model {spec.name!r} is not an attribute model")
        self.name, self.weights_sha256, self.licence = spec.name, spec.sha256, spec.licence
        # Batch 1: 1.18 ms per face on one core, against 1.25 at 4 and 1.81 at 64 (cache).
        self._runner = OnnxBatchRunner(
            registry.verify(self.model_name), intra_op_num_threads=intra_op_num_threads,
            max_batch=1,
        )

    def predict(self, aligned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Perceived gender and age of aligned crops (N, 112, 112, 3) uint8 RGB.

        Returns ``(male_probability, age)``: (N,) float32 in [0, 1] (softmax of the two gender
        logits) and (N,) int64 years in 0..100.
        """
        aligned = check_aligned(aligned)
        if len(aligned) == 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        x = aligned.transpose(0, 3, 1, 2).astype(np.float32, order="C")  # NCHW, raw 0-255
        out = self._runner.run(x)
        gender = out[:, 0:2].astype(np.float64)
        gender = np.exp(gender - gender.max(axis=1, keepdims=True))
        male_probability = (gender[:, 1] / gender.sum(axis=1)).astype(np.float32)
        pairs = out[:, 2:202].reshape(len(out), 100, 2)
        age = np.sum(pairs[:, :, 1] > pairs[:, :, 0], axis=1).astype(np.int64)
        return male_probability, age


class InsightfaceGenderAgeSensor:
    """insightface's own gender-age model (``genderage.onnx`` of the buffalo packs), the
    stand-in that a machine without ``genderage_2018.onnx`` fetches (:mod:`audit.fetch`).

    Fed as insightface's ``model_zoo.attribute.Attribute.get`` feeds it (its class is loaded
    here, so the input mean and std are the ones insightface reads from the graph): a 96x96
    crop centred on the detector's box, scaled so that 1.5 times the box's longer side fills
    it, no rotation (``face_align.transform``), BGR image swapped to RGB by
    ``cv2.dnn.blobFromImage``. Output 3 values: female and male scores, then age / 100.
    ``male_probability`` is the softmax of the two scores (insightface itself takes their
    argmax, the same label at 0.5); age is rounded to whole years as insightface does.
    """

    model_name = "genderage_insightface"

    def __init__(self, registry: ModelRegistry, *, intra_op_num_threads: int | None = None) -> None:
        import onnxruntime as ort
        from insightface.model_zoo.attribute import Attribute

        from .recognition import session_options

        spec = registry.spec(self.model_name)
        path = registry.verify(self.model_name)
        self.name, self.licence = spec.name, spec.licence
        self.weights_sha256 = registry.sha256(self.model_name)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"],
                                       sess_options=session_options(intra_op_num_threads))
        self._attr = Attribute(model_file=str(path), session=session)
        if self._attr.taskname != "genderage":
            raise ModelError(f"{path} is not a gender-age model (output {self._attr.taskname})")

    def predict_faces(self, images_rgb, bboxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Perceived gender and age of the faces in boxes ``(N, 4)`` (x1, y1, x2, y2 pixels)
        of N RGB images: ``(male_probability (N,) float32, age (N,) int64 years)``."""
        from insightface.utils import face_align

        attr = self._attr
        size = int(attr.input_size[0])
        n = len(bboxes)
        male = np.zeros(n, dtype=np.float32)
        age = np.zeros(n, dtype=np.int64)
        for i, (image, box) in enumerate(zip(images_rgb, np.asarray(bboxes, float), strict=True)):
            w, h = box[2] - box[0], box[3] - box[1]
            centre = ((box[2] + box[0]) / 2, (box[3] + box[1]) / 2)
            bgr = np.ascontiguousarray(np.asarray(image)[:, :, ::-1])
            crop, _ = face_align.transform(bgr, centre, size, size / (max(w, h) * 1.5), 0)
            blob = cv2.dnn.blobFromImage(crop, 1.0 / attr.input_std, (size, size),
                                         (attr.input_mean,) * 3, swapRB=True)
            pred = attr.session.run(attr.output_names, {attr.input_name: blob})[0][0]
            scores = np.asarray(pred[:2], dtype=np.float64)
            e = np.exp(scores - scores.max())
            male[i] = e[1] / e.sum()
            age[i] = int(np.round(float(pred[2]) * 100))
        return male, age


def gender_age_model(registry: ModelRegistry) -> str:
    """The gender-age model of the model directory: the 2018 model the sensors' thresholds
    were set on when present, else insightface's buffalo_s model when that is."""
    available = registry.available()
    if "genderage" not in available and "genderage_insightface" in available:
        return "genderage_insightface"
    return "genderage"


def gender_age_sensor(registry: ModelRegistry, **threads):
    """The sensor of :func:`gender_age_model`."""
    if gender_age_model(registry) == "genderage_insightface":
        return InsightfaceGenderAgeSensor(registry, **threads)
    return GenderAgeSensor(registry, **threads)


def perceived_gender(male_probability: float) -> str:
    """``"male"`` if ``male_probability >= 0.5`` else ``"female"``; ``"unknown"`` for NaN."""
    if math.isnan(male_probability):
        return "unknown"
    return "male" if male_probability >= 0.5 else "female"


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


# --- brightness --------------------------------------------------------------------------------

BT601_LUMA = np.array([0.299, 0.587, 0.114])
"""ITU-R BT.601 luma weights for R, G, B (gamma-encoded values)."""


def brightness(aligned: np.ndarray) -> np.ndarray:
    """Mean BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` of whole crops, (N,) float64 in 0..255.

    aligned: (N, H, W, 3) uint8 RGB (any square size). Black border pixels added by the warp
    when a face touches the image edge count as 0.
    """
    aligned = np.asarray(aligned)
    if aligned.ndim != 4 or aligned.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) RGB crops, got {aligned.shape}")
    count = np.float64(aligned.shape[1] * aligned.shape[2])
    if aligned.dtype == np.uint8 and len(aligned):
        # OpenCV sums 8-bit pixels exactly (integer blocks into doubles), so sum / count is the
        # float64 mean numpy would give, without a float64 copy of every crop.
        sums = np.array([cv2.sumElems(crop)[:3] for crop in aligned], dtype=np.float64)
        means = sums / count
    else:
        means = aligned.reshape(len(aligned), -1, 3).astype(np.float64).mean(axis=1)
    return means @ BT601_LUMA


def luma(pixels: np.ndarray) -> np.ndarray:
    """BT.601 luma of (..., 3) RGB values -> (...) float32 in 0..255 (not rounded)."""
    pixels = np.asarray(pixels, dtype=np.float32)
    return (
        pixels[..., 0] * np.float32(BT601_LUMA[0])
        + pixels[..., 1] * np.float32(BT601_LUMA[1])
        + pixels[..., 2] * np.float32(BT601_LUMA[2])
    )


# --- sharpness ---------------------------------------------------------------------------------

SHARPNESS_REGION: tuple[slice, slice] = (slice(32, 104), slice(24, 88))
"""Inner face in ArcFace-aligned 112x112 crop pixels, ``(rows, columns)``: eyebrows to below the
mouth (template eyes at row ~52, mouth corners ~92), outer eye corners to beyond the mouth
corners, symmetric about the template's vertical centre line (column 55.5). Hair, background and
the black borders the warp adds when a face touches the image edge stay out, so the measure reads
the face, not the backdrop."""


def _laplacian_and_luma(aligned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """3x3 Laplacian and luma of :data:`SHARPNESS_REGION`, each (N, 72, 64) float32."""
    rows, cols = SHARPNESS_REGION
    # One extra pixel on every side so the Laplacian of every region pixel sees real neighbours.
    y = luma(aligned[:, rows.start - 1 : rows.stop + 1, cols.start - 1 : cols.stop + 1])
    centre = y[:, 1:-1, 1:-1]
    laplacian = y[:, :-2, 1:-1] + y[:, 2:, 1:-1] + y[:, 1:-1, :-2] + y[:, 1:-1, 2:] - 4.0 * centre
    return laplacian, centre


def sharpness(aligned: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of the face's luma, (N,) float64 in luma^2 (higher = sharper).

    The no-reference focus measure of Pech-Pacheco et al. (2000), "Diatom autofocusing in
    brightfield microscopy: a comparative study", ICPR: the 4-neighbour 3x3 Laplacian
    ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`` (OpenCV's ``Laplacian`` with ``ksize=1``) of BT.601 luma
    over :data:`SHARPNESS_REGION`, then its variance over the region's pixels. Blur removes the
    high frequencies the Laplacian responds to, so the value falls as blur grows.

    The aligned crop has the same face scale whatever the input size (inter-eye distance ~35 px),
    so values are comparable between images; an image upscaled from 64 px reads as softer than
    a native high-resolution face, as it should. The value scales with contrast squared (a face
    at half the contrast reads a quarter as sharp): see :func:`sharpness_normalised`.
    """
    return sharpness_measures(aligned)[0]


def sharpness_normalised(aligned: np.ndarray) -> np.ndarray:
    """:func:`sharpness` divided by the variance of the luma over the same region, (N,) float64.

    A dimensionless share of the face's contrast that sits at the finest scale: unchanged when
    the face's contrast or exposure is scaled (``a * luma + b``), so brightness, lighting and skin
    tone edits move it less than the raw measure. 0 for a flat region (no detail at all).
    """
    return sharpness_measures(aligned)[1]


def sharpness_measures(aligned: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sharpness(aligned), sharpness_normalised(aligned))`` from one Laplacian pass, each (N,)
    float64 (the analyzer needs both)."""
    aligned = check_aligned(aligned)
    if len(aligned) == 0:
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.float64)
    laplacian, centre = _laplacian_and_luma(aligned)
    lap_var = laplacian.reshape(len(aligned), -1).astype(np.float64).var(axis=1)
    luma_var = centre.reshape(len(aligned), -1).astype(np.float64).var(axis=1)
    flat = luma_var < 1e-9
    return lap_var, np.where(flat, 0.0, lap_var / np.where(flat, 1.0, luma_var))


# --- illumination uniformity -------------------------------------------------------------------

ILLUMINATION_REGIONS: tuple[tuple[slice, slice], tuple[slice, slice]] = (
    (slice(60, 88), slice(22, 46)),  # image-left face half: rows 60-87, columns 22-45
    (slice(60, 88), slice(66, 90)),  # its mirror image about column 55.5: columns 66-89
)
"""Mirror-image zones of the left and right face halves in ArcFace-aligned 112x112 crop pixels,
``(rows, columns)``: below the lower eyelids (template eyes at row ~52) to above the mouth
corners (row ~92), from the cheek's outer part to beside the nose, where the two halves of a
frontal face are the same skin and a side light makes them differ."""


def illumination_uniformity(aligned: np.ndarray) -> np.ndarray:
    """Left/right illumination uniformity of aligned faces, (N,) float64 in [0, 1].

    ``1 - |L - R| / (L + R)``, where L and R are the mean BT.601 luma of the two mirror-image
    zones of :data:`ILLUMINATION_REGIONS`: 1 when both halves of the face are equally lit, 0 when
    one half is black. Unchanged when all pixels are scaled by the same factor; a black face
    (L + R = 0) counts as uniform (1).

    In the spirit of the illumination-uniformity quality component of ISO/IEC 29794-5 (as
    implemented in BSI's OFIQ, which compares luminance *histograms* of two small zones left and
    right of the nose by histogram intersection), but not that measure: means over larger zones
    are steadier on 64-px generated faces. It assumes a frontal face: turning the head changes
    what each zone holds (more cheek on one side, more nose on the other), so read it together
    with yaw.
    """
    aligned = check_aligned(aligned)
    if len(aligned) == 0:
        return np.zeros(0, dtype=np.float64)
    (lr, lc), (rr, rc) = ILLUMINATION_REGIONS
    left = luma(aligned[:, lr, lc]).reshape(len(aligned), -1).astype(np.float64).mean(axis=1)
    right = luma(aligned[:, rr, rc]).reshape(len(aligned), -1).astype(np.float64).mean(axis=1)
    total = left + right
    return np.where(total > 0, 1.0 - np.abs(left - right) / np.where(total > 0, total, 1.0), 1.0)
