"""Head pose (yaw, pitch, roll) from the five SCRFD keypoints, by fitting a generic 3D face.

Method: a rigid generic 3D model of the same five points (:data:`FACE_MODEL_MM`) is posed so that
its projection best fits the detected keypoints (least squares on the reprojection error), and
the rotation is split into yaw, pitch and roll.

Camera: by default a **weak-perspective** camera (scaled orthographic projection: rotation, one
scale, a 2D shift), the usual model for face crops whose camera is unknown (e.g. 3DDFA, Zhu et
al. 2016). The alternative, a pinhole camera with focal length = image width, treats a tight
64-px crop as if the lens were 64 px wide, i.e. a camera about 20 cm from the face; that bends
the readings (the ArcFace template itself reads 9 degrees of pitch in a 112-px image) and makes
them depend on how tightly the face is cropped and where it sits in the frame. Weak perspective
is the same for every crop of the same face, and its angles are relative to the line of sight to
the face: a face looking at the camera reads yaw 0 wherever it is in the frame. (With a pinhole
camera angles are relative to the optical axis: the outer faces of insightface's ``t1.jpg``,
looking at the camera, read about 22 degrees of yaw at focal length = image width.) The fit is vectorised over faces: a linear affine
fit gives the starting rotation (as insightface's ``transform.P2sRt``), then Gauss-Newton steps
with a closed-form scale and shift (variable projection) refine it. For whole photographs with a
known or assumed lens, pass a pinhole ``camera`` (:func:`camera_matrix`) and OpenCV's
``solvePnP`` (Levenberg-Marquardt from a frontal start) fits the pose per face instead.

The 3D model (:data:`FACE_MODEL_MM`) comes from the 68-point 3D mean face that insightface ships
for its 3D landmark model (``insightface/data/objects/meanshape_68.pkl``): eye centres = means of
the six contour points of each eye (68-point indices 36-41 and 42-47), nose tip = point 30,
mouth corners = points 48 and 54. The points were made left-right symmetric (mean of the shape
and its mirror image), then rotated about the ear-to-ear axis to the orientation whose
orthographic projection best fits insightface's ArcFace 5-point alignment template (a rotation
of 18.9 degrees; residual 1.2 px RMS in the 112 px template), and scaled to a 63 mm distance
between the eye centres (the mean adult interpupillary distance, Dodgson 2004, Proc. SPIE 5291).
So **zero pose is the pose of the ArcFace template**, the mean near-frontal face that every
aligned crop in this package is warped to: a face aligned to that template reads about
(0, 0, 0). ``tests/audit/test_pose.py`` re-derives the constants from the two sources.

Angles, in degrees (camera axes as in OpenCV: x to the image's right, y down, z away from the
camera; the model's axes are the same for a face looking straight into the camera):

* ``yaw``: rotation about the vertical axis. **yaw > 0: the face is turned to the subject's
  left**, i.e. the nose points towards the image's right side (as the viewer sees it).
* ``pitch``: rotation about the ear-to-ear axis. **pitch > 0: the face is tilted up** (chin up,
  nose pointing above the camera).
* ``roll``: in-plane rotation. **roll > 0: the head is tilted towards the subject's left
  shoulder**, i.e. the face turns clockwise in the image as the viewer sees it (the eye on the
  image's right side is lower).

The rotation from model to camera is ``R = Ry(-yaw) @ Rx(-pitch) @ Rz(roll)``, with right-handed
elementary rotations ``Rx, Ry, Rz`` about the camera axes: turn first, then nod, then tilt
(intrinsic order), the usual head-pose convention. A mirrored image gives the same pitch and the
opposite yaw and roll.

Limits: the model is one generic face, so individual face shape (a long nose, a wide mouth) shows
up as a few degrees of bias, and pitch is the least reliable angle (only the nose tip is off the
eye-mouth plane). Beyond about 60 degrees of yaw the far eye and mouth corner are hidden and the
detector's guesses for them make the reading unreliable. Keypoints of 64-px faces are coarse:
synthetic keypoint noise of 1% of the inter-eye distance gives errors of about 0.7 degrees
(median) and 2 degrees (95th percentile).
"""

from __future__ import annotations

import cv2
import numpy as np

FACE_MODEL_MM = np.array(
    [
        [-31.5, 0.0, 0.0],  # eye centre on the image's left (the subject's right eye)
        [31.5, 0.0, 0.0],  # eye centre on the image's right (the subject's left eye)
        [0.0, 30.5, -25.1],  # nose tip
        [-24.9, 64.7, 14.3],  # mouth corner on the image's left
        [24.9, 64.7, 14.3],  # mouth corner on the image's right
    ]
)
"""Generic 3D positions (mm) of the five SCRFD keypoints, in SCRFD's order.

Origin at the midpoint of the eye centres; x towards the image's right, y down, z away from the
camera for a face looking straight into it (the nose tip is 25 mm nearer the camera than the
eyes). Derivation and source in the module docstring.
"""


def _rotations(angles_rad: np.ndarray) -> np.ndarray:
    """``Ry(-yaw) @ Rx(-pitch) @ Rz(roll)`` for (N, 3) radians ``(yaw, pitch, roll)`` -> (N, 3, 3)."""
    a, b, c = -angles_rad[:, 0], -angles_rad[:, 1], angles_rad[:, 2]
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    # The product Ry(a) Rx(b) Rz(c), written out.
    r = np.empty((len(angles_rad), 3, 3))
    sa_sb, ca_sb = sa * sb, ca * sb
    r[:, 0, 0] = ca * cc + sa_sb * sc
    r[:, 0, 1] = sa_sb * cc - ca * sc
    r[:, 0, 2] = sa * cb
    r[:, 1, 0] = cb * sc
    r[:, 1, 1] = cb * cc
    r[:, 1, 2] = -sb
    r[:, 2, 0] = ca_sb * sc - sa * cc
    r[:, 2, 1] = sa * sc + ca_sb * cc
    r[:, 2, 2] = ca * cb
    return r


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Model-to-camera rotation (3, 3) for angles in degrees, in this module's convention:
    ``Ry(-yaw) @ Rx(-pitch) @ Rz(roll)`` with right-handed rotations about the camera axes."""
    return _rotations(np.radians([[yaw, pitch, roll]], dtype=np.float64))[0]


def _euler(rotations: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations -> (N, 3) degrees ``(yaw, pitch, roll)``; inverse of :func:`_rotations`."""
    # R = Ry(a) Rx(b) Rz(c): R[1, 2] = -sin b, R[0, 2] / R[2, 2] = tan a, R[1, 0] / R[1, 1] = tan c.
    b = np.arcsin(np.clip(-rotations[:, 1, 2], -1.0, 1.0))
    a = np.arctan2(rotations[:, 0, 2], rotations[:, 2, 2])
    c = np.arctan2(rotations[:, 1, 0], rotations[:, 1, 1])
    return np.degrees(np.stack([-a, -b, c], axis=-1))


def euler_angles(rotation: np.ndarray) -> tuple[float, float, float]:
    """``(yaw, pitch, roll)`` in degrees of a model-to-camera rotation (inverse of
    :func:`rotation_matrix`; pitch in [-90, 90])."""
    yaw, pitch, roll = _euler(np.asarray(rotation, dtype=np.float64).reshape(1, 3, 3))[0]
    return float(yaw), float(pitch), float(roll)


def camera_matrix(width: float, height: float, focal_length: float | None = None) -> np.ndarray:
    """Pinhole intrinsics (3, 3) for a whole ``width`` x ``height`` photograph whose lens is
    unknown: focal length ``focal_length`` px (default: the image width, about a 53-degree
    horizontal field of view), principal point at the centre.

    The centre is ``((width - 1) / 2, (height - 1) / 2)`` in OpenCV's pixel-centre coordinates
    (the keypoints' convention), so that mirroring an image mirrors the camera exactly.
    """
    f = float(width if focal_length is None else focal_length)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def project(
    rotation: np.ndarray,
    translation: np.ndarray,
    camera: np.ndarray | None = None,
    *,
    scale: float = 1.0,
    model: np.ndarray = FACE_MODEL_MM,
) -> np.ndarray:
    """The forward model that :func:`head_pose` inverts: ``model`` (M, 3) mm posed by
    ``rotation`` -> (M, 2) pixel ``(x, y)``.

    camera None: weak perspective, ``scale * (R @ X)[:2] + translation[:2]`` (scale in px/mm).
    Otherwise pinhole: ``camera @ (R @ X + translation)`` divided by depth (translation in mm).
    """
    points = np.asarray(model, float) @ np.asarray(rotation, float).T
    translation = np.asarray(translation, float)
    if camera is None:
        return scale * points[:, :2] + translation[:2]
    uvw = (points + translation) @ np.asarray(camera, float).T
    return uvw[:, :2] / uvw[:, 2:3]


_MODEL_CENTRED = FACE_MODEL_MM - FACE_MODEL_MM.mean(axis=0)
_MODEL_PINV = np.linalg.pinv(_MODEL_CENTRED)  # (3, 5): least-squares affine fit
_FD_STEP = 1e-7  # radians, forward-difference step of the Jacobian
_ITERATIONS = 30
_TOLERANCE = 1e-5  # radians (6e-4 degrees): stop when every face's step is smaller


def _weak_residuals(angles: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N, 10) residuals of the best scale and shift for each rotation (variable projection).

    targets: (N, 5, 2) centred keypoints over their spread (so residuals are scale-free).
    """
    projected = (_MODEL_CENTRED @ _rotations(angles).transpose(0, 2, 1))[:, :, :2]
    scale = (projected * targets).sum(axis=(1, 2)) / (projected * projected).sum(axis=(1, 2))
    return (scale[:, None, None] * projected - targets).reshape(len(angles), 10)


def _weak_perspective_pose(kps: np.ndarray) -> np.ndarray:
    """(N, 5, 2) finite keypoints -> (N, 3) degrees, weak perspective (NaN rows if degenerate)."""
    centred = kps - kps.mean(axis=1, keepdims=True)
    targets = centred / np.linalg.norm(centred.reshape(len(kps), -1), axis=1)[:, None, None]
    # Start: affine camera by least squares, its two rows made orthonormal (nearest rotation).
    affine = np.einsum("jk,nkd->ndj", _MODEL_PINV, targets)  # (N, 2, 3)
    r1 = affine[:, 0] / np.linalg.norm(affine[:, 0], axis=1, keepdims=True)
    r2 = affine[:, 1] - np.sum(affine[:, 1] * r1, axis=1, keepdims=True) * r1
    r2 /= np.linalg.norm(r2, axis=1, keepdims=True)
    start = np.stack([r1, r2, np.cross(r1, r2)], axis=1)
    out = np.full((len(kps), 3), np.nan)
    ok = np.all(np.isfinite(start), axis=(1, 2))  # keypoints on one line have no affine fit
    if not ok.any():
        return out
    targets = targets[ok]
    u, _, vt = np.linalg.svd(start[ok])
    angles = np.radians(_euler(u @ vt))
    # Gauss-Newton with a forward-difference Jacobian (the three probes of all faces in one
    # call); a step that raises a face's cost is halved. A face stops moving once its step is
    # below the tolerance, so its result does not depend on the other faces in the batch.
    n = len(angles)
    moving = np.ones(n, dtype=bool)
    shifts = _FD_STEP * np.eye(3)
    probe_targets = np.concatenate([targets] * 3)
    residual = _weak_residuals(angles, targets)
    cost = np.sum(residual**2, axis=1)
    for _ in range(_ITERATIONS):
        probes = (angles[None] + shifts[:, None]).reshape(3 * n, 3)
        shifted = _weak_residuals(probes, probe_targets).reshape(3, n, 10)
        jacobian = ((shifted - residual) / _FD_STEP).transpose(1, 2, 0)  # (N, 10, 3)
        normal = np.einsum("nri,nrj->nij", jacobian, jacobian) + 1e-12 * np.eye(3)
        gradient = np.einsum("nri,nr->ni", jacobian, residual)
        step = -np.linalg.solve(normal, gradient[..., None])[..., 0]
        for _ in range(8):
            trial = _weak_residuals(angles + step, targets)
            trial_cost = np.sum(trial**2, axis=1)
            worse = trial_cost > cost
            if not worse.any():
                break
            step[worse] *= 0.5
        update = moving & ~worse
        angles[update] += step[update]
        residual[update], cost[update] = trial[update], trial_cost[update]
        moving &= np.any(np.abs(step) >= _TOLERANCE, axis=1)
        if not moving.any():
            break
    out[ok] = _euler(_rotations(angles))
    return out


def _pinhole_pose(points: np.ndarray, intrinsics: np.ndarray) -> np.ndarray | None:
    """(5, 2) keypoints and a (3, 3) camera -> (3,) degrees by OpenCV's solvePnP, or None."""
    centroid = points.mean(axis=0)
    spread = float(np.linalg.norm(points - centroid))
    # Start from a frontal face at the distance that gives the observed size, on the ray through
    # the keypoints' centroid; from there LM converges for any pose a detector sees.
    depth = float(intrinsics[0, 0]) * float(np.linalg.norm(_MODEL_CENTRED[:, :2])) / spread
    ray = (centroid - intrinsics[:2, 2]) / np.array([intrinsics[0, 0], intrinsics[1, 1]])
    tvec = np.array([ray[0] * depth, ray[1] * depth, depth]) - FACE_MODEL_MM.mean(axis=0)
    ok, rvec, tvec = cv2.solvePnP(
        FACE_MODEL_MM.reshape(5, 1, 3),
        np.ascontiguousarray(points).reshape(5, 1, 2),
        np.ascontiguousarray(intrinsics),
        None,
        np.zeros((3, 1)),
        tvec.reshape(3, 1),
        useExtrinsicGuess=True,
        flags=cv2.SOLVEPNP_ITERATIVE,
    )
    if not ok or not np.all(np.isfinite(rvec)) or float(tvec[2, 0]) <= 0:
        return None
    return np.array(euler_angles(cv2.Rodrigues(rvec)[0]))


def _cameras(camera: np.ndarray | None, n: int) -> np.ndarray | None:
    if camera is None:
        return None
    cameras = np.asarray(camera, dtype=np.float64)
    if cameras.shape == (3, 3):
        cameras = np.broadcast_to(cameras, (n, 3, 3))
    if cameras.shape != (n, 3, 3):
        raise ValueError(
            f"camera must be a (3, 3) intrinsics matrix or one per face, shape ({n}, 3, 3); "
            f"got shape {cameras.shape}"
        )
    if not (np.all(cameras[:, 0, 0] > 0) and np.all(cameras[:, 1, 1] > 0)):
        raise ValueError("camera focal lengths must be positive")
    return cameras


def head_pose(
    kps: np.ndarray, camera: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Yaw, pitch and roll of N faces from their five keypoints.

    kps: (N, 5, 2) ``(x, y)`` pixels in SCRFD's order (eye, eye, nose tip, mouth corner, mouth
    corner; left/right as seen in the image).
    camera: ``None`` (the default) for a weak-perspective camera: pose then depends neither on
    the image size nor on where the face sits in the image, so a tightly cropped 64-px generated
    face and the same face in a larger frame read the same. Or a (3, 3) pinhole intrinsics
    matrix shared by all faces, or (N, 3, 3), one per face, in the keypoints' pixels, e.g.
    :func:`camera_matrix` for a whole photograph.

    Returns ``(yaw, pitch, roll)``, each (N,) float64 degrees in the sign convention of the
    module docstring (yaw > 0: turned to the subject's left; pitch > 0: chin up; roll > 0:
    clockwise in the image). Faces with non-finite or coincident keypoints, or whose fit fails,
    get NaN.
    """
    kps = np.asarray(kps, dtype=np.float64)
    if kps.ndim != 3 or kps.shape[1:] != (5, 2):
        raise ValueError(f"expected keypoints of shape (N, 5, 2), got {kps.shape}")
    n = len(kps)
    cameras = _cameras(camera, n)
    out = np.full((n, 3), np.nan)
    spread = np.linalg.norm(kps - kps.mean(axis=1, keepdims=True), axis=(1, 2))
    usable = np.all(np.isfinite(kps), axis=(1, 2)) & (spread > 1e-6)
    if cameras is None:
        if usable.any():
            with np.errstate(invalid="ignore", divide="ignore"):
                out[usable] = _weak_perspective_pose(kps[usable])
    else:
        for i in np.flatnonzero(usable):
            angles = _pinhole_pose(kps[i], cameras[i])
            if angles is not None:
                out[i] = angles
    return out[:, 0], out[:, 1], out[:, 2]
