"""The generator-backend adapter of the latent GANs (DCGAN, MobileStyleGAN).

:class:`LatentBackend` wraps a :class:`generator.backends.LatentGenerator` as a
:class:`generator.registry.GeneratorBackend`: identities are latent seeds confirmed by the
sensors (:mod:`generator.identities`, aimed by :mod:`generator.guidance` when the generator has
a baseline rule), and edits are steps along learned directions (:mod:`generator.editing`). The
registry's loaders of the latent GANs (:func:`load_dcgan_backend`,
:func:`generator.mobilestylegan.load_backend`) return one. The heavy modules are imported when a
method needs them, so importing this module costs little.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class LatentBackend:
    """:class:`generator.registry.GeneratorBackend` over a :class:`generator.backends.LatentGenerator`: identities
    are latent seeds confirmed by the sensors, edits are steps along learned directions
    (:mod:`generator.editing`)."""

    name: str
    latent: Any
    conditioning_model: str | None = None

    @property
    def check_policy(self) -> Mapping[str, Any]:
        return getattr(self.latent, "check_policy", {})

    @property
    def guided(self) -> bool:
        """Whether sampling aims candidates with learned directions (the generator declares a
        baseline rule, :attr:`baseline_bands`), so the directions are needed before sampling."""
        return bool(self.baseline_bands)

    @property
    def baseline_bands(self) -> tuple:
        """The generator's baseline rule as :class:`generator.guidance.Band` s (e.g.
        near-frontal, neutral expression); empty when it has none."""
        return tuple(getattr(self.latent, "baseline_bands", ()))

    def sample_identities(self, design, labeller, audit_seed, *, encoder=None, progress=None,
                          should_stop=None, report=None, directions=None, aims=None,
                          hold: Sequence[str] = (), keep_images: bool = False):
        """``directions`` and ``aims(group) -> list[Band]`` (the group's boundaries) turn on
        guided sampling (:mod:`generator.guidance`), holding the predictions of ``hold``; the
        generator's baseline rule (``accepts_baseline(labels) -> bool``) refuses candidates
        whose face is not a usable baseline."""
        from generator.identities import sample_identities

        guide = None
        if directions is not None and (aims is not None or self.baseline_bands):
            from generator.guidance import aim

            def guide(latents, groups):
                bands = [[*self.baseline_bands, *(aims(g) if aims else [])] for g in groups]
                return aim(latents, directions, bands, hold=hold)

        return sample_identities(design, self.latent, labeller, audit_seed, progress=progress,
                                 should_stop=should_stop, report=report, guide=guide,
                                 accept=getattr(self.latent, "accepts_baseline", None),
                                 batch_size=getattr(self.latent, "sampling_batch", 64),
                                 screen=getattr(self.latent, "sampling_screen", 1),
                                 keep_images=keep_images)

    def _view(self, cells):
        """The generator as the cells see it: each seed's latent plus its stored shift."""
        shifts = {c.latent_seed: c.conditioning["latent_shift"] for c in cells
                  if c.conditioning.get("latent_shift") is not None}
        if not shifts:
            return self.latent
        from generator.guidance import ShiftedLatents

        return ShiftedLatents(self.latent, shifts)

    def render_and_check(self, cells, variants, audit_seed, sense, policy, directions=None,
                         baselines=None):
        """``baselines``: per cell, its baseline's pixels if already rendered (by sampling),
        else None."""
        from generator.editing import render_and_check

        return render_and_check(self._view(cells), [c.latent_seed for c in cells], variants,
                                audit_seed, sense, directions, policy, baselines=baselines)

    def baselines(self, cells):
        g = self._view(cells)
        return g.generate(g.sample_latents([c.latent_seed for c in cells]))

    def provenance(self) -> dict[str, Any]:
        g = self.latent
        return {"model_id": g.model_id, "weights_sha256": g.weights_sha256,
                "licence": g.licence, "image_size": g.image_size}


def load_dcgan_backend(device: str = "cpu", name: str = "dcgan-digiface", **options: Any):
    """The DCGAN as a :class:`generator.registry.GeneratorBackend` (registry loader)."""
    from generator.backends import load_dcgan_digiface

    return LatentBackend(name, load_dcgan_digiface(device=device, **options))
