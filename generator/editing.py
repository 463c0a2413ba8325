"""Render an identity's variants and check each one did what it claims (generator
accountability).

For every identity: the baseline from its latent; each *image* factor applied to the baseline's
pixels; each *latent* factor reached by a search along the attribute's conditional direction until
its sensor shows the requested change. Every image is then sensed and checked:

- face found;
- on target (latent edits): the intended sensor moved by the requested amount, within
  ``max(abs tolerance, rel_tol x |request|)``;
- others held: the other sensors stayed within their tolerances of the baseline; sensors a factor legitimately moves are not held (its ``affects`` in
  :data:`generator.factor_spec.FACTORS`, collected in :data:`AFFECTS`);
- identity kept (latent edits): cosine similarity to the baseline, measured by an *identity
  judge*: an FR model that is neither under test nor the one that conditioned the generator
  (``worker.runtime.choose_identity_judge``), against a cut-off fixed once per audit before any
  edit is judged: the 99th percentile of the judge's similarities between *different*
  identities' baselines over the whole audit (:func:`identity_cutoff`), so the edited face is
  still closer to its own baseline than 99% of impostor pairs are to each other. One cut-off for
  every batch and group: the rule cannot differ between groups or with how the work is split.

An edit is *usable* for the FR comparisons (``edit_ok``) when the face is found, the edit reached
its target and the other attributes held; the judge's verdict does not decide that (judging
identity with the model under test would censor exactly the failures the audit measures), it
only marks the variants a second, "judged same person" view of the results leaves out.

Prompt factors of the diffusion backends (``check_image(..., prompt_level=level)``, used by
:mod:`generator.diffusion.variants`) get the same checks: face found; others held, where the sensors
a prompt factor legitimately moves are :data:`PROMPT_AFFECTS` (per level where it matters,
:func:`prompt_affects`); on target only where a sensor can tell (:data:`PROMPT_TARGETS`: pose
left/right/profile by yaw, up/down by pitch, lighting dim/bright by brightness), otherwise
``on_target`` is None (not measurable, e.g. expressions and accessories: no sensor reads a smile
or a hat); identity kept as for latent edits. A prompt edit passes when the face is found, the
others are held, the identity is kept (or not measured) and ``on_target`` is not False.

Image factors are deterministic pixel operations on the same face, so only "face found" decides
whether they pass (a degraded face that an FR model no longer recognises is the effect being
measured, not a generator failure); their sensor deltas are still recorded. A latent edit that
fails is searched again with a new sub-seed up to ``max_attempts`` times: a jittered secant step
for the target, and for every held sensor that broke, a Newton step back along that sensor's own
direction (made orthogonal to the edit), by its change over its slope. The best attempt is kept
and reported as failed if none passed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from generator.backends import LatentGenerator
from generator.design import Variant, derive_seed
from generator.directions import LOGIT_SENSORS, DirectionSet
from generator.factor_spec import (
    FACTORS,
    IMAGE,
    LATENT,
    PROMPT_FACTOR_SPECS,
    PromptTarget,
)
from generator.render import RenderedImage, image_variant, latent_recipe

# sense(images (N,H,W,3) uint8, embed=True) -> {"face_found": (N,) bool, sensor: (N,) float,
# and when embed: "embedding": (N, D) unit rows for identity drift}
Sense = Callable[..., dict[str, np.ndarray]]

#: Sensors that must stay put unless the factor legitimately moves them.
#: A generator's :class:`CheckPolicy` gives each its tolerance; one without a tolerance is
#: recorded, not held (the DCGAN's policy does not hold the skin tone index or the smile).
HELD = ("yaw", "pitch", "age", "ita", "skin_tone_index", "brightness", "male_probability",
        "smile")
#: Directions held fixed (projected out) during a latent edit.
HELD_DIRECTIONS = ("yaw", "pitch", "age", "ita", "skin_tone_index", "brightness",
                   "male_probability", "smile")
#: Sensors each factor legitimately moves (not held), from :data:`generator.factor_spec.FACTORS`.
AFFECTS: dict[str, frozenset[str]] = {name: spec.affects for name, spec in FACTORS.items()}
#: Sensors each *prompt* factor of the diffusion backends legitimately moves, and the levels that
#: move another set (:data:`generator.factor_spec.PROMPT_FACTOR_SPECS`; "lighting" there is a
#: named phrase, not the latent "lighting" edit of :data:`AFFECTS`).
PROMPT_AFFECTS: dict[str, frozenset[str]] = {
    name: spec.affects for name, spec in PROMPT_FACTOR_SPECS.items()}
PROMPT_LEVEL_AFFECTS: dict[tuple[str, str], frozenset[str]] = {
    (name, level): moved for name, spec in PROMPT_FACTOR_SPECS.items()
    for level, moved in spec.level_affects.items()}
#: Prompt levels whose effect a sensor can confirm (the ``targets`` of
#: :data:`generator.factor_spec.PROMPT_FACTOR_SPECS`). Levels not listed (expressions,
#: accessories, side light, backlight) have ``on_target`` None: not measurable.
PROMPT_TARGETS: dict[tuple[str, str], PromptTarget] = {
    (name, level): target for name, spec in PROMPT_FACTOR_SPECS.items()
    for level, target in spec.targets.items()}


def prompt_affects(factor: str, level: str) -> frozenset[str]:
    """The sensors prompt factor ``factor`` at ``level`` may move (not held); none for a name
    that is not a prompt factor."""
    spec = PROMPT_FACTOR_SPECS.get(factor)
    return spec.affected(level) if spec is not None else frozenset()


@dataclass(frozen=True)
class CheckPolicy:
    """Tolerances of the checks, in each sensor's unit (see ``audit.sensors.SENSOR_UNITS``).

    A check cannot be stricter than the sensor's own repeatability. The defaults come from
    ``bench/calibrate_sensors.py``: each sensor's change under null edits (JPEG quality 90
    re-encoding, a 1-pixel shift) on 500 default-generator faces. Seen: p99 of the change 0.23
    (male probability), 19 years (age), 9.7 degrees (ITA), 3.7 grey levels (brightness); p95 10
    years for age. Hold tolerances sit at about those p99s (brightness at twice it, since latent
    edits leak a little light); target tolerances at the p95. Perceived age on 64-px faces is
    that noisy: age edits below about 20 years cannot be confirmed.
    """

    target_abs_tol: dict[str, float] = field(default_factory=lambda: {
        "yaw": 5.0, "pitch": 5.0, "age": 10.0, "brightness": 4.0})
    target_rel_tol: float = 0.3
    hold_tol: dict[str, float] = field(default_factory=lambda: {
        "yaw": 10.0, "pitch": 10.0, "age": 20.0, "ita": 10.0, "brightness": 8.0,
        "male_probability": 0.25})
    #: The identity judge's cut-off (cosine). Audits set it from their own baselines
    #: (:func:`identity_cutoff`); None: identity is not judged (``identity_kept`` stays None).
    #: The default is MobileFaceNet's impostor p99 on default faces, for direct library use.
    identity_min_similarity: float | None = 0.45
    #: Name of the FR model that judges identity (recorded in every check).
    identity_judge: str | None = None
    max_attempts: int = 4
    max_step: float = 4.0  # latent units; the DCGAN latent is N(0, I_100), norm about 10

    def as_dict(self) -> dict[str, Any]:
        return {"target_abs_tol": self.target_abs_tol, "target_rel_tol": self.target_rel_tol,
                "hold_tol": self.hold_tol,
                "identity_min_similarity": self.identity_min_similarity,
                "identity_judge": self.identity_judge,
                "max_attempts": self.max_attempts, "max_step": self.max_step}


def _value(readings: dict[str, np.ndarray], key: str, i: int) -> float:
    v = readings.get(key)
    return float(v[i]) if v is not None else float("nan")


def check_image(base: dict[str, np.ndarray], bi: int, var: dict[str, np.ndarray], vi: int,
                factor: str, requested: float | None, policy: CheckPolicy, *,
                prompt_level: str | None = None) -> dict[str, Any]:
    """The checks of variant ``vi`` of readings ``var`` against baseline ``bi`` of ``base``.

    With ``prompt_level``, ``factor`` is a prompt factor of the diffusion backends at that named
    level (``requested`` is ignored; the target comes from :data:`PROMPT_TARGETS`)."""
    found = bool(var["face_found"][vi]) and bool(base["face_found"][bi])
    if prompt_level is not None:
        return _check_prompt(base, bi, var, vi, factor, prompt_level, policy, found)
    spec = FACTORS.get(factor)
    latent = spec is not None and spec.kind == LATENT
    out: dict[str, Any] = {"face_found": found, "target_sensor": spec.sensor if latent else None,
                           "requested": requested if latent else None, "achieved": None,
                           "on_target": None, "deltas": {}, "broken": [],
                           "identity_similarity": None, "identity_kept": None}
    if not found:
        out.update(others_held=None, edit_ok=False, passed=False)
        return out
    affects = AFFECTS.get(factor, frozenset())
    _hold_and_identity(out, base, bi, var, vi, affects, policy)
    if latent:
        achieved = out["deltas"].get(spec.sensor)
        out["achieved"] = achieved
        tol = max(policy.target_abs_tol.get(spec.sensor, 0.0),
                  policy.target_rel_tol * abs(requested or 0.0))
        out["on_target"] = achieved is not None and abs(achieved - requested) <= tol
        _judge(out, policy)
        out["edit_ok"] = bool(out["on_target"] and out["others_held"])
        out["passed"] = bool(out["edit_ok"] and out["identity_kept"] is not False)
    else:
        out["edit_ok"] = out["passed"] = True
    return out


def _judge(out: dict[str, Any], policy: CheckPolicy) -> None:
    """Fill ``identity_judge``, ``identity_threshold`` and ``identity_kept`` of ``out`` from its
    ``identity_similarity`` and the audit's cut-off."""
    out["identity_judge"] = policy.identity_judge
    if out["identity_similarity"] is not None and policy.identity_min_similarity is not None:
        out["identity_threshold"] = round(float(policy.identity_min_similarity), 4)
        out["identity_kept"] = out["identity_similarity"] >= policy.identity_min_similarity


def _hold_and_identity(out: dict[str, Any], base: dict[str, np.ndarray], bi: int,
                       var: dict[str, np.ndarray], vi: int, affects: frozenset[str],
                       policy: CheckPolicy) -> None:
    """Fill ``deltas``, ``broken``, ``others_held`` and ``identity_similarity`` of ``out``."""
    for s in HELD:
        b, v = _value(base, s, bi), _value(var, s, vi)
        if not (np.isfinite(b) and np.isfinite(v)):
            continue
        delta = v - b
        out["deltas"][s] = round(delta, 4)
        if s not in affects and abs(delta) > policy.hold_tol.get(s, np.inf):
            out["broken"].append(s)
    out["others_held"] = not out["broken"]
    if "embedding" in var and "embedding" in base:
        sim = float(np.dot(var["embedding"][vi], base["embedding"][bi]))
        if np.isfinite(sim):
            out["identity_similarity"] = round(sim, 4)


def _check_prompt(base: dict[str, np.ndarray], bi: int, var: dict[str, np.ndarray], vi: int,
                  factor: str, level: str, policy: CheckPolicy, found: bool) -> dict[str, Any]:
    """:func:`check_image` for a prompt edit (see the module docstring)."""
    target = PROMPT_TARGETS.get((factor, level))
    out: dict[str, Any] = {
        "face_found": found, "prompt_factor": factor, "prompt_level": level,
        "target_sensor": target.sensor if target else None,
        "requested": target.requested if target else None,
        "target_rule": target.rule() if target else None, "achieved": None, "on_target": None,
        "deltas": {}, "broken": [], "identity_similarity": None, "identity_kept": None}
    if not found:
        out.update(others_held=None, edit_ok=False, passed=False)
        return out
    _hold_and_identity(out, base, bi, var, vi, prompt_affects(factor, level), policy)
    if target is not None:
        b, v = _value(base, target.sensor, bi), _value(var, target.sensor, vi)
        change = v - b
        if target.relative:
            change = 100.0 * change / b if b > 0 else float("nan")
        if np.isfinite(change):  # otherwise the sensor could not tell: on_target stays None
            out["achieved"] = round(float(change), 4)
            moved = change * target.sign if target.sign else abs(change)
            out["on_target"] = bool(moved >= target.min_change)
    _judge(out, policy)
    out["edit_ok"] = bool(out["on_target"] is not False and out["others_held"])
    out["passed"] = bool(out["edit_ok"] and out["identity_kept"] is not False)
    return out


def identity_cutoff(embeddings: np.ndarray, quantile: float = 99.0) -> tuple[float | None, int]:
    """The identity judge's cut-off for a whole audit: the ``quantile`` (percent) of cosine
    similarities between different identities' baselines.

    ``embeddings``: ``(N, D)`` unit rows, one per baseline where the judge found a face (rows
    with NaN are ignored). Returns ``(cut-off, number of impostor pairs)``; the cut-off is None
    when fewer than two baselines remain (then identity cannot be judged). Computed once per
    audit, before any edit is judged, so the rule does not depend on batches or groups.
    """
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.ndim != 2:
        return None, 0
    emb = emb[np.isfinite(emb).all(axis=1)]
    n = len(emb)
    if n < 2:
        return None, 0
    sims = (emb @ emb.T)[np.triu_indices(n, 1)]
    return float(np.percentile(sims, quantile)), int(len(sims))


def render_and_check(
    generator: LatentGenerator,
    latent_seeds: Sequence[int],
    variants: Sequence[Variant],
    audit_seed: int,
    sense: Sense,
    directions: DirectionSet | None = None,
    policy: CheckPolicy | None = None,
    baselines: Sequence[np.ndarray | None] | None = None,
) -> list[list[RenderedImage]]:
    """Baseline and variants for each identity, each with ``checks`` and an extended recipe.

    All identities of the batch are sensed together (one sensor call per attempt), which is
    what makes the checks affordable. Nothing an identity gets depends on the other identities
    of its batch: the generator renders each latent on its own (see
    :class:`generator.backends.TorchLatentGenerator`), retries are seeded per identity, and the
    identity judge's cut-off comes with ``policy`` (fixed once per audit, :func:`identity_cutoff`).
    ``baselines[i]``, where not None, is identity ``i``'s baseline as already rendered (by
    sampling: the same pixels), which is then not rendered again.
    """
    policy = policy or CheckPolicy()
    seeds = [int(s) for s in latent_seeds]
    n = len(seeds)
    z = generator.sample_latents(seeds).astype(np.float64)
    base = _baselines(generator, z, baselines)
    rb = sense(base)
    base_recipe = latent_recipe(generator)
    rows: list[list[RenderedImage]] = [[] for _ in range(n)]
    for v in variants:
        if v.is_baseline:
            pixels, rv, extra, checks = base, rb, [{} for _ in range(n)], [
                {"face_found": bool(rb["face_found"][i]), "edit_ok": bool(rb["face_found"][i]),
                 "passed": bool(rb["face_found"][i])} for i in range(n)]
        elif v.factor == "control" or FACTORS[v.factor].kind == IMAGE:
            pixels, sub = image_variant(base, seeds, v, audit_seed)
            # identity is preserved by construction (same face, degraded): no drift embedding
            rv = sense(pixels, embed=False)
            extra = [{"factor_seed": sub[i]} for i in range(n)]
            checks = [check_image(rb, i, rv, i, v.factor, None, policy) for i in range(n)]
        else:
            pixels, rv, extra, checks = _latent_edit(generator, z, rb, seeds, v, audit_seed,
                                                     sense, directions, policy)
        for i in range(n):
            achieved = {k: (None if not np.isfinite(float(np.asarray(rv[k])[i])) else
                            round(float(np.asarray(rv[k])[i]), 4))
                        for k in rv if k not in ("face_found", "embedding")}
            recipe = {**base_recipe, "latent_seed": seeds[i], "factor": v.factor,
                      "level": v.level, "factor_seed": None, **extra[i],
                      "sensors": achieved}
            rows[i].append(RenderedImage(seeds[i], v, np.ascontiguousarray(pixels[i]), recipe,
                                         checks[i]))
    return rows


def _baselines(generator, z: np.ndarray, given: Sequence[np.ndarray | None] | None
               ) -> np.ndarray:
    """``(N, H, W, 3)`` baselines of latents ``z`` (N, D): the ``given`` ones where not None,
    the rest rendered (each latent renders on its own, so a subset renders the same pixels)."""
    given = [None] * len(z) if given is None else list(given)
    todo = [i for i, g in enumerate(given) if g is None]
    if todo:
        rendered = generator.generate(z[todo].astype(np.float32))
        for k, i in enumerate(todo):
            given[i] = rendered[k]
    return np.stack([np.asarray(g) for g in given])


def _latent_edit(generator, z, rb, seeds, v: Variant, audit_seed, sense, directions, policy):
    """Search the step along the conditional direction that gives the requested change."""
    spec = FACTORS[v.factor]
    if directions is None or spec.sensor not in directions.directions:
        raise ValueError(f"the {v.factor} edit needs learned directions for sensor "
                         f"{spec.sensor!r}; run `manage.py learn_directions`")
    hold = spec.held(HELD_DIRECTIONS)
    d = directions.conditional(spec.sensor, hold)
    slope = directions.conditional_slope(spec.sensor, hold)
    n = len(seeds)
    base_val = np.asarray(rb[spec.sensor], dtype=np.float64)
    target = (base_val * float(v.level) / 100.0) if spec.relative else np.full(n, float(v.level))
    step = np.clip(target / slope, -policy.max_step, policy.max_step)
    step = np.where(np.isfinite(step), step, 0.0)
    search = _EditSearch(n, generator.image_size, z, step)
    fixers = _fixers(directions, d, hold)
    todo = np.flatnonzero(rb["face_found"])
    for attempt in range(policy.max_attempts):
        if len(todo) == 0:
            break
        zz = z[todo] + search.step[todo, None] * d[None, :] + search.correction[todo]
        pix = generator.generate(zz.astype(np.float32))
        r = sense(pix)
        search.start_readings(r)
        still = []
        for j, i in enumerate(todo):
            search.attempts[i] = attempt + 1
            c = check_image(rb, i, r, j, v.factor, float(target[i]), policy)
            search.keep_if_best(i, j, c, float(target[i]), pix, r)
            if c["passed"]:
                continue
            still.append(i)
            search.next_step(i, c, target[i], policy, derive_seed(
                audit_seed, "edit-retry", seeds[i], v.factor, v.level, attempt))
            if c["broken"]:
                search.correction[i] += _joint_correction(fixers, c["broken"], rb, i, r, j)
            norm = np.linalg.norm(search.correction[i])
            if norm > policy.max_step:
                search.correction[i] *= policy.max_step / norm
        todo = np.array(still, dtype=int)
    search.fill_faceless(generator, z, d, spec.sensor, target)
    extra = [{"edit": {"sensor": spec.sensor,
                       "requested_delta": search.best_checks[i].get("requested"),
                       "achieved_delta": search.best_checks[i].get("achieved"),
                       "latent_step": round(float(search.best_step[i]), 6), "hold": hold,
                       "correction_norm": round(float(np.linalg.norm(search.best_corr[i])), 6),
                       "directions": f"{directions.model_id}-{directions.sensor_version}",
                       "attempts": int(search.attempts[i])}} for i in range(n)]
    return search.best_pixels, search.best_read, extra, search.best_checks


class _EditSearch:
    """The state of :func:`_latent_edit`'s search per identity: the current step and held-sensor
    correction, the attempts made, and the best attempt so far (its pixels, readings, checks,
    error, step and correction)."""

    def __init__(self, n: int, image_size: int, z: np.ndarray, step: np.ndarray):
        self.n = n
        self.step = step
        self.best_pixels = np.zeros((n, image_size, image_size, 3), dtype=np.uint8)
        self.best_read: dict[str, np.ndarray] | None = None
        self.best_checks: list[dict[str, Any] | None] = [None] * n
        self.best_err = np.full(n, np.inf)
        self.best_corr = np.zeros_like(z)
        self.best_step = step.copy()
        self.correction = np.zeros_like(z)  # Newton steps that undo leaks into held sensors
        self.attempts = np.zeros(n, dtype=int)

    def start_readings(self, r: dict[str, Any]) -> None:
        """On the first sensed attempt, empty best readings shaped like ``r``'s."""
        if self.best_read is None:
            self.best_read = {k: np.full((self.n, *np.asarray(a).shape[1:]), np.nan)
                              if k != "face_found" else np.zeros(self.n, dtype=bool)
                              for k, a in r.items()}

    def keep_if_best(self, i: int, j: int, c: dict[str, Any], target: float,
                     pix: np.ndarray, r: dict[str, Any]) -> None:
        """Keep attempt row ``j`` as identity ``i``'s best when it is closer to the target (a
        passing attempt beats any failing one)."""
        achieved = c["achieved"]
        err = abs(achieved - target) if achieved is not None else np.inf
        if c["passed"] and not (self.best_checks[i] or {}).get("passed"):
            err = -1.0  # a passing attempt beats any failing one
        if err < self.best_err[i] or self.best_checks[i] is None:
            self.best_err[i], self.best_checks[i] = err, c
            self.best_pixels[i], self.best_step[i] = pix[j], self.step[i]
            self.best_corr[i] = self.correction[i]
            for k in r:
                self.best_read[k][i] = np.asarray(r[k])[j]

    def next_step(self, i: int, c: dict[str, Any], target: float, policy: CheckPolicy,
                  retry_seed: int) -> None:
        """Secant step through (0, 0) and (step, achieved), jittered by a fresh sub-seed."""
        achieved = c["achieved"]
        jitter = np.random.Generator(np.random.PCG64(retry_seed)).normal(0, 0.1)
        if achieved is not None and abs(achieved) > 1e-6 and np.sign(achieved) == np.sign(
                target):
            new = self.step[i] * target / achieved
        else:
            new = self.step[i] * 1.5 if abs(self.step[i]) > 1e-3 else np.sign(target) * 0.5
        self.step[i] = float(np.clip(new * (1 + jitter), -policy.max_step, policy.max_step))

    def fill_faceless(self, generator, z: np.ndarray, d: np.ndarray, sensor: str,
                      target: np.ndarray) -> None:
        """Identities whose baseline had no face: render the first guess, report as failed;
        then every identity's checks get its attempt count."""
        for i in range(self.n):
            if self.best_checks[i] is None:
                self.best_pixels[i] = generator.generate(
                    (z[i] + self.best_step[i] * d)[None].astype(np.float32))[0]
                self.best_checks[i] = {
                    "face_found": False, "passed": False, "target_sensor": sensor,
                    "requested": float(target[i]) if np.isfinite(target[i]) else None}
        if self.best_read is None:
            self.best_read = {"face_found": np.zeros(self.n, dtype=bool)}
        for i in range(self.n):
            self.best_checks[i]["attempts"] = int(self.attempts[i])


def _fixers(directions: DirectionSet, d: np.ndarray, hold: Sequence[str]
            ) -> dict[str, np.ndarray]:
    """Gradients (sensor units per latent unit) of the held sensors, with their component along
    the edit direction ``d`` removed so a correction does not undo the edit."""
    out = {}
    for name in hold:
        if name in directions.directions:
            direction = directions.directions[name]
            grad = direction.vector * direction.slope
            out[name] = grad - (grad @ d) * d
    return out


def _joint_correction(fixers: dict[str, np.ndarray], broken: Sequence[str],
                      base: dict[str, np.ndarray], bi: int, var: dict[str, np.ndarray],
                      vi: int) -> np.ndarray:
    """Minimum-norm latent step that, to first order, returns every broken held sensor to its
    baseline value and leaves the other held sensors where they are (held sensors' directions
    are correlated, e.g. brightness and ITA, so they are solved together)."""
    names = list(fixers)
    rhs = np.array([-_leak(base, bi, var, vi, s) if s in broken else 0.0 for s in names])
    if not np.isfinite(rhs).all() or not np.any(rhs):
        return np.zeros(next(iter(fixers.values())).shape) if fixers else 0.0
    jac = np.stack([fixers[s] for s in names])
    return np.linalg.lstsq(jac, rhs, rcond=None)[0]


def _leak(base: dict[str, np.ndarray], bi: int, var: dict[str, np.ndarray], vi: int,
          sensor: str) -> float:
    """A held sensor's change, in the units its direction was fitted in (logit for
    probabilities)."""
    b, v = _value(base, sensor, bi), _value(var, sensor, vi)
    if sensor in LOGIT_SENSORS:
        b, v = (float(np.log(np.clip(x, 1e-4, 1 - 1e-4) / (1 - np.clip(x, 1e-4, 1 - 1e-4))))
                for x in (b, v))
    return v - b
