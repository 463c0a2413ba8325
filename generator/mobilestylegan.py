"""MobileStyleGAN (Belousov, "MobileStyleGAN: a lightweight convolutional neural network for
high-fidelity image synthesis", arXiv 2104.04767), distilled from StyleGAN2 trained on FFHQ:
photoreal 1024x1024 faces from PyPI ``random-face`` 2021.7.21.1, whose wheel carries the network
as OpenVINO IR (``random_face/data/{MappingNetwork,SynthesisNetwork}.{xml,bin}``). The package's
own engine calls an OpenVINO API that no longer exists, so the files are read here with
``openvino.Core().read_model`` and nothing else of the package is used (install it with
``--no-deps``).

The latent an identity and its edits live in is StyleGAN's **W** space (512-d), *whitened*:
``z`` is drawn with NumPy's PCG64 from the identity's seed, mapped to ``w`` by the mapping
network, truncated towards the mean (``w_t = w_avg + psi * (w - w_avg)``, Karras et al. 2019),
and expressed as ``u = Lambda^(-1/2) V^T (w_t - w_avg)`` where ``V Lambda V^T`` is the covariance
of truncated ``w`` (from 4,096 mapped ``z`` of a fixed seed, computed at load). ``u`` is about
N(0, I), like the DCGAN's latent, so the editing machinery's unit directions, steps and step cap
mean the same here. Why: W is strongly anisotropic; a direction regressed on raw ``w`` points
largely into low-variance directions that leave the faces' manifold (seen: a yaw direction that
predicted 21 degrees per unit moved faces about 2). Latent edits (directions learned on ``u``,
:mod:`generator.directions`) are steps in whitened W. Noise is baked into the graph's constants,
so the same latent gives the same image.

Each latent is synthesised on its own (batch 1; the graph fixes it) in fp32
(``INFERENCE_PRECISION_HINT=f32``: on CPUs with bf16/AMX OpenVINO would otherwise run in bf16,
which moves pixels by up to 0.78 of the [-1, 1] range), and only up to the network's 512-px
wavelet tensor (:data:`WAVELET_LAYER`), whose low-pass channels are the 1024-px image
box-downscaled to :data:`IMAGE_SIZE`: at 512 px the detector finds the same faces as at 1024 and
MobileFaceNet embeddings stay within cosine 0.98-0.999 of the full image's (12 faces), while
256 px dropped to 0.95.

Weights: NVIDIA's StyleGAN2-FFHQ (non-commercial) distilled on FFHQ (CC BY-NC-SA 4.0):
**research use only**; the licence travels in every recipe, the summary and the dataset card.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from generator.mobilestylegan_files import (
    MAPPING_SHA256,
    SYNTHESIS_SHA256,
    MobileStyleGANUnavailable,
    data_dir,
)

MODEL_ID = "mobilestylegan-ffhq"
LICENCE = ("research use only: MobileStyleGAN distilled from NVIDIA's StyleGAN2-FFHQ "
           "(non-commercial licence) on FFHQ (CC BY-NC-SA 4.0); network files from PyPI "
           "random-face 2021.7.21.1 (package Apache-2.0)")
LATENT_DIM = 512
IMAGE_SIZE = 512  # pixels of the stored and scored image (the network's 1024 image box-downscaled)
#: The synthesis layer holding the 12-channel Haar wavelet tensor at 512 px whose channels 0-2
#: halved are the 1024-px image box-downscaled to 512 (to 1.2e-7): the network is run only up
#: to it, which skips the last upsampling (about a third of OpenVINO's time).
WAVELET_LAYER = "Add_754"
TRUNCATION = 0.7  # psi: 0.7 trades a little diversity for fewer broken faces (StyleGAN's usual)
W_AVG_SAMPLES = 4096
W_AVG_SEED = 20210721

#: Check tolerances for these faces (:class:`generator.editing.CheckPolicy` fields), set from the
#: sensors' repeatability measured on them (``bench/calibrate_sensors.py --generator
#: mobilestylegan-ffhq``, 150 faces; change under a 1-pixel shift, p95 / p99): age 2 / 4 years,
#: yaw 0.8 / 1.1 degrees, pitch 1.5 / 1.9 degrees, ITA 0.8 / 1.9 degrees, brightness 0.6 / 0.8
#: grey levels, male probability 0.06 / 0.14. The 64-px DCGAN's defaults were 5 to 10 times
#: wider (age p99 19 years), so an age edit that did nothing counted as on target here. Targets:
#: about twice the p99; holds: about three times it, so that a held attribute counts as moved
#: only when the change is well above what the sensor itself wobbles by.
#: The smile score (sensor version 3, 120 faces) wobbles by p95 / p99 0.028 / 0.053 under these
#: null edits, so its target tolerance is 0.10 and its hold tolerance 0.15, by the same rule.
#: The skin tone index (which, unlike ITA, a change of lighting leaves in place) wobbles by
#: p99 0.35 degrees, but a lighting edit moves it by about 0.4 (darker) to 1.5 degrees (lighter,
#: where bright skin clips) on average: it is held at 2.5 degrees during every edit, the
#: lighting edit included, and faces within 2.5 degrees of the lighter/darker split join no
#: group (worker.labels), so a variant that passes its checks keeps its face's skin-tone label.
#: The smile score is held during every edit but the smile edit.
CHECK_POLICY: dict[str, Any] = {
    "target_abs_tol": {"yaw": 3.0, "pitch": 4.0, "age": 4.0, "brightness": 2.0, "smile": 0.10},
    "hold_tol": {"yaw": 4.0, "pitch": 6.0, "age": 6.0, "ita": 6.0, "brightness": 4.0,
                 "male_probability": 0.25, "skin_tone_index": 2.5, "smile": 0.15},
}


#: What a baseline must be (sensor: (low, high), None = unbounded): near-frontal, a neutral
#: expression and evenly lit, so that a variant's change starts from the same kind of face for
#: every group. Measured on 60 of these faces (seeds 1000-1059): yaw 5th-95th percentile -12 to
#: +28 degrees (62% within +-10), smile score median 0.76 (neutral by audit.expression's
#: thresholds, smile <= 0.72 and mouth opening <= 0.10: 37%), left/right illumination
#: uniformity median 0.93 (5th percentile 0.75; 0.8 keeps the clearly one-sided light out).
#: Pitch is not bounded: the keypoint pose fit reads these faces at -14 degrees median (its
#: zero is not the camera axis).
#: Identities are adults (perceived age at least 18): FFHQ holds children, and a child's
#: face changes with every edit in ways an adult's does not.
BASELINE_RULE: dict[str, tuple[float | None, float | None]] = {
    "yaw": (-10.0, 10.0), "smile": (None, 0.72), "mouth_open": (None, 0.10),
    "illumination_uniformity": (0.80, None), "age": (18.0, None)}
#: Where guided sampling aims the linear predictions: inside :data:`BASELINE_RULE` by about
#: two residual standard deviations of each prediction (2,000 faces: yaw 3.4 degrees, smile
#: 0.06), so the sensors, which the prediction only approximates, still find the face inside.
#: Illumination uniformity is not aimed (its direction's held-out R^2 is 0.16).
BASELINE_AIM: dict[str, tuple[float | None, float | None]] = {
    "yaw": (-4.0, 4.0), "smile": (None, 0.60), "mouth_open": (None, 0.04), "age": (24.0, None)}


def accepts_baseline(labels: dict[str, Any]) -> bool:
    """Whether a candidate's sensor readings (``labels["sensors"]``) satisfy
    :data:`BASELINE_RULE`; a missing reading fails the rule."""
    readings = labels.get("sensors") or {}
    for sensor, (low, high) in BASELINE_RULE.items():
        value = readings.get(sensor)
        if value is None or not np.isfinite(value):
            return False
        if (low is not None and value < low) or (high is not None and value > high):
            return False
    return True


def available() -> bool:
    """Whether the network files and OpenVINO are installed (no model is loaded)."""
    try:
        d = data_dir()
    except MobileStyleGANUnavailable:
        return False
    return (importlib.util.find_spec("openvino") is not None
            and (d / "SynthesisNetwork.xml").exists())


@dataclass
class MobileStyleGAN:
    """:class:`generator.backends.LatentGenerator` over MobileStyleGAN's W space (see the module
    docstring). ``sample_latents(seeds) -> (N, 512) float32`` truncated ``w``;
    ``generate(w) -> (N, IMAGE_SIZE, IMAGE_SIZE, 3) uint8`` RGB."""

    mapping: Any
    synthesis: Any
    w_avg: np.ndarray
    #: ``w_t = w_avg + u @ colour.T``; ``u = (w_t - w_avg) @ whiten.T`` (both (512, 512)).
    colour: np.ndarray
    whiten: np.ndarray
    model_id: str = MODEL_ID
    weights_sha256: str = SYNTHESIS_SHA256
    licence: str = LICENCE
    latent_dim: int = LATENT_DIM
    image_size: int = IMAGE_SIZE
    truncation: float = TRUNCATION
    latent_version: str = "wwhite1"  # whitened W (directions cached per latent version)
    recipe_extra: dict[str, Any] = field(default_factory=dict)
    #: candidates rendered per sampling round: small, since a round is rendered whole even when
    #: its first faces fill the last groups (0.4-0.7 s per face on 2 cores)
    sampling_batch: int = 16
    #: latents drawn per rendered candidate in guided sampling: a rendered one is the first whose
    #: aim is reachable within the shift cap (mapping a seed costs about 1 ms, rendering 200 ms+)
    sampling_screen: int = 8
    check_policy: dict[str, Any] = field(default_factory=lambda: dict(CHECK_POLICY))

    @property
    def baseline_bands(self) -> tuple:
        """:data:`BASELINE_AIM` as :class:`generator.guidance.Band` s (guided sampling)."""
        from generator.guidance import Band

        return tuple(Band(k, lo, hi) for k, (lo, hi) in BASELINE_AIM.items())

    @staticmethod
    def accepts_baseline(labels: dict[str, Any]) -> bool:
        return accepts_baseline(labels)

    def _map(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(self.mapping(z[None].astype(np.float32))[0], dtype=np.float32)[0]

    def truncated_w(self, seeds: list[int]) -> np.ndarray:
        """``(N, 512)`` truncated ``w`` of the seeds (before whitening)."""
        out = np.empty((len(seeds), self.latent_dim), dtype=np.float32)
        for i, seed in enumerate(seeds):
            z = np.random.Generator(np.random.PCG64(seed)).standard_normal(self.latent_dim)
            out[i] = self.w_avg + self.truncation * (self._map(z) - self.w_avg)
        return out

    def sample_latents(self, seeds: list[int]) -> np.ndarray:
        """``(N, 512) float32`` whitened latents ``u`` of the seeds."""
        w = self.truncated_w(seeds).astype(np.float64)
        return ((w - self.w_avg) @ self.whiten.T).astype(np.float32)

    def to_w(self, latents: np.ndarray) -> np.ndarray:
        """Whitened latents ``(N, 512)`` -> ``w`` for the synthesis network."""
        u = np.asarray(latents, dtype=np.float64)
        return (self.w_avg + u @ self.colour.T).astype(np.float32)

    def generate(self, latents: np.ndarray) -> np.ndarray:
        import cv2

        u = np.asarray(latents, dtype=np.float32)
        if u.ndim != 2 or u.shape[1] != self.latent_dim:
            raise ValueError(f"latents must be (N, {self.latent_dim}), got {u.shape}")
        w = self.to_w(u)
        out = np.empty((len(w), self.image_size, self.image_size, 3), dtype=np.uint8)
        for i in range(len(w)):
            x = np.asarray(self.synthesis(w[i:i + 1])[0], dtype=np.float32)[0]
            x = np.rint((np.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
            x = np.ascontiguousarray(x.transpose(1, 2, 0))
            out[i] = cv2.resize(x, (self.image_size, self.image_size),
                                interpolation=cv2.INTER_AREA) if x.shape[0] != self.image_size \
                else x
        return out


def whitening(centred: np.ndarray, floor: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """``(colour, whiten)`` for samples ``centred`` (N, D) of zero mean: with the covariance's
    eigendecomposition ``V Lambda V^T`` (eigenvalues floored at ``floor`` times the largest),
    ``colour = V Lambda^(1/2)`` and ``whiten = Lambda^(-1/2) V^T``, so ``x = colour @ u`` and
    ``u = whiten @ x`` with ``u`` of identity covariance. Eigenvectors' signs are fixed (largest
    component positive) so the result does not depend on the LAPACK build."""
    cov = centred.T @ centred / max(len(centred) - 1, 1)
    lam, vec = np.linalg.eigh(cov)
    lam = np.maximum(lam, floor * lam.max())
    flip = np.sign(vec[np.abs(vec).argmax(axis=0), np.arange(vec.shape[1])])
    vec = vec * np.where(flip == 0, 1.0, flip)
    return vec * np.sqrt(lam), (vec / np.sqrt(lam)).T


def load_mobilestylegan(device: str = "cpu", verify: bool = True,
                        engine: str = "auto") -> MobileStyleGAN:
    """Load MobileStyleGAN, checking both weight files' SHA-256 first.

    ``engine``: ``"openvino"`` (fp32 on the CPU), ``"torch"`` (the IR run by
    :mod:`generator.openvino_ir` on ``device``, fp32), or ``"auto"``: OpenVINO for a CPU
    device when it is installed (1.6 to 2.3 times faster than torch on 2 cores,
    ``bench/bench_mobilestylegan.py``), torch otherwise (GPU workers). Both give the same image
    to 1e-4 of the [-1, 1] range (``tests/generator/test_openvino_ir.py``), so at most a rare
    pixel differs by one grey level between a CPU and a GPU worker; the recipe names the engine.
    """
    from generator.backends import GeneratorLoadError, sha256_file

    try:
        d = data_dir()
    except MobileStyleGANUnavailable as exc:
        raise GeneratorLoadError(str(exc)) from None
    has_openvino = importlib.util.find_spec("openvino") is not None
    if engine == "auto":
        engine = "openvino" if str(device).startswith("cpu") and has_openvino else "torch"
    if engine not in ("openvino", "torch"):
        raise GeneratorLoadError(f"unknown MobileStyleGAN engine {engine!r}: openvino or torch")
    if engine == "openvino" and not has_openvino:
        raise GeneratorLoadError("MobileStyleGAN needs OpenVINO: `pip install openvino==2026.4.0`")
    for name, want in (("SynthesisNetwork.bin", SYNTHESIS_SHA256),
                       ("MappingNetwork.bin", MAPPING_SHA256)):
        path = d / name
        if not path.exists():
            raise GeneratorLoadError(f"{path} not found; reinstall random-face==2021.7.21.1")
        if verify and (got := sha256_file(path)) != want:
            raise GeneratorLoadError(f"{path} has SHA-256 {got}, expected {want}: the file is "
                                     "damaged or another release; reinstall random-face")
    if engine == "torch":
        mapping, synthesis, render = _torch_engine(d, device)
    else:
        mapping, synthesis, render = _openvino_engine(d)
    rng = np.random.Generator(np.random.PCG64(W_AVG_SEED))
    zs = rng.standard_normal((W_AVG_SAMPLES, LATENT_DIM)).astype(np.float32)
    ws = np.stack([np.asarray(mapping(z[None])[0], dtype=np.float64)[0] for z in zs])
    w_avg = ws.mean(axis=0)
    colour, whiten = whitening((ws - w_avg) * TRUNCATION)
    return MobileStyleGAN(mapping=mapping, synthesis=synthesis, w_avg=w_avg, colour=colour,
                          whiten=whiten,
                          recipe_extra={"latent_space": "W (z mapped, then truncated)",
                                        "truncation": TRUNCATION, "render": render,
                                        "synthesised_at": 1024, "mapping_sha256": MAPPING_SHA256})


def load_backend(device: str = "cpu", name: str = MODEL_ID, **options: Any):
    """MobileStyleGAN as a :class:`generator.registry.GeneratorBackend` (registry loader)."""
    from generator.latent_backend import LatentBackend

    return LatentBackend(name, load_mobilestylegan(device=device, **options))


def _openvino_engine(d: Path):
    """``(mapping, synthesis, description)`` compiled by OpenVINO for the CPU in fp32."""
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    mapping = core.compile_model(core.read_model(str(d / "MappingNetwork.xml"),
                                                 str(d / "MappingNetwork.bin")), "CPU", config)
    full = core.read_model(str(d / "SynthesisNetwork.xml"), str(d / "SynthesisNetwork.bin"))
    wavelet = next(op for op in full.get_ops() if op.get_friendly_name() == WAVELET_LAYER)
    cut = ov.Model([wavelet.output(0)], full.get_parameters(), "synthesis_512")
    compiled = core.compile_model(cut, "CPU", config)

    def synthesis(w):
        return [np.asarray(compiled(w)[0])[:, :3] * 0.5]

    return mapping, synthesis, "OpenVINO fp32, CPU, 512-px wavelet output"


def _torch_engine(d: Path, device: str):
    """``(mapping, synthesis, description)`` with OpenVINO's call convention
    (``f(x (1, 512)) -> [array]``) over the torch port, fp32 on ``device``."""
    import torch

    from generator.mobilestylegan_torch import load_torch_mobilestylegan

    model = load_torch_mobilestylegan(d, device=device, dtype=torch.float32, verify=False)
    return ((lambda z: [model.map(np.asarray(z, dtype=np.float32))]),
            (lambda w: [model.synthesise(np.asarray(w, dtype=np.float32), size=IMAGE_SIZE)]),
            f"torch fp32, {device}, 512-px wavelet output")
