"""Every generator backend behind one small interface, and the registry that names them.

A backend does three things for an audit (:class:`GeneratorBackend`):

- **sample identities** for the design's groups: candidates are rendered and labelled by the
  caller's sensors until every group is full (:meth:`GeneratorBackend.sample_identities`);
- **render the cells** of a batch of identities, baseline and every variant, each with its
  checks (:meth:`GeneratorBackend.render_and_check`), and the baselines alone
  (:meth:`GeneratorBackend.baselines`, for the identity judge's cut-off);
- **describe its provenance**: model id, weights hash, licence, image size
  (:meth:`GeneratorBackend.provenance`), which also travels in every image's recipe.

:data:`BACKENDS` lists them by config name. A :class:`BackendSpec` says how to load one (a
``"module:function"`` path, imported only when the backend is loaded, so the web app can read
the registry without importing torch), whether it is installed by the set-up (``offline``) or
configured by the operator (diffusion weights), and whether its factors are prompt phrases
(``prompt_driven``) or latent edits. Adding a backend is one module with a loader plus one line
here. The latent GAN backends share one adapter, :class:`generator.latent_backend.LatentBackend`.
Nothing here imports another generator module: the loaders are imported by name when used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

# images (N, H, W, 3) uint8 -> per-image labels (see generator.identities.Labeller)
Labeller = Callable[[np.ndarray], Sequence[dict[str, Any] | None]]
Encoder = Callable[[np.ndarray], np.ndarray]  # images -> (N, D) identity embeddings
Progress = Callable[[int, int, int], None]  # (identities found, needed, candidates tried)


@dataclass(frozen=True)
class IdentityCell:
    """What a backend needs to render one stored identity again: its latent (or anchor) seed,
    its group's labels and, for identity-conditioned diffusion, its conditioning (the identity
    embedding as a list of floats, under ``identity_embedding``)."""

    latent_seed: int
    group_labels: Mapping[str, str] = field(default_factory=dict)
    conditioning: Mapping[str, Any] = field(default_factory=dict)


class GeneratorBackend(Protocol):
    """What the workers need from a generator (see the module docstring).

    ``name``: config name (a key of :data:`BACKENDS`). ``conditioning_model``: the FR model whose
    embedding conditions the generator (never the identity judge), or None. ``check_policy``:
    :class:`generator.editing.CheckPolicy` tolerances measured on this generator's faces (may be
    empty). ``latent``: the :class:`generator.backends.LatentGenerator` whose latent space the
    edit directions are learned in, or None for prompt-driven backends.
    """

    name: str
    conditioning_model: str | None
    check_policy: Mapping[str, Any]
    latent: Any

    def sample_identities(self, design, labeller: Labeller, audit_seed: int, *,
                          encoder: Encoder | None = None, progress: Progress | None = None,
                          should_stop: Callable[[], bool] | None = None,
                          report: dict[str, Any] | None = None,
                          keep_images: bool = False) -> list:
        """Identities filling every group: ``list[generator.identities.IdentityDraw]``;
        ``report`` (when given and the backend keeps one) is filled with per-group acceptance
        rates (:func:`generator.identities.acceptance`); with ``keep_images`` a backend that
        can may give each draw the face it was accepted on (its baseline's pixels)."""
        ...

    def render_and_check(self, cells: Sequence[IdentityCell], variants, audit_seed: int, sense,
                         policy, directions=None, baselines=None) -> list[list]:
        """Per cell, its ``generator.render.RenderedImage`` for each variant, in order;
        ``baselines`` (optional, per cell or None) are baselines already rendered, which a
        backend may use instead of rendering them again."""
        ...

    def baselines(self, cells: Sequence[IdentityCell]) -> np.ndarray:
        """``(N, H, W, 3) uint8`` baseline image of each cell, as :meth:`render_and_check`
        renders it."""
        ...

    def provenance(self) -> dict[str, Any]:
        """``model_id``, ``weights_sha256``, ``licence``, ``image_size`` (pixels)."""
        ...


@dataclass(frozen=True)
class BackendSpec:
    """A registry entry. ``loader``: ``"module:function"`` called as
    ``loader(device=..., name=..., **options)`` and returning a :class:`GeneratorBackend`. ``offline``:
    installed by the set-up from PyPI (else configured by the operator in
    ``FACEAUDIT_DIFFUSION``). ``installed``: ``"module:function"`` returning whether the
    backend's files are present, without loading it (offline backends)."""

    name: str
    description: str
    loader: str
    offline: bool
    prompt_driven: bool = False
    installed: str | None = None

    def is_installed(self) -> bool:
        return True if self.installed is None else bool(_resolve(self.installed)())

    def load(self, device: str = "cpu", **options: Any) -> GeneratorBackend:
        return _resolve(self.loader)(device=device, name=self.name, **options)


def _resolve(path: str) -> Callable[..., Any]:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


#: The generators FaceAudit knows, by config name; the first offline one is the default.
BACKENDS: dict[str, BackendSpec] = {spec.name: spec for spec in (
    BackendSpec("mobilestylegan-ffhq",
                "photoreal faces from MobileStyleGAN (StyleGAN2-FFHQ distilled; PyPI random-face, "
                "OpenVINO or torch); research use only; offline default",
                loader="generator.mobilestylegan:load_backend", offline=True,
                installed="generator.mobilestylegan:available"),
    BackendSpec("dcgan-digiface",
                "64x64 DCGAN trained on DigiFace-1M (PyPI gan-face-generate); fast smoke tests",
                loader="generator.latent_backend:load_dcgan_backend", offline=True),
    BackendSpec("sd15-faceid",
                "Stable Diffusion 1.5 + IP-Adapter FaceID (weights configured by the operator)",
                loader="generator.diffusion.backend:load_faceid_backend", offline=False,
                prompt_driven=True),
    BackendSpec("sdxl-faceid", "SDXL + IP-Adapter FaceID (weights configured by the operator)",
                loader="generator.diffusion.backend:load_faceid_backend", offline=False,
                prompt_driven=True),
    BackendSpec("arc2face", "Arc2Face on Stable Diffusion 1.5 (weights configured by the operator)",
                loader="generator.diffusion.backend:load_arc2face_backend", offline=False,
                prompt_driven=True),
)}


def backend_spec(name: str) -> BackendSpec:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown generator {name!r}; choose from {', '.join(BACKENDS)}") from None


def load_backend(name: str, device: str = "cpu", **options: Any) -> GeneratorBackend:
    """Load the backend registered as ``name`` (``options``: the operator's settings for a
    configured backend, e.g. a diffusion generator's ``base_model``)."""
    return backend_spec(name).load(device=device, **options)


def default_generator(installed_only: bool = True) -> str:
    """The first offline backend (that is installed, unless ``installed_only`` is False)."""
    for spec in BACKENDS.values():
        if spec.offline and (not installed_only or spec.is_installed()):
            return spec.name
    return next(iter(BACKENDS))
