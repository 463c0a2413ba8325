"""Controlled variants of the diffusion backends' identities, with the generator's checks.

The diffusion counterpart of :func:`generator.editing.render_and_check` for identities sampled
by :func:`generator.diffusion.audit.sample_prompt_identities`.

**Variants** (:func:`render_prompt_and_check`). Per identity ``(group labels, embedding, seed)``:
the baseline is :func:`~generator.diffusion.prompts.variant_prompt` ``(labels)`` (Arc2Face:
``arc2face_prompt()``) with the identity's embedding and seed; a prompt factor changes exactly
one phrase of that prompt with the *same* seed and embedding, so the initial latents and the
identity are those of the baseline; an image factor (blur, jpeg, ...) is
:func:`generator.render.image_variant` on the baseline's pixels. Every image is sensed and
checked with :func:`generator.editing.check_image` (prompt factors: ``prompt_level=``; the
definitions are each prompt factor's ``affects``, ``level_affects`` and ``targets`` in
:data:`generator.factor_spec.PROMPT_FACTOR_SPECS`, read through
:func:`~generator.editing.prompt_affects` and :data:`generator.editing.PROMPT_TARGETS`). Identity
kept compares the ``embedding`` that ``sense(..., embed=True)`` returns with the audit's cut-off
in ``policy`` (the impostor p99 of the whole audit's baselines,
:func:`generator.editing.identity_cutoff`, fixed before any edit is judged); the embedding must
come from an FR model *other* than the encoder's and the models under test: the generator was
optimised to please the conditioning model, so that model would overrate how well identity
survives (design brief: "do not judge identity retention with the same FR model that
conditioned the generator"). Nothing here can verify which models the callables wrap; the
worker's wiring must. Prompt edits are not retried: a new seed would change the whole face and
break the controlled comparison, so a failed cell is reported as failed (``attempts`` 1).

Rendering is batched (all cells of a call in one ``backend.render`` call unless ``batch_size``
bounds it); a cell's image does not depend on its batch beyond floating-point rounding (at most a
grey level now and then, see :mod:`generator.diffusion.batching`), and the same call renders
byte-identical images again.

Tested on tiny random pipelines (``tests/generator/test_diffusion_audit.py``) with deterministic
stand-in sensors computed from the pixels (see :mod:`generator.diffusion.audit`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from generator.design import Variant
from generator.diffusion.audit import (
    IdentitySpec,
    baseline_prompt,
    embedding_sha256,
    is_arc2face,
    render_settings,
)
from generator.diffusion.batching import IdentityRenderer
from generator.diffusion.prompts import (
    BASELINE_LEVELS,
    PROMPT_FACTORS,
    PromptEdit,
    arc2face_prompt,
    variant_prompt,
)
from generator.editing import CheckPolicy, Sense, check_image
from generator.factor_spec import IMAGE_FACTORS
from generator.render import RenderedImage, image_variant


def _variant_kind(v: Variant) -> str:
    if v.is_baseline:
        return "baseline"
    if v.factor == "control":  # the null re-capture of the baseline (generator.design.CONTROL)
        return "image"
    if v.factor in PROMPT_FACTORS and isinstance(v.level, str):
        if v.level not in PROMPT_FACTORS[v.factor]:
            raise ValueError(f"unknown level {v.level!r} for prompt factor {v.factor!r}; choose "
                             f"from {', '.join(PROMPT_FACTORS[v.factor])}")
        return "prompt"
    if v.factor in IMAGE_FACTORS and not isinstance(v.level, str):
        return "image"
    raise ValueError(f"factor {v.factor!r} at level {v.level!r} cannot vary a diffusion "
                     f"identity: use a prompt factor with a named level "
                     f"({', '.join(PROMPT_FACTORS)}) or an image factor with a number "
                     f"({', '.join(IMAGE_FACTORS)})")


def _take(readings: Mapping[str, Any], idx: Sequence[int]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[list(idx)] for k, v in readings.items()}


def _sensed(readings: Mapping[str, np.ndarray], i: int) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for k, v in readings.items():
        a = np.asarray(v)
        if k in ("face_found", "embedding") or a.ndim != 1:
            continue
        x = float(a[i])
        out[k] = round(x, 4) if np.isfinite(x) else None
    return out


def render_prompt_and_check(
    backend: IdentityRenderer,
    identities: Sequence[IdentitySpec],
    variants: Sequence[Variant],
    audit_seed: int,
    sense: Sense,
    policy: CheckPolicy | None = None,
    *,
    render_kwargs: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
) -> list[list[RenderedImage]]:
    """For each identity ``(group labels, embedding (id_dim,), seed)``, its images for
    ``variants`` in order, each with ``checks`` and a recipe (see the module docstring).

    The baselines and every prompt variant of all identities are rendered together: one
    ``backend.render`` call (or calls of at most ``batch_size`` images), then one ``sense`` call
    with ``embed=True`` for them and one with ``embed=False`` for all image-factor variants. A
    prompt variant whose prompt equals the baseline's (a factor's baseline level) reuses the
    baseline's pixels. Prompt cells that fail their checks are reported, not retried.
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    policy = policy or CheckPolicy()
    settings = render_settings(backend, render_kwargs)
    arc2face = is_arc2face(backend)
    specs = _checked_specs(identities, int(backend.id_dim))
    n = len(specs)
    kinds = [_variant_kind(v) for v in variants]
    if n == 0:
        return []
    prompts, owners, cell_of = _prompt_cells(specs, variants, kinds, arc2face)
    pixels = _render_cells(backend, specs, prompts, owners, batch_size, settings)
    readings = sense(pixels, embed=True)
    base_idx = [cell_of[(-1, i)] for i in range(n)]
    rb = _take(readings, base_idx)
    base_pixels = pixels[base_idx]
    image_pixels, image_readings = _image_factor_variants(
        base_pixels, [s for _, _, s in specs], variants, kinds, audit_seed, sense)
    base_recipe = _base_recipe(backend, settings, base_pixels)
    rows_out: list[list[RenderedImage]] = [[] for _ in range(n)]
    for vi, v in enumerate(variants):
        for i, (labels, emb, seed) in enumerate(specs):
            extra: dict[str, Any] = {"prompt": prompts[base_idx[i]], "factor_seed": None,
                                     "edit": None}
            if kinds[vi] == "baseline":
                img, rv, j = base_pixels[i], rb, i
                found = bool(rb["face_found"][i])
                checks = {"face_found": found, "edit_ok": found, "passed": found}
            elif kinds[vi] == "prompt":
                c = cell_of[(vi, i)]
                img, rv, j = pixels[c], readings, c
                checks = check_image(rb, i, readings, c, v.factor, None, policy,
                                     prompt_level=str(v.level))
                checks["attempts"] = 1
                extra.update(prompt=prompts[c], edit=_edit_recipe(v))
            else:
                img, sub = image_pixels[vi][0][i], image_pixels[vi][1][i]
                rv, j = image_readings[vi], i
                checks = check_image(rb, i, rv, i, v.factor, None, policy)
                extra["factor_seed"] = sub
            recipe = {**base_recipe, "seed": seed, "identity_embedding_sha256":
                      embedding_sha256(emb), "group": labels, "factor": v.factor,
                      "level": v.level, **extra, "sensors": _sensed(rv, j)}
            rows_out[i].append(RenderedImage(seed, v, np.ascontiguousarray(img), recipe, checks))
    return rows_out


def _checked_specs(identities: Sequence[IdentitySpec], id_dim: int
                   ) -> list[tuple[dict[str, str], np.ndarray, int]]:
    """The identities as ``(labels, float32 embedding, int seed)``; refuses an embedding that
    is not a finite ``(id_dim,)`` vector."""
    specs: list[tuple[dict[str, str], np.ndarray, int]] = []
    for labels, emb, seed in identities:
        e = np.asarray(emb, dtype=np.float32)
        if e.shape != (id_dim,) or not np.isfinite(e).all():
            raise ValueError(f"identity embeddings must be finite ({id_dim},) vectors, got "
                             f"shape {e.shape}")
        specs.append((dict(labels), e, int(seed)))
    return specs


def _prompt_cells(specs, variants: Sequence[Variant], kinds: Sequence[str], arc2face: bool
                  ) -> tuple[list[str], list[int], dict[tuple[int, int], int]]:
    """Cells to render: every baseline first, then each distinct (identity, prompt) of the
    prompt variants. Returns the cells' prompts, the identity each belongs to, and
    ``cell_of[(variant index or -1 for the baseline, identity)]`` -> cell index."""

    def prompt_of(labels: Mapping[str, str], edit: PromptEdit | None) -> str:
        if edit is None:
            return baseline_prompt(labels, arc2face)
        return arc2face_prompt(edit) if arc2face else variant_prompt(labels, edit)

    prompts: list[str] = []
    owners: list[int] = []
    where: dict[tuple[int, str], int] = {}
    cell_of: dict[tuple[int, int], int] = {}
    for vi, v in [(-1, None), *((vi, v) for vi, v in enumerate(variants)
                                if kinds[vi] == "prompt")]:
        for i, (labels, _, _) in enumerate(specs):
            p = prompt_of(labels, None if v is None else PromptEdit(v.factor, str(v.level)))
            if (i, p) not in where:
                where[(i, p)] = len(prompts)
                prompts.append(p)
                owners.append(i)
            cell_of[(vi, i)] = where[(i, p)]
    return prompts, owners, cell_of


def _render_cells(backend: IdentityRenderer, specs, prompts: list[str], owners: list[int],
                  batch_size: int | None, settings: Mapping[str, Any]) -> np.ndarray:
    """The cells' pixels, rendered in calls of at most ``batch_size`` (default: one call)."""
    step = batch_size or max(1, len(prompts))
    chunks = []
    for s in range(0, len(prompts), step):
        rows = owners[s:s + step]
        chunks.append(backend.render(np.stack([specs[i][1] for i in rows]), prompts[s:s + step],
                                     [specs[i][2] for i in rows], **settings))
    return np.concatenate(chunks)


def _image_factor_variants(base_pixels: np.ndarray, seeds: list[int],
                           variants: Sequence[Variant], kinds: Sequence[str], audit_seed: int,
                           sense: Sense):
    """Image factors: pixel operations on the baselines, sensed together without embeddings.
    Returns ``{variant index: (pixels, factor seeds)}`` and ``{variant index: readings}``."""
    n = len(base_pixels)
    image_variants = [vi for vi, k in enumerate(kinds) if k == "image"]
    image_pixels: dict[int, tuple[np.ndarray, list[int]]] = {
        vi: image_variant(base_pixels, seeds, variants[vi], audit_seed) for vi in image_variants}
    image_readings: dict[int, dict[str, np.ndarray]] = {}
    if image_variants:
        sensed = sense(np.concatenate([image_pixels[vi][0] for vi in image_variants]),
                       embed=False)
        for j, vi in enumerate(image_variants):
            image_readings[vi] = _take(sensed, range(j * n, (j + 1) * n))
    return image_pixels, image_readings


def _base_recipe(backend: IdentityRenderer, settings: Mapping[str, Any],
                 base_pixels: np.ndarray) -> dict[str, Any]:
    """The recipe fields every image of the call shares."""
    backend_recipe = backend.recipe() if hasattr(backend, "recipe") else {}
    height, width = int(base_pixels.shape[1]), int(base_pixels.shape[2])
    return {
        "backend": "diffusion", "generator": backend_recipe.get("backend"),
        "model_id": backend.model_id, "weights_sha256": backend.weights_sha256,
        "licence": getattr(backend, "licence", None),
        "negative_prompt": getattr(backend, "negative_prompt", None),
        "render": {**settings, "height": height, "width": width},
        "pipeline": backend_recipe}


def _edit_recipe(v: Variant) -> dict[str, Any]:
    """The recipe's ``edit`` of a prompt variant: the phrase it puts in the baseline's slot."""
    return {"slot": v.factor, "level": v.level,
            "phrase": PROMPT_FACTORS[v.factor][str(v.level)],
            "baseline_level": BASELINE_LEVELS[v.factor],
            "baseline_phrase": PROMPT_FACTORS[v.factor][BASELINE_LEVELS[v.factor]]}


def render_prompt_baselines(
    backend: IdentityRenderer,
    identities: Sequence[IdentitySpec],
    *,
    render_kwargs: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """The baseline image of each identity ``(group labels, embedding (id_dim,), seed)``, as
    :func:`render_prompt_and_check` renders it: ``(N, H, W, 3) uint8``, one render call per
    identity. Used to fix the identity judge's cut-off over the whole audit before any edit is
    judged (``worker.pipeline``)."""
    settings = render_settings(backend, render_kwargs)
    arc2face = is_arc2face(backend)
    out = []
    for labels, emb, seed in identities:
        prompt = baseline_prompt(labels, arc2face)
        out.append(backend.render(np.asarray(emb, dtype=np.float32)[None], [prompt], [int(seed)],
                                  **settings)[0])
    return np.stack(out) if out else np.zeros((0, 0, 0, 3), dtype=np.uint8)
