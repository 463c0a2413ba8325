"""Facial expression readings from dlib's 68-point landmarks: smile and mouth opening.

Why: the photoreal generator's faces (MobileStyleGAN, FFHQ) mostly smile, baselines must be
neutral, and expression is an edit factor (neutral to smile), so the audit needs continuous
expression readings that can be thresholded, regressed on and checked.

Landmarks: dlib's ``shape_predictor_68_face_landmarks.dat`` (Kazemi and Sullivan, "One
millisecond face alignment with an ensemble of regression trees", CVPR 2014; trained on the iBUG
300-W landmarks, Sagonas et al. 2013), from the PyPI package ``face_recognition_models`` run with
the ``dlib-bin`` wheel, pinned by sha256 (:data:`LANDMARK_SHA256`). dlib notes that the 300-W
images' licence excludes commercial use of this model. The predictor runs on the image the
analyzer detects on (the input, bicubically upscaled when its short side is under 128 px,
:func:`audit.detection.upscale_small`) inside the box :func:`audit.recognition_dlib.dlib_box`
makes from the SCRFD box (square, shifted down, as dlib's own detectors' boxes are); the points are
mapped back to input pixels before anything is measured. On 60 MobileStyleGAN faces the points
from that box were a median 0.7% of the inter-ocular distance (90th percentile 1.2%) from those
found in the box of dlib's own HOG face detector, the smile score 0.009 apart (0.03). Cost: about
4 ms of one CPU core per face with the ``dlib-bin`` wheel, whatever the image size (cropping
the image around the face does not help), plus loading the 100 MB model once per process (about
2 s, shared by every analyzer in the process).

The 68 points in the iBUG 300-W order, 0-based (left/right as seen in the image): jaw 0-16,
eyebrows 17-26, nose 27-35, image-left eye 36-41 (36 its outer corner), image-right eye 42-47
(45 its outer corner), outer lip 48-59 (48 and 54 the mouth corners, 51 the top of the upper lip,
57 the bottom of the lower lip), inner lip 60-67 (61-63 upper, 65-67 lower; 62 and 66 the centres).

Readings (:func:`expression_measures`), all ratios of distances in the same image, so free of the
face's size in pixels:

- ``mouth_open`` = mean vertical gap of the inner-lip pairs 61/67, 62/66, 63/65 over the mouth
  width |p54 - p48| (:func:`mouth_open`), a mouth aspect ratio in the manner of Soukupova and
  Cech's eye aspect ratio ("Real-time eye blink detection using facial landmarks", CVWW 2016).
  0 with the lips together.
- ``smile``: see :func:`smile_score` (units of the inter-ocular distance).

The same 40 MobileStyleGAN faces read at 512 px and box-downscaled to 64 px gave smile scores
correlated at 0.97 (median difference 0.02) and the same :func:`is_neutral` call for 37 of 40.

:func:`is_neutral` and :data:`NEUTRAL_SMILE_MAX` / :data:`NEUTRAL_MOUTH_OPEN_MAX` label a face
neutral; the thresholds are this project's own calibration on MobileStyleGAN faces.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .registry import ModelHashMismatch, ModelNotFoundError, file_sha256

if TYPE_CHECKING:  # the geometry and is_neutral stay importable without onnxruntime
    from .detection import Upscaled

__all__ = [
    "LANDMARK_MODEL_NAME",
    "LANDMARK_SHA256",
    "NEUTRAL_MOUTH_OPEN_MAX",
    "NEUTRAL_SMILE_MAX",
    "ExpressionSensor",
    "corner_lift",
    "expression_measures",
    "interocular_distance",
    "is_neutral",
    "landmark_model_path",
    "mouth_open",
    "mouth_width",
    "smile_score",
]

LANDMARK_MODEL_NAME = "dlib_shape_predictor_68"
"""Key of the landmark model in :attr:`audit.analysis.FaceAnalyzer.models`."""

LANDMARK_PACKAGE = "face_recognition_models"
LANDMARK_FILE = "models/shape_predictor_68_face_landmarks.dat"
"""Path of the model inside :data:`LANDMARK_PACKAGE`'s folder."""

LANDMARK_SHA256 = "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f"
"""sha256 of ``shape_predictor_68_face_landmarks.dat`` in face_recognition_models 0.3.0 (the
file dlib.net distributes)."""

LANDMARK_INSTALL = "dlib-bin face_recognition_models"
LANDMARK_LICENCE = (
    "dlib model file via face_recognition_models (CC0 package); trained on iBUG 300-W, whose "
    "licence excludes commercial use"
)

# --- landmark indices (iBUG 300-W, 0-based) ------------------------------------------------------

OUTER_EYE_CORNERS = (36, 45)
MOUTH_CORNERS = (48, 54)
INNER_LIP_CENTRES = (62, 66)
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 3 or points.shape[1:] != (68, 2):
        raise ValueError(f"expected (N, 68, 2) landmarks, got {points.shape}")
    return points


def _dist(points: np.ndarray, i: int, j: int) -> np.ndarray:
    return np.linalg.norm(points[:, i] - points[:, j], axis=-1)


def _face_down(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inter-ocular distance (N,) and the face's "down" unit vector (N, 2): the eye line
    36 -> 45 turned by +90 degrees (towards the chin in image coordinates, y down); NaN where
    the eye corners coincide."""
    axis = points[:, OUTER_EYE_CORNERS[1]] - points[:, OUTER_EYE_CORNERS[0]]
    iod = np.linalg.norm(axis, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        down = (
            np.stack([-axis[:, 1], axis[:, 0]], axis=-1) / np.where(iod > 0, iod, np.nan)[:, None]
        )
    return iod, down


def interocular_distance(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners 36 and 45, (N, 68, 2) pixels -> (N,) pixels."""
    return _dist(_check_landmarks(landmarks), *OUTER_EYE_CORNERS)


def mouth_open(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap over mouth width, (N, 68, 2) ``(x, y)`` pixels -> (N,) float64 ratio.

    ``mean over (61, 67), (62, 66), (63, 65) of |(p_upper - p_lower) . down| / |p54 - p48|``,
    the gaps measured along the face's vertical (``down``: perpendicular to the eye line 36 -> 45,
    so head roll does not change them): 0 with the lips together, about 0.1 with the lips
    parted, 0.15-0.25 for a smile showing teeth, more for a dropped jaw. NaN where the mouth
    width or the eye distance is 0.
    """
    points = _check_landmarks(landmarks)
    _, down = _face_down(points)
    gaps = [
        np.abs(np.sum((points[:, i] - points[:, j]) * down, axis=-1)) for i, j in INNER_LIP_PAIRS
    ]
    width = _dist(points, *MOUTH_CORNERS)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.mean(gaps, axis=0) / np.where(width > 0, width, np.nan)


def mouth_width(landmarks: np.ndarray) -> np.ndarray:
    """Mouth width over the inter-ocular distance, ``|p54 - p48| / |p45 - p36|``, (N,) ratio."""
    points = _check_landmarks(landmarks)
    iod = _dist(points, *OUTER_EYE_CORNERS)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _dist(points, *MOUTH_CORNERS) / np.where(iod > 0, iod, np.nan)


def corner_lift(landmarks: np.ndarray) -> np.ndarray:
    """Height of the mouth corners above the centre of the inner-lip opening, (N, 68, 2) pixels ->
    (N,) float64 in inter-ocular distances.

    ``lift = ((c - (p48 + p54) / 2) . down) / IOD`` with ``c = (p62 + p66) / 2`` (the inner lip
    centres; the lips' meeting point when the mouth is closed) and ``down`` the unit vector
    perpendicular to the eye line 36 -> 45 pointing towards the chin, so head roll does not change
    the value. Positive when the corners sit above the mouth's centre (the upturned "U" of a
    smile), about 0 for a relaxed or an oval open mouth (whose corners sit at mid-height of the
    opening), negative for downturned corners. The centre of the *outer* lips (51/57) would
    give the same for a closed mouth but, for a dropped jaw, a lift that grows with the opening
    (the lower lip's outer edge is thicker than the upper one's).
    """
    points = _check_landmarks(landmarks)
    iod, down = _face_down(points)
    corners = points[:, list(MOUTH_CORNERS)].mean(axis=1)
    centre = points[:, list(INNER_LIP_CENTRES)].mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum((centre - corners) * down, axis=-1) / np.where(iod > 0, iod, np.nan)


SMILE_LIFT_WEIGHT = 2.0
"""Weight of :func:`corner_lift` in :func:`smile_score`. The lift varies about half as much as
the width between faces (standard deviations 0.039 and 0.078 IOD on 120 MobileStyleGAN faces);
weights 1, 2 and 3 separated the faces judged neutral by eye from the smiling ones with ROC AUCs
of 0.986, 0.992 and 0.991 there (width alone: 0.958)."""


def smile_score(landmarks: np.ndarray) -> np.ndarray:
    """Continuous smile score, (N, 68, 2) ``(x, y)`` pixels -> (N,) float64 in inter-ocular
    distances (IOD, the distance between the outer eye corners 36 and 45).

    ``smile = mouth_width + SMILE_LIFT_WEIGHT * corner_lift`` (:func:`mouth_width`,
    :func:`corner_lift`, both in IOD): the two landmark signs of the lip-corner puller, action
    unit 12 of the Facial Action Coding System (Ekman and Friesen 1978; Ekman, Friesen and Hager
    2002), which stretches the mouth sideways and raises its corners. Smile measures built from
    lip-corner landmarks (how far the corners move apart and up, scale-normalised) are standard in
    the smile-dynamics literature, e.g. Schmidt, Ambadar, Cohn and Reed, "Movement differences
    between deliberate and spontaneous facial expressions: zygomaticus major action in smiling",
    J. Nonverbal Behav. 30 (2006), and Dibeklioglu, Salah and Gevers, "Are you really smiling at
    me? Spontaneous versus posed enjoyment smiles", ECCV 2012, which read them *relative to the
    same person's neutral frame*. A single still has no such frame, so this score compares against
    a population instead: the combination, weight and the values below are this project's own
    calibration, on 120 MobileStyleGAN faces (seeds 0-119) judged by eye: neutral faces median
    0.62 (interquartile range 0.57-0.67, all 37 within 0.43-0.75), slight closed-mouth smiles
    median 0.79 (0.75-0.84), smiles showing teeth median 0.89 (0.81-0.95, up to 1.14).

    Head yaw shortens the mouth and the eye distance alike, so the width term is roughly
    yaw-free; pitch changes the lift (chin up reads as raised corners), so read the score
    together with the pose. Identity moves it too (mouth width varies between faces by about
    0.08 IOD), so a smile *edit* is best read as the change from the same face's baseline.
    """
    return mouth_width(landmarks) + SMILE_LIFT_WEIGHT * corner_lift(landmarks)


def expression_measures(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(smile_score(landmarks), mouth_open(landmarks))``, each (N,) float64."""
    return smile_score(landmarks), mouth_open(landmarks)


NEUTRAL_SMILE_MAX = 0.72
"""Largest :func:`smile_score` (IOD) of a neutral face (see :func:`is_neutral`)."""

NEUTRAL_MOUTH_OPEN_MAX = 0.10
"""Largest :func:`mouth_open` (ratio) of a neutral face (see :func:`is_neutral`)."""


def is_neutral(
    smile: float | np.ndarray,
    mouth_open: float | np.ndarray,
    *,
    smile_max: float = NEUTRAL_SMILE_MAX,
    mouth_open_max: float = NEUTRAL_MOUTH_OPEN_MAX,
) -> bool | np.ndarray:
    """Whether a face reads as neutral: ``smile <= smile_max and mouth_open <= mouth_open_max``.

    smile: :func:`smile_score` in IOD; mouth_open: :func:`mouth_open` ratio; scalars give a bool,
    arrays a bool array of their broadcast shape. NaN readings (no face) are never neutral.

    How the thresholds were set (this project's own calibration): 120 MobileStyleGAN faces
    (seeds 0-119) were sorted by eye into neutral (37), slight closed-mouth smiles (21) and
    smiles showing teeth (62). Every teeth-showing smile has ``mouth_open`` of 0.09 or more
    (median 0.16); neutral faces have a median of 0.03, but parted lips reach 0.15. With
    ``smile <= 0.72`` and ``mouth_open <= 0.10``, 32 of the 37 neutral faces pass, 1 of the 21
    slight smiles (a borderline one) and none of the 62 smiles; the neutral faces that fail either
    have parted lips (mouth_open 0.12-0.15) or a wide mouth (smile 0.73-0.75). The thresholds are
    meant for picking neutral baselines, where a few neutral faces lost matter less than a smile
    let through.
    """
    smile_arr = np.asarray(smile, dtype=np.float64)
    open_arr = np.asarray(mouth_open, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        neutral = (smile_arr <= smile_max) & (open_arr <= mouth_open_max)
    return bool(neutral) if neutral.ndim == 0 else neutral


# --- the landmark model ---------------------------------------------------------------------------


def landmark_model_path() -> Path:
    """Path of the hash-checked 68-point model, found without importing its package.

    Raises :class:`audit.registry.ModelNotFoundError` naming the pip requirement when the package,
    dlib or the file is missing, :class:`audit.registry.ModelHashMismatch` when the file differs.
    """
    missing = []
    try:
        spec = importlib.util.find_spec(LANDMARK_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        missing.append(LANDMARK_PACKAGE)
    try:
        has_dlib = importlib.util.find_spec("dlib") is not None
    except (ImportError, ValueError):
        has_dlib = False
    if not has_dlib:
        missing.append("dlib (dlib-bin)")
    if missing:
        raise ModelNotFoundError(
            f"the expression sensor's landmark model {LANDMARK_MODEL_NAME!r} needs "
            f"{', '.join(missing)}, not installed; install with: pip install {LANDMARK_INSTALL} "
            f"(licence: {LANDMARK_LICENCE})"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / LANDMARK_FILE
    if not path.is_file():
        raise ModelNotFoundError(
            f"landmark model {LANDMARK_MODEL_NAME!r}: {path} is missing from the installed "
            f"package {LANDMARK_PACKAGE}; reinstall it with: pip install --force-reinstall "
            f"{LANDMARK_INSTALL}"
        )
    actual = file_sha256(path)
    if actual != LANDMARK_SHA256:
        raise ModelHashMismatch(LANDMARK_MODEL_NAME, path, LANDMARK_SHA256, actual)
    return path


@functools.lru_cache(maxsize=2)
def _load_predictor(path: str) -> Any:
    """One loaded predictor per file and process (about 100 MB in memory; read-only once built,
    so analyzers running side by side share it)."""
    import dlib

    return dlib.shape_predictor(path)


class ExpressionSensor:
    """dlib's 68-point landmarks on SCRFD faces, and the expression readings made from them.

    Loading hash-checks the model (once per process) and reads it (about 1 s); see
    :func:`landmark_model_path` for the errors when it is missing.
    """

    name = LANDMARK_MODEL_NAME
    weights_sha256 = LANDMARK_SHA256
    licence = LANDMARK_LICENCE

    def __init__(self) -> None:
        path = landmark_model_path()
        try:
            self._predictor = _load_predictor(str(path))
        except ImportError as exc:  # found by find_spec but broken (e.g. a missing shared library)
            raise ModelNotFoundError(
                f"the expression sensor needs dlib, which failed to import ({exc}); reinstall "
                f"it with: pip install {LANDMARK_INSTALL}"
            ) from exc
        import dlib

        self._rectangle = dlib.rectangle

    def landmarks_upscaled(self, upscaled: Sequence[Upscaled], bboxes: np.ndarray) -> np.ndarray:
        """68 landmarks per face, (N, 68, 2) float64 ``(x, y)`` in *input* pixels.

        upscaled: ``(image, sx, sy)`` per face as :func:`audit.detection.upscale_small` returns
        them (the image is HxWx3 uint8 RGB); bboxes: (N, 4) SCRFD boxes ``x1, y1, x2, y2`` in input
        pixels. The predictor runs on the upscaled image; points are mapped back with
        ``x = (x_up + 0.5) / sx - 0.5`` (OpenCV's pixel-centre convention).
        """
        from .recognition_dlib import dlib_box

        bboxes = np.asarray(bboxes, dtype=np.float64)
        if bboxes.shape != (len(upscaled), 4):
            raise ValueError(f"expected ({len(upscaled)}, 4) boxes, got {bboxes.shape}")
        out = np.empty((len(upscaled), 68, 2), dtype=np.float64)
        for k, ((image, sx, sy), bbox) in enumerate(zip(upscaled, bboxes, strict=True)):
            shape = self._predictor(
                np.ascontiguousarray(image), self._rectangle(*dlib_box(bbox, sx, sy))
            )
            points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            out[k, :, 0] = (points[:, 0] + 0.5) / sx - 0.5
            out[k, :, 1] = (points[:, 1] + 0.5) / sy - 0.5
        return out

    def landmarks(self, images_rgb: Sequence[np.ndarray], bboxes: np.ndarray) -> np.ndarray:
        """:meth:`landmarks_upscaled` of N HxWx3 uint8 RGB images and their (N, 4) SCRFD boxes."""
        from .detection import upscale_all

        return self.landmarks_upscaled(upscale_all(images_rgb), bboxes)

    def measure_upscaled(
        self, upscaled: Sequence[Upscaled], bboxes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(smile, mouth_open)`` of each face, (N,) float64 each (:func:`expression_measures`)."""
        if len(upscaled) == 0:
            return np.zeros(0), np.zeros(0)
        return expression_measures(self.landmarks_upscaled(upscaled, bboxes))
