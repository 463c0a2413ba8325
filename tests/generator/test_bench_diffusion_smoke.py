"""bench/bench_diffusion.py --smoke runs end to end on the CPU in seconds, with the FaceID LoRA in
the timed path as real weights bring it, and writes its figures. Speeds are not asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft", reason="peft applies the FaceID LoRA")

ROOT = Path(__file__).resolve().parents[2]


def tiny_lora_layers() -> int:
    """LoRA-wrapped linear layers the bench's tiny UNet must carry, counted from its config:
    down (DownBlock2D, CrossAttnDownBlock2D) and up (CrossAttnUpBlock2D, UpBlock2D) with 2 layers
    per block give 2 + 3 transformer blocks, the mid block 1; each block has 2 attention layers,
    each with the LoRA on to_q, to_k, to_v and to_out.0."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from bench_diffusion import TINY_UNET
    finally:
        sys.path.remove(str(ROOT / "bench"))
    per_block = TINY_UNET["layers_per_block"]
    blocks = (per_block * TINY_UNET["down_block_types"].count("CrossAttnDownBlock2D")
              + (per_block + 1) * TINY_UNET["up_block_types"].count("CrossAttnUpBlock2D") + 1)
    return blocks * 2 * 4


def test_the_smoke_run_times_the_path_with_the_faceid_lora(tmp_path):
    out = tmp_path / "figures.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_diffusion.py"), "--smoke",
                          "--allow-cpu", "--repeats", "1", "--one-row-per-call",
                          "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["smoke"] is True and figures["device"] == "cpu"
    assert figures["lora_rank"] == 128 and figures["lora_applied"] is True
    assert figures["lora_layers"] == tiny_lora_layers() == 48
    assert "FaceID LoRA applied: True (48 PEFT LoRA layers)" in run.stdout
    assert {(t["path"], t["batch"]) for t in figures["timings"]} == {
        (p, b) for p in ("diffusers", "project") for b in (1, 4)}
    assert all(math.isfinite(t["s_per_image"]) and t["s_per_image"] > 0
               for t in figures["timings"])
    assert [c["verdict"] for c in figures["latent_checks"]] == ["OK", "OK"]
    alone = figures["alone_vs_batch"]  # one call per row: the same bytes alone and in a batch
    assert figures["one_row_per_call"] is True
    assert (alone["max_latent_diff"], alone["max_grey_levels"]) == (0.0, 0)


def test_without_the_lora_the_bench_says_so(tmp_path):
    out = tmp_path / "figures.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_diffusion.py"), "--smoke",
                          "--allow-cpu", "--repeats", "1", "--batch-sizes", "1",
                          "--lora-rank", "0", "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert (figures["lora_applied"], figures["lora_layers"]) == (False, 0)
