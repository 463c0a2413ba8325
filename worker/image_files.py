"""The audit's images as stored files: lossless PNG bytes written by generation, read by scoring.

Pixels are ``(H, W, 3) uint8`` RGB in memory; OpenCV works in BGR, so both directions flip the
channel order here and nowhere else.
"""

from __future__ import annotations

import cv2
import numpy as np

from exports.files import open_stream
from worker.state import StageError


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG of an ``(H, W, 3) uint8`` RGB image, with fixed settings so the bytes are
    reproducible."""
    ok, buf = cv2.imencode(".png", pixels[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise StageError("could not encode a PNG image")
    return buf.tobytes()


def read_image(name: str) -> np.ndarray:
    """The stored image ``name`` as ``(H, W, 3) uint8`` RGB; a StageError if it cannot be
    decoded."""
    with open_stream(name) as f:  # one GET on an object store (no HEAD first)
        data = np.frombuffer(f.read(), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise StageError(f"stored image {name} cannot be decoded")
    return np.ascontiguousarray(img[:, :, ::-1])
