"""Generation benchmark: checked images per second for an offline generator on this machine.

Runs ``generator.editing.render_and_check`` (generation, image factors, latent edits found by
search, sensing and every check) on a batch of identities, repeated, and prints images per
second, seconds per image and pass rates per factor; in the same run, the generator's plain
``generate`` call on the same number of latents (images per second, and the ratio: how much the
checks, sensing and edit search cost on top of rendering).

    .venv/bin/python bench/bench_generation.py [--generator mobilestylegan-ffhq]
        [--identities 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generator", default="dcgan-digiface")
    parser.add_argument("--identities", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--factors", default="blur:1.0,downscale:24,lighting:30,lighting:-30,yaw:15")
    args = parser.parse_args()

    import django

    django.setup()
    import numpy as np

    from generator.design import Variant
    from generator.editing import CheckPolicy, identity_cutoff, render_and_check
    from worker.runtime import choose_identity_judge, get_directions, get_generator, get_sense

    generator = get_generator(args.generator)
    t = time.perf_counter()
    directions = get_directions(generator)
    print(f"directions ready in {time.perf_counter() - t:.1f} s "
          f"({', '.join(directions.directions)})")
    judge, _ = choose_identity_judge(["mobilefacenet"])  # the default audit's judge
    sense = get_sense(judge)
    # the judge's cut-off fixed from a separate set of baselines, as an audit fixes its own
    probe = sense(generator.generate(generator.sample_latents(list(range(500, 600)))))
    cutoff, _ = identity_cutoff(probe["embedding"][probe["face_found"]])
    policy = CheckPolicy(**getattr(generator, "check_policy", {}), identity_min_similarity=cutoff,
                         identity_judge=judge)  # the tolerances the workers use for it
    variants = [Variant("baseline", None)]
    for item in args.factors.split(","):
        name, level = item.split(":")
        if name in ("yaw", "pitch") and name not in directions.directions:
            print(f"skipping {name}: no {name} sensor in this build")
            continue
        variants.append(Variant(name, float(level)))
    n_images = args.identities * len(variants)
    print(f"{args.identities} identities x {len(variants)} images = {n_images} checked images per "
          f"run; identity judge {judge} (cut-off {cutoff:.3f}); torch threads {os.cpu_count()} cores")
    sense(generator.generate(generator.sample_latents([1, 2])))  # warm-up
    times, plain = [], []
    for r in range(args.repeats):
        seeds = list(range(10_000 * (r + 1), 10_000 * (r + 1) + args.identities))
        t = time.perf_counter()
        rows = render_and_check(generator, seeds, variants, 1, sense, directions, policy)
        times.append(time.perf_counter() - t)
        latents = generator.sample_latents(seeds)
        t = time.perf_counter()
        generator.generate(latents)
        plain.append((time.perf_counter() - t) / len(seeds))
    med, per_plain = statistics.median(times), statistics.median(plain)
    print(f"{args.generator}: median of {args.repeats}: {med:.2f} s per run -> "
          f"{n_images / med:.1f} checked images/s, {1000 * med / n_images:.1f} ms per image")
    print(f"plain generate() of the same latents: {1 / per_plain:.1f} images/s, "
          f"{1000 * per_plain:.1f} ms per image; checked / plain time per image: "
          f"{(med / n_images) / per_plain:.2f}x")
    for vi, v in enumerate(variants):
        checks = [row[vi].checks for row in rows]
        passed = np.mean([bool(c.get("passed")) for c in checks])
        attempts = np.mean([c.get("attempts", 1) for c in checks])
        reasons: dict[str, int] = {}
        for c in checks:
            if c.get("passed"):
                continue
            keys = (["no face"] if not c.get("face_found") else
                    (["off target"] if c.get("on_target") is False else [])
                    + [f"{b} moved" for b in c.get("broken", [])]
                    + (["identity drift"] if c.get("identity_kept") is False else []))
            for k in keys:
                reasons[k] = reasons.get(k, 0) + 1
        print(f"  {v.key:<14} passed {passed:5.2f}  mean attempts {attempts:.2f}  "
              f"failures: {reasons or '-'}")


if __name__ == "__main__":
    main()
