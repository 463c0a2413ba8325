"""The sensing callable the generator's checks and direction learning use, built from an
:class:`audit.analysis.FaceAnalyzer` (generator/ stays free of audit/ imports)."""

from __future__ import annotations

import numpy as np

OPTIONAL = ("yaw", "pitch", "roll", "sharpness", "illumination_uniformity")


def make_sense(analyzer, drift_model: str | None = None):
    """``sense(images (N,H,W,3) uint8) -> {"face_found", sensors..., "embedding"?}``.

    ``drift_model`` names the recognizer (loaded in ``analyzer``) whose embeddings measure
    identity drift from the baseline."""

    def sense(images: np.ndarray) -> dict[str, np.ndarray]:
        b = analyzer.analyze(list(images))
        out = {"face_found": np.asarray(b.face_found), "male_probability": b.male_probability,
               "age": b.age, "ita": b.ita, "brightness": b.brightness}
        for name in OPTIONAL:
            if hasattr(b, name):
                out[name] = getattr(b, name)
        if drift_model is not None:
            out["embedding"] = b.embeddings[drift_model]
        return out

    return sense
