"""Aim a candidate latent at a group and at a usable baseline before it is rendered.

Sampling identities by rejection alone is slow for rare groups and for a baseline rule (on
FFHQ-trained generators about 1 face in 5 is a darker-skinned woman and most faces smile). The
learned directions (:mod:`generator.directions`) give a linear prediction of every sensor from
the latent, ``pred_j(u) = b_j + s_j v_j . u``, so a candidate can be moved *before* rendering to
the side of each attribute boundary it needs: the boundaries of the group it is aimed at
(perceived gender logit, skin tone, age band) and the generator's baseline rule (near-frontal,
neutral expression). This is InterFaceGAN's boundary view of the latent space (Shen et al.,
CVPR 2020) used for sampling instead of editing.

The shift is the smallest (minimum-norm) one that sets every aimed sensor's prediction to the
nearest value inside its band and keeps every held sensor's prediction where it was: with
``W`` the rows ``s_j v_j`` of those sensors and ``delta`` the wanted change of each prediction,
``shift = W^T (W W^T)^-1 delta``. A prediction already inside its band is left alone, so the
groups keep their own spread instead of collapsing onto a target. The shift's length is capped
(:data:`MAX_SHIFT`, whitened-latent units) so candidates stay where the generator's faces live.
The sensors still decide: a shifted candidate joins a group only if its rendered face reads as
that group and passes the baseline rule.

Rendering is the costly step (about 0.2 s a face on 2 cores) and mapping a seed to its latent
the cheap one (about 1 ms), so sampling draws several latents per rendered candidate and renders
the first whose aim :func:`aim` reaches within :data:`MAX_SHIFT` (``reached``): a capped shift
stops short of the bands, and such faces mostly missed their group (darker-skinned groups:
16-21% of aimed candidates matched with capped shifts, 61-64% when screened).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from generator.directions import MIN_EDIT_R2, DirectionSet

#: Longest shift, in latent units (whitened W is about N(0, I), so a latent's norm is about
#: sqrt(512) = 22.6 and a yaw edit of 15 degrees is about 1.5 units).
MAX_SHIFT = 3.0


@dataclass(frozen=True)
class Band:
    """Where a sensor's prediction should end up, in its regression units (a logit for
    probabilities, see :data:`generator.directions.LOGIT_SENSORS`); None = unbounded."""

    sensor: str
    low: float | None = None
    high: float | None = None

    def nearest(self, value: float) -> float:
        lo = -np.inf if self.low is None else self.low
        hi = np.inf if self.high is None else self.high
        return float(np.clip(value, lo, hi))


def merge(bands: Sequence[Band]) -> list[Band]:
    """One band per sensor: the intersection of the bands given for it (the tighter bound on
    each side), in the order the sensors first appear."""
    out: dict[str, Band] = {}
    for b in bands:
        if b.sensor in out:
            old = out[b.sensor]
            lows = [x for x in (old.low, b.low) if x is not None]
            highs = [x for x in (old.high, b.high) if x is not None]
            b = Band(b.sensor, max(lows) if lows else None, min(highs) if highs else None)
        out[b.sensor] = b
    return list(out.values())


def predict(directions: DirectionSet, sensor: str, latents: np.ndarray) -> np.ndarray:
    """Linear prediction ``(N,)`` of ``sensor`` for latents ``(N, D)`` (regression units)."""
    d = directions.directions[sensor]
    return d.intercept + d.slope * (np.asarray(latents, dtype=np.float64) @ d.vector)


def shift_into_bands(latents: np.ndarray, directions: DirectionSet,
                     bands: Sequence[Sequence[Band]], hold: Sequence[str] = (),
                     max_shift: float = MAX_SHIFT, min_r2: float = MIN_EDIT_R2) -> np.ndarray:
    """Per latent ``(N, D)``, the minimum-norm shift ``(N, D)`` that moves the predictions of
    its ``bands[i]`` sensors into their bands and keeps the ``hold`` sensors' predictions,
    capped at ``max_shift`` (see :func:`aim`)."""
    return aim(latents, directions, bands, hold, max_shift, min_r2)[0]


def aim(latents: np.ndarray, directions: DirectionSet, bands: Sequence[Sequence[Band]],
        hold: Sequence[str] = (), max_shift: float = MAX_SHIFT,
        min_r2: float = MIN_EDIT_R2) -> tuple[np.ndarray, np.ndarray]:
    """``(shifts (N, D), reached (N,) bool)``: the capped minimum-norm shifts of
    :func:`shift_into_bands`, and whether each uncapped shift was at most ``max_shift`` long,
    i.e. whether the shifted latent's predictions are inside every band (a candidate worth
    rendering, :func:`generator.identities.sample_identities`). Sensors without a direction of
    held-out R^2 at least ``min_r2`` are skipped (their prediction is too poor to aim with)."""
    latents = np.asarray(latents, dtype=np.float64)
    out = np.zeros_like(latents)
    reached = np.ones(len(latents), dtype=bool)
    usable = {k for k, d in directions.directions.items() if np.isfinite(d.r2) and d.r2 >= min_r2}
    preds = {s: predict(directions, s, latents) for s in usable}  # (N,) each, one product
    for i, row in enumerate(bands):
        aimed = [b for b in merge(row) if b.sensor in usable]
        held = [s for s in hold if s in usable and s not in {b.sensor for b in aimed}]
        if not aimed:
            continue
        names = [b.sensor for b in aimed] + held
        pred = np.array([preds[s][i] for s in names])
        want = np.array([b.nearest(p) for b, p in zip(aimed, pred, strict=False)]
                        + list(pred[len(aimed):]))
        delta = want - pred
        if not np.any(np.abs(delta) > 1e-9):
            continue
        w = np.stack([directions.directions[s].slope * directions.directions[s].vector
                      for s in names])
        shift = w.T @ np.linalg.solve(w @ w.T + 1e-9 * np.eye(len(names)), delta)
        norm = float(np.linalg.norm(shift))
        reached[i] = norm <= max_shift
        out[i] = shift * (max_shift / norm if norm > max_shift else 1.0)
    return out, reached


def shifted(latents: np.ndarray, shifts: Sequence[Sequence[float] | None]) -> np.ndarray:
    """``latents (N, D)`` plus each stored shift (None = no shift), as float32."""
    out = np.asarray(latents, dtype=np.float64).copy()
    for i, s in enumerate(shifts):
        if s is not None:
            out[i] += np.asarray(s, dtype=np.float64)
    return out.astype(np.float32)


class ShiftedLatents:
    """A latent generator whose latent for seed ``k`` is the original one plus ``shifts[k]``
    (an identity's stored guidance shift); everything else is the wrapped generator's."""

    def __init__(self, generator, shifts: Mapping[int, Sequence[float]]):
        self._g = generator
        self._shifts = {int(k): v for k, v in shifts.items()}

    def __getattr__(self, name):
        return getattr(self._g, name)

    def sample_latents(self, seeds):
        return shifted(self._g.sample_latents(list(seeds)),
                       [self._shifts.get(int(s)) for s in seeds])

    def generate(self, latents):
        return self._g.generate(latents)
