"""Group labels from attribute sensors: the labeller that decides which group a candidate joins."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

COARSE_SKIN = {"lighter", "darker"}


def age_band(age: float) -> str:
    """Perceived age band of the ``age_band`` axis (years)."""
    if age < 30:
        return "under_30"
    return "30_to_49" if age < 50 else "50_plus"


def make_labeller(analyzer, axes: Mapping[str, Sequence[str]]):
    """Return ``labeller(images (N,H,W,3) uint8) -> list[dict | None]`` for
    :func:`generator.identities.sample_identities`: one label per configured axis plus the raw
    sensor readings, or None where no face was found."""
    from audit.sensors import coarse_skin_tone, ita_band, perceived_gender

    coarse = set(axes.get("skin_tone", ())) <= COARSE_SKIN

    def labeller(images: np.ndarray) -> list[dict[str, Any] | None]:
        batch = analyzer.analyze(list(images))
        out: list[dict[str, Any] | None] = []
        for i in range(len(images)):
            if not batch.face_found[i]:
                out.append(None)
                continue
            p_male, age, ita = (float(batch.male_probability[i]), float(batch.age[i]),
                                float(batch.ita[i]))
            if not all(math.isfinite(v) for v in (p_male, age, ita)):
                out.append(None)
                continue
            labels: dict[str, Any] = {
                "perceived_gender": perceived_gender(p_male),
                "skin_tone": coarse_skin_tone(ita) if coarse else ita_band(ita),
                "age_band": age_band(age),
            }
            labels["sensors"] = {"male_probability": p_male, "age": age, "ita": ita,
                                 "brightness": float(batch.brightness[i]),
                                 "det_score": float(batch.det_score[i])}
            out.append(labels)
        return out

    return labeller
