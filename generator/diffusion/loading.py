"""Load diffusers pipelines by hub id or local folder, choose device and dtype, hash the weights.

Every loader goes through the public ``from_pretrained`` calls, so a hub id
(``"stable-diffusion-v1-5/stable-diffusion-v1-5"``) and a local folder in the same layout (what
``save_pretrained`` writes: ``model_index.json`` and one subfolder per component) load the same
way. ``local_files_only=True`` keeps a worker off the network once the files are cached.

Precision: float16 on CUDA by default (bfloat16 on request), float32 on CPU (half precision on a
CPU is slow and some kernels lack it). The SDXL VAE overflows in float16; the SDXL pipeline
upcasts it itself when its config says ``force_upcast`` (or pass a fixed VAE as ``vae=``).

:func:`weights_sha256` identifies the weights *as loaded*: SHA-256 over every tensor of every
torch component (name, dtype, shape, raw bytes, in sorted order), after adapters are attached.
The same files in the same dtype give the same digest on any device and from either file format
(``.bin`` or ``.safetensors``); the same files loaded in another dtype give another digest, as
they also give other images.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from generator.backends import GeneratorLoadError

PRECISIONS = ("auto", "fp16", "bf16", "fp32")
ARCHITECTURES = ("auto", "sd15", "sdxl")
_PIPELINE_CLASSES = {"sd15": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline"}
#: Scheduler names accepted by :func:`use_scheduler` and the diffusers class each one builds
#: from the pipeline's own scheduler config (so betas and timestep spacing stay the model's).
SCHEDULERS: dict[str, str] = {
    "dpm++2m": "DPMSolverMultistepScheduler",
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "pndm": "PNDMScheduler",
}


def resolve_device(device: str | None = None) -> str:
    """``device`` as given, else ``"cuda"`` when available, else ``"cpu"``."""
    if device:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise GeneratorLoadError(f"device {device!r} was asked for but CUDA is not available; "
                                     "use device='cpu' or run on a GPU worker")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(device: str, precision: str = "auto") -> torch.dtype:
    """The torch dtype for ``precision`` on ``device``: ``"auto"`` is float16 on CUDA and float32
    elsewhere; ``"fp16"``/``"bf16"`` need a CUDA device."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    on_cuda = device.startswith("cuda")
    if precision == "auto":
        return torch.float16 if on_cuda else torch.float32
    if precision == "fp32":
        return torch.float32
    if not on_cuda:
        raise ValueError(f"precision {precision!r} needs a CUDA device; use 'fp32' on {device!r}")
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ValueError("this GPU does not support bfloat16; use precision 'fp16'")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def detect_architecture(model: str | Path, **hub_kwargs: Any) -> str:
    """``"sd15"`` or ``"sdxl"`` from the pipeline class named in the model's ``model_index.json``
    (SD 1.x/2.x fine-tunes, Arc2Face's base and Realistic Vision are ``StableDiffusionPipeline``)."""
    from diffusers import DiffusionPipeline

    try:
        config = DiffusionPipeline.load_config(str(model), **hub_kwargs)
    except Exception as exc:  # EnvironmentError / OSError / hub errors, all with a readable text
        raise GeneratorLoadError(f"cannot read model_index.json of {model}: {exc}") from exc
    name = config.get("_class_name", "")
    for arch, cls in _PIPELINE_CLASSES.items():
        if name == cls:
            return arch
    raise GeneratorLoadError(f"{model} is a {name or 'unknown'} pipeline; expected one of "
                             f"{', '.join(_PIPELINE_CLASSES.values())}")


def load_pipeline(model: str | Path, *, architecture: str = "auto", dtype: torch.dtype,
                  local_files_only: bool = False, revision: str | None = None,
                  variant: str | None = None, **components: Any) -> Any:
    """``StableDiffusionPipeline`` or ``StableDiffusionXLPipeline`` ``.from_pretrained(model)``
    in ``dtype``, on the CPU, safety checker off (its images would be blacked out and skew the
    audit), progress bars off. ``components`` replace pipeline parts (``unet=``, ``vae=``...)."""
    import diffusers

    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}")
    hub = {"local_files_only": local_files_only, "revision": revision}
    arch = detect_architecture(model, **hub) if architecture == "auto" else architecture
    cls = getattr(diffusers, _PIPELINE_CLASSES[arch])
    kwargs: dict[str, Any] = {"dtype": dtype, **hub, **components}
    if variant:
        kwargs["variant"] = variant
    if arch == "sd15":
        kwargs.setdefault("safety_checker", None)
        kwargs.setdefault("requires_safety_checker", False)
    try:
        pipe = cls.from_pretrained(str(model), **kwargs)
    except Exception as exc:
        raise GeneratorLoadError(f"cannot load the {arch} pipeline from {model}: {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    return pipe


def use_scheduler(pipe: Any, name: str | None) -> None:
    """Swap the pipeline's scheduler for ``name`` (see :data:`SCHEDULERS`), built from the
    current scheduler's config; ``None`` or ``"default"`` keeps the model's own scheduler."""
    if name in (None, "default"):
        return
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose from default, {', '.join(SCHEDULERS)}")
    import diffusers

    pipe.scheduler = getattr(diffusers, SCHEDULERS[name]).from_config(pipe.scheduler.config)


def torch_components(pipe: Any) -> dict[str, torch.nn.Module]:
    """The pipeline's torch modules by component name (unet, vae, text encoders, ...)."""
    return {name: module for name, module in sorted(pipe.components.items())
            if isinstance(module, torch.nn.Module)}


def weights_sha256(modules: dict[str, torch.nn.Module]) -> str:
    """SHA-256 over ``(component, tensor name, dtype, shape, bytes)`` of every state-dict tensor,
    components and names in sorted order. Tensors are copied to the CPU one at a time."""
    h = hashlib.sha256()
    for component in sorted(modules):
        state = modules[component].state_dict()
        for name in sorted(state):
            t = state[name].detach()
            h.update(f"{component}.{name}|{str(t.dtype)}|{tuple(t.shape)}\n".encode())
            flat = t.to("cpu").contiguous().reshape(-1)
            if flat.numel():
                h.update(flat.view(torch.uint8).numpy())
    return h.hexdigest()


def place(pipe: Any, device: str) -> Any:
    """Move the pipeline to ``device`` (after hashing, so the hash never waits on transfers)."""
    return pipe.to(device)


def default_size(pipe: Any) -> int:
    """The pipeline's native resolution in pixels (512 for SD 1.5, 1024 for SDXL)."""
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
