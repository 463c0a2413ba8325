"""How repeatable is each sensor? Its change under null edits (re-encoding as JPEG quality 90,
a 1-pixel shift) on default-generator faces. A check's tolerance cannot be tighter than this;
the defaults in ``generator.editing.CheckPolicy`` are set from these figures.

    .venv/bin/python bench/calibrate_sensors.py [--faces 500] [--generator mobilestylegan-ffhq]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--faces", type=int, default=500)
    parser.add_argument("--generator", default="dcgan-digiface")
    args = parser.parse_args()
    import django

    django.setup()
    import numpy as np

    from generator.factors import apply_factor
    from worker.runtime import get_generator, get_sense

    generator = get_generator(args.generator)
    sense = get_sense()
    base = generator.generate(generator.sample_latents([10**6 + k for k in range(args.faces)]))
    r0 = sense(base)
    edits = {"jpeg q90": lambda x: apply_factor(x, "jpeg", 90, 0),
             "1-px shift": lambda x: np.roll(x, 1, axis=1)}
    sensors = [k for k in r0 if k not in ("face_found", "embedding")]
    print(f"{args.faces} {args.generator} faces; change of each sensor under a null edit (p95 / p99 of |delta|)")
    for name, edit in edits.items():
        r1 = sense(np.stack([edit(x) for x in base]))
        ok = r0["face_found"] & r1["face_found"]
        print(f"{name}:")
        for s in sensors:
            d = np.abs(np.asarray(r1[s])[ok] - np.asarray(r0[s])[ok])
            d = d[np.isfinite(d)]
            if len(d):
                print(f"  {s:<24} p95 {np.percentile(d, 95):8.3f}   p99 {np.percentile(d, 99):8.3f}")


if __name__ == "__main__":
    main()
