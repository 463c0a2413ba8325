"""What an IP-Adapter file holds, read from its keys and shapes alone, before any base model
loads: IP-Adapter FaceID (the one FaceAudit uses), FaceID Plus, the image-prompt IP-Adapters
and bare LoRAs are told apart, and a wrong file is refused with what it is and which file to
use instead (:func:`refuse_unless_faceid`). Reading a ``.safetensors`` file reads its header
only; torch is not imported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.backends import GeneratorLoadError

#: What each adapter layout is, for messages (see :func:`adapter_layout`).
ADAPTER_KINDS = {
    "faceid": "IP-Adapter FaceID",
    "faceid-plus": "IP-Adapter FaceID Plus (v1/v2: its image_proj has a perceiver_resampler)",
    "ip-adapter": "an image-prompt IP-Adapter (image_proj has proj.weight)",
    "ip-adapter-full": "IP-Adapter Full (image_proj has proj.3.weight)",
    "ip-adapter-plus": "IP-Adapter Plus (image_proj has latents)",
    "kohya-lora": "a LoRA in kohya's format (keys lora_unet_...)",
    "lora": "a LoRA without an adapter (no image_proj/ip_adapter keys)",
    "unknown": "not an IP-Adapter checkpoint (no image_proj/ip_adapter keys diffusers reads)",
}


@dataclass(frozen=True)
class AdapterLayout:
    """What an adapter file holds, read from its keys and shapes alone.

    ``kind``: a key of :data:`ADAPTER_KINDS`. For ``"faceid"``: ``id_dim`` (identity width,
    512 for ArcFace), ``cross_attention_dim`` (768 for SD 1.5, 2048 for SDXL), ``num_tokens``
    (4; 16 for the portrait variant), ``ip_layers`` (indices of the attention processors with
    ``to_k_ip``/``to_v_ip``) and ``ip_shapes`` (index -> ``to_k_ip`` shape), ``lora_rank`` and
    ``lora_layers`` (processors with the FaceID LoRA; None/0 without it). ``example_key``: a
    key of the file, for messages."""

    kind: str
    id_dim: int | None = None
    cross_attention_dim: int | None = None
    num_tokens: int | None = None
    ip_layers: tuple[int, ...] = ()
    ip_shapes: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    lora_rank: int | None = None
    lora_layers: int = 0
    example_key: str = ""

    def describe(self) -> str:
        if self.kind != "faceid":
            return ADAPTER_KINDS[self.kind]
        lora = (f"FaceID LoRA rank {self.lora_rank} on {self.lora_layers} attention layers"
                if self.lora_rank else "no FaceID LoRA")
        return (f"IP-Adapter FaceID: {self.id_dim}-d identity -> {self.num_tokens} tokens of "
                f"{self.cross_attention_dim}, {len(self.ip_layers)} cross-attention layers, "
                f"{lora}")


def flat_shapes(state: Mapping[str, Any], prefix: str = "") -> dict[str, tuple[int, ...]]:
    """``key -> shape`` of a (possibly nested, as in the ``.bin`` files) state dict, nested keys
    joined with ``"."`` (``image_proj.norm.weight``), as a ``.safetensors`` adapter names them."""
    out: dict[str, tuple[int, ...]] = {}
    for key, value in state.items():
        if isinstance(value, Mapping):
            out.update(flat_shapes(value, f"{prefix}{key}."))
        elif hasattr(value, "shape"):
            out[f"{prefix}{key}"] = tuple(int(d) for d in value.shape)
    return out


def adapter_layout(shapes: Mapping[str, Sequence[int]]) -> AdapterLayout:
    """Classify an adapter from ``key -> shape`` (keys as :func:`flat_shapes` gives them), in
    the order diffusers decides which image projection to build (module docstring)."""
    keys = list(shapes)
    example = keys[0] if keys else ""
    proj = {k.removeprefix("image_proj."): tuple(v) for k, v in shapes.items()
            if k.startswith("image_proj.")}
    ip = {k.removeprefix("ip_adapter."): tuple(v) for k, v in shapes.items()
          if k.startswith("ip_adapter.")}
    if not proj:
        kohya = sorted(k for k in keys if k.startswith(("lora_unet_", "lora_te")))
        if kohya:
            return AdapterLayout("kohya-lora", example_key=kohya[0])
        lora = sorted(k for k in keys if "lora" in k and not k.startswith("ip_adapter."))
        if lora:
            return AdapterLayout("lora", example_key=lora[0])
        return AdapterLayout("unknown", example_key=min(keys, default=""))
    if "proj.weight" in proj:
        return AdapterLayout("ip-adapter", example_key=example)
    if "proj.3.weight" in proj:
        return AdapterLayout("ip-adapter-full", example_key=example)
    if "perceiver_resampler.proj_in.weight" in proj:
        return AdapterLayout("faceid-plus", example_key="image_proj.perceiver_resampler.proj_in"
                             ".weight")
    if "norm.weight" not in proj:
        return AdapterLayout("ip-adapter-plus" if "latents" in proj else "unknown",
                             example_key=example)
    for needed in ("proj.0.weight", "proj.2.weight"):
        if needed not in proj:
            return AdapterLayout("unknown", example_key=example)
    cross = proj["norm.weight"][0]
    ip_shapes = {int(k.split(".")[0]): v for k, v in ip.items() if k.endswith(".to_k_ip.weight")}
    lora = {int(k.split(".")[0]): v for k, v in ip.items() if k.endswith(".to_q_lora.down.weight")}
    return AdapterLayout(
        "faceid", id_dim=proj["proj.0.weight"][1], cross_attention_dim=cross,
        num_tokens=proj["proj.2.weight"][0] // cross, ip_layers=tuple(sorted(ip_shapes)),
        ip_shapes=ip_shapes, lora_rank=(max(v[0] for v in lora.values()) if lora else None),
        lora_layers=len(lora), example_key=example)


def read_adapter(path: str | Path) -> tuple[Any, dict[str, tuple[int, ...]]]:
    """``(state, key -> shape)`` of an adapter file. ``.safetensors``: only the header is read
    (``state`` is None; diffusers reads the tensors from the file). Other files (``.bin``) are
    read as diffusers does (``load_state_dict``: ``torch.load`` with ``weights_only`` and
    memory-mapped), and ``state`` is handed to ``load_ip_adapter`` so the file is read once."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt", device="cpu") as f:
                return None, {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        from diffusers.models.model_loading_utils import load_state_dict

        state = load_state_dict(str(path))
    except Exception as exc:
        raise GeneratorLoadError(f"cannot read the adapter file {path}: {exc}") from exc
    if not isinstance(state, Mapping):
        raise GeneratorLoadError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state, flat_shapes(state)


def refuse_unless_faceid(layout: AdapterLayout, path: str | Path) -> None:
    """``GeneratorLoadError`` saying what the file is and which file to use, unless ``layout``
    is IP-Adapter FaceID."""
    name = Path(path).name
    plain = "ip-adapter-faceid_sd15.bin or ip-adapter-faceid_sdxl.bin"
    if layout.kind == "faceid":
        return
    if layout.kind in ("kohya-lora", "lora"):
        stem = name.removesuffix(".safetensors").removesuffix(".bin").removesuffix("_lora")
        raise GeneratorLoadError(
            f"{name} is {ADAPTER_KINDS[layout.kind]} (e.g. {layout.example_key!r}): the FaceID "
            f"LoRA alone, for tools that load LoRAs apart, not the adapter. Use the .bin, it "
            f"already contains the LoRA: weight_name \"{stem}.bin\" ({plain})")
    if layout.kind == "faceid-plus":
        raise GeneratorLoadError(
            f"{name} is {ADAPTER_KINDS[layout.kind]}: Plus also conditions on CLIP image "
            f"features of a face crop, which FaceAudit does not supply; use the plain FaceID "
            f"adapter ({plain})")
    if layout.kind.startswith("ip-adapter"):
        raise GeneratorLoadError(
            f"{name} is {ADAPTER_KINDS[layout.kind]}, not FaceID: it conditions on CLIP image "
            f"features, not on a face-recognition embedding; use {plain}")
    raise GeneratorLoadError(f"{name} is {ADAPTER_KINDS['unknown']}; first key "
                             f"{layout.example_key!r}; use {plain}")
