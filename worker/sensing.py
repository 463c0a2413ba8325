"""The sensing callable the generator's checks and direction learning use, built from
:class:`audit.analysis.FaceAnalyzer` instances (generator/ stays free of audit/ imports).

Many small ONNX inferences use two cores poorly from one session; one single-threaded session
per core, fed halves of the batch from a thread pool (onnxruntime releases the GIL), was 1.4x
faster on 2 cores (8.6 vs 12.3 ms per 64-px face, bench/bench_generation.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

OPTIONAL = ("yaw", "pitch", "roll", "sharpness", "illumination_uniformity", "skin_tone_index",
            "skin_hue", "smile", "mouth_open")


def make_sense(analyzers: Sequence, drift_model: str | None = None,
               plain_analyzers: Sequence | None = None):
    """``sense(images (N,H,W,3) uint8, embed=True) -> {"face_found", sensors..., "embedding"?}``.

    ``analyzers``: one or more FaceAnalyzers loading ``drift_model`` (the recognizer whose
    embeddings measure identity drift); the batch is split across them in threads.
    ``plain_analyzers``: the same without a recognizer, used when ``embed=False``.
    """
    analyzers = list(analyzers)
    plain = list(plain_analyzers or analyzers)
    pool = ThreadPoolExecutor(max(len(analyzers), len(plain))) if len(analyzers) > 1 else None

    def run(group: list, images: list) -> list:
        if pool is None or len(images) < 2 * len(group):
            return [group[0].analyze(images)]
        parts = np.array_split(np.arange(len(images)), len(group))
        return list(pool.map(lambda a_idx: a_idx[0].analyze([images[i] for i in a_idx[1]]),
                             zip(group, parts, strict=True)))

    def sense(images: np.ndarray, embed: bool = True) -> dict[str, np.ndarray]:
        use_embedding = embed and drift_model is not None
        batches = run(analyzers if use_embedding else plain, list(images))

        def cat(name: str) -> np.ndarray:
            return np.concatenate([np.asarray(getattr(b, name)) for b in batches])

        out = {"face_found": cat("face_found"), "male_probability": cat("male_probability"),
               "age": cat("age"), "ita": cat("ita"), "brightness": cat("brightness")}
        for name in OPTIONAL:
            if getattr(batches[0], name, None) is not None:
                out[name] = cat(name)
        if use_embedding:
            out["embedding"] = np.concatenate([b.embeddings[drift_model] for b in batches])
        return out

    return sense
