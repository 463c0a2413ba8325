"""Group labels from attribute sensors: the labeller that decides which group a candidate joins."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

COARSE_SKIN = {"lighter", "darker"}
#: Readings a generator's baseline rule may look at (generator.mobilestylegan.accepts_baseline).
RULE_SENSORS = ("brightness", "yaw", "pitch", "smile", "mouth_open", "illumination_uniformity")


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


#: Skin tone index degrees on either side of the lighter/darker split where a face joins
#: neither group: an edit may move the index by up to the generators' hold tolerance (2.5
#: degrees, generator.mobilestylegan.CHECK_POLICY) before it counts as moved, so a face that
#: starts this far from the split cannot cross it in an edit that passes its checks.
SKIN_SPLIT_MARGIN = 2.5


def _coarse_skin(index: float) -> str:
    """"lighter" / "darker" by the skin tone index, "ambiguous" within
    :data:`SKIN_SPLIT_MARGIN` of the split (such a face joins no coarse skin tone group)."""
    from audit.sensors import SKIN_TONE_INDEX_LIGHTER_ABOVE as split
    from audit.sensors import coarse_skin_tone_from_index

    if abs(index - split) < SKIN_SPLIT_MARGIN:
        return "ambiguous"
    return coarse_skin_tone_from_index(index)


def group_bands(group) -> list:
    """Where a candidate aimed at ``group`` should land, as :class:`generator.guidance.Band` s
    on the sensors that decide its labels (guided sampling, :mod:`generator.guidance`), a
    margin inside each boundary of about two residual standard deviations of the linear
    prediction, so that the sensors, not the prediction, have the last word: perceived gender's
    logit beyond +-1.5 (probability 0.18 / 0.82), the skin tone index 3.5 degrees past its
    lighter/darker split, age 4 years inside its band. ITA bands are not aimed (ITA follows the
    lighting the latent also sets)."""
    from audit.sensors import SKIN_TONE_INDEX_LIGHTER_ABOVE as split
    from generator.guidance import Band

    want = group.as_dict
    bands = []
    if want.get("perceived_gender") == "female":
        bands.append(Band("male_probability", high=-1.5))
    elif want.get("perceived_gender") == "male":
        bands.append(Band("male_probability", low=1.5))
    if want.get("skin_tone") == "lighter":
        bands.append(Band("skin_tone_index", low=split + 3.5))
    elif want.get("skin_tone") == "darker":
        bands.append(Band("skin_tone_index", high=split - 3.5))
    age = {"under_30": (None, 26.0), "30_to_49": (34.0, 45.0), "50_plus": (54.0, None)}
    if want.get("age_band") in age:
        lo, hi = age[want["age_band"]]
        bands.append(Band("age", low=lo, high=hi))
    return bands


def age_band(age: float) -> str:
    """Perceived age band of the ``age_band`` axis (years)."""
    if age < 30:
        return "under_30"
    return "30_to_49" if age < 50 else "50_plus"


def make_labeller(analyzer, axes: Mapping[str, Sequence[str]]):
    """Return ``labeller(images (N,H,W,3) uint8) -> list[dict | None]`` for
    :func:`generator.identities.sample_identities`: one label per configured axis plus the raw
    sensor readings, or None where no face was found."""
    from audit.sensors import ita_band, perceived_gender

    coarse = set(axes.get("skin_tone", ())) <= COARSE_SKIN

    def labeller(images: np.ndarray) -> list[dict[str, Any] | None]:
        batch = analyzer.analyze(list(images))
        out: list[dict[str, Any] | None] = []
        for i in range(len(images)):
            if not batch.face_found[i]:
                out.append(None)
                continue
            p_male, age, ita, tone = (float(batch.male_probability[i]), float(batch.age[i]),
                                      float(batch.ita[i]), float(batch.skin_tone_index[i]))
            if not all(math.isfinite(v) for v in (p_male, age, ita, tone)):
                out.append(None)
                continue
            labels: dict[str, Any] = {
                "perceived_gender": perceived_gender(p_male),
                "skin_tone": _coarse_skin(tone) if coarse else ita_band(ita),
                "age_band": age_band(age),
            }
            labels["sensors"] = {"male_probability": p_male, "age": age, "ita": ita,
                                 "skin_tone_index": tone,
                                 **{k: _finite(getattr(batch, k)[i]) for k in RULE_SENSORS},
                                 "det_score": float(batch.det_score[i])}
            out.append(labels)
        return out

    return labeller
