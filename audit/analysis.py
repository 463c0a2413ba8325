"""Batched face analysis: images in, per-image detection, embeddings and attributes out.

Pipeline per batch: SCRFD detection (:mod:`audit.detection`) -> head pose from the keypoints
(:mod:`audit.pose`) -> ArcFace 5-point alignment to 112x112 (:mod:`audit.align`) -> embeddings
from each recognizer (:mod:`audit.recognition`; recognizers that align faces themselves, such as
dlib's in :mod:`audit.recognition_dlib`, get the original images) -> perceived gender/age, skin
ITA, skin tone index and hue, brightness, sharpness and illumination uniformity
(:mod:`audit.sensors`) -> smile and mouth opening from dlib's 68 landmarks on the upscaled image
(:mod:`audit.expression`; on by default) -> optionally a face image quality score (LightQNet,
:mod:`audit.lightqnet`; off by default). Models are loaded once when the :class:`FaceAnalyzer` is
built; reuse one analyzer per process.

Each image is upscaled once (:func:`audit.detection.upscale_all`) for detection, the ArcFace crop
and the LightQNet crop; detection runs the whole batch through onnxruntime at once, and every
crop model and sensor reads the same aligned crops. On 2 cores (two single-threaded analyzers
side by side, ``bench/bench_scoring.py``) the cost per 64-px face is dominated by MobileFaceNet
(~6.5 ms on one core), then dlib's 68-point landmarks for the expression readings (~4 ms with
the ``dlib-bin`` wheel, whatever the image size), the detector (~2.5 ms on the 192x192 canvas),
genderage and LightQNet (~1.3 ms each).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .align import align_upscaled
from .detection import DEFAULT_DET_SIZE, FaceDetector, upscale_all
from .expression import ExpressionSensor, is_neutral
from .lightqnet import LightQNetQuality, lightqnet_crops_upscaled
from .pose import head_pose
from .recognition import (
    INSIGHTFACE_PACKS,
    InsightFacePackRecognizer,
    MobileFaceNetRecognizer,
    Recognizer,
)
from .recognition_dlib import DlibResNetRecognizer, ImageRecognizer
from .registry import ModelError, ModelRegistry
from .sensors import (
    GenderAgeSensor,
    brightness,
    coarse_skin_tone_from_index,
    gender_age_sensor,
    illumination_uniformity,
    ita_band,
    perceived_gender,
    sharpness_measures,
    skin_colour_measures,
)

RECOGNIZERS: dict[str, Callable[..., Recognizer]] = {
    "mobilefacenet": MobileFaceNetRecognizer,
    "dlib_resnet": DlibResNetRecognizer,
    **{pack: functools.partial(InsightFacePackRecognizer, pack=pack) for pack in INSIGHTFACE_PACKS},
}
"""Registry name -> :class:`~audit.recognition.Recognizer` class. ``dlib_resnet`` is a package
model (:data:`audit.registry.KNOWN_PACKAGE_MODELS`): it loads only where ``dlib-bin`` and
``face_recognition_models`` are installed (:meth:`ModelRegistry.available_recognizers` says).
insightface packs (``buffalo_l``...) load where their folder is in the model directory
(:func:`audit.recognition.available_packs`)."""


QUALITY_MODELS: dict[str, Callable[..., LightQNetQuality]] = {"lightqnet": LightQNetQuality}
"""Registry name -> face image quality model class (``FaceAnalyzer(quality=...)``)."""


def load_recognizer(registry: ModelRegistry, name: str, **kwargs: Any) -> Recognizer:
    """Build the recognizer registered under ``name`` (keyword arguments go to its class)."""
    try:
        cls = RECOGNIZERS[name]
    except KeyError:
        choices = ", ".join(sorted(RECOGNIZERS))
        raise ModelError(f"no recognizer named {name!r}; choices: {choices}") from None
    return cls(registry, **kwargs)


def _plain(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


@dataclass(frozen=True, eq=False)
class AnalysisBatch:
    """Per-image results for a batch of N images (row i = input image i).

    face_found: (N,) bool.
    det_score: (N,) float32 detector confidence in [0, 1].
    bbox: (N, 4) float32 ``x1, y1, x2, y2`` in input image pixels.
    kps: (N, 5, 2) float32 ``(x, y)`` keypoints (eyes, nose, mouth corners) in input pixels.
    embeddings: recognizer name -> (N, D) float32 L2-normalised rows.
    male_probability: (N,) float32 in [0, 1], perceived (genderage model).
    age: (N,) float32 perceived age in years, whole numbers 0..100.
    ita: (N,) float64 skin individual typology angle in degrees (see :func:`audit.sensors.skin_ita`).
    brightness: (N,) float64 mean BT.601 luma of the aligned crop, 0..255.
    models: model name -> sha256 of the weights that produced these numbers.
    yaw, pitch, roll: (N,) float64 head pose in degrees from the keypoints, weak perspective
    (:func:`audit.pose.head_pose`: yaw > 0 turned to the subject's left, pitch > 0 chin up,
    roll > 0 clockwise in the image; 0, 0, 0 = the ArcFace template's pose).
    sharpness: (N,) float64 variance of the Laplacian of the face's luma
    (:func:`audit.sensors.sharpness`); sharpness_normalised: the same over the luma variance.
    illumination_uniformity: (N,) float64 in [0, 1], 1 = both face halves equally lit
    (:func:`audit.sensors.illumination_uniformity`).
    quality: (N,) float32 face image quality, higher is better, from the analyzer's quality model
    (:class:`audit.lightqnet.LightQNetQuality`); all NaN when the analyzer ran without one.
    skin_tone_index: (N,) float64 degrees, ``arctan2(L* + 16, b*)`` of the cheek skin, unchanged
    when the face is rendered darker or brighter (:func:`audit.sensors.skin_tone_index`); the
    skin-tone labels come from it (:func:`audit.sensors.coarse_skin_tone_from_index`).
    skin_hue: (N,) float64 CIELAB hue angle of the cheek skin in degrees, 0-360
    (:func:`audit.sensors.skin_hue`).
    smile: (N,) float64 smile score in inter-ocular distances (:func:`audit.expression.smile_score`:
    neutral faces about 0.62, broad smiles 0.9 and more); mouth_open: (N,) float64 inner-lip gap
    over mouth width (:func:`audit.expression.mouth_open`); both all NaN when the analyzer ran
    without the expression sensor. :func:`audit.expression.is_neutral` labels them.

    Units: :data:`audit.sensors.SENSOR_UNITS`. Every numeric field is NaN in the rows where
    ``face_found`` is False (and skin_tone_index where the skin is too dark to read, L* < 8).
    """

    face_found: np.ndarray
    det_score: np.ndarray
    bbox: np.ndarray
    kps: np.ndarray
    embeddings: Mapping[str, np.ndarray]
    male_probability: np.ndarray
    age: np.ndarray
    ita: np.ndarray
    brightness: np.ndarray
    models: Mapping[str, str]
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    sharpness: np.ndarray
    sharpness_normalised: np.ndarray
    illumination_uniformity: np.ndarray
    quality: np.ndarray | None = None
    skin_tone_index: np.ndarray | None = None
    skin_hue: np.ndarray | None = None
    smile: np.ndarray | None = None
    mouth_open: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Built without a quality model or the expression sensor (or by older callers): all-NaN
        # columns, read-only.
        for name, dtype in (
            ("quality", np.float32),
            ("skin_tone_index", np.float64),
            ("skin_hue", np.float64),
            ("smile", np.float64),
            ("mouth_open", np.float64),
        ):
            if getattr(self, name) is None:
                missing = np.full(len(self.face_found), np.nan, dtype=dtype)
                missing.flags.writeable = False
                object.__setattr__(self, name, missing)

    def __len__(self) -> int:
        return len(self.face_found)

    def row(self, i: int) -> dict[str, Any]:
        """Row ``i`` as plain Python values (JSON-serialisable); NaN becomes None.

        Keys: face_found, det_score, bbox (list of 4), kps (5 lists of 2), embeddings
        ({name: list of D floats}), male_probability, perceived_gender, age (int), ita, ita_band
        (ITA's band, which follows the lighting), skin_tone_index, skin_hue, skin_tone
        ("lighter"/"darker" from the skin tone index,
        :func:`audit.sensors.coarse_skin_tone_from_index`), brightness, yaw, pitch, roll,
        sharpness, sharpness_normalised, illumination_uniformity, quality, smile, mouth_open,
        neutral (bool, :func:`audit.expression.is_neutral`). Without a face every value but
        face_found is None (labels are "unknown"); a pose the fit could not find is None too, and
        so are quality, smile, mouth_open and neutral when the analyzer ran without that model.
        """
        found = bool(self.face_found[i])
        ita = float(self.ita[i])
        tone_index = float(self.skin_tone_index[i])
        male = float(self.male_probability[i])
        smile, mouth_open = float(self.smile[i]), float(self.mouth_open[i])
        expression_read = not (math.isnan(smile) or math.isnan(mouth_open))
        return {
            "face_found": found,
            "det_score": _plain(self.det_score[i]),
            "bbox": self.bbox[i].astype(float).tolist() if found else None,
            "kps": self.kps[i].astype(float).tolist() if found else None,
            "embeddings": {
                name: (values[i].astype(float).tolist() if found else None)
                for name, values in self.embeddings.items()
            },
            "male_probability": _plain(male),
            "perceived_gender": perceived_gender(male),
            "age": int(self.age[i]) if found else None,
            "ita": _plain(ita),
            "ita_band": ita_band(ita),
            "skin_tone_index": _plain(tone_index),
            "skin_hue": _plain(self.skin_hue[i]),
            "skin_tone": coarse_skin_tone_from_index(tone_index),
            "brightness": _plain(self.brightness[i]),
            "yaw": _plain(self.yaw[i]),
            "pitch": _plain(self.pitch[i]),
            "roll": _plain(self.roll[i]),
            "sharpness": _plain(self.sharpness[i]),
            "sharpness_normalised": _plain(self.sharpness_normalised[i]),
            "illumination_uniformity": _plain(self.illumination_uniformity[i]),
            "quality": _plain(self.quality[i]),
            "smile": _plain(smile),
            "mouth_open": _plain(mouth_open),
            "neutral": bool(is_neutral(smile, mouth_open)) if expression_read else None,
        }


class FaceAnalyzer:
    """Loads the detector, recognizers and attribute sensor once; :meth:`analyze` runs batches.

    registry: model directory. detector: registry name of the SCRFD detector.
    recognizers: registry names of recognition models to embed with (keys of
    :data:`RECOGNIZERS`).
    det_size / intra_op_num_threads: passed to the detector and every onnxruntime session.
    quality: registry name of a face image quality model (keys of :data:`QUALITY_MODELS`, e.g.
    ``"lightqnet"``) filling :attr:`AnalysisBatch.quality`, or None (default: no quality model,
    the column is NaN; LightQNet costs about 1.5 ms per face on one core).
    expression: whether to read smile and mouth opening from dlib's 68 landmarks
    (:class:`audit.expression.ExpressionSensor`, about 4 ms per face on one core). On by default;
    it needs the ``dlib-bin`` and ``face_recognition_models`` packages (project requirements) and
    raises :class:`audit.registry.ModelNotFoundError` naming them when they are missing, as a
    requested recognizer or quality model does. ``False`` leaves smile and mouth_open NaN.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        detector: str = "scrfd_500m",
        recognizers: Sequence[str] = ("mobilefacenet",),
        *,
        det_size: int = DEFAULT_DET_SIZE,
        intra_op_num_threads: int | None = None,
        quality: str | None = None,
        expression: bool = True,
    ) -> None:
        if isinstance(recognizers, str):
            raise TypeError("recognizers must be a sequence of names, not a string")
        if quality is not None and quality not in QUALITY_MODELS:
            choices = ", ".join(sorted(QUALITY_MODELS))
            raise ModelError(f"no quality model named {quality!r}; choices: {choices} (or None)")
        threads = {"intra_op_num_threads": intra_op_num_threads}
        self.detector = FaceDetector(registry, detector, det_size, **threads)
        self.recognizers = {
            name: load_recognizer(registry, name, **threads) for name in recognizers
        }
        self.genderage = gender_age_sensor(registry, **threads)
        self.models = {self.detector.name: self.detector.weights_sha256}
        for name, rec in self.recognizers.items():
            # A recognizer with helper models (dlib's landmark model) lists them all.
            self.models.update(getattr(rec, "models", None) or {name: rec.weights_sha256})
        self.models[self.genderage.name] = self.genderage.weights_sha256
        self.quality = None if quality is None else QUALITY_MODELS[quality](registry, **threads)
        if self.quality is not None:
            self.models[self.quality.name] = self.quality.weights_sha256
        self.expression = ExpressionSensor() if expression else None
        if self.expression is not None:
            self.models[self.expression.name] = self.expression.weights_sha256

    def analyze(self, images_rgb: Sequence[np.ndarray]) -> AnalysisBatch:
        """Analyse N HxWx3 uint8 RGB images (sizes may differ) -> :class:`AnalysisBatch`.

        Models only see the aligned crops of images where a face was found.
        """
        n = len(images_rgb)
        # One bicubic upscale per image, shared by detection, alignment and the quality crop.
        upscaled = upscale_all(images_rgb)
        detections = self.detector.detect_upscaled(upscaled)
        found = np.array([d.found for d in detections], dtype=bool)
        idx = np.flatnonzero(found)
        columns = _empty_columns(n)
        embeddings = {
            name: np.full((n, rec.embedding_size), np.nan, dtype=np.float32)
            for name, rec in self.recognizers.items()
        }
        if len(idx):
            faces = [detections[i] for i in idx]
            face_upscaled = [upscaled[i] for i in idx]
            _fill_detections(columns, idx, faces)
            # One ArcFace crop per face, shared by every crop model and sensor below.
            aligned = align_upscaled(face_upscaled, columns["kps"][idx])
            self._embed(embeddings, images_rgb, idx, faces, aligned)
            self._measure(columns, images_rgb, idx, aligned, face_upscaled)
        for array in (found, *columns.values(), *embeddings.values()):
            array.flags.writeable = False  # results are immutable once computed
        return AnalysisBatch(
            face_found=found, embeddings=embeddings, models=dict(self.models), **columns
        )

    def _embed(
        self,
        embeddings: dict[str, np.ndarray],
        images_rgb: Sequence[np.ndarray],
        idx: np.ndarray,
        faces: list[Any],
        aligned: np.ndarray,
    ) -> None:
        """Fill each recognizer's embedding rows ``idx`` (from the images or the aligned crops)."""
        for name, rec in self.recognizers.items():
            if isinstance(rec, ImageRecognizer):
                face_images = [images_rgb[i] for i in idx]
                embeddings[name][idx] = rec.embed_images(face_images, faces)
            else:
                embeddings[name][idx] = rec.embed(aligned)

    def _measure(
        self,
        columns: dict[str, np.ndarray],
        images_rgb: Sequence[np.ndarray],
        idx: np.ndarray,
        aligned: np.ndarray,
        face_upscaled: list[np.ndarray],
    ) -> None:
        """Fill rows ``idx`` of the attribute, sensor, quality and expression columns."""
        c = columns
        if isinstance(self.genderage, GenderAgeSensor):
            c["male_probability"][idx], c["age"][idx] = self.genderage.predict(aligned)
        else:  # insightface's model crops around the detector's box itself
            c["male_probability"][idx], c["age"][idx] = self.genderage.predict_faces(
                [images_rgb[i] for i in idx], c["bbox"][idx])
        c["ita"][idx], c["skin_tone_index"][idx], c["skin_hue"][idx] = skin_colour_measures(
            aligned
        )
        c["brightness"][idx] = brightness(aligned)
        c["sharpness"][idx], c["sharpness_normalised"][idx] = sharpness_measures(aligned)
        c["illumination_uniformity"][idx] = illumination_uniformity(aligned)
        if self.quality is not None:
            c["quality"][idx] = self.quality.score_crops(
                lightqnet_crops_upscaled(face_upscaled, c["kps"][idx])
            )
        if self.expression is not None:
            c["smile"][idx], c["mouth_open"][idx] = self.expression.measure_upscaled(
                face_upscaled, c["bbox"][idx]
            )


# AnalysisBatch's per-image columns besides face_found and embeddings: field -> (shape, dtype).
_COLUMNS: dict[str, tuple[tuple[int, ...], type]] = {
    "det_score": ((), np.float32),
    "bbox": ((4,), np.float32),
    "kps": ((5, 2), np.float32),
    "male_probability": ((), np.float32),
    "age": ((), np.float32),
    "ita": ((), np.float64),
    "brightness": ((), np.float64),
    "yaw": ((), np.float64),
    "pitch": ((), np.float64),
    "roll": ((), np.float64),
    "sharpness": ((), np.float64),
    "sharpness_normalised": ((), np.float64),
    "illumination_uniformity": ((), np.float64),
    "quality": ((), np.float32),
    "skin_tone_index": ((), np.float64),
    "skin_hue": ((), np.float64),
    "smile": ((), np.float64),
    "mouth_open": ((), np.float64),
}


def _empty_columns(n: int) -> dict[str, np.ndarray]:
    """All-NaN arrays for ``n`` images, one per entry of :data:`_COLUMNS`."""
    return {
        name: np.full((n, *shape), np.nan, dtype=dtype) for name, (shape, dtype) in _COLUMNS.items()
    }


def _fill_detections(columns: dict[str, np.ndarray], idx: np.ndarray, faces: list[Any]) -> None:
    """Fill rows ``idx`` of the detector's score, box and keypoints and the head pose."""
    columns["det_score"][idx] = [d.score for d in faces]
    columns["bbox"][idx] = np.stack([d.bbox for d in faces])
    columns["kps"][idx] = np.stack([d.kps for d in faces])
    pose = head_pose(columns["kps"][idx])  # weak perspective
    columns["yaw"][idx], columns["pitch"][idx], columns["roll"][idx] = pose
