"""The scoring benchmark still runs end to end (tiny sizes; its figures are not checked here,
only that every part prints and that the counts add up)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_bench_scoring_prints_rates_verdicts_and_the_inference_floor(models_available):
    env = {**os.environ, "FACEAUDIT_MODEL_DIR": str(models_available)}
    out = subprocess.run(
        [sys.executable, "bench/bench_scoring.py", "--images", "16", "--repeats", "1",
         "--batch", "8"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=True).stdout
    ours = re.search(r"^ours\s*:\s*([\d.]+) images/s.*faces found (\d+)/16, quality scored (\d+)",
                     out, re.M)
    assert ours, out
    assert float(ours.group(1)) > 0 and int(ours.group(3)) == int(ours.group(2)) > 0
    assert re.search(r"^insightface\s*:\s*[\d.]+ images/s", out, re.M), out
    assert re.search(r"^verdict: ours >= 60 images/s: (PASS|FAIL)", out, re.M), out
    floor = dict(re.findall(r"^  (\w+)\s+(\d+) items", out, re.M))
    # every image goes through the detector; each found face through the three face networks
    assert floor["scrfd_500m"] == "16", out
    # (onnxruntime calls have a fixed shape: the last chunk is padded up to the model's batch)
    faces = int(ours.group(2))
    for name, batch in (("mobilefacenet", 4), ("genderage", 1), ("lightqnet", 8)):
        assert faces <= int(floor[name]) < faces + batch, (name, out)
    assert re.search(r"^ceiling with inference only, \d+ cores fully used: [\d.]+ images/s = "
                     r"[\d.]+x", out, re.M), out
