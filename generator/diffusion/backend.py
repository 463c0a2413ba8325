"""The diffusion routes as :class:`generator.registry.GeneratorBackend`: identities are group
anchors confirmed by the sensors (their identity embedding is the conditioning), edits are one
prompt phrase each (:mod:`generator.diffusion.audit`).

The operator configures each route in ``FACEAUDIT_DIFFUSION`` (JSON, by generator name):
``base_model`` (hub id or folder), ``adapter`` (FaceID) or ``arc2face_model`` (Arc2Face), and
optionally ``identity_model`` (the FR model whose embedding conditions the generator, default
``buffalo_l``), ``steps``, ``guidance_scale``, ``size`` (pixels); any other key is passed to the
route's loader (e.g. ``precision``, ``scheduler``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from generator.backends import GeneratorLoadError
from generator.registry import IdentityCell

#: Keys of a route's settings that are about rendering or identity, not loading.
RENDER_KEYS = ("identity_model", "steps", "guidance_scale", "size")


class DiffusionNotConfigured(GeneratorLoadError):
    """A diffusion route was asked for without its weights being configured."""


def render_options(options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(identity model, render kwargs)`` from a route's settings: ``steps``,
    ``guidance_scale`` and ``size`` (as ``height`` = ``width``)."""
    render = {k: options[k] for k in ("steps", "guidance_scale") if k in options}
    if "size" in options:
        render["height"] = render["width"] = int(options["size"])
    return str(options.get("identity_model", "buffalo_l")), render


@dataclass
class PromptBackend:
    """A FaceID or Arc2Face renderer with its identity model and render settings."""

    name: str
    renderer: Any
    conditioning_model: str
    render_kwargs: dict[str, Any] = field(default_factory=dict)
    check_policy: Mapping[str, Any] = field(default_factory=dict)
    latent: Any = None

    @staticmethod
    def _specs(cells: Sequence[IdentityCell]) -> list[tuple]:
        return [(dict(c.group_labels),
                 np.asarray(c.conditioning["identity_embedding"], dtype=np.float32),
                 int(c.latent_seed)) for c in cells]

    def sample_identities(self, design, labeller, audit_seed, *, encoder=None, progress=None,
                          should_stop=None, report=None, keep_images=False):
        from generator.diffusion.audit import sample_prompt_identities

        if encoder is None:
            raise ValueError(f"{self.name} needs an encoder for {self.conditioning_model}")
        return sample_prompt_identities(design, self.renderer, labeller, encoder, audit_seed,
                                        render_kwargs=self.render_kwargs, progress=progress,
                                        should_stop=should_stop)

    def render_and_check(self, cells, variants, audit_seed, sense, policy, directions=None,
                         baselines=None):
        from generator.diffusion.audit import render_prompt_and_check

        return render_prompt_and_check(self.renderer, self._specs(cells), variants, audit_seed,
                                       sense, policy, render_kwargs=self.render_kwargs)

    def baselines(self, cells):
        from generator.diffusion.audit import render_prompt_baselines

        return render_prompt_baselines(self.renderer, self._specs(cells),
                                       render_kwargs=self.render_kwargs)

    def provenance(self) -> dict[str, Any]:
        r = self.renderer
        size = self.render_kwargs.get("height") or getattr(r, "default_size", None)
        return {"model_id": r.model_id, "weights_sha256": r.weights_sha256,
                "licence": r.licence, "image_size": size}


def _split(name: str, options: Mapping[str, Any]) -> tuple[str, dict[str, Any], str, dict]:
    options = dict(options)
    if "base_model" not in options:
        raise DiffusionNotConfigured(
            f"{name} is not configured: set FACEAUDIT_DIFFUSION to a JSON object with "
            f'"{name}": {{"base_model": ...}} (see README, diffusion generators)')
    base = options.pop("base_model")
    identity_model, render = render_options(options)
    for key in RENDER_KEYS:
        options.pop(key, None)
    return base, options, identity_model, render


def load_faceid_backend(device: str = "cpu", *, name: str = "sd15-faceid",
                        **options: Any) -> PromptBackend:
    """Stable Diffusion 1.5 or SDXL with IP-Adapter FaceID (``adapter`` required)."""
    from generator.diffusion.faceid import load_faceid_generator

    base, rest, identity_model, render = _split(name, options)
    if "adapter" not in rest:
        raise DiffusionNotConfigured(f'{name} needs "adapter" in FACEAUDIT_DIFFUSION')
    renderer = load_faceid_generator(base, rest.pop("adapter"), device=device, **rest)
    return PromptBackend(name, renderer, identity_model, render)


def load_arc2face_backend(device: str = "cpu", *, name: str = "arc2face",
                          **options: Any) -> PromptBackend:
    """Arc2Face on Stable Diffusion 1.5 (``arc2face_model`` optional)."""
    from generator.diffusion.arc2face import load_arc2face_generator

    base, rest, identity_model, render = _split(name, options)
    renderer = load_arc2face_generator(base, rest.pop("arc2face_model", None), device=device,
                                       **rest)
    return PromptBackend(name, renderer, identity_model, render)
