"""Check a configured diffusion route before an audit uses it (``manage.py check_diffusion``).

For one route of ``FACEAUDIT_DIFFUSION`` (generator name -> settings, see
:mod:`generator.diffusion.backend`), :func:`check_route` says, one finding per line, what is
there and exactly what is missing or wrong:

- the settings: every key is one the route reads (a misspelt key would otherwise reach the
  loader as an unexpected argument), and the old single ``revision`` is refused;
- the files of local folders: ``model_index.json`` naming the pipeline the route expects (SD 1.x
  for ``sd15-faceid`` and ``arc2face``, SDXL for ``sdxl-faceid``) and every component FaceAudit
  loads with its config and weights (:func:`~generator.diffusion.loading.pipeline_folder_problems`);
  Arc2Face's ``arc2face/`` UNet and ``encoder/`` text encoder. Hub ids are checked by loading;
- the layout: the adapter file is found, is IP-Adapter FaceID (not Plus, an image IP-Adapter or
  the kohya LoRA copy; :func:`~generator.diffusion.adapter_files.adapter_layout`), and fits the base
  UNet: its cross-attention width, and ``to_k_ip``/``to_v_ip`` for exactly the UNet's
  cross-attention processors with their shapes (the UNet is built on the meta device from its
  config, no weights); Arc2Face's UNet attends to its encoder's width, and the identity fits;
- the identity model the route needs (IP-Adapter FaceID: insightface ``buffalo_l``; Arc2Face:
  its authors' ``arcface.onnx``, ``arc2face_arcface``), and the configured one and its files
  judged by the rule audits apply;
- one tiny generation (2 steps at the smallest size the model takes) through the same loader a
  worker uses, on the worker's device.

Nothing here imports Django; torch and diffusers are imported inside the functions.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LEVELS = ("ok", "note", "problem")
#: The route kind of each diffusion generator name, and the pipeline it expects.
ROUTES = {"sd15-faceid": ("faceid", "sd15"), "sdxl-faceid": ("faceid", "sdxl"),
          "arc2face": ("arc2face", "sd15")}
#: Width of the ArcFace embeddings every identity model offered for these routes gives.
ARCFACE_DIM = 512
GENERATION_STEPS = 2


@dataclass(frozen=True)
class Finding:
    """One line of a route's report: ``level`` is ``"ok"``, ``"note"`` (worth knowing, does
    not stop an audit) or ``"problem"`` (the route cannot be used as configured)."""

    level: str
    text: str


@dataclass
class RouteReport:
    name: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not any(f.level == "problem" for f in self.findings)

    @property
    def problems(self) -> list[str]:
        return [f.text for f in self.findings if f.level == "problem"]

    def add(self, level: str, text: str) -> None:
        assert level in LEVELS
        self.findings.append(Finding(level, text))


def _loader(kind: str) -> Callable[..., Any]:
    if kind == "faceid":
        from generator.diffusion.faceid import load_faceid_generator

        return load_faceid_generator
    from generator.diffusion.arc2face import load_arc2face_generator

    return load_arc2face_generator


def known_settings(kind: str) -> set[str]:
    """The keys a route of ``kind`` reads from its ``FACEAUDIT_DIFFUSION`` settings: the
    backend's (``base_model``, identity model and render settings) and its loader's keyword
    arguments (``device`` comes from FACEAUDIT_TORCH_DEVICE)."""
    from generator.diffusion.backend import RENDER_KEYS

    params = inspect.signature(_loader(kind)).parameters
    names = {n for n, p in params.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return (names | {"base_model", *RENDER_KEYS}) - {"device"}


def required_identity(kind: str) -> tuple[str, str]:
    """``(name, why)`` of the identity model a route of ``kind`` was trained on: IP-Adapter
    FaceID on insightface ``buffalo_l``'s ArcFace, Arc2Face on its authors' ``arcface.onnx``."""
    if kind == "faceid":
        from generator.diffusion.faceid import IDENTITY_MODEL, IDENTITY_MODEL_NOTE
    else:
        from generator.diffusion.arc2face import IDENTITY_MODEL, IDENTITY_MODEL_NOTE
    return IDENTITY_MODEL, IDENTITY_MODEL_NOTE


def check_route(name: str, options: Mapping[str, Any], *, device: str = "cpu",
                generate: bool = True, model_dir: str | Path | None = None) -> RouteReport:
    """The findings for route ``name`` with its ``FACEAUDIT_DIFFUSION`` ``options``.

    ``model_dir``: the face-model folder, where the identity model's files are looked for (by
    the rule audits apply, :func:`generator.diffusion.backend.route_problems`). ``generate``:
    load the route on ``device`` and render one tiny image, when no problem was found before.
    """
    report = RouteReport(name)
    if name not in ROUTES:
        report.add("problem", f"{name!r} is not a diffusion generator; FACEAUDIT_DIFFUSION "
                              f"takes {', '.join(ROUTES)}")
        return report
    kind, arch = ROUTES[name]
    options = dict(options)
    _check_settings(report, kind, options)
    if "base_model" not in options:
        report.add("problem", "base_model is not set (a hub id or a folder in the diffusers "
                              "layout)")
    elif kind == "faceid":
        _check_faceid_files(report, arch, options)
    else:
        _check_arc2face_files(report, options)
    _check_identity(report, kind, options, model_dir)
    if generate:
        if report.ready:
            _try_generation(report, name, options, device)
        else:
            report.add("note", "tiny generation skipped: fix the problems above first")
    return report


def _check_settings(report: RouteReport, kind: str, options: dict[str, Any]) -> None:
    from generator.backends import GeneratorLoadError
    from generator.diffusion.loading import refuse_single_revision

    known = known_settings(kind)
    unknown = sorted(set(options) - known)
    if "device" in unknown:
        report.add("problem", "'device' is not a route setting: the worker's device is "
                              "FACEAUDIT_TORCH_DEVICE")
        unknown.remove("device")
    for key in unknown:
        report.add("problem", f"unknown setting {key!r}; this route reads "
                              f"{', '.join(sorted(known - {'revision'}))}")
    if "revision" in options:
        other, key = (("adapter", "adapter_revision") if kind == "faceid" else
                      ("Arc2Face weights (arc2face_model)", "arc2face_revision"))
        try:
            refuse_single_revision(options["revision"], base_key="base_revision",
                                   other_key=key, other=other)
        except GeneratorLoadError as exc:
            report.add("problem", str(exc))
    if kind == "faceid" and "adapter" not in options:
        report.add("problem", "adapter is not set (the IP-Adapter FaceID repository or folder, "
                              "e.g. h94/IP-Adapter-FaceID)")


def _hub_kwargs(options: Mapping[str, Any], revision_key: str) -> dict[str, Any]:
    return {"local_files_only": bool(options.get("local_files_only", False)),
            "revision": options.get(revision_key)}


def _check_base(report: RouteReport, arch: str, options: Mapping[str, Any]) -> dict | None:
    """Files and pipeline class of ``base_model``; its UNet config when readable."""
    from generator.backends import GeneratorLoadError
    from generator.diffusion.loading import (
        is_local,
        pipeline_folder_problems,
        read_component_config,
    )

    base = options["base_model"]
    if is_local(base):
        found, problems = pipeline_folder_problems(base, options.get("variant"))
        for p in problems:
            report.add("problem", f"base_model: {p}")
        if found is not None and found != arch:
            report.add("problem", f"base_model {base} is an {found} pipeline; {report.name} "
                                  f"needs an {arch} one")
            return None
        if found is None or problems:
            return None
        report.add("ok", f"base_model {base}: {found} pipeline, every component present")
    else:
        report.add("note", f"base_model {base!r} is not a folder here, so it is taken for a hub "
                           "id: the worker downloads it on first use (internet, or its Hugging "
                           "Face cache); checked by the tiny generation")
    try:
        return read_component_config(base, "unet", **_hub_kwargs(options, "base_revision"))
    except GeneratorLoadError as exc:
        report.add("problem", f"base_model: {exc}")
        return None


def expected_ip_shapes(unet_config: Mapping[str, Any]) -> dict[int, tuple[int, ...]]:
    """Attention-processor index -> ``to_k`` shape of the cross-attention (``attn2``) processors
    of a UNet with this config, in ``unet.attn_processors`` order: where an IP-Adapter for it
    has ``{k}.to_k_ip.weight``. The UNet is built on the meta device (no memory, no weights)."""
    import torch
    from diffusers import UNet2DConditionModel

    config = {k: v for k, v in unet_config.items() if not k.startswith("_")}
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    out = {}
    for k, name in enumerate(unet.attn_processors):
        if name.endswith("attn2.processor"):
            attn = unet.get_submodule(name.removesuffix(".processor"))
            out[k] = tuple(attn.to_k.weight.shape)
    return out


def _check_faceid_files(report: RouteReport, arch: str, options: Mapping[str, Any]) -> None:
    from generator.backends import GeneratorLoadError
    from generator.diffusion.adapter_files import adapter_layout, read_adapter, refuse_unless_faceid
    from generator.diffusion.loading import resolve_file

    unet = _check_base(report, arch, options)
    if "adapter" not in options:
        return
    adapter = options["adapter"]
    weight_name = options.get("weight_name", "ip-adapter-faceid_sd15.bin")
    try:
        path = resolve_file(adapter, weight_name, subfolder=options.get("subfolder", ""),
                            what="IP-Adapter FaceID",
                            **_hub_kwargs(options, "adapter_revision"))
        _, shapes = read_adapter(path)
        layout = adapter_layout(shapes)
        refuse_unless_faceid(layout, path)
    except GeneratorLoadError as exc:
        report.add("problem", f"adapter: {exc}")
        return
    fits = True
    if layout.id_dim != ARCFACE_DIM:
        fits = False
        report.add("problem", f"adapter {path.name} takes {layout.id_dim}-d identities; the "
                              f"ArcFace identity models give {ARCFACE_DIM}-d")
    if unet is not None:
        cross = unet.get("cross_attention_dim")
        if cross != layout.cross_attention_dim:
            fits = False
            report.add("problem", f"adapter {path.name} is made for a UNet with "
                                  f"cross_attention_dim {layout.cross_attention_dim}; base_model's "
                                  f"has {cross} (ip-adapter-faceid_sd15.bin is for SD 1.5, "
                                  "ip-adapter-faceid_sdxl.bin for SDXL)")
        else:
            expected = expected_ip_shapes(unet)
            if dict(layout.ip_shapes) != expected:
                fits = False
                missing = sorted(set(expected) - set(layout.ip_shapes))
                extra = sorted(set(layout.ip_shapes) - set(expected))
                wrong = sorted(k for k in set(expected) & set(layout.ip_shapes)
                               if tuple(layout.ip_shapes[k]) != expected[k])
                report.add("problem", f"adapter {path.name} does not fit base_model's UNet: "
                                      f"to_k_ip/to_v_ip missing for processors {missing}, "
                                      f"for processors the UNet lacks {extra}, of another "
                                      f"shape for {wrong}")
    if fits:
        report.add("ok", f"adapter {path}: {layout.describe()}")
    if layout.lora_rank:
        from diffusers.utils import USE_PEFT_BACKEND

        if not USE_PEFT_BACKEND:
            level = "problem" if options.get("require_lora") else "note"
            report.add(level, "peft is not installed: diffusers will skip the FaceID LoRA in "
                              "the adapter (weaker likeness); install peft")
    elif options.get("require_lora"):
        report.add("problem", f"require_lora is set but {path.name} holds no FaceID LoRA")


def _check_arc2face_files(report: RouteReport, options: Mapping[str, Any]) -> None:
    from generator.backends import GeneratorLoadError
    from generator.diffusion.loading import component_problems, is_local, read_component_config

    _check_base(report, "sd15", options)
    model = options.get("arc2face_model")
    if model is None:
        report.add("note", "arc2face_model is not set: base_model must then be a whole Arc2Face "
                           "pipeline (its UNet and text encoder fine-tuned by Arc2Face)")
        return
    unet_sub = options.get("unet_subfolder", "arc2face")
    encoder_sub = options.get("encoder_subfolder", "encoder")
    if is_local(model):
        problems = (component_problems(Path(model).expanduser(), unet_sub, "model")
                    + component_problems(Path(model).expanduser(), encoder_sub, "model"))
        for p in problems:
            report.add("problem", f"arc2face_model: {p}")
        if problems:
            return
    else:
        report.add("note", f"arc2face_model {model!r} is not a folder here, so it is taken for a "
                           "hub id (e.g. FoivosPar/Arc2Face): downloaded on first use")
    hub = _hub_kwargs(options, "arc2face_revision")
    try:
        unet = read_component_config(model, unet_sub, **hub)
        encoder = read_component_config(model, encoder_sub, **hub)
    except GeneratorLoadError as exc:
        report.add("problem", f"arc2face_model: {exc}")
        return
    hidden = encoder.get("hidden_size")
    cross = unet.get("cross_attention_dim")
    id_dim = int(options.get("id_dim", ARCFACE_DIM))
    fits = True
    if cross != hidden:
        fits = False
        report.add("problem", f"arc2face_model: the UNet ({unet_sub}/) attends to width "
                              f"{cross} but the text encoder ({encoder_sub}/) gives {hidden}")
    if id_dim != ARCFACE_DIM or not hidden or id_dim > hidden:
        fits = False
        report.add("problem", f"arc2face_model: identities of {id_dim} numbers (ArcFace: "
                              f"{ARCFACE_DIM}) must fit the text encoder's width {hidden}")
    if fits:
        report.add("ok", f"arc2face_model {model}: UNet ({unet_sub}/) and text encoder "
                         f"({encoder_sub}/, width {hidden}) present; {id_dim}-d identity in "
                         "the prompt's token embedding")


def _check_identity(report: RouteReport, kind: str, options: Mapping[str, Any],
                    model_dir: str | Path | None) -> None:
    """Name the identity model the route needs; whether the configured one may condition it and
    its files are present is decided by the rule the audits apply (``route_problems`` of
    :mod:`generator.diffusion.backend`), when that is available."""
    from generator.diffusion import backend

    own, why = required_identity(kind)
    configured = options.get("identity_model")
    line = (f"identity model: {report.name} needs {own} ({why}); "
            + ("not set, so the route uses it" if configured is None else
               f"configured {configured}"))
    enforce = getattr(backend, "route_problems", None)
    if enforce is None or model_dir is None:
        report.add("problem" if configured not in (None, own) else "note", line)
        return
    problems = enforce(report.name, options, model_dir)
    report.add("note" if problems else "ok",
               line + ("" if problems else f"; its files are in {model_dir}"))
    for problem in problems:
        report.add("problem", problem)


def _try_generation(report: RouteReport, name: str, options: Mapping[str, Any],
                    device: str) -> None:
    from generator.diffusion.prompts import anchor_prompt, arc2face_prompt
    from generator.registry import load_backend

    t = time.perf_counter()
    try:
        backend = load_backend(name, device=device, **options)
    except Exception as exc:  # every loader error, with its own text
        report.add("problem", f"loading on {device} failed: {type(exc).__name__}: {exc}")
        return
    loaded = time.perf_counter() - t
    r = backend.renderer
    size = int(r.pipe.vae_scale_factor) * 8  # the smallest size the UNet takes
    emb = np.random.default_rng(0).standard_normal((1, r.id_dim)).astype(np.float32)
    prompt = arc2face_prompt() if ROUTES[name][0] == "arc2face" else anchor_prompt({})
    kwargs = {k: v for k, v in backend.render_kwargs.items() if k == "guidance_scale"}
    t = time.perf_counter()
    try:
        image = r.render(emb, [prompt], [0], steps=GENERATION_STEPS, height=size, width=size,
                         **kwargs)
    except Exception as exc:
        report.add("problem", f"the tiny generation on {device} failed: "
                              f"{type(exc).__name__}: {exc}")
        return
    took = time.perf_counter() - t
    if image.shape != (1, size, size, 3) or image.dtype != np.uint8:
        report.add("problem", f"the tiny generation gave {image.shape} {image.dtype}, not "
                              f"(1, {size}, {size}, 3) uint8")
    elif int(image.max()) == int(image.min()):
        report.add("problem", f"the tiny generation on {device} gave one flat colour "
                              f"({int(image.max())}): NaN or overflow in "
                              f"{str(r.pipe.unet.dtype).removeprefix('torch.')}?")
    else:
        lora = getattr(r, "lora_applied", None)
        report.add("ok", f"loaded on {device} in {loaded:.1f} s and rendered one {size}x{size} "
                         f"image in {GENERATION_STEPS} steps in {took:.1f} s (weights sha256 "
                         f"{r.weights_sha256[:12]}"
                         + ("" if lora is None else f", FaceID LoRA applied: {lora}") + ")")
