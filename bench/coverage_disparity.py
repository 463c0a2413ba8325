"""Coverage of the disparity intervals and level of the permutation tests, by simulation.

Simulated audits (identities with random effects shared by their mated and non-mated comparisons;
see ``tests/audit/disparity_simulation.py``) with known per-group rates go through the real code
path, ``audit.uncertainty.bootstrap_group_rates`` then ``audit.disparity.summarize_disparity``.
Printed, for 2 and 4 groups:

- parity (all groups FNMR 0.10, FMR 0.05): share of audits whose 95% interval holds the parity
  value of each measure (ratio 1, gap 0, FDR 1, Gini 0, GARBE 0);
- ratio 2 (group 0 FNMR 0.20, the others 0.10; FMR equal): share holding the true value;
- beside them, the old percentile interval of the FNMR max/min ratio, recomputed from the same
  replicates.

Then the identity-label permutation tests (``audit.permutation``) at 4 groups: the share of
audits with p <= 0.05 for FNMR and FMR, with cross-group pairs matching as often as, less often
than, or more often than same-group pairs.

    .venv/bin/python bench/coverage_disparity.py [--audits 500] [--n-boot 300]
        [--per-group 40] [--perm-audits 200] [--permutations 199] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from audit.disparity import MEASURES  # noqa: E402
from audit.permutation import permutation_test  # noqa: E402
from tests.audit.disparity_simulation import (  # noqa: E402
    Design,
    run_coverage,
    scenario_rates,
    simulate_audit,
)


def coverage_table(args: argparse.Namespace, design: Design) -> None:
    columns = [(g, name) for g in (2, 4) for name in ("parity", "ratio2")]
    results = {}
    for k, (g, name) in enumerate(columns):
        start = time.perf_counter()
        results[(g, name)] = run_coverage(*scenario_rates(name, g), n_audits=args.audits,
                                          n_boot=args.n_boot, seed=args.seed + k, design=design)
        print(f"  ({g} groups, {name}: {time.perf_counter() - start:.0f} s)", flush=True)
    head = "".join(f"{f'{g} groups {name}':>18s}" for g, name in columns)
    print(f"\nCoverage of 95% intervals ({args.audits} simulated audits per column, "
          f"{args.n_boot} replicates, {design.per_group} identities per group)")
    print(f"{'measure':22s}{head}")
    for m in MEASURES:
        print(f"{m:22s}" + "".join(f"{results[c].covered[m]:18.3f}" for c in columns))
    print(f"{'old percentile ratio':22s}"
          + "".join(f"{results[c].naive_percentile_ratio:18.3f}" for c in columns))
    inside = min(min(r.contains_estimate.values()) for r in results.values())
    print(f"share of intervals containing their estimate (all measures, all columns): {inside:.3f}")


def permutation_table(args: argparse.Namespace, design: Design) -> None:
    cases = [("parity", 0.05, "cross-group FMR 0.05 (no group effect: exact)"),
             ("parity", 0.02, "cross-group FMR 0.02 (same-group pairs match more)"),
             ("parity", 0.08, "cross-group FMR 0.08 (cross-group pairs match more)"),
             ("ratio2", 0.05, "FNMR ratio 2 for one group (power)")]
    groups = [f"g{d}" for d in range(4)]
    print(f"\nPermutation tests, 4 groups: share of audits with p <= 0.05 ({args.perm_audits} "
          f"audits, {args.permutations} shuffles; within-group FMR 0.05 in every group)")
    print(f"{'case':55s}{'FNMR':>8s}{'FMR':>8s}")
    rng = np.random.default_rng(args.seed + 100)
    for name, cross, label in cases:
        fnmr, fmr = scenario_rates(name, 4)
        hits = np.zeros(2)
        for k in range(args.perm_audits):
            comp = simulate_audit(rng, fnmr, fmr, design, cross_fmr=cross)
            test = permutation_test(comp, 0.0, groups, n_permutations=args.permutations, seed=k)
            hits += [test.fnmr.p_value <= 0.05, test.fmr.p_value <= 0.05]
        share = hits / args.perm_audits
        print(f"{label:55s}{share[0]:8.3f}{share[1]:8.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audits", type=int, default=500)
    parser.add_argument("--n-boot", type=int, default=300)
    parser.add_argument("--per-group", type=int, default=40)
    parser.add_argument("--perm-audits", type=int, default=200)
    parser.add_argument("--permutations", type=int, default=199)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    design = Design(per_group=args.per_group)
    coverage_table(args, design)
    if args.perm_audits > 0:
        permutation_table(args, design)


if __name__ == "__main__":
    main()
