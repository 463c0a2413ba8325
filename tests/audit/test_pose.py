import math

import numpy as np
import pytest
from insightface.data import get_object
from insightface.utils.face_align import arcface_dst
from scipy.optimize import minimize_scalar

from audit.pose import (
    FACE_MODEL_MM,
    camera_matrix,
    euler_angles,
    head_pose,
    project,
    rotation_matrix,
)

MIRROR = [1, 0, 2, 4, 3]  # SCRFD order after a left-right flip: swap the eyes and mouth corners


def synthetic_kps(angles, scale=1.5, shift=(300.0, 200.0)):
    """Keypoints of the generic model posed by (yaw, pitch, roll) rows, weak perspective."""
    return np.stack([project(rotation_matrix(*a), shift, scale=scale) for a in angles])


def pinhole_kps(angles, image_size=(640, 480), offset=(40.0, -30.0), depth=420.0):
    """The same seen by a pinhole camera with focal length = image width."""
    camera = camera_matrix(*image_size)
    t = np.array([offset[0], offset[1], depth])
    return np.stack([project(rotation_matrix(*a), t, camera) for a in angles])


def mirror(kps, width):
    flipped = np.asarray(kps, float).copy()
    flipped[..., 0] = width - 1 - flipped[..., 0]
    return flipped[..., MIRROR, :]


def test_the_face_model_is_insightfaces_mean_face_posed_like_the_arcface_template():
    # Recompute FACE_MODEL_MM from its two sources, as the module docstring describes.
    shape = np.asarray(get_object("meanshape_68.pkl"), float)
    points = np.stack([shape[36:42].mean(0), shape[42:48].mean(0), shape[30], shape[48], shape[54]])
    mirrored = points[MIRROR] * [-1, 1, 1]
    points = (points + mirrored) / 2  # left-right symmetric
    points[:, 2] *= -1  # the mean shape's z points at the viewer; the model's z points away
    template = arcface_dst.astype(float)

    def fit(theta_deg):
        t = math.radians(theta_deg)
        rx = np.array([[1, 0, 0], [0, math.cos(t), -math.sin(t)], [0, math.sin(t), math.cos(t)]])
        rotated = points @ rx.T
        xy, target = rotated[:, :2] - rotated[:, :2].mean(0), template - template.mean(0)
        scale = (xy * target).sum() / (xy * xy).sum()
        return ((scale * xy - target) ** 2).sum(), rotated, scale

    best = minimize_scalar(lambda t: fit(t)[0], bounds=(-45, 45), method="bounded")
    error, rotated, scale = fit(best.x)
    assert best.x == pytest.approx(18.9, abs=0.1)
    assert math.sqrt(error / 5) == pytest.approx(1.24, abs=0.05)  # px RMS in the 112 template
    model = rotated - (rotated[0] + rotated[1]) / 2
    model *= 63.0 / np.linalg.norm(model[1] - model[0])
    np.testing.assert_allclose(FACE_MODEL_MM, model, atol=0.06)


@pytest.mark.parametrize("yaw", [-30, -20, -10, 0, 10, 20, 30])
@pytest.mark.parametrize("pitch", [-30, -15, 0, 15, 30])
def test_it_recovers_known_yaw_and_pitch_from_synthetic_keypoints(yaw, pitch):
    angles = [(yaw, pitch, roll) for roll in (-10.0, 0.0, 10.0)]
    got = np.stack(head_pose(synthetic_kps(angles)), axis=1)
    np.testing.assert_allclose(got, angles, atol=1e-6)
    got = np.stack(head_pose(pinhole_kps(angles), camera_matrix(640, 480)), axis=1)
    np.testing.assert_allclose(got, angles, atol=1e-3)


def test_weak_perspective_ignores_the_faces_size_and_place_in_the_image():
    rng = np.random.default_rng(0)
    angles = rng.uniform([-60, -40, -30], [60, 40, 30], (200, 3))
    small = synthetic_kps(angles, scale=0.3, shift=(32.0, 36.0))  # a 64-px generated face
    large = synthetic_kps(angles, scale=4.0, shift=(900.0, 100.0))  # off-centre in a photo
    for kps in (small, large):
        np.testing.assert_allclose(np.stack(head_pose(kps), axis=1), angles, atol=1e-6)


def test_a_pinhole_camera_close_to_a_tight_crop_bends_the_template_but_weak_perspective_does_not():
    # Why weak perspective is the default: with focal length = width of a 112-px crop the
    # ArcFace template (zero pose by construction) reads several degrees of pitch.
    template = arcface_dst[None].astype(float)
    _, pitch_pinhole, _ = head_pose(template, camera_matrix(112, 112))
    _, pitch_weak, _ = head_pose(template)
    assert abs(pitch_pinhole[0]) > 5 and abs(pitch_weak[0]) < 0.5


def test_noisy_keypoints_give_angles_within_a_few_degrees():
    rng = np.random.default_rng(1)
    angles = rng.uniform([-30, -30, -15], [30, 30, 15], (300, 3))
    kps = synthetic_kps(angles)
    inter_eye = np.linalg.norm(kps[:, 1] - kps[:, 0], axis=1).mean()
    noisy = kps + rng.normal(0.0, 0.01 * inter_eye, kps.shape)  # 1% of the inter-eye distance
    error = np.abs(np.stack(head_pose(noisy), axis=1) - angles)
    assert np.all(np.median(error, axis=0) < 1.5), np.median(error, axis=0)
    assert np.all(np.percentile(error, 95, axis=0) < 4.0), np.percentile(error, 95, axis=0)


def test_the_signs_follow_the_documented_convention():
    eyes_mid = lambda k: (k[0] + k[1]) / 2  # noqa: E731
    turned, raised, tilted = synthetic_kps([(20, 0, 0), (0, 20, 0), (0, 0, 20)])
    front = synthetic_kps([(0, 0, 0)])[0]
    # yaw > 0: turned to the subject's left, the nose tip moves to the image's right.
    assert turned[2, 0] - eyes_mid(turned)[0] > front[2, 0] - eyes_mid(front)[0] + 3
    # pitch > 0: chin up, the nose tip moves up towards the eyes in the image.
    assert raised[2, 1] - eyes_mid(raised)[1] < front[2, 1] - eyes_mid(front)[1] - 3
    # roll > 0: clockwise in the image, the eye on the image's right is lower (y grows down).
    assert tilted[1, 1] > tilted[0, 1] + 10


def test_euler_angles_invert_rotation_matrix():
    rng = np.random.default_rng(2)
    for angles in rng.uniform([-170, -89, -170], [170, 89, 170], (200, 3)):
        r = rotation_matrix(*angles)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)
        np.testing.assert_allclose(euler_angles(r), angles, atol=1e-9)


def test_mirrored_keypoints_flip_yaw_and_roll_and_keep_pitch():
    rng = np.random.default_rng(3)
    angles = rng.uniform([-40, -30, -20], [40, 30, 20], (40, 3))
    kps = synthetic_kps(angles)
    for flipped, camera in (
        (mirror(kps, 640), None),
        (mirror(pinhole_kps(angles), 640), camera_matrix(640, 480)),
    ):
        yaw, pitch, roll = head_pose(flipped, camera)
        np.testing.assert_allclose(yaw, -angles[:, 0], atol=1e-3)
        np.testing.assert_allclose(pitch, angles[:, 1], atol=1e-3)
        np.testing.assert_allclose(roll, -angles[:, 2], atol=1e-3)


def test_the_arcface_template_reads_as_zero_pose():
    yaw, pitch, roll = head_pose(arcface_dst[None].astype(float))
    assert abs(yaw[0]) < 0.5 and abs(pitch[0]) < 0.5 and abs(roll[0]) < 0.5


def test_a_near_frontal_photo_reads_a_small_yaw_and_its_mirror_the_opposite(
    detector, tom_hanks_rgb
):
    # Tom_Hanks_54745.png is a near-frontal face turned slightly to his left (his nose tip is
    # about 6 px right of the eye midpoint in the 112 px image), so yaw is small and positive;
    # his head is bowed a little (pitch about -17).
    mirrored = np.ascontiguousarray(tom_hanks_rgb[:, ::-1])
    face, flipped = detector.detect_batch([tom_hanks_rgb, mirrored])
    yaw, pitch, roll = head_pose(np.stack([face.kps, flipped.kps]))
    assert 3 < yaw[0] < 20 and -25 < pitch[0] < 0 and abs(roll[0]) < 8, (yaw, pitch, roll)
    assert yaw[1] < 0 and abs(yaw[0] + yaw[1]) < 4, yaw
    assert abs(pitch[0] - pitch[1]) < 4


def test_mirroring_the_group_photo_flips_the_sign_of_yaw(photo_detector, t1_rgb, t1_faces):
    mirrored = np.ascontiguousarray(t1_rgb[:, ::-1])
    # Left to right in the original = right to left in the mirror.
    flipped = sorted(photo_detector.detect_all(mirrored), key=lambda d: -float(d.bbox[2]))
    assert len(flipped) == 6
    yaw, _, _ = head_pose(np.stack([f.kps for f in t1_faces]))
    yaw_mirrored, _, _ = head_pose(np.stack([f.kps for f in flipped]))
    turned = np.abs(yaw) > 10
    assert turned.sum() >= 3, yaw  # three faces are clearly turned (to their right)
    assert np.all(np.sign(yaw[turned]) == -np.sign(yaw_mirrored[turned])), (yaw, yaw_mirrored)
    assert np.all(np.abs(yaw + yaw_mirrored) < 10), (yaw, yaw_mirrored)


def test_per_face_cameras_set_each_faces_projection():
    a = pinhole_kps([(15, 5, 0)], (640, 480))
    b = pinhole_kps([(-25, -10, 5)], (64, 64), offset=(0, 0), depth=130)
    cameras = np.stack([camera_matrix(640, 480), camera_matrix(64, 64)])
    yaw, pitch, roll = head_pose(np.concatenate([a, b]), cameras)
    np.testing.assert_allclose(
        np.stack([yaw, pitch, roll], 1), [[15, 5, 0], [-25, -10, 5]], atol=1e-3
    )


def test_unusable_keypoints_give_nan_and_an_empty_batch_gives_empty_arrays():
    kps = synthetic_kps([(10, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0)])
    kps[1, 2] = np.nan
    kps[2] = 50.0  # all five points on one spot
    kps[3, :, 0], kps[3, :, 1] = np.arange(5.0), 7.0  # all five on one line
    yaw, pitch, roll = head_pose(kps)
    assert not np.isnan(yaw[0]) and np.isnan(yaw[1:]).all() and np.isnan(roll[1:]).all()
    yaw, _, _ = head_pose(kps[:3], camera_matrix(640, 480))
    assert not np.isnan(yaw[0]) and np.isnan(yaw[1:]).all()
    for camera in (None, camera_matrix(64, 64)):
        empty = head_pose(np.zeros((0, 5, 2)), camera)
        assert all(values.shape == (0,) and values.dtype == np.float64 for values in empty)


@pytest.mark.parametrize(
    ("kps", "camera"),
    [
        (np.zeros((2, 68, 2)), None),
        (np.zeros((5, 2)), None),
        (np.zeros((2, 5, 2)), np.eye(2)),
        (np.zeros((2, 5, 2)), np.stack([np.eye(3)] * 3)),
        (np.zeros((2, 5, 2)), np.zeros((3, 3))),
    ],
)
def test_it_rejects_bad_shapes_and_cameras(kps, camera):
    with pytest.raises(ValueError):
        head_pose(kps, camera)


def test_a_faces_angles_do_not_depend_on_the_rest_of_the_batch():
    rng = np.random.default_rng(4)
    angles = rng.uniform([-40, -30, -20], [40, 30, 20], (32, 3))
    kps = synthetic_kps(angles) + rng.normal(0.0, 1.5, (32, 5, 2))  # noisy: slow convergence
    together = np.stack(head_pose(kps), axis=1)
    alone = np.array([np.stack(head_pose(kps[i : i + 1]), axis=1)[0] for i in range(32)])
    np.testing.assert_array_equal(together, alone)
