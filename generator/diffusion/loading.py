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


def one_row_per_call_default(one_row_per_call: bool | None, device: str) -> bool:
    """``one_row_per_call`` as given, else True off CUDA (one call per row makes each row's
    bytes independent of its batch, at about 1.5 times the time per image on a CPU) and False on
    CUDA (where batching is most of the throughput). See :mod:`generator.diffusion.batching`."""
    if one_row_per_call is not None:
        return bool(one_row_per_call)
    return not str(device).startswith("cuda")


def refuse_single_revision(revision: str | None, *, base_key: str, other_key: str,
                           other: str) -> None:
    """``GeneratorLoadError`` for the old single ``revision`` setting: the base model and the
    ``other`` repository (the adapter, or Arc2Face's weights) are separate repositories, and a
    commit, branch or tag of one does not exist in the other."""
    if revision is not None:
        raise GeneratorLoadError(
            f"'revision' ({revision!r}) would pin the base model and the {other} to the same "
            f"commit, branch or tag, but they are separate repositories: set '{base_key}' for "
            f"base_model and '{other_key}' for the {other} instead (either may be left out)")


def is_local(model: str | Path) -> bool:
    """Whether ``model`` names a folder on this machine (else it is taken for a hub id)."""
    return Path(str(model)).expanduser().exists()


def read_component_config(model: str | Path, subfolder: str, *, local_files_only: bool = False,
                          revision: str | None = None) -> dict[str, Any]:
    """The ``config.json`` of one component (e.g. ``unet``) of a pipeline, hub id or folder,
    without loading weights; ``GeneratorLoadError`` naming the file when it cannot be read."""
    from diffusers import ConfigMixin

    class _Reader(ConfigMixin):
        config_name = "config.json"

    try:
        return dict(_Reader.load_config(str(model), subfolder=subfolder,
                                        local_files_only=local_files_only, revision=revision))
    except Exception as exc:
        raise GeneratorLoadError(f"cannot read {subfolder}/config.json of {model}: {exc}") from exc


def weight_files(folder: Path) -> list[str]:
    """Names of the weight files (``.safetensors``, ``.bin``) directly in ``folder``."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.is_file() and p.suffix in (".safetensors", ".bin"))


def resolve_file(repo: str | Path, weight_name: str, *, subfolder: str = "",
                 revision: str | None = None, local_files_only: bool = False,
                 what: str = "adapter") -> Path:
    """The local path of ``<repo>/<subfolder>/<weight_name>`` (a folder, or a hub repository at
    ``revision``, downloaded into the Hugging Face cache as ``load_ip_adapter`` would). When the
    file is not there, ``GeneratorLoadError`` names it and lists the weight files the folder
    does hold (a misnamed or wrongly placed file)."""
    from diffusers.utils import _get_model_file

    where = f"{repo}/{subfolder}" if subfolder else str(repo)
    try:
        return Path(_get_model_file(str(repo), weights_name=weight_name,
                                    subfolder=subfolder or None, revision=revision,
                                    local_files_only=local_files_only))
    except Exception as exc:
        folder = Path(str(repo)).expanduser() / subfolder
        if is_local(repo):
            held = weight_files(folder)
            reason = (f"no file {weight_name!r} in {folder}; "
                      + (f"that folder holds {', '.join(held)}" if held else
                         "that folder holds no .bin or .safetensors file" if folder.is_dir() else
                         "that folder does not exist"))
        else:
            reason = str(exc)
        raise GeneratorLoadError(f"cannot load {what} {weight_name!r} from {where}: "
                                 f"{reason}") from exc


#: Components a pipeline folder needs, by architecture (the safety checker, feature extractor
#: and image encoder are not used: FaceAudit loads without them).
REQUIRED_COMPONENTS = {
    "sd15": ("unet", "vae", "text_encoder", "tokenizer", "scheduler"),
    "sdxl": ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2",
             "scheduler"),
}


def component_problems(folder: Path, name: str, kind: str, variant: str | None = None
                       ) -> list[str]:
    """What is missing from one component folder of the diffusers layout: ``kind`` is
    ``"model"`` (``config.json`` and a weight file; with ``variant``, one named
    ``*.<variant>.*``), ``"tokenizer"`` (``tokenizer.json``, or ``vocab.json`` and
    ``merges.txt``) or ``"scheduler"`` (``scheduler_config.json``)."""
    sub = folder / name
    if not sub.is_dir():
        return [f"{sub}/ is missing"]
    present = {p.name for p in sub.iterdir()}
    if kind == "scheduler":
        return [] if "scheduler_config.json" in present else [f"{sub}/scheduler_config.json is "
                                                              "missing"]
    if kind == "tokenizer":
        if "tokenizer.json" in present or {"vocab.json", "merges.txt"} <= present:
            return []
        missing = sorted({"vocab.json", "merges.txt"} - present)
        return [f"{sub}/ has no tokenizer.json and no {' and '.join(missing)}"]
    problems = [] if "config.json" in present else [f"{sub}/config.json is missing"]
    weights = weight_files(sub)
    if variant:
        weights = [w for w in weights if f".{variant}." in w]
    if not weights:
        what = f"{variant} weight file" if variant else "weight file (.safetensors or .bin)"
        problems.append(f"{sub}/ has no {what}")
    return problems


def pipeline_folder_problems(folder: str | Path, variant: str | None = None
                             ) -> tuple[str | None, list[str]]:
    """``(architecture, problems)`` of a local pipeline folder in the ``save_pretrained``
    layout: its ``model_index.json`` names a Stable Diffusion 1.x/2.x or SDXL pipeline, and
    every component FaceAudit loads is there with its files. ``architecture`` is None when
    ``model_index.json`` is missing or names another pipeline."""
    import json

    folder = Path(folder).expanduser()
    index = folder / "model_index.json"
    if not index.is_file():
        return None, [f"{index} is missing (not a diffusers pipeline folder)"]
    try:
        config = json.loads(index.read_text())
    except (OSError, ValueError) as exc:
        return None, [f"{index} cannot be read: {exc}"]
    name = config.get("_class_name", "")
    arch = next((a for a, cls in _PIPELINE_CLASSES.items() if cls == name), None)
    if arch is None:
        return None, [f"{index} names a {name or 'unknown'} pipeline; expected "
                      f"{' or '.join(_PIPELINE_CLASSES.values())}"]
    problems = []
    for component in REQUIRED_COMPONENTS[arch]:
        entry = config.get(component)
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0]):
            problems.append(f"{index} lists no {component}")
            continue
        kind = ("tokenizer" if component.startswith("tokenizer") else
                "scheduler" if component == "scheduler" else "model")
        problems += component_problems(folder, component, kind, variant)
    return arch, problems
