"""Latent generators: a latent vector is an identity; the network turns it into a face.

:class:`LatentGenerator` is the small interface every backend implements. :class:`TorchLatentGenerator`
adapts any torch module that maps ``(N, latent_dim)`` latents to ``(N, 3, H, W)`` images in
[-1, 1] (a user's own StyleGAN2/3 generator plugs in here). :func:`load_dcgan_digiface` builds
the offline default: the 64x64 DCGAN of PyPI ``gan-face-generate`` (Radford et al., 2016,
"Unsupervised representation learning with deep convolutional GANs"), trained on DigiFace-1M.

Latents are drawn with NumPy's PCG64 from a seed, not torch's RNG, so an identity's latent is the
same on every platform and device.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

DCGAN_WEIGHTS_SHA256 = "0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f"
DCGAN_LICENCE = ("DigiFace-1M research licence (non-commercial); weights from PyPI "
                 "gan-face-generate 1.1.1")


class GeneratorLoadError(RuntimeError):
    """The generator's weights are missing or do not match their recorded hash."""


class LatentGenerator(Protocol):
    """What the rest of the system needs from a generator backend."""

    model_id: str
    weights_sha256: str
    licence: str
    latent_dim: int
    image_size: int

    def sample_latents(self, seeds: list[int]) -> np.ndarray:
        """One latent per seed: ``(N, latent_dim) float32``."""
        ...

    def generate(self, latents: np.ndarray) -> np.ndarray:
        """Images for latents ``(N, latent_dim)``: ``(N, H, W, 3) uint8`` RGB."""
        ...


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (weights files are checked before use)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class TorchLatentGenerator:
    """Adapter: a torch module ``latents (N, latent_dim) -> images (N, 3, H, W) in [-1, 1]``.

    ``latent_shape`` lets a module take latents shaped differently, e.g. ``(100, 1, 1)`` for a
    DCGAN. Generation runs in eval mode under ``torch.inference_mode`` in batches of
    ``batch_size``; output is rounded to uint8 as ``round((x + 1) * 127.5)``.

    ``batch_size`` is 1 by default so that an image never depends on what else is generated with
    it: CPU (and GPU) convolution libraries pick kernels by batch shape, which moves the last
    float bits, and a value on a .5 boundary then rounds to another grey level (seen: 64-px DCGAN
    faces rendered in batches of 16 and of 5 differed by one grey level in one pixel in 2 of 24
    baselines). With batch 1 the same latent gives the same bytes however an audit is split
    into tasks; it cost 4.4 ms instead of 1.8 ms per 64-px face on 2 CPU cores.
    """

    module: Any
    model_id: str
    weights_sha256: str
    licence: str
    latent_dim: int
    image_size: int
    latent_shape: tuple[int, ...] | None = None
    device: str = "cpu"
    batch_size: int = 1

    def sample_latents(self, seeds: list[int]) -> np.ndarray:
        out = np.empty((len(seeds), self.latent_dim), dtype=np.float32)
        for i, seed in enumerate(seeds):
            out[i] = np.random.Generator(np.random.PCG64(seed)).standard_normal(self.latent_dim)
        return out

    def generate(self, latents: np.ndarray) -> np.ndarray:
        import torch

        latents = np.asarray(latents, dtype=np.float32)
        if latents.ndim != 2 or latents.shape[1] != self.latent_dim:
            raise ValueError(f"latents must be (N, {self.latent_dim}), got {latents.shape}")
        self.module.eval()
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(latents), self.batch_size):
                z = torch.from_numpy(latents[start:start + self.batch_size]).to(self.device)
                if self.latent_shape is not None:
                    z = z.reshape(len(z), *self.latent_shape)
                x = self.module(z).float().clamp_(-1, 1)
                x = ((x + 1) * 127.5).round_().to(torch.uint8).permute(0, 2, 3, 1)
                chunks.append(x.cpu().numpy())
        if not chunks:
            return np.zeros((0, self.image_size, self.image_size, 3), dtype=np.uint8)
        return np.ascontiguousarray(np.concatenate(chunks))


def build_dcgan(nz: int = 100, ngf: int = 64, nc: int = 3):
    """The DCGAN generator architecture (64x64 output), layer indices matching the checkpoint's
    ``netG_state_dict``: transposed convolutions 4x4 stride 2 doubling the size from 4x4, each
    followed by batch norm and ReLU, a final Tanh."""
    from torch import nn

    layers: list[nn.Module] = []
    widths = [nz, ngf * 8, ngf * 4, ngf * 2, ngf]
    for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        stride, pad = (1, 0) if i == 0 else (2, 1)
        layers += [nn.ConvTranspose2d(cin, cout, 4, stride, pad, bias=False),
                   nn.BatchNorm2d(cout), nn.ReLU(True)]
    layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
    module = nn.Module()
    module.main = nn.Sequential(*layers)
    module.forward = module.main.forward  # type: ignore[method-assign]
    return module


def dcgan_weights_path() -> Path:
    """Where pip put ``gan_face_generate/weights.tar`` (found without importing the package,
    whose own imports need torchvision)."""
    spec = importlib.util.find_spec("gan_face_generate")
    if spec is None or not spec.submodule_search_locations:
        raise GeneratorLoadError(
            "the default generator's weights are missing: install them with "
            "`pip install --no-deps gan-face-generate==1.1.1`")
    return Path(next(iter(spec.submodule_search_locations))) / "weights.tar"


def load_dcgan_digiface(device: str = "cpu", verify: bool = True) -> TorchLatentGenerator:
    """Load the offline default generator, checking the weights' SHA-256 first."""
    import torch

    path = dcgan_weights_path()
    if not path.exists():
        raise GeneratorLoadError(f"{path} not found; reinstall gan-face-generate==1.1.1 --no-deps")
    digest = sha256_file(path) if verify else DCGAN_WEIGHTS_SHA256
    if digest != DCGAN_WEIGHTS_SHA256:
        raise GeneratorLoadError(
            f"{path} has SHA-256 {digest}, expected {DCGAN_WEIGHTS_SHA256}: the file is damaged or "
            "a different release; reinstall gan-face-generate==1.1.1")
    state = torch.load(path, map_location="cpu", weights_only=True)["netG_state_dict"]
    module = build_dcgan()
    module.load_state_dict(state)
    module.to(device).eval()
    return TorchLatentGenerator(module=module, model_id="dcgan-digiface", weights_sha256=digest,
                                licence=DCGAN_LICENCE, latent_dim=100, image_size=64,
                                latent_shape=(100, 1, 1), device=device)


def load_generator(name: str, device: str = "cpu") -> LatentGenerator:
    """The latent generator registered as ``name`` (see :data:`generator.registry.BACKENDS`);
    a ValueError for a prompt-driven backend, which has no latent space."""
    from generator.registry import load_backend

    latent = load_backend(name, device=device).latent
    if latent is None:
        raise ValueError(f"{name} is prompt-driven: it has no latent generator")
    return latent
