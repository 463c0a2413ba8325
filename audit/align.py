"""Face alignment to the 112x112 ArcFace 5-point template.

Uses ``insightface.utils.face_align.norm_crop``: a similarity transform (rotation, uniform scale,
translation) fitted by least squares (Umeyama) from the five detected keypoints to the ArcFace
template (eyes at about (38.3, 51.7) and (73.5, 51.5), nose (56.0, 71.7), mouth corners
(41.5, 92.4) and (70.7, 92.2) in a 112 crop), then a bilinear warp with black borders. Recognition
and attribute models in :mod:`audit.recognition` and :mod:`audit.sensors` expect this crop.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from insightface.utils.face_align import norm_crop

from .detection import Detection, check_image, upscale_small


def align_face(image_rgb: np.ndarray, kps: np.ndarray, size: int = 112) -> np.ndarray:
    """One aligned crop, (size, size, 3) uint8 RGB.

    image_rgb: HxWx3 uint8 RGB; kps: (5, 2) keypoints in that image's pixels.
    Small images (short side < 128 px) are first upscaled bicubically, by the same rule as
    detection, and the keypoints scaled with them: warping a bicubic upscale gives a sharper
    crop than stretching a 64-px face with the warp's bilinear interpolation alone.
    """
    upscaled, sx, sy = upscale_small(check_image(image_rgb))
    kps = np.asarray(kps, dtype=np.float64).reshape(5, 2)
    scaled = np.stack([(kps[:, 0] + 0.5) * sx - 0.5, (kps[:, 1] + 0.5) * sy - 0.5], axis=1)
    return norm_crop(upscaled, scaled.astype(np.float32), image_size=size)


def align_faces(
    images_rgb: Sequence[np.ndarray], detections: Sequence[Detection], size: int = 112
) -> np.ndarray:
    """Aligned crops for a batch, (N, size, size, 3) uint8 RGB.

    images_rgb: N HxWx3 uint8 RGB images (sizes may differ); detections: one per image, in those
    images' pixels (as :meth:`audit.detection.FaceDetector.detect_batch` returns them).
    Rows for images whose detection has ``found=False`` are all zeros: callers must mask them with
    the detections, not feed them to a model as faces. ``size`` must be a multiple of 112 or 128
    (insightface's template rule).
    """
    if len(images_rgb) != len(detections):
        raise ValueError(f"{len(images_rgb)} images but {len(detections)} detections")
    out = np.zeros((len(images_rgb), size, size, 3), dtype=np.uint8)
    for i, (image, detection) in enumerate(zip(images_rgb, detections, strict=True)):
        if detection.found and detection.kps is not None:
            out[i] = align_face(image, detection.kps, size)
    return out
