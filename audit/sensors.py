"""Attribute sensors on aligned 112x112 crops: perceived gender and age, skin tone (ITA, an
exposure-invariant skin tone index and the skin hue), brightness, sharpness and illumination
uniformity.

All functions take the ArcFace-aligned crops of :func:`audit.align.align_faces`:
(N, 112, 112, 3) uint8 RGB. These are *perceived* attributes estimated from pixels, used to
group synthetic faces for a bias audit and to check that each generated edit moved what it
claims and nothing else; they say nothing about a real person's identity. Head pose comes from
the detector's keypoints instead (:func:`audit.pose.head_pose`), expression (smile, mouth opening)
from dlib's 68 landmarks (:mod:`audit.expression`). The skin-tone readings are defined in
:mod:`audit.skin_tone` and importable from here.

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
from .skin_tone import (
    D65_WHITE,
    GREY_CHROMA,
    ITA_BANDS,
    LAB_LINEAR_LIGHTNESS,
    SKIN_PATCHES,
    SKIN_TONE_INDEX_LIGHTER_ABOVE,
    SRGB_TO_XYZ,
    coarse_skin_tone,
    coarse_skin_tone_from_index,
    ita_band,
    ita_from_lab,
    skin_colour_measures,
    skin_hue,
    skin_hue_from_lab,
    skin_ita,
    skin_tone_index,
    skin_tone_index_from_lab,
    srgb_to_lab,
)

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

__all__ = [
    "BT601_LUMA",
    "ILLUMINATION_REGIONS",
    "SENSOR_UNITS",
    "SENSOR_VERSION",
    "SHARPNESS_REGION",
    "GenderAgeSensor",
    "InsightfaceGenderAgeSensor",
    "brightness",
    "gender_age_model",
    "gender_age_sensor",
    "illumination_uniformity",
    "luma",
    "perceived_gender",
    "sharpness",
    "sharpness_measures",
    "sharpness_normalised",
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
