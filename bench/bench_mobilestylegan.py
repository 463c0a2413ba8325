"""MobileStyleGAN benchmark: OpenVINO against the torch port (``generator.mobilestylegan_torch``,
MobileStyleGAN: Belousov, arXiv 2104.04767).

CPU, in one process: seconds per image for OpenVINO fp32 (``INFERENCE_PRECISION_HINT=f32``, the
production path) and torch fp32, at 1024 px and at 512 px, batch 1, median of ``--repeats``
runs after a warm-up, with the torch / OpenVINO time ratio (below 1: torch is faster). At 512
both stop at the graph's wavelet layer ``Add_754`` (the 1024 image box-downscaled; for OpenVINO
a model cut there), so neither pays for the last inverse wavelet transform.

CUDA, when torch sees a GPU: images per second at 1024 and 512, batch 1 and 64, fp32 and fp16
(``torch.inference_mode``, ``cudnn.benchmark``, warm-up, ``torch.cuda.synchronize`` around the
timed runs), the fp16 vs fp32 max and mean absolute difference (pixels in [-1, 1]), and the GPU
fp32 vs CPU fp32 difference (fp32 convolutions run as TF32 where torch allows it, recorded).

``--smoke``: a tiny CPU run (512 px only, torch batch 1 and 2, one run each, no warm-up, fp32
only, no GPU) to check that the script works, in well under 30 s. ``--json PATH`` writes the
figures (``null`` where not measured). Figures only: nothing here asserts a speed.

    .venv/bin/python bench/bench_mobilestylegan.py [--repeats 5] [--gpu-batches 1,64]
        [--json PATH] [--smoke]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from generator.mobilestylegan_torch import (  # noqa: E402
    WAVELET_LAYER,
    load_torch_mobilestylegan,
)


def data_dir() -> Path:
    spec = importlib.util.find_spec("random_face")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("random-face is not installed: pip install --no-deps random-face==2021.7.21.1")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def seconds(fn: Callable[[], Any], repeats: int, warmup: int, sync: Callable[[], None]) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def openvino_synthesis(d: Path) -> dict[int, Callable[[np.ndarray], np.ndarray]] | None:
    """``{size: w (1, 512) -> (1, 3, size, size)}`` with OpenVINO fp32 on the CPU, or None when
    OpenVINO is not installed."""
    if importlib.util.find_spec("openvino") is None:
        return None
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    model = core.read_model(str(d / "SynthesisNetwork.xml"), str(d / "SynthesisNetwork.bin"))
    full = core.compile_model(model, "CPU", config)
    wavelet = next(op for op in model.get_ops() if op.get_friendly_name() == WAVELET_LAYER)
    cut = core.compile_model(ov.Model([wavelet.output(0)], model.get_parameters(), "cut512"),
                             "CPU", config)
    return {1024: lambda w: np.asarray(full(w)[0]),
            512: lambda w: np.asarray(cut(w)[0])[:, :3] * 0.5}


def cpu_figures(d: Path, w: np.ndarray, sizes: list[int], batches: list[int], repeats: int,
                warmup: int, compare: bool = True) -> dict[str, Any]:
    """Seconds per image on the CPU: OpenVINO at batch 1 (its graph is fixed at 1), torch at
    each batch size; ratio at batch 1; with ``compare``, torch's max difference from
    OpenVINO on the first latent."""
    gan = load_torch_mobilestylegan(d, "cpu", torch.float32, verify=False)
    ov_runs = openvino_synthesis(d)
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "repeats": repeats,
                           "openvino_fp32": None, "torch_fp32": {}, "torch_over_openvino": None,
                           "max_abs_torch_vs_openvino": None}
    wt = torch.from_numpy(w)
    if ov_runs is not None:
        out.update(openvino_fp32={}, torch_over_openvino={},
                   max_abs_torch_vs_openvino={} if compare else None)
    for size in sizes:
        if ov_runs is not None:
            s = seconds(lambda size=size: ov_runs[size](w[:1]), repeats, warmup, lambda: None)
            out["openvino_fp32"][str(size)] = {"1": s}
            if compare:
                diff = np.abs(gan.synthesise(w[:1], size) - ov_runs[size](w[:1])).max()
                out["max_abs_torch_vs_openvino"][str(size)] = float(diff)
        out["torch_fp32"][str(size)] = {}
        for batch in batches:
            s = seconds(lambda size=size, batch=batch: gan.synthesise_tensor(wt[:batch], size),
                        repeats, warmup, lambda: None) / batch
            out["torch_fp32"][str(size)][str(batch)] = s
        if ov_runs is not None and 1 in batches:
            out["torch_over_openvino"][str(size)] = (out["torch_fp32"][str(size)]["1"]
                                                     / out["openvino_fp32"][str(size)]["1"])
    return out


def cuda_figures(d: Path, w: np.ndarray, sizes: list[int], batches: list[int], repeats: int,
                 device: str = "cuda") -> dict[str, Any]:
    """Images per second on ``device`` for fp32 and fp16, and fp16's (and the GPU's) difference
    from fp32 on the CPU."""
    torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else device,
        "tf32_convolutions": bool(torch.backends.cudnn.allow_tf32),
        "images_per_s": {}, "fp16_vs_fp32_max_abs": {}, "fp16_vs_fp32_mean_abs": {},
        "gpu_fp32_vs_cpu_fp32_max_abs": {}}
    check = torch.from_numpy(w[:4])
    reference: dict[int, torch.Tensor] = {}
    cpu = load_torch_mobilestylegan(d, "cpu", torch.float32, verify=False)
    cpu_first = {size: cpu.synthesise_tensor(check[:1], size).float() for size in sizes}
    del cpu
    for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
        gan = load_torch_mobilestylegan(d, device, dtype, verify=False)
        out["images_per_s"][name] = {}
        for size in sizes:
            out["images_per_s"][name][str(size)] = {}
            for batch in batches:
                wb = torch.from_numpy(np.resize(w, (batch, w.shape[1]))).to(device)
                try:
                    s = seconds(lambda g=gan, size=size, wb=wb: g.synthesise_tensor(wb, size),
                                repeats, 2, sync)
                    out["images_per_s"][name][str(size)][str(batch)] = batch / s
                except torch.cuda.OutOfMemoryError:
                    out["images_per_s"][name][str(size)][str(batch)] = None
                    print(f"  {name} {size} px batch {batch}: out of GPU memory")
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
            got = gan.synthesise_tensor(check, size).float().cpu()
            if name == "fp32":
                reference[size] = got
                out["gpu_fp32_vs_cpu_fp32_max_abs"][str(size)] = float(
                    (got[:1] - cpu_first[size]).abs().max())
            else:
                diff = (got - reference[size]).abs()
                out["fp16_vs_fp32_max_abs"][str(size)] = float(diff.max())
                out["fp16_vs_fp32_mean_abs"][str(size)] = float(diff.mean())
        del gan
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gpu-batches", default="1,64")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny CPU run: 512 px, batch 1 and 2, one run each, no GPU")
    args = parser.parse_args()

    d = data_dir()
    if args.smoke:
        sizes, batches, repeats, warmup = [512], [1, 2], 1, 0
    else:
        sizes, batches, repeats, warmup = [1024, 512], [1], args.repeats, 1
    t0 = time.perf_counter()
    mapper = load_torch_mobilestylegan(d, "cpu", torch.float32)  # checks the files' SHA-256
    z = np.random.Generator(np.random.PCG64(20210721)).standard_normal((64, 512))
    w = mapper.map(z.astype(np.float32))
    del mapper
    figures: dict[str, Any] = {"smoke": args.smoke, "torch": torch.__version__}
    print(f"MobileStyleGAN synthesis, CPU ({torch.get_num_threads()} torch threads), "
          f"median of {repeats} run(s), seconds per image:")
    cpu = cpu_figures(d, w, sizes, batches, repeats, warmup, compare=not args.smoke)
    figures["cpu"] = cpu
    for size in sizes:
        ov_s = (cpu["openvino_fp32"] or {}).get(str(size), {}).get("1")
        line = f"  {size:>4} px: "
        if ov_s is not None:
            line += f"OpenVINO fp32 {ov_s:.3f} s; "
        line += "torch fp32 " + ", ".join(f"batch {b} {s:.3f} s"
                                          for b, s in cpu["torch_fp32"][str(size)].items())
        if cpu["torch_over_openvino"] and str(size) in cpu["torch_over_openvino"]:
            ratio = cpu["torch_over_openvino"][str(size)]
            line += (f"; torch / OpenVINO {ratio:.2f}x "
                     f"({'torch' if ratio < 1 else 'OpenVINO'} faster)")
        if cpu["max_abs_torch_vs_openvino"]:
            line += (f"; max |torch - OpenVINO| "
                     f"{cpu['max_abs_torch_vs_openvino'][str(size)]:.2g}")
        print(line)
    figures["cuda"] = None
    if not args.smoke and torch.cuda.is_available():
        gpu_batches = [int(b) for b in args.gpu_batches.split(",")]
        cuda = cuda_figures(d, w, [1024, 512], gpu_batches, max(args.repeats, 3))
        figures["cuda"] = cuda
        print(f"{cuda['device']} (TF32 convolutions: {cuda['tf32_convolutions']}), images/s:")
        for name, per_size in cuda["images_per_s"].items():
            for size, per_batch in per_size.items():
                print(f"  {name} {size:>4} px: " + ", ".join(
                    f"batch {b} {v:.1f}" if v is not None else f"batch {b} out of memory"
                    for b, v in per_batch.items()))
        for size in cuda["fp16_vs_fp32_max_abs"]:
            print(f"  {size:>4} px: fp16 vs fp32 max {cuda['fp16_vs_fp32_max_abs'][size]:.3g}, "
                  f"mean {cuda['fp16_vs_fp32_mean_abs'][size]:.2g}; GPU vs CPU fp32 max "
                  f"{cuda['gpu_fp32_vs_cpu_fp32_max_abs'][size]:.2g}")
    elif not args.smoke:
        print("no CUDA device: GPU figures skipped")
    figures["seconds_total"] = time.perf_counter() - t0
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
