"""Attribute directions in a latent space, learned from data (InterFaceGAN).

Shen et al., "Interpreting the latent space of GANs for semantic face editing" (CVPR 2020): sample
many latents, label the generated faces with attribute sensors, fit a linear model of each
attribute on the latent; the model's unit normal is the attribute's direction. Moving a latent
along it changes the attribute. *Conditional* editing projects out the directions of attributes
that must stay fixed, so the edit moves one attribute and (to first order) not the others.

Here each attribute is fitted by ridge regression of the sensor reading on the latent (a
continuous version of InterFaceGAN's linear SVM; a probability is regressed on its logit), and
the fit's slope says how many sensor units one latent unit along the direction is worth, which
turns an edit asked for in sensor units into a first guess of the step.

A :class:`DirectionSet` is cached per generator weights hash and sensor version, since a change of
either invalidates it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from generator.backends import LatentGenerator
from generator.design import derive_seed

# images (N, H, W, 3) uint8 -> {"face_found": (N,) bool, sensor name: (N,) float, NaN = no face}
Sense = Callable[[np.ndarray], dict[str, np.ndarray]]
Progress = Callable[[int, int], None]  # (samples sensed, samples wanted)

LOGIT_SENSORS = frozenset({"male_probability"})

#: The least held-out R^2 a direction needs before edits may step along it. Below it the
#: attribute is too far from linear in the latent (or the sensor too noisy) for the fitted slope
#: to predict a step: the search wanders, and what moves along the direction is mostly other
#: attributes. 0.3 keeps MobileStyleGAN's yaw (0.85), age and lighting (0.5-0.6, 1,500 samples).
MIN_EDIT_R2 = 0.3


#: Fewest faces with a reading that a direction is fitted from.
MIN_FIT_SAMPLES = 20


class UnreliableDirection(ValueError):
    """A direction whose held-out R^2 is below :data:`MIN_EDIT_R2`."""


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Direction:
    """A unit direction for one sensor.

    vector: ``(latent_dim,)`` float64, unit length. slope: sensor units (logit units for
    probabilities) per latent unit along ``vector``. r2: R^2 on held-out samples (how linear the
    attribute is in the latent). n: samples used.
    """

    sensor: str
    vector: np.ndarray
    slope: float
    intercept: float
    r2: float
    n: int

    @property
    def transform(self) -> str:
        return "logit" if self.sensor in LOGIT_SENSORS else "identity"


@dataclass(frozen=True)
class DirectionSet:
    """Directions of several sensors for one generator, with what they were learned from."""

    model_id: str
    weights_sha256: str
    sensor_version: str
    n_samples: int
    seed: int
    directions: dict[str, Direction] = field(default_factory=dict)

    def conditional(self, sensor: str, hold: Sequence[str]) -> np.ndarray:
        """Direction of ``sensor`` with the span of the ``hold`` directions projected out,
        renormalised (InterFaceGAN's conditional manipulation). ``(latent_dim,)`` unit vector."""
        d = self.directions[sensor].vector
        others = [self.directions[h].vector for h in hold if h != sensor and h in self.directions]
        if others:
            q, _ = np.linalg.qr(np.stack(others, axis=1))
            d = d - q @ (q.T @ d)
        norm = np.linalg.norm(d)
        if norm < 1e-6:
            raise ValueError(f"the {sensor} direction lies in the span of the held directions")
        return d / norm

    def check_editable(self, sensors: Sequence[str], min_r2: float = MIN_EDIT_R2) -> None:
        """Raise :class:`UnreliableDirection` naming each sensor whose direction is missing or
        whose held-out R^2 is below ``min_r2``, and the fix."""
        bad = []
        for s in sensors:
            d = self.directions.get(s)
            if d is None:
                bad.append(f"{s} (no direction: the sensor gave no readings)")
            elif not np.isfinite(d.r2) or d.r2 < min_r2:
                bad.append(f"{s} (held-out R^2 {d.r2:.2f} from {d.n:,} faces)")
        if bad:
            raise UnreliableDirection(
                f"{self.model_id} cannot be edited reliably along: {'; '.join(bad)}. A "
                f"direction needs held-out R^2 of at least {min_r2:g}. Relearn it from more "
                "samples (python manage.py learn_directions --samples 4000 --force), or drop "
                "the factor from the audit")

    def conditional_slope(self, sensor: str, hold: Sequence[str]) -> float:
        """Sensor units per latent unit along the conditional direction: the regression's
        gradient projected on it."""
        grad = self.directions[sensor].vector * self.directions[sensor].slope
        return float(grad @ self.conditional(sensor, hold))

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"model_id": self.model_id, "weights_sha256": self.weights_sha256,
                "sensor_version": self.sensor_version, "n_samples": self.n_samples,
                "seed": self.seed,
                "directions": {k: {"slope": d.slope, "intercept": d.intercept, "r2": d.r2,
                                   "n": d.n} for k, d in self.directions.items()}}
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, meta=json.dumps(meta),
                 **{f"vec_{k}": d.vector for k, d in self.directions.items()})
        tmp.replace(path)  # atomic: concurrent workers never read a half-written file

    @classmethod
    def load(cls, path: Path) -> DirectionSet:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            dirs = {k: Direction(sensor=k, vector=data[f"vec_{k}"].astype(np.float64), **v)
                    for k, v in meta.pop("directions").items()}
        return cls(directions=dirs, **meta)


def cache_path(cache_dir: Path, generator: LatentGenerator, sensor_version: str) -> Path:
    """Where ``generator``'s learned directions are cached: by model id, weights hash and sensor
    version, plus the backend's ``latent_version`` when it has one (a backend that changes how
    its latent is parameterised must not reuse directions learned in the old one)."""
    latent = getattr(generator, "latent_version", "")
    return Path(cache_dir) / "directions" / (
        f"{generator.model_id}-{generator.weights_sha256[:16]}-{sensor_version}"
        f"{'-' + latent if latent else ''}.npz")


def learn_directions(
    generator: LatentGenerator,
    sense: Sense,
    sensors: Sequence[str],
    *,
    sensor_version: str,
    n_samples: int = 4000,
    seed: int = 0,
    batch_size: int = 250,
    ridge: float = 1.0,
    holdout: float = 0.2,
    progress: Progress | None = None,
) -> DirectionSet:
    """Sample ``n_samples`` latents (seeds ``derive_seed(seed, "direction-sample", k)``),
    sense their faces, and fit one ridge regression per sensor on the faces that were found.

    R^2 is measured on the last ``holdout`` share of the samples, then the model is refitted on
    all of them.
    """
    seeds = [derive_seed(seed, "direction-sample", k) for k in range(n_samples)]
    latents = generator.sample_latents(seeds).astype(np.float64)
    readings: dict[str, list[np.ndarray]] = {s: [] for s in sensors}
    found: list[np.ndarray] = []
    for start in range(0, n_samples, batch_size):
        r = sense(generator.generate(latents[start:start + batch_size].astype(np.float32)))
        found.append(np.asarray(r["face_found"], dtype=bool))
        for s in sensors:
            readings[s].append(np.asarray(r[s], dtype=np.float64))
        if progress is not None:
            progress(min(start + batch_size, n_samples), n_samples)
    ok_face = np.concatenate(found)
    directions = {}
    for s in sensors:
        y = np.concatenate(readings[s])
        if s in LOGIT_SENSORS:
            y = _logit(y)
        ok = ok_face & np.isfinite(y)
        if ok.sum() < MIN_FIT_SAMPLES:
            continue  # the sensor reads too few of these faces: no direction (refused if asked)
        directions[s] = _fit(latents[ok], y[ok], s, ridge, holdout)
    return DirectionSet(model_id=generator.model_id, weights_sha256=generator.weights_sha256,
                        sensor_version=sensor_version, n_samples=n_samples, seed=seed,
                        directions=directions)


def _fit(z: np.ndarray, y: np.ndarray, sensor: str, ridge: float, holdout: float) -> Direction:
    """Ridge regression ``y ~ z @ w + b``; returns the unit normal ``w / |w|``, slope ``|w|``."""
    if len(y) < MIN_FIT_SAMPLES:
        raise ValueError(f"only {len(y)} usable samples for {sensor}; sample more latents")
    n, d = z.shape
    x = np.c_[z, np.ones(n)]
    penalty = ridge * np.eye(d + 1)
    penalty[-1, -1] = 0.0  # do not shrink the intercept
    cut = int(round(n * (1 - holdout)))
    w = np.linalg.solve(x[:cut].T @ x[:cut] + penalty, x[:cut].T @ y[:cut])
    resid = y[cut:] - x[cut:] @ w
    r2 = 1.0 - float(resid @ resid) / float(((y[cut:] - y[cut:].mean()) ** 2).sum())
    w = np.linalg.solve(x.T @ x + penalty, x.T @ y)
    slope = float(np.linalg.norm(w[:d]))
    return Direction(sensor=sensor, vector=w[:d] / slope, slope=slope, intercept=float(w[d]),
                     r2=r2, n=n)
