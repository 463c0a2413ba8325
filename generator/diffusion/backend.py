"""The diffusion routes as :class:`generator.registry.GeneratorBackend`: identities are group
anchors confirmed by the sensors (their identity embedding is the conditioning), edits are one
prompt phrase each (:mod:`generator.diffusion.audit` samples the identities,
:mod:`generator.diffusion.variants` renders and checks their variants).

The operator configures each route in ``FACEAUDIT_DIFFUSION`` (JSON, by generator name):
``base_model`` (hub id or folder), ``adapter`` (FaceID) or ``arc2face_model`` (Arc2Face), and
optionally ``steps``, ``guidance_scale``, ``size`` (pixels) and ``identity_model``; any other key
is passed to the route's loader (e.g. ``precision``, ``scheduler``).

``identity_model`` is the FR embedding that conditions the generator, and each route accepts
only the one it was trained on (:data:`ROUTE_IDENTITY_MODELS`, files in
:data:`audit.registry.IDENTITY_MODELS`): IP-Adapter FaceID (SD 1.5 and SDXL) was trained on
insightface ``buffalo_l``'s ArcFace, Arc2Face on its authors' own ArcFace R100
(``arcface.onnx``, ``arc2face_arcface``). Another model's vectors lie in another embedding space:
the generator would draw another face than the anchor's, silently. Naming another model is a
configuration error (:func:`identity_model_problem`); leaving it out means the route's own.
:func:`route_problems` also names the identity model's files missing from the model directory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from generator.backends import GeneratorLoadError
from generator.registry import IdentityCell

#: Keys of a route's settings that are about rendering or identity, not loading.
RENDER_KEYS = ("identity_model", "steps", "guidance_scale", "size")

#: The identity model (:data:`audit.registry.IDENTITY_MODELS`) each route's loader was trained
#: on, and the only one it accepts.
ROUTE_IDENTITY_MODELS: dict[str, str] = {
    "generator.diffusion.backend:load_faceid_backend": "buffalo_l",
    "generator.diffusion.backend:load_arc2face_backend": "arc2face_arcface",
}
_WHY = {
    "buffalo_l": "IP-Adapter FaceID was trained on insightface buffalo_l's ArcFace embedding "
                 "(w600k_r50.onnx through FaceAnalysis, detector at 640x640)",
    "arc2face_arcface": "Arc2Face was trained on its authors' own ArcFace R100 (arcface.onnx "
                        "from FoivosPar/Arc2Face, in the model directory as "
                        "arc2face/arcface.onnx); its authors say to delete antelopev2's "
                        "glintr100.onnx",
}


class DiffusionNotConfigured(GeneratorLoadError):
    """A diffusion route was asked for without its weights being configured."""


def route_identity_model(route: str) -> str:
    """The identity model route ``route`` (a key of :data:`generator.registry.BACKENDS`) was
    trained on."""
    from generator.registry import backend_spec

    loader = backend_spec(route).loader
    if loader not in ROUTE_IDENTITY_MODELS:
        raise ValueError(f"{route} is not a diffusion route conditioned on an FR embedding")
    return ROUTE_IDENTITY_MODELS[loader]


def identity_model_problem(route: str, options: Mapping[str, Any],
                           required: str | None = None) -> str | None:
    """Why the ``identity_model`` named in route ``route``'s settings cannot condition it, or
    None (none named: the route's own; or the route's own named). ``required``: the route's
    own model (default :func:`route_identity_model`)."""
    required = required or route_identity_model(route)
    named = options.get("identity_model")
    if named is None or named == required:
        return None
    return (f"{route}: identity_model {named!r} is refused: {_WHY[required]}, and another "
            "model's vectors lie in another embedding space (the generated face would not be "
            f"the anchor's). Set \"identity_model\": \"{required}\" for {route} in "
            "FACEAUDIT_DIFFUSION, or leave it out")


def route_problems(route: str, options: Mapping[str, Any],
                   model_dir: str | Path) -> list[str]:
    """Everything that stops route ``route`` from conditioning on the right identity model,
    checked without loading anything: a wrong ``identity_model``, then each file of the route's
    identity model missing from ``model_dir`` (the file, where it goes, where it comes from)."""
    from audit.registry import missing_identity_files

    problem = identity_model_problem(route, options)
    if problem:
        return [problem]
    return [f"{route} conditions on {line}"
            for line in missing_identity_files(model_dir, route_identity_model(route))]


def render_options(options: Mapping[str, Any], route: str | None = None
                   ) -> tuple[str, dict[str, Any]]:
    """``(identity model, render kwargs)`` from a route's settings: the ``identity_model``
    named there, else route ``route``'s own (:func:`route_identity_model`; ``buffalo_l``
    without a route); ``steps``, ``guidance_scale`` and ``size`` (as ``height`` = ``width``).
    Whether the named model suits the route is :func:`identity_model_problem`'s to say."""
    render = {k: options[k] for k in ("steps", "guidance_scale") if k in options}
    if "size" in options:
        render["height"] = render["width"] = int(options["size"])
    default = route_identity_model(route) if route else "buffalo_l"
    return str(options.get("identity_model", default)), render


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
                                        should_stop=should_stop, report=report,
                                        keep_images=keep_images)

    def render_and_check(self, cells, variants, audit_seed, sense, policy, directions=None,
                         baselines=None):
        from generator.diffusion.variants import render_prompt_and_check

        return render_prompt_and_check(self.renderer, self._specs(cells), variants, audit_seed,
                                       sense, policy, render_kwargs=self.render_kwargs)

    def baselines(self, cells):
        from generator.diffusion.variants import render_prompt_baselines

        return render_prompt_baselines(self.renderer, self._specs(cells),
                                       render_kwargs=self.render_kwargs)

    def provenance(self) -> dict[str, Any]:
        r = self.renderer
        size = self.render_kwargs.get("height") or getattr(r, "default_size", None)
        return {"model_id": r.model_id, "weights_sha256": r.weights_sha256,
                "licence": r.licence, "image_size": size}


def _split(name: str, options: Mapping[str, Any], loader: str
           ) -> tuple[str, dict[str, Any], str, dict]:
    options = dict(options)
    required = ROUTE_IDENTITY_MODELS[f"{__name__}:{loader}"]
    if "base_model" not in options:
        raise DiffusionNotConfigured(
            f"{name} is not configured: set FACEAUDIT_DIFFUSION to a JSON object with "
            f'"{name}": {{"base_model": ...}} (see README, diffusion generators)')
    problem = identity_model_problem(name, options, required)
    if problem:
        raise DiffusionNotConfigured(problem)
    base = options.pop("base_model")
    render = render_options(options)[1]
    identity_model = required
    for key in RENDER_KEYS:
        options.pop(key, None)
    return base, options, identity_model, render


def load_faceid_backend(device: str = "cpu", *, name: str = "sd15-faceid",
                        **options: Any) -> PromptBackend:
    """Stable Diffusion 1.5 or SDXL with IP-Adapter FaceID (``adapter`` required)."""
    base, rest, identity_model, render = _split(name, options, "load_faceid_backend")
    if "adapter" not in rest:
        raise DiffusionNotConfigured(f'{name} needs "adapter" in FACEAUDIT_DIFFUSION')
    from generator.diffusion.faceid import load_faceid_generator  # torch: after the checks

    renderer = load_faceid_generator(base, rest.pop("adapter"), device=device, **rest)
    return PromptBackend(name, renderer, identity_model, render)


def load_arc2face_backend(device: str = "cpu", *, name: str = "arc2face",
                          **options: Any) -> PromptBackend:
    """Arc2Face on Stable Diffusion 1.5 (``arc2face_model`` optional)."""
    base, rest, identity_model, render = _split(name, options, "load_arc2face_backend")
    from generator.diffusion.arc2face import load_arc2face_generator  # torch: after the checks

    renderer = load_arc2face_generator(base, rest.pop("arc2face_model", None), device=device,
                                       **rest)
    return PromptBackend(name, renderer, identity_model, render)
