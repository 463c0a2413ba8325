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
missing LoRA an error. The separate ``*_lora.safetensors`` files on the hub are the same LoRA in
kohya's format (keys ``lora_unet_...``) for UIs that load LoRAs apart; they hold no adapter, and
loading one on top would apply the LoRA twice.

Checked before the base model is loaded (:mod:`generator.diffusion.adapter_files`: :func:`read_adapter`, :func:`adapter_layout`,
:func:`refuse_unless_faceid`): the adapter file is found and its keys are classified the way
diffusers chooses the image projection (``_convert_ip_adapter_image_proj_to_diffusers``: in that
order, ``proj.weight`` an image IP-Adapter, ``proj.3.weight`` IP-Adapter Full,
``perceiver_resampler.proj_in.weight`` FaceID Plus v1/v2, ``norm.weight`` FaceID, else
IP-Adapter Plus). Anything but FaceID is refused with what it is and which file to use instead
(a kohya LoRA file: "use the .bin, it already contains the LoRA"; diffusers itself would fail
with the bare message ``'latents'``), and the adapter's cross-attention width is compared with
the base UNet's config. The base model and the adapter are separate repositories with their own
commits: ``base_revision`` and ``adapter_revision`` pin each; a single ``revision`` is refused.

The identity model: the FaceID adapters were trained on the ArcFace embedding of insightface's
``buffalo_l`` pack (``w600k_r50.onnx``, 512-d), :data:`IDENTITY_MODEL`.

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
from generator.diffusion.adapter_files import (
    AdapterLayout,
    adapter_layout,
    read_adapter,
    refuse_unless_faceid,
)
from generator.diffusion.batching import (
    ProgressFn,
    StopFn,
    call_pipeline_rows,
    check_identity_batch,
    normalise_rows,
)
from generator.diffusion.loading import (
    default_size,
    detect_architecture,
    load_pipeline,
    one_row_per_call_default,
    place,
    read_component_config,
    refuse_single_revision,
    resolve_device,
    resolve_dtype,
    resolve_file,
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
#: The insightface pack whose ArcFace embedding the FaceID adapters were trained on.
IDENTITY_MODEL = "buffalo_l"
IDENTITY_MODEL_NOTE = ("IP-Adapter FaceID was trained on the ArcFace embedding of insightface's "
                       "buffalo_l pack (w600k_r50.onnx, 512-d)")
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
    one_row_per_call: bool = True

    def recipe(self) -> dict[str, Any]:
        """Serialisable settings that, with prompt, seed and identity, reproduce an image."""
        return {"backend": "diffusion-ip-adapter-faceid", "model_id": self.model_id,
                "weights_sha256": self.weights_sha256, "architecture": self.architecture,
                "dtype": str(self.pipe.unet.dtype).removeprefix("torch."),
                "scheduler": type(self.pipe.scheduler).__name__,
                "scheduler_config": dict(self.pipe.scheduler.config),
                "ip_adapter_scale": self.ip_adapter_scale, "lora_applied": self.lora_applied,
                "negative_prompt": self.negative_prompt, "identity_normalised": self.normalise,
                "latent_sampler": "torch CPU Generator, randn per cell from its seed",
                "one_row_per_call": self.one_row_per_call}

    def _identities(self, identity_embeddings: Any, prompts: list[str],
                    seeds: list[int]) -> np.ndarray:
        ids = check_identity_batch(identity_embeddings, prompts, seeds, self.id_dim)
        return normalise_rows(ids) if self.normalise else ids

    def _pipe_kwargs(self, ids: np.ndarray, prompts: list[str],
                     guidance_scale: float) -> dict[str, Any]:
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
        size. With ``one_row_per_call`` every row is rendered by its own pipeline call (its
        bytes do not depend on the batch), else the batch shares one call.
        ``callback(done, total)`` runs after every denoising step, counted over the calls
        (``total`` = calls x steps); ``should_stop()`` is checked before the first call and after
        every step and raises :class:`~generator.diffusion.batching.GenerationCancelled`.
        """
        return self._call(identity_embeddings, prompts, seeds, steps=steps,
                          guidance_scale=guidance_scale, height=height, width=width,
                          callback=callback, should_stop=should_stop, output_type="np")

    def _call(self, identity_embeddings: Any, prompts: list[str], seeds: list[int], *,
              steps: int, guidance_scale: float, height: int | None, width: int | None,
              output_type: str, callback: ProgressFn | None = None,
              should_stop: StopFn | None = None) -> Any:
        ids = self._identities(identity_embeddings, prompts, seeds)
        prompts = list(prompts)
        size = default_size(self.pipe)
        with _one_embedding_per_row(self.pipe):
            return call_pipeline_rows(
                self.pipe, seeds,
                lambda rows: self._pipe_kwargs(ids[rows], [prompts[i] for i in rows],
                                               guidance_scale),
                one_row_per_call=self.one_row_per_call, steps=steps,
                guidance_scale=guidance_scale, height=height or size, width=width or size,
                callback=callback, should_stop=should_stop, output_type=output_type)

    def final_latents(self, identity_embeddings: np.ndarray, prompts: list[str],
                      seeds: list[int], *, steps: int = 30, guidance_scale: float = 7.5,
                      height: int | None = None, width: int | None = None) -> torch.Tensor:
        """The denoised latents ``(N, C, H/f, W/f)`` float32 on the CPU, before the VAE (for
        checks and benchmarks that compare runs within a tolerance)."""
        return self._call(identity_embeddings, prompts, seeds, steps=steps,
                          guidance_scale=guidance_scale, height=height, width=width,
                          output_type="latent")


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
    base_revision: str | None = None,
    adapter_revision: str | None = None,
    variant: str | None = None,
    one_row_per_call: bool | None = None,
    revision: str | None = None,
    **components: Any,
) -> FaceIDGenerator:
    """Load ``base_model`` (hub id or folder) and the FaceID adapter ``adapter`` (hub repo or
    folder; the file is ``<adapter>/<subfolder>/<weight_name>``).

    For SD 1.5: ``base_model="stable-diffusion-v1-5/stable-diffusion-v1-5"`` (or a fine-tune such
    as Realistic Vision), ``adapter="h94/IP-Adapter-FaceID"``,
    ``weight_name="ip-adapter-faceid_sd15.bin"``; for SDXL: an SDXL base and
    ``weight_name="ip-adapter-faceid_sdxl.bin"``. ``scheduler`` swaps the model's scheduler (see
    :data:`~generator.diffusion.loading.SCHEDULERS`; the diffusers FaceID example uses DDIM).
    ``base_revision`` and ``adapter_revision`` pin a commit, branch or tag of each repository
    (``revision`` is refused: it would name one commit for two repositories).
    ``one_row_per_call``: render every row in its own pipeline call (bytes independent of the
    batch; default on a CPU) or a batch in one call (default on CUDA). ``components`` replace
    pipeline parts (e.g. ``vae=``). Raises ``GeneratorLoadError`` with the reason when a model
    or adapter cannot be loaded; the adapter file is found and checked before the base model is
    loaded.
    """
    refuse_single_revision(revision, base_key="base_revision", other_key="adapter_revision",
                           other="adapter")
    device = resolve_device(device)
    dtype = resolve_dtype(device, precision)
    where, path, state, layout = _find_faceid_adapter(adapter, weight_name, subfolder,
                                                      adapter_revision, local_files_only)
    hub = {"local_files_only": local_files_only, "revision": base_revision}
    if architecture == "auto":
        architecture = detect_architecture(base_model, **hub)
    _refuse_adapter_for_another_base(base_model, architecture, layout, weight_name, where,
                                     components, hub)
    pipe = load_pipeline(base_model, architecture=architecture, dtype=dtype,
                         local_files_only=local_files_only, revision=base_revision,
                         variant=variant, **components)
    arch = "sdxl" if type(pipe).__name__.startswith("StableDiffusionXL") else "sd15"
    use_scheduler(pipe, scheduler)
    proj = _attach_faceid_adapter(pipe, state, path, weight_name, where, base_model, arch)
    lora_applied = _faceid_lora_applied(pipe, layout, require_lora)
    pipe.set_ip_adapter_scale(ip_adapter_scale)
    digest = weights_sha256(torch_components(pipe)) if hash_weights else ""
    place(pipe, device)
    id_dim = int(proj.ff.net[0].proj.in_features)
    default_licence = SDXL_LICENCE if arch == "sdxl" else SD15_LICENCE
    name = model_id or f"{base_model}+{adapter}/{(subfolder + '/') if subfolder else ''}{weight_name}"
    return FaceIDGenerator(pipe=pipe, model_id=str(name), weights_sha256=digest,
                           licence=licence or f"{default_licence}; {FACEID_LICENCE}",
                           id_dim=id_dim, architecture=arch, ip_adapter_scale=ip_adapter_scale,
                           negative_prompt=negative_prompt, lora_applied=lora_applied,
                           one_row_per_call=one_row_per_call_default(one_row_per_call, device))


def _find_faceid_adapter(adapter: str | Path, weight_name: str, subfolder: str,
                         adapter_revision: str | None, local_files_only: bool
                         ) -> tuple[str, Path, Any, AdapterLayout]:
    """The adapter file ``<adapter>/<subfolder>/<weight_name>``: where it is (for messages),
    its path, its state dict (None for ``.safetensors``) and layout; refuses a file that is
    not an IP-Adapter FaceID."""
    where = f"{adapter}/{subfolder}" if subfolder else str(adapter)
    path = resolve_file(adapter, weight_name, subfolder=subfolder, revision=adapter_revision,
                        local_files_only=local_files_only, what="IP-Adapter FaceID")
    state, shapes = read_adapter(path)
    layout = adapter_layout(shapes)
    refuse_unless_faceid(layout, path)
    return where, path, state, layout


def _refuse_adapter_for_another_base(base_model: str | Path, architecture: str,
                                     layout: AdapterLayout,
                                     weight_name: str, where: str, components: dict[str, Any],
                                     hub: dict[str, Any]) -> None:
    """Refuse, before the base model's weights load, an adapter made for a UNet with another
    cross-attention width (an SDXL file on SD 1.5 or the reverse)."""
    unet_config = (dict(components["unet"].config) if "unet" in components
                   else read_component_config(base_model, "unet", **hub))
    base_cross = unet_config.get("cross_attention_dim")
    if base_cross is not None and base_cross != layout.cross_attention_dim:
        raise GeneratorLoadError(
            f"{weight_name!r} in {where} is an IP-Adapter FaceID for a UNet with "
            f"cross_attention_dim {layout.cross_attention_dim}, but {base_model} is an "
            f"{architecture} UNet with cross_attention_dim {base_cross}: use the adapter made "
            "for this base (ip-adapter-faceid_sd15.bin for SD 1.5, ip-adapter-faceid_sdxl.bin "
            "for SDXL)")


def _attach_faceid_adapter(pipe: Any, state: Any, path: Path, weight_name: str, where: str,
                           base_model: str | Path, arch: str) -> Any:
    """Load the adapter file found earlier onto ``pipe`` (warning first when peft is missing)
    and return its FaceID image projection; refuses a checkpoint diffusers does not build as
    FaceID."""
    if not _peft_available():
        warnings.warn("peft is not installed: diffusers skips the LoRA stored in IP-Adapter "
                      "FaceID checkpoints (identity likeness is weaker); install peft to apply "
                      "it", stacklevel=3)  # points at load_faceid_generator's caller
    try:
        # The file found above: its state dict (read once), or the .safetensors file itself.
        source = state if state is not None else str(path.parent)
        pipe.load_ip_adapter(source, subfolder=None, weight_name=path.name,
                             image_encoder_folder=None, local_files_only=True)
    except Exception as exc:
        raise GeneratorLoadError(
            f"cannot load IP-Adapter FaceID {weight_name!r} from {where} onto {base_model} "
            f"(an {arch} UNet with cross_attention_dim {pipe.unet.config.cross_attention_dim}): "
            f"{exc}") from exc
    layers = getattr(pipe.unet.encoder_hid_proj, "image_projection_layers", [])
    proj = layers[0] if len(layers) == 1 else None
    if type(proj).__name__ != "IPAdapterFaceIDImageProjection":
        raise GeneratorLoadError(f"{weight_name!r} is not an IP-Adapter FaceID checkpoint "
                                 f"(diffusers built {type(proj).__name__}); FaceID-Plus and "
                                 "image IP-Adapters need a CLIP image encoder and are not "
                                 "supported here")
    return proj


def _faceid_lora_applied(pipe: Any, layout: AdapterLayout, require_lora: bool) -> bool:
    """Whether diffusers applied the checkpoint's LoRA; refuses when it is required and not."""
    lora_applied = "faceid_0" in (getattr(pipe.unet, "peft_config", None) or {})
    if require_lora and not lora_applied:
        why = ("peft is not installed" if not _peft_available() else
               "the checkpoint has no LoRA keys" if not layout.lora_rank else
               "diffusers did not apply it")
        raise GeneratorLoadError(f"the FaceID LoRA was not applied ({why}); install peft, use a "
                                 "checkpoint with its LoRA, or load with require_lora=False")
    return lora_applied
