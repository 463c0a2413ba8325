"""Diffusion backends: identity from a face-recognition embedding, edits from one prompt phrase.

The concept. An identity is the FR embedding of an anchor face (a 512-d ArcFace vector). The
backend turns (identity, prompt, seed) into an image: the seed fixes the initial latents (drawn
per cell on the CPU, so an image does not depend on its batch or device), the identity enters the
network, and the prompt describes everything else. An attribute edit changes exactly one phrase of
the prompt (expression, pose, lighting, accessories) while the seed, the initial latents and the
identity embedding stay the same, so a variant differs from its baseline only by that phrase.
Group anchors are prompts ("a photo of a 40-year-old woman with dark skin"); whether an image
really shows the group or the edit is for the attribute sensors to say, never the words.

Two routes, both through the real diffusers pipelines and loadable by hub id or local folder:

- :mod:`generator.diffusion.faceid`: Stable Diffusion 1.5 or SDXL with IP-Adapter FaceID
  (``load_ip_adapter(..., image_encoder_folder=None)`` + ``ip_adapter_image_embeds``).
- :mod:`generator.diffusion.arc2face`: Arc2Face, a stock ``StableDiffusionPipeline`` whose CLIP
  text encoder receives the ArcFace vector as the token embedding of the word "id" in
  "photo of a id person"; the result is passed as ``prompt_embeds``.

Every row renders in its own pipeline call on the CPU (its bytes do not depend on its batch);
on a GPU a batch shares one call by default (``one_row_per_call``, see
:mod:`generator.diffusion.batching`). Adapter files are classified from their keys before the
base model loads (:func:`generator.diffusion.adapter_files.adapter_layout`: FaceID Plus, image
IP-Adapters and the kohya copy of the FaceID LoRA are refused with the file to use instead), and
the base model and the adapter (or Arc2Face's weights) are pinned by their own revisions.
:mod:`generator.diffusion.check` checks a configured route before an audit uses it
(``manage.py check_diffusion``).

For an audit (no torch in these modules): :mod:`generator.diffusion.audit` samples identities
(group anchors confirmed by the sensors), :mod:`generator.diffusion.variants` renders and checks
their variants, and :mod:`generator.diffusion.backend` serves both as the registry's backends.

Public names:

- prompts (no torch): :func:`anchor_prompt`, :func:`variant_prompt`, :func:`prompt_slots`,
  :func:`arc2face_prompt`, :class:`PromptEdit`, :data:`PROMPT_FACTORS`, :data:`BASELINE_LEVELS`
  (the prompt factors themselves, phrases, sensors and targets, are specified in
  :data:`generator.factor_spec.PROMPT_FACTOR_SPECS`).
- batching (torch imported inside its functions): :class:`DiffusionCell`,
  :class:`RenderSettings`, :func:`plan_batches`, :func:`render_cells`, :func:`seeded_latents`,
  :class:`StepReporter`, :class:`GenerationCancelled`.
- backends (import torch and diffusers; loaded on first use of these names):
  :class:`FaceIDGenerator` / :func:`load_faceid_generator`, :class:`Arc2FaceGenerator` /
  :func:`load_arc2face_generator`, :func:`adapter_layout`; helpers in
  :mod:`generator.diffusion.loading` (:func:`resolve_device`, :func:`resolve_dtype`,
  :func:`weights_sha256`).

Both generators offer ``render(identity_embeddings (N, D) float32, prompts, seeds, *, steps,
guidance_scale, height, width, callback=None, should_stop=None) -> (N, H, W, 3) uint8``,
``final_latents(...)``, ``recipe()`` and the attributes ``model_id``, ``weights_sha256``,
``licence`` and ``id_dim``. Importing this package does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from generator.diffusion.batching import (
    DiffusionCell,
    GenerationCancelled,
    RenderSettings,
    StepReporter,
    plan_batches,
    render_cells,
    seeded_latents,
)
from generator.diffusion.prompts import (
    BASELINE_LEVELS,
    PROMPT_FACTORS,
    PromptEdit,
    anchor_prompt,
    arc2face_prompt,
    prompt_slots,
    variant_prompt,
)

_LAZY = {
    "FaceIDGenerator": "generator.diffusion.faceid",
    "load_faceid_generator": "generator.diffusion.faceid",
    "Arc2FaceGenerator": "generator.diffusion.arc2face",
    "load_arc2face_generator": "generator.diffusion.arc2face",
    "adapter_layout": "generator.diffusion.adapter_files",
    "resolve_device": "generator.diffusion.loading",
    "resolve_dtype": "generator.diffusion.loading",
    "weights_sha256": "generator.diffusion.loading",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BASELINE_LEVELS",
    "PROMPT_FACTORS",
    "Arc2FaceGenerator",
    "adapter_layout",
    "DiffusionCell",
    "FaceIDGenerator",
    "GenerationCancelled",
    "PromptEdit",
    "RenderSettings",
    "StepReporter",
    "anchor_prompt",
    "arc2face_prompt",
    "load_arc2face_generator",
    "load_faceid_generator",
    "plan_batches",
    "prompt_slots",
    "render_cells",
    "resolve_device",
    "resolve_dtype",
    "seeded_latents",
    "variant_prompt",
]
