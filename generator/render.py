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
    base_recipe = {"backend": "latent-gan", "model_id": generator.model_id,
                   "weights_sha256": generator.weights_sha256, "latent_dim": generator.latent_dim,
                   "latent_sampler": "numpy PCG64 standard normal"}
    out: list[list[RenderedImage]] = []
    for seed, base in zip(latent_seeds, baselines, strict=True):
        row = []
        for v in variants:
            if v.is_baseline:
                pixels, sub_seed = base, None
            else:
                sub_seed = derive_seed(audit_seed, "variant", seed, v.factor, v.level)
                pixels = apply_factor(base, v.factor, float(v.level), sub_seed)
            recipe = {**base_recipe, "latent_seed": int(seed), "factor": v.factor,
                      "level": v.level, "factor_seed": sub_seed}
            row.append(RenderedImage(int(seed), v, np.ascontiguousarray(pixels), recipe))
        out.append(row)
    return out
