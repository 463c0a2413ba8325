"""Render an identity's baseline and variants, each with the recipe that reproduces it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from generator.backends import LatentGenerator
from generator.design import Variant, derive_seed
from generator.factors import apply_factor


@dataclass(frozen=True)
class RenderedImage:
    """One image of the design. ``pixels`` is ``(H, W, 3) uint8`` RGB."""

    latent_seed: int
    variant: Variant
    pixels: np.ndarray
    recipe: dict[str, Any]
    checks: dict[str, Any] | None = None


def latent_recipe(generator: LatentGenerator) -> dict[str, Any]:
    """The part of a recipe every image of a latent generator shares."""
    return {"backend": "latent-gan", "model_id": generator.model_id,
            "weights_sha256": generator.weights_sha256, "licence": generator.licence,
            "image_size": generator.image_size, "latent_dim": generator.latent_dim,
            "latent_sampler": "numpy PCG64 standard normal",
            **getattr(generator, "recipe_extra", {})}


def image_variant(baselines: np.ndarray, latent_seeds: Sequence[int], variant: Variant,
                  audit_seed: int) -> tuple[np.ndarray, list[int]]:
    """An image factor applied to each baseline ``(N, H, W, 3) uint8`` with its sub-seed
    ``derive_seed(audit_seed, "variant", latent_seed, factor, level)``; returns the images and
    the sub-seeds."""
    sub = [derive_seed(audit_seed, "variant", int(s), variant.factor, variant.level)
           for s in latent_seeds]
    level = None if variant.level is None else float(variant.level)
    pixels = np.stack([apply_factor(b, variant.factor, level, k)
                       for b, k in zip(baselines, sub, strict=True)])
    return pixels, sub


def render_identities(
    generator: LatentGenerator,
    latent_seeds: Sequence[int],
    variants: Sequence[Variant],
    audit_seed: int,
) -> list[list[RenderedImage]]:
    """For each identity (given by its latent seed), its images for ``variants``, in order.

    The baseline is the generator's output for the identity's latent; each factor variant is the
    baseline with one image-space factor applied, with sub-seed
    ``derive_seed(audit_seed, "variant", latent_seed, factor, level)``. Identity, latent and
    everything else stay fixed, so a variant differs from its baseline only by the factor.
    """
    latents = generator.sample_latents(list(latent_seeds))
    baselines = generator.generate(latents)
    base_recipe = latent_recipe(generator)
    out: list[list[RenderedImage]] = [[] for _ in latent_seeds]
    for v in variants:
        if v.is_baseline:
            pixels, subs = baselines, [None] * len(baselines)
        else:
            pixels, subs = image_variant(baselines, latent_seeds, v, audit_seed)
        for i, (seed, sub) in enumerate(zip(latent_seeds, subs, strict=True)):
            recipe = {**base_recipe, "latent_seed": int(seed), "factor": v.factor,
                      "level": v.level, "factor_seed": sub}
            out[i].append(RenderedImage(int(seed), v, np.ascontiguousarray(pixels[i]), recipe))
    return out
