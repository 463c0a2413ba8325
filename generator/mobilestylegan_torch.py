"""MobileStyleGAN (Belousov, "MobileStyleGAN: a lightweight convolutional neural network for
high-fidelity image synthesis", arXiv 2104.04767) in torch, read from the OpenVINO IR that the
PyPI wheel ``random-face`` 2021.7.21.1 ships (``random_face/data/{MappingNetwork,
SynthesisNetwork}.{xml,bin}``, see :mod:`generator.mobilestylegan`) and run by the IR
interpreter :mod:`generator.openvino_ir`, so that GPU workers can render batches and in fp16.

Networks, shapes and units:

* **mapping** ``z (N, 512) -> w (N, 512)``: ``z`` standard normal, ``w`` in StyleGAN's W space
  (unitless). Always run in fp32 (eight 512x512 matrix products: its cost is nothing next to
  the synthesis, and ``w`` feeds truncation and whitening in float64).
* **synthesis** ``w (N, 512) -> image (N, 3, 1024, 1024)``: RGB, channels first, values in
  about ``[-1, 1]`` (``-1`` black, ``1`` white; not clipped), in the dtype asked for (fp32 or
  fp16). The network's last block predicts the image as a 12-channel Haar wavelet tensor at
  512 px (layer ``Add_754``: 4 sub-bands x RGB, low-pass first) and an inverse wavelet
  transform makes the 1024-px image. The low-pass channels 0-2 divided by 2 are exactly the
  1024-px image box-downscaled to 512 (the mean of each 2x2 block, as ``cv2.INTER_AREA``), so
  ``size=512`` stops there: same pixels as downscaling, without the 1024-px tensors.

Matches OpenVINO's fp32 CPU result to about 1e-4 at most (1e-6 on average) in the [-1, 1] range
(``tests/generator/test_openvino_ir.py``); noise is baked into the graph's constants, so the
same ``w`` gives the same image. On GPUs, torch runs fp32 convolutions as TF32 unless
``torch.backends.cudnn.allow_tf32`` is False (a process-wide setting left to the caller), and
fp16 moves some pixels by about 0.1 (CPU measurement; the benchmark reports the GPU's).
Timings: ``bench/bench_mobilestylegan.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from generator.mobilestylegan_files import MAPPING_SHA256, SYNTHESIS_SHA256
from generator.openvino_ir import IRModule, load_ir

LATENT_DIM = 512
SIZES = (1024, 512)
#: The synthesis layer holding the 12-channel wavelet tensor at 512 px (channels 0-2: twice the
#: low-pass RGB image).
WAVELET_LAYER = "Add_754"


@dataclass
class TorchMobileStyleGAN:
    """MobileStyleGAN's two networks as torch modules on one device (see the module docstring).

    ``map`` and ``synthesise`` take and return NumPy arrays (float32, batches of ``batch_size``
    at a time); ``map_tensor`` and ``synthesise_tensor`` keep torch tensors on the device (for
    benchmarks and callers that post-process on the GPU)."""

    mapping: IRModule
    synthesis: IRModule
    device: torch.device
    dtype: torch.dtype
    #: latents per forward pass in the NumPy calls (peak activations: about 0.15 GB per fp32
    #: 1024-px image, measured on the CPU at batch 3)
    batch_size: int = 16

    @staticmethod
    def _check(x: np.ndarray | torch.Tensor, what: str) -> None:
        if x.ndim != 2 or x.shape[1] != LATENT_DIM:
            raise ValueError(f"{what} must be (N, {LATENT_DIM}), got {tuple(x.shape)}")

    def map_tensor(self, z: torch.Tensor) -> torch.Tensor:
        """``z (N, 512)`` -> ``w (N, 512)`` float32 on the device."""
        self._check(z, "z")
        with torch.inference_mode():
            return self.mapping(z.to(self.device, torch.float32))

    def synthesise_tensor(self, w: torch.Tensor, size: int = 1024) -> torch.Tensor:
        """``w (N, 512)`` -> RGB ``(N, 3, size, size)`` in about [-1, 1], in the model's dtype on
        its device (``size`` 1024, or 512: the 1024 image box-downscaled, read from the wavelet
        tensor). The result may be a strided view (channels-last memory)."""
        self._check(w, "w")
        if size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {size}")
        with torch.inference_mode():
            w = w.to(self.device, self.dtype)
            if size == 1024:
                return self.synthesis(w)
            wavelet = self.synthesis.run([w], outputs=[WAVELET_LAYER])[WAVELET_LAYER]
            return wavelet[:, :3] * 0.5

    def map(self, z: np.ndarray) -> np.ndarray:
        """``z (N, 512)`` -> ``w (N, 512)`` float32."""
        z = np.asarray(z, dtype=np.float32)
        self._check(z, "z")
        out = [self.map_tensor(torch.from_numpy(z[i:i + self.batch_size])).cpu().numpy()
               for i in range(0, len(z), self.batch_size)]
        return np.concatenate(out) if out else np.empty((0, LATENT_DIM), np.float32)

    def synthesise(self, w: np.ndarray, size: int = 1024) -> np.ndarray:
        """``w (N, 512)`` -> RGB ``(N, 3, size, size)`` float32 in about [-1, 1] (see
        :meth:`synthesise_tensor`)."""
        w = np.asarray(w, dtype=np.float32)
        self._check(w, "w")
        out = np.empty((len(w), 3, size, size), dtype=np.float32)
        for i in range(0, len(w), self.batch_size):
            x = self.synthesise_tensor(torch.from_numpy(w[i:i + self.batch_size]), size)
            out[i:i + len(x)] = x.float().cpu().numpy()
        return out


def load_torch_mobilestylegan(data_dir: str | Path, device: str | torch.device = "cpu",
                              dtype: torch.dtype = torch.float32, verify: bool = True,
                              batch_size: int = 16) -> TorchMobileStyleGAN:
    """MobileStyleGAN from ``data_dir`` (``random_face/data``: the folder holding
    ``MappingNetwork.{xml,bin}`` and ``SynthesisNetwork.{xml,bin}``, as
    :func:`generator.mobilestylegan_files.data_dir` finds it), with the synthesis on ``device`` in
    ``dtype`` (fp32 or fp16; the mapping stays fp32). ``verify`` checks both weight files'
    SHA-256 against the pinned release first. Loading takes about 0.5 s on a CPU."""
    from generator.backends import sha256_file

    data_dir = Path(data_dir)
    for name, want in (("SynthesisNetwork", SYNTHESIS_SHA256), ("MappingNetwork", MAPPING_SHA256)):
        for ext in ("xml", "bin"):
            if not (data_dir / f"{name}.{ext}").exists():
                raise FileNotFoundError(f"{data_dir / f'{name}.{ext}'} not found; install "
                                        "`pip install --no-deps random-face==2021.7.21.1`")
        if verify and (got := sha256_file(data_dir / f"{name}.bin")) != want:
            raise ValueError(f"{data_dir / f'{name}.bin'} has SHA-256 {got}, expected {want}: "
                             "the file is damaged or another release; reinstall random-face")
    device = torch.device(device)
    mapping = load_ir(data_dir / "MappingNetwork.xml").to(device, torch.float32).eval()
    synthesis = load_ir(data_dir / "SynthesisNetwork.xml").to(device, dtype).eval()
    return TorchMobileStyleGAN(mapping=mapping, synthesis=synthesis, device=device, dtype=dtype,
                               batch_size=batch_size)
