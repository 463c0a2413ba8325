"""Image-space factors, applied to a baseline image to make one variant.

Every function maps an ``(H, W, 3) uint8 RGB`` image to a new image of the same shape and is
deterministic given its arguments (the only random factor, ``noise``, takes a seed). Which
function makes which factor, and the levels' units and ranges, are the ``apply``, ``unit``,
``minimum`` and ``maximum`` of the factor's entry in :data:`generator.factor_spec.FACTORS`; a new
image factor is a function here plus that entry.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from generator.factor_spec import IMAGE_FACTORS

Image = np.ndarray  # (H, W, 3) uint8, RGB


def blur(image: Image, sigma: float, seed: int) -> Image:
    """Gaussian blur with standard deviation ``sigma`` pixels (kernel 6 sigma + 1, reflected
    borders)."""
    k = int(2 * round(3 * sigma) + 1)
    return cv2.GaussianBlur(image, (k, k), sigmaX=sigma, sigmaY=sigma,
                            borderType=cv2.BORDER_REFLECT_101)


def downscale(image: Image, short_side: float, seed: int) -> Image:
    """Down-scale so the short side is ``short_side`` pixels (area averaging), then up-scale back
    (bicubic): the detail of a low-resolution capture at the original size."""
    h, w = image.shape[:2]
    scale = float(short_side) / min(h, w)
    small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def jpeg(image: Image, quality: float, seed: int) -> Image:
    """Encode as baseline JPEG at ``quality`` (1-95) and decode again."""
    ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])


def noise(image: Image, sigma: float, seed: int) -> Image:
    """Add i.i.d. Gaussian noise of ``sigma`` grey levels (PCG64 stream from ``seed``), clip."""
    rng = np.random.Generator(np.random.PCG64(seed))
    noisy = image.astype(np.float64) + rng.normal(0.0, sigma, size=image.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def brightness(image: Image, gain: float, seed: int) -> Image:
    """Multiply pixel values by ``gain`` and clip to 0-255 (exposure change)."""
    return np.clip(np.rint(image.astype(np.float64) * gain), 0, 255).astype(np.uint8)


# Vertical position of the eyes in the default generator's 64x64 faces (share of the height).
EYE_LINE = 0.42


def occlusion(image: Image, height_share: float, seed: int) -> Image:
    """Cover a full-width mid-grey (128) band of ``height_share`` of the height centred on the eye
    line, like sunglasses or a visor."""
    out = image.copy()
    h = image.shape[0]
    band = max(1, round(height_share * h))
    top = max(0, round(EYE_LINE * h - band / 2))
    out[top:top + band] = 128
    return out


def control(image: Image, level: float | None, seed: int) -> Image:
    """The control: a null re-capture, shifted right by one pixel (edge repeated) and re-encoded
    as JPEG quality 95. It carries no factor; its mated score is the reference condition."""
    shifted = np.concatenate([image[:, :1], image[:, :-1]], axis=1)
    return jpeg(shifted, 95, seed)


#: Image factor -> its pixel operation, as named by the factor's ``apply`` in
#: :data:`generator.factor_spec.FACTORS` (a KeyError here: an entry names no function above).
APPLY: dict[str, Callable[[Image, float, int], Image]] = {
    name: globals()[spec.apply] for name, spec in IMAGE_FACTORS.items() if spec.apply}
assert set(APPLY) == set(IMAGE_FACTORS), "every image factor in the schema needs an operation"


def apply_factor(image: Image, factor: str, level: float | None, seed: int) -> Image:
    """Apply ``factor`` at ``level`` to a ``(H, W, 3) uint8`` image; returns a new array."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    if factor == "control":
        return control(image, level, seed)
    try:
        fn = APPLY[factor]
    except KeyError:
        raise ValueError(f"unknown factor {factor!r}; choose from {', '.join(APPLY)}") from None
    return fn(image, level, seed)
