"""bench/bench_mobilestylegan.py --smoke runs end to end (tiny CPU run) and writes its figures:
the expected keys, each a finite positive number. Speeds are not asserted."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("random_face") is None,
    reason="MobileStyleGAN's IR not installed (pip install --no-deps random-face==2021.7.21.1)")


def _positive(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def test_the_smoke_run_writes_finite_positive_figures(tmp_path):
    out = tmp_path / "figures.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_mobilestylegan.py"),
                          "--smoke", "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "512 px" in run.stdout
    figures = json.loads(out.read_text())
    assert figures["smoke"] is True and figures["cuda"] is None
    cpu = figures["cpu"]
    assert cpu["threads"] >= 1 and cpu["repeats"] == 1
    assert set(cpu["torch_fp32"]) == {"512"}
    assert set(cpu["torch_fp32"]["512"]) == {"1", "2"}
    assert all(_positive(s) for s in cpu["torch_fp32"]["512"].values())
    if importlib.util.find_spec("openvino") is not None:
        assert _positive(cpu["openvino_fp32"]["512"]["1"])
        assert _positive(cpu["torch_over_openvino"]["512"])
    assert _positive(figures["seconds_total"])
