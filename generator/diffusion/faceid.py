"""Stable Diffusion 1.5 / SDXL with IP-Adapter FaceID: an ArcFace vector conditions the UNet.

IP-Adapter FaceID (Ye et al., 2023, "IP-Adapter: text compatible image prompt adapter", the FaceID
variant of https://huggingface.co/h94/IP-Adapter-FaceID) maps a face-recognition embedding
(InsightFace ArcFace, 512-d, L2-normalised) through a small MLP to 4 extra tokens, which new
key/value projections in every cross-attention layer attend to beside the text tokens.

Loading, with the public diffusers calls only::

    pipe = StableDiffusionPipeline.from_pretrained(base_model, dtype=...)   # or ...XLPipeline
    pipe.load_ip_adapter(adapter, subfolder=..., weight_name="ip-adapter-faceid_sd15.bin",
                         image_encoder_folder=None)    # FaceID has no CLIP image encoder
    pipe.set_ip_adapter_scale(scale)

The adapter file holds ``{"image_proj": {...}, "ip_adapter": {...}}`` (a ``.safetensors`` file
holds the same keys with ``image_proj.``/``ip_adapter.`` prefixes). diffusers recognises FaceID by
``image_proj["norm.weight"]`` (``loaders/unet.py``, ``_convert_ip_adapter_image_proj_to_diffusers``,
the ``elif "norm.weight" in state_dict`` branch) and builds ``IPAdapterFaceIDImageProjection``:
``proj.0`` Linear(D, D*mult), GELU, ``proj.2`` Linear(D*mult, cross_attention_dim*4), ``norm``
LayerNorm(cross_attention_dim); for SD 1.5, D=512, mult=2, cross_attention_dim=768. The
cross-attention weights are ``"{k}.to_k_ip.weight"``/``"{k}.to_v_ip.weight"`` with k = 1, 3, 5, ...
over the UNet's attention processors in order (``_convert_ip_adapter_attn_to_diffusers``).

The LoRA is optional. The original FaceID checkpoints also store a LoRA for every attention
layer (``"{k}.to_q_lora.down.weight"`` ... in the same ``ip_adapter`` dict); diffusers applies it
through PEFT when ``peft`` is installed (``_load_ip_adapter_loras`` then ``load_lora_weights``
with adapter name ``faceid_0``) and otherwise logs a warning and skips it: identity likeness is
then weaker. ``lora_applied`` and the recipe say which happened; ``require_lora=True`` makes a
missing LoRA an error. The separate ``*_lora.safetensors`` files on the hub are the same LoRA for
UIs that load LoRAs apart; do not load them on top (it would apply the LoRA twice).

Identity conditioning per row: diffusers' ``prepare_ip_adapter_image_embeds`` repeats the given
``ip_adapter_image_embeds`` once per image of the batch (``pipeline_stable_diffusion.py`` in
0.42.1: ``torch.cat([single_image_embeds] * num_images_per_prompt)`` at lines 572-576, called with
``batch_size * num_images_per_prompt`` at lines 980-987; the SDXL pipeline does the same), which
suits one reference face shared by a whole batch; with one identity per row every image would
attend to every identity's tokens (diffusers issue #9813, open). :func:`_one_embedding_per_row`
replaces that method on the pipeline instance for the duration of one call so each row keeps its
own identity; the embeddings still enter through ``ip_adapter_image_embeds``, laid out as the
method expects for classifier-free guidance: ``(2N, 1, D)``, the N negative rows (zeros, as in
the diffusers FaceID example) first, then the N identities.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generator.backends import GeneratorLoadError
from generator.diffusion.batching import (
    ProgressFn,
    StopFn,
    call_pipeline,
    check_identity_batch,
    normalise_rows,
)
from generator.diffusion.loading import (
    default_size,
    load_pipeline,
    place,
    resolve_device,
    resolve_dtype,
    torch_components,
    use_scheduler,
    weights_sha256,
)

SD15_LICENCE = "Stable Diffusion 1.5: CreativeML OpenRAIL-M"
SDXL_LICENCE = "Stable Diffusion XL 1.0: CreativeML OpenRAIL++-M"
FACEID_LICENCE = ("IP-Adapter-FaceID (h94/IP-Adapter-FaceID): non-commercial research use only; "
                  "it expects InsightFace ArcFace embeddings, whose models are non-commercial "
                  "research only")
#: The negative prompt of the diffusers FaceID example.
DEFAULT_NEGATIVE_PROMPT = "monochrome, lowres, bad anatomy, worst quality, low quality"


@contextlib.contextmanager
def _one_embedding_per_row(pipe: Any) -> Iterator[None]:
    """Let ``ip_adapter_image_embeds`` carry one identity per row during one call (see above).

    If the pipeline never calls the replacement (a diffusers release that renamed the method),
    the call fails instead of silently mixing identities across rows.
    """
    calls: list[int] = []

    def per_row(ip_adapter_image: Any, ip_adapter_image_embeds: Any, device: Any,
                num_images_per_prompt: int, do_classifier_free_guidance: bool) -> list[Any]:
        if ip_adapter_image_embeds is None:
            raise ValueError("FaceID needs ip_adapter_image_embeds")
        rows = num_images_per_prompt * (2 if do_classifier_free_guidance else 1)
        out = []
        for embeds in ip_adapter_image_embeds:
            if embeds.shape[0] != rows:
                raise ValueError(f"ip_adapter_image_embeds has {embeds.shape[0]} rows; this call "
                                 f"needs {rows} (negatives first under guidance)")
            out.append(embeds.to(device=device))
        calls.append(rows)
        return out

    pipe.prepare_ip_adapter_image_embeds = per_row
    try:
        yield
    finally:
        del pipe.prepare_ip_adapter_image_embeds
    if not calls:
        raise RuntimeError(f"{type(pipe).__name__} did not call prepare_ip_adapter_image_embeds; "
                           "this diffusers version needs a new way to pass one identity per row")


@dataclass
class FaceIDGenerator:
    """A loaded SD 1.5 / SDXL pipeline with IP-Adapter FaceID. Build it with
    :func:`load_faceid_generator`. Not thread-safe (one pipeline call at a time)."""

    pipe: Any
    model_id: str
    weights_sha256: str
    licence: str
    id_dim: int
    architecture: str
    ip_adapter_scale: float = 1.0
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT
    lora_applied: bool = False
    normalise: bool = True

    def recipe(self) -> dict[str, Any]:
        """Serialisable settings that, with prompt, seed and identity, reproduce an image."""
        return {"backend": "diffusion-ip-adapter-faceid", "model_id": self.model_id,
                "weights_sha256": self.weights_sha256, "architecture": self.architecture,
                "dtype": str(self.pipe.unet.dtype).removeprefix("torch."),
                "scheduler": type(self.pipe.scheduler).__name__,
                "scheduler_config": dict(self.pipe.scheduler.config),
                "ip_adapter_scale": self.ip_adapter_scale, "lora_applied": self.lora_applied,
                "negative_prompt": self.negative_prompt, "identity_normalised": self.normalise,
                "latent_sampler": "torch CPU Generator, randn per cell from its seed"}

    def _pipe_kwargs(self, identity_embeddings: Any, prompts: list[str], seeds: list[int],
                     guidance_scale: float) -> dict[str, Any]:
        ids = check_identity_batch(identity_embeddings, prompts, seeds, self.id_dim)
        if self.normalise:
            ids = normalise_rows(ids)
        rows = torch.from_numpy(ids)[:, None, :]  # (N, 1, D): one reference image per row
        cfg = guidance_scale > 1 and self.pipe.unet.config.time_cond_proj_dim is None
        if cfg:
            rows = torch.cat([torch.zeros_like(rows), rows])
        kwargs: dict[str, Any] = {
            "prompt": list(prompts),
            "ip_adapter_image_embeds": [rows.to(self.pipe.unet.device, self.pipe.unet.dtype)]}
        if cfg and self.negative_prompt:
            kwargs["negative_prompt"] = [self.negative_prompt] * len(prompts)
        return kwargs

    def render(self, identity_embeddings: np.ndarray, prompts: list[str], seeds: list[int], *,
               steps: int = 30, guidance_scale: float = 7.5, height: int | None = None,
               width: int | None = None, callback: ProgressFn | None = None,
               should_stop: StopFn | None = None) -> np.ndarray:
        """Images ``(N, H, W, 3) uint8`` RGB, row i from identity i, prompt i and seed i.

        ``identity_embeddings`` is ``(N, id_dim)`` float (ArcFace: 512; rows are L2-normalised
        here unless ``normalise`` is off). ``height``/``width`` default to the model's native
        size. ``callback(step, total)`` runs after every denoising step; ``should_stop()`` is
        checked before the call and after every step and raises
        :class:`~generator.diffusion.batching.GenerationCancelled`.
        """
        size = default_size(self.pipe)
        with _one_embedding_per_row(self.pipe):
            return call_pipeline(
                self.pipe, seeds, steps=steps, guidance_scale=guidance_scale,
                height=height or size, width=width or size, callback=callback,
                should_stop=should_stop,
                **self._pipe_kwargs(identity_embeddings, prompts, seeds, guidance_scale))

    def final_latents(self, identity_embeddings: np.ndarray, prompts: list[str],
                      seeds: list[int], *, steps: int = 30, guidance_scale: float = 7.5,
                      height: int | None = None, width: int | None = None) -> torch.Tensor:
        """The denoised latents ``(N, C, H/f, W/f)`` float32 on the CPU, before the VAE (for
        checks and benchmarks that compare runs within a tolerance)."""
        size = default_size(self.pipe)
        with _one_embedding_per_row(self.pipe):
            return call_pipeline(
                self.pipe, seeds, steps=steps, guidance_scale=guidance_scale,
                height=height or size, width=width or size, output_type="latent",
                **self._pipe_kwargs(identity_embeddings, prompts, seeds, guidance_scale))


def _peft_available() -> bool:
    from diffusers.utils import USE_PEFT_BACKEND

    return bool(USE_PEFT_BACKEND)


def load_faceid_generator(
    base_model: str | Path,
    adapter: str | Path,
    *,
    weight_name: str = "ip-adapter-faceid_sd15.bin",
    subfolder: str = "",
    architecture: str = "auto",
    device: str | None = None,
    precision: str = "auto",
    scheduler: str | None = None,
    ip_adapter_scale: float = 1.0,
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT,
    require_lora: bool = False,
    licence: str | None = None,
    model_id: str | None = None,
    hash_weights: bool = True,
    local_files_only: bool = False,
    revision: str | None = None,
    variant: str | None = None,
    **components: Any,
) -> FaceIDGenerator:
    """Load ``base_model`` (hub id or folder) and the FaceID adapter ``adapter`` (hub repo or
    folder; the file is ``<adapter>/<subfolder>/<weight_name>``).

    For SD 1.5: ``base_model="stable-diffusion-v1-5/stable-diffusion-v1-5"`` (or a fine-tune such
    as Realistic Vision), ``adapter="h94/IP-Adapter-FaceID"``,
    ``weight_name="ip-adapter-faceid_sd15.bin"``; for SDXL: an SDXL base and
    ``weight_name="ip-adapter-faceid_sdxl.bin"``. ``scheduler`` swaps the model's scheduler (see
    :data:`~generator.diffusion.loading.SCHEDULERS`; the diffusers FaceID example uses DDIM).
    ``components`` replace pipeline parts (e.g. ``vae=``). Raises ``GeneratorLoadError`` with the
    reason when a model or adapter cannot be loaded.
    """
    device = resolve_device(device)
    dtype = resolve_dtype(device, precision)
    pipe = load_pipeline(base_model, architecture=architecture, dtype=dtype,
                         local_files_only=local_files_only, revision=revision, variant=variant,
                         **components)
    arch = "sdxl" if type(pipe).__name__.startswith("StableDiffusionXL") else "sd15"
    use_scheduler(pipe, scheduler)
    if not _peft_available():
        warnings.warn("peft is not installed: diffusers skips the LoRA stored in IP-Adapter "
                      "FaceID checkpoints (identity likeness is weaker); install peft to apply "
                      "it", stacklevel=2)
    try:
        pipe.load_ip_adapter(str(adapter), subfolder=subfolder or None, weight_name=weight_name,
                             image_encoder_folder=None, local_files_only=local_files_only,
                             revision=revision)
    except Exception as exc:
        raise GeneratorLoadError(
            f"cannot load IP-Adapter FaceID {weight_name!r} from {adapter} onto {base_model} "
            f"(an {arch} UNet with cross_attention_dim {pipe.unet.config.cross_attention_dim}): "
            f"{exc}") from exc
    layers = getattr(pipe.unet.encoder_hid_proj, "image_projection_layers", [])
    proj = layers[0] if len(layers) == 1 else None
    if type(proj).__name__ != "IPAdapterFaceIDImageProjection":
        raise GeneratorLoadError(f"{weight_name!r} is not an IP-Adapter FaceID checkpoint "
                                 f"(diffusers built {type(proj).__name__}); FaceID-Plus and "
                                 "image IP-Adapters need a CLIP image encoder and are not "
                                 "supported here")
    lora_applied = "faceid_0" in (getattr(pipe.unet, "peft_config", None) or {})
    if require_lora and not lora_applied:
        why = "the checkpoint has no LoRA keys" if _peft_available() else "peft is not installed"
        raise GeneratorLoadError(f"the FaceID LoRA was not applied ({why}); install peft, use a "
                                 "checkpoint with its LoRA, or load with require_lora=False")
    pipe.set_ip_adapter_scale(ip_adapter_scale)
    digest = weights_sha256(torch_components(pipe)) if hash_weights else ""
    place(pipe, device)
    id_dim = int(proj.ff.net[0].proj.in_features)
    default_licence = SDXL_LICENCE if arch == "sdxl" else SD15_LICENCE
    name = model_id or f"{base_model}+{adapter}/{(subfolder + '/') if subfolder else ''}{weight_name}"
    return FaceIDGenerator(pipe=pipe, model_id=str(name), weights_sha256=digest,
                           licence=licence or f"{default_licence}; {FACEID_LICENCE}",
                           id_dim=id_dim, architecture=arch, ip_adapter_scale=ip_adapter_scale,
                           negative_prompt=negative_prompt, lora_applied=lora_applied)
