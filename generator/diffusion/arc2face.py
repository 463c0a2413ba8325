"""Arc2Face: a stock Stable Diffusion 1.5 pipeline whose prompt embedding carries the identity.

Arc2Face (Papantoniou et al., ECCV 2024, "Arc2Face: a foundation model for ID-consistent human
faces"; https://github.com/foivospar/Arc2Face) fine-tunes the SD 1.5 UNet and its CLIP text
encoder so that the prompt ``"photo of a id person"``, with the *token embedding* of ``id``
replaced by the L2-normalised ArcFace vector (512-d, zero-padded to the encoder's 768), encodes a
face identity. The repo's ``project_face_embs`` does this with a patched text encoder that
accepts token embeddings; here the same computation uses the stock ``CLIPTextModel``:
:meth:`Arc2FaceGenerator.project` swaps the encoder's input embedding layer (the public
``get_input_embeddings``/``set_input_embeddings`` of transformers models) for one call with a
layer that looks up the usual token embeddings and writes each row's identity vector at the
position of the placeholder token. Position embeddings, the causal transformer and the final
layer norm then run as usual, and the output (last hidden state, as diffusers' ``encode_prompt``
uses) goes to the pipeline as ``prompt_embeds``. The negative branch of classifier-free guidance
is the encoder's own embedding of ``""`` (what the pipeline computes when no negative prompt is
given), as in the Arc2Face demo (DPM-Solver++ 25 steps, guidance 3).

Loading (hub layout of ``FoivosPar/Arc2Face``: subfolders ``arc2face/`` (UNet) and ``encoder/``
(text encoder); tokenizer, VAE and scheduler come from the SD 1.5 base)::

    encoder = CLIPTextModel.from_pretrained(arc2face_model, subfolder="encoder", dtype=...)
    unet = UNet2DConditionModel.from_pretrained(arc2face_model, subfolder="arc2face", dtype=...)
    pipe = StableDiffusionPipeline.from_pretrained(base_model, text_encoder=encoder, unet=unet,
                                                   safety_checker=None, dtype=...)

A folder holding the whole Arc2Face pipeline (``save_pretrained`` layout) loads with
``arc2face_model=None``. The SD 1.5 base and Arc2Face's weights are separate repositories:
``base_revision`` and ``arc2face_revision`` pin each (a single ``revision`` is refused).

The identity model: Arc2Face was trained on the embedding of its authors' own ArcFace R100
(trained on WebFace42M), shipped as ``arcface.onnx`` in ``FoivosPar/Arc2Face``
(:data:`IDENTITY_MODEL_FILE`); insightface's packs embed faces in other spaces.

Arc2Face was trained on identity alone, so prompt edits appended to its prompt
(:func:`generator.diffusion.prompts.arc2face_prompt`) are weak; the sensors must confirm them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from generator.backends import GeneratorLoadError
from generator.diffusion.batching import (
    ProgressFn,
    StopFn,
    call_pipeline_rows,
    check_identity_batch,
)
from generator.diffusion.loading import (
    default_size,
    load_pipeline,
    one_row_per_call_default,
    place,
    refuse_single_revision,
    resolve_device,
    resolve_dtype,
    torch_components,
    use_scheduler,
    weights_sha256,
)
from generator.diffusion.prompts import ARC2FACE_PLACEHOLDER, ARC2FACE_PROMPT

ARC2FACE_LICENCE = ("Arc2Face weights (FoivosPar/Arc2Face): CC BY-NC 4.0, non-commercial; "
                    "base Stable Diffusion 1.5: CreativeML OpenRAIL-M; identity vectors from "
                    "InsightFace ArcFace models: non-commercial research only")
#: The face-recognition model Arc2Face was trained on: its authors' ArcFace R100 (WebFace42M),
#: by the name FaceAudit's model registry gives it, and its file.
IDENTITY_MODEL = "arc2face_arcface"
IDENTITY_MODEL_FILE = "arcface.onnx"
IDENTITY_MODEL_NOTE = ("Arc2Face was trained on the embedding of its authors' ArcFace R100 "
                       "(WebFace42M), arcface.onnx in FoivosPar/Arc2Face, not on an insightface "
                       "pack")


class _PlaceholderEmbedding(torch.nn.Module):
    """Token embedding that puts ``vectors[i]`` at row i's placeholder position."""

    def __init__(self, base: torch.nn.Module, placeholder_id: int, vectors: torch.Tensor):
        super().__init__()
        self.base = base
        self.placeholder_id = placeholder_id
        self.vectors = vectors  # (N, hidden)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        embeds = self.base(input_ids)
        if embeds.shape[0] != self.vectors.shape[0]:
            raise RuntimeError("identity rows and token rows differ; the placeholder layer is "
                               "meant for Arc2FaceGenerator.project only")
        mask = (input_ids == self.placeholder_id).unsqueeze(-1)
        return torch.where(mask, self.vectors[:, None, :].to(embeds.dtype), embeds)


@dataclass
class Arc2FaceGenerator:
    """A loaded Arc2Face pipeline. Build it with :func:`load_arc2face_generator`."""

    pipe: Any
    model_id: str
    weights_sha256: str
    licence: str
    id_dim: int = 512
    placeholder: str = ARC2FACE_PLACEHOLDER
    negative_prompt: str | None = None
    one_row_per_call: bool = True

    def recipe(self) -> dict[str, Any]:
        """Serialisable settings that, with prompt, seed and identity, reproduce an image."""
        return {"backend": "diffusion-arc2face", "model_id": self.model_id,
                "weights_sha256": self.weights_sha256,
                "dtype": str(self.pipe.unet.dtype).removeprefix("torch."),
                "scheduler": type(self.pipe.scheduler).__name__,
                "scheduler_config": dict(self.pipe.scheduler.config),
                "placeholder": self.placeholder, "negative_prompt": self.negative_prompt,
                "identity_normalised": True,
                "latent_sampler": "torch CPU Generator, randn per cell from its seed",
                "one_row_per_call": self.one_row_per_call}

    def placeholder_token_id(self) -> int:
        """The tokenizer id of the placeholder word (one token, else ``ValueError``)."""
        ids = self.pipe.tokenizer.encode(self.placeholder, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"placeholder {self.placeholder!r} is {len(ids)} tokens for this "
                             "tokenizer; it must be exactly one")
        return int(ids[0])

    @torch.inference_mode()
    def project(self, identity_embeddings: np.ndarray, prompts: list[str] | None = None
                ) -> torch.Tensor:
        """Prompt embeddings ``(N, 77, hidden)`` with identity i in prompt i.

        Each identity row (``(N, D)``, D <= the encoder's hidden size; ArcFace: 512 of 768) is
        L2-normalised, zero-padded to the hidden size and written as the token embedding of the
        placeholder, which must occur exactly once in each prompt (default
        ``"photo of a id person"``). Rows of zeros have no direction and are refused.
        """
        pipe = self.pipe
        ids = np.asarray(identity_embeddings, dtype=np.float32)
        prompts = list(prompts) if prompts is not None else [ARC2FACE_PROMPT] * len(ids)
        ids = check_identity_batch(ids, prompts, None, self.id_dim)
        norms = np.linalg.norm(ids, axis=1, keepdims=True)
        if (norms == 0).any():
            raise ValueError("an identity embedding is all zeros; Arc2Face needs a direction")
        te = pipe.text_encoder
        hidden = int(te.config.hidden_size)
        tokenizer = pipe.tokenizer
        input_ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids
        placeholder_id = self.placeholder_token_id()
        counts = (input_ids == placeholder_id).sum(dim=1)
        for prompt, n in zip(prompts, counts.tolist(), strict=True):
            if n != 1:
                raise ValueError(f"prompt {prompt!r} holds the placeholder {self.placeholder!r} "
                                 f"{n} times; it must hold it exactly once")
        vectors = torch.nn.functional.pad(torch.from_numpy(ids / norms), (0, hidden - ids.shape[1]))
        device = te.device
        base = te.get_input_embeddings()
        te.set_input_embeddings(_PlaceholderEmbedding(base, placeholder_id,
                                                      vectors.to(device, te.dtype)))
        try:
            out = te(input_ids.to(device))[0]
        finally:
            te.set_input_embeddings(base)
        return out.to(dtype=te.dtype)

    def _pipe_kwargs(self, identity_embeddings: Any, prompts: list[str],
                     guidance_scale: float) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"prompt_embeds": self.project(identity_embeddings, prompts)}
        if guidance_scale > 1 and self.negative_prompt:
            kwargs["negative_prompt"] = [self.negative_prompt] * len(prompts)
        return kwargs

    def _call(self, identity_embeddings: np.ndarray, prompts: list[str], seeds: list[int], *,
              steps: int, guidance_scale: float, height: int | None, width: int | None,
              output_type: str, callback: ProgressFn | None = None,
              should_stop: StopFn | None = None) -> Any:
        ids = check_identity_batch(identity_embeddings, prompts, seeds, self.id_dim)
        prompts = list(prompts)
        size = default_size(self.pipe)
        return call_pipeline_rows(
            self.pipe, seeds,
            lambda rows: self._pipe_kwargs(ids[rows], [prompts[i] for i in rows], guidance_scale),
            one_row_per_call=self.one_row_per_call, steps=steps, guidance_scale=guidance_scale,
            height=height or size, width=width or size, callback=callback,
            should_stop=should_stop, output_type=output_type)

    def render(self, identity_embeddings: np.ndarray, prompts: list[str], seeds: list[int], *,
               steps: int = 25, guidance_scale: float = 3.0, height: int | None = None,
               width: int | None = None, callback: ProgressFn | None = None,
               should_stop: StopFn | None = None) -> np.ndarray:
        """Images ``(N, H, W, 3) uint8`` RGB, row i from identity i, prompt i, seed i; prompts
        must contain the placeholder once (see :func:`~generator.diffusion.prompts.arc2face_prompt`).
        Rows, progress and cancellation as in :meth:`FaceIDGenerator.render
        <generator.diffusion.faceid.FaceIDGenerator.render>`."""
        return self._call(identity_embeddings, prompts, seeds, steps=steps,
                          guidance_scale=guidance_scale, height=height, width=width,
                          output_type="np", callback=callback, should_stop=should_stop)

    def final_latents(self, identity_embeddings: np.ndarray, prompts: list[str],
                      seeds: list[int], *, steps: int = 25, guidance_scale: float = 3.0,
                      height: int | None = None, width: int | None = None) -> torch.Tensor:
        """Denoised latents ``(N, C, H/f, W/f)`` float32 on the CPU, before the VAE."""
        return self._call(identity_embeddings, prompts, seeds, steps=steps,
                          guidance_scale=guidance_scale, height=height, width=width,
                          output_type="latent")


def load_arc2face_generator(
    base_model: str | Path,
    arc2face_model: str | Path | None = None,
    *,
    unet_subfolder: str = "arc2face",
    encoder_subfolder: str = "encoder",
    device: str | None = None,
    precision: str = "auto",
    scheduler: str | None = "dpm++2m",
    id_dim: int = 512,
    negative_prompt: str | None = None,
    licence: str | None = None,
    model_id: str | None = None,
    hash_weights: bool = True,
    local_files_only: bool = False,
    base_revision: str | None = None,
    arc2face_revision: str | None = None,
    one_row_per_call: bool | None = None,
    revision: str | None = None,
) -> Arc2FaceGenerator:
    """Load Arc2Face: ``base_model`` is SD 1.5 (hub id or folder) for tokenizer, VAE and
    scheduler; ``arc2face_model`` (e.g. ``"FoivosPar/Arc2Face"`` or a folder) supplies the UNet
    and text encoder from ``unet_subfolder`` and ``encoder_subfolder``. With
    ``arc2face_model=None``, ``base_model`` must be a complete Arc2Face pipeline folder.
    ``scheduler`` defaults to DPM-Solver++ as in the Arc2Face demo. ``base_revision`` and
    ``arc2face_revision`` pin a commit, branch or tag of each repository (``revision`` is
    refused). ``one_row_per_call``: as for
    :func:`~generator.diffusion.faceid.load_faceid_generator`."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    refuse_single_revision(revision, base_key="base_revision", other_key="arc2face_revision",
                           other="Arc2Face weights (arc2face_model)")
    device = resolve_device(device)
    dtype = resolve_dtype(device, precision)
    components: dict[str, Any] = {}
    if arc2face_model is not None:
        own = {"local_files_only": local_files_only, "revision": arc2face_revision}
        try:
            components["text_encoder"] = CLIPTextModel.from_pretrained(
                str(arc2face_model), subfolder=encoder_subfolder, dtype=dtype, **own)
            components["unet"] = UNet2DConditionModel.from_pretrained(
                str(arc2face_model), subfolder=unet_subfolder, dtype=dtype, **own)
        except Exception as exc:
            raise GeneratorLoadError(f"cannot load the Arc2Face UNet/encoder from "
                                     f"{arc2face_model}: {exc}") from exc
    pipe = load_pipeline(base_model, architecture="sd15", dtype=dtype,
                         local_files_only=local_files_only, revision=base_revision, **components)
    use_scheduler(pipe, scheduler)
    hidden = int(pipe.text_encoder.config.hidden_size)
    if not 0 < id_dim <= hidden:
        raise GeneratorLoadError(f"id_dim {id_dim} does not fit the text encoder's hidden size "
                                 f"{hidden}")
    digest = weights_sha256(torch_components(pipe)) if hash_weights else ""
    place(pipe, device)
    gen = Arc2FaceGenerator(
        pipe=pipe, licence=licence or ARC2FACE_LICENCE, weights_sha256=digest, id_dim=id_dim,
        negative_prompt=negative_prompt,
        one_row_per_call=one_row_per_call_default(one_row_per_call, device),
        model_id=str(model_id or (f"{base_model}+{arc2face_model}" if arc2face_model
                                  else base_model)))
    gen.placeholder_token_id()  # fail at load time if the tokenizer splits the placeholder
    return gen
