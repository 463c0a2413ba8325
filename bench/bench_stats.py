"""Statistics benchmark: thresholds, per-group rates, identity bootstrap, disparity, DET curves.

Builds a synthetic comparison set (default 1,000,000 non-mated and 100,000 mated comparisons over
10 groups of 100 identities, with identity-level random effects and group offsets), then times
each step of the statistics an audit report needs:

1. thresholds at FMR 1e-3 and 1e-4 on all non-mated scores;
2. per-group FNMR/FMR with counts and the cross-group FMR matrix at both thresholds;
3. the identity-level bootstrap (default 1,000 replicates) at both thresholds;
3b. the same bootstrap for every cell of the cross-group FMR matrix, at both thresholds;
4. disparity summaries (max/min ratios, FDR, GARBE) with intervals, and rankability;
5. DET curves per group (<= 500 points each) and score histograms.

Prints the wall time of each part and in total (target <= 10 s on 2 cores), the peak resident
memory (``resource.getrusage().ru_maxrss``) and the peak traced allocation (``tracemalloc``, a
second, untimed pass; target <= 2 GB), then how the time grows from 1e4 to 1e6 non-mated
comparisons.

    .venv/bin/python bench/bench_stats.py [--nonmated 1000000] [--mated 100000] [--groups 10]
        [--identities 100] [--n-boot 1000] [--repeats 3] [--no-tracemalloc] [--no-scaling]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from audit.curves import det_curves, score_histograms  # noqa: E402
from audit.disparity import rankable_groups, summarize_disparity  # noqa: E402
from audit.rates import error_rates, threshold_at_fmr  # noqa: E402
from audit.uncertainty import bootstrap_cross_group_fmr, bootstrap_group_rates  # noqa: E402

TARGETS = (1e-3, 1e-4)


def make_comparisons(
    n_nonmated: int, n_mated: int, n_groups: int, per_group: int, seed: int = 0
) -> pd.DataFrame:
    """Synthetic cosine scores with group offsets and per-identity random effects.

    Identity i (group d = i // per_group) has a genuine offset ~ N(0, 0.06) (some faces are
    hard to verify) and an impostor offset ~ N(0, 0.03) (some faces look like many others).
    Mated: N(0.70 - 0.02 d + genuine_i, 0.10). Non-mated pairs: probe uniform, reference in the
    same group with probability 0.3 (else any other identity); score
    N(0.05 + 0.01 d_a + impostor_a + impostor_b + 0.05 [same group], 0.10).
    """
    rng = np.random.default_rng(seed)
    n_ident = n_groups * per_group
    group = np.arange(n_ident) // per_group
    labels = np.array([f"group{d:02d}" for d in range(n_groups)], dtype=object)
    genuine = rng.normal(0.0, 0.06, n_ident)
    lookalike = rng.normal(0.0, 0.03, n_ident)

    m_id = rng.integers(0, n_ident, n_mated)
    m_score = rng.normal(0.70 - 0.02 * group[m_id] + genuine[m_id], 0.10)

    a = rng.integers(0, n_ident, n_nonmated)
    same = rng.random(n_nonmated) < 0.3
    # Same group: another identity of a's group; else any identity other than a.
    offset_in_group = rng.integers(1, per_group, n_nonmated)
    b_same = group[a] * per_group + (a % per_group + offset_in_group) % per_group
    b_any = (a + rng.integers(1, n_ident, n_nonmated)) % n_ident
    b = np.where(same, b_same, b_any)
    same_group = group[a] == group[b]
    nm_score = rng.normal(
        0.05 + 0.01 * group[a] + lookalike[a] + lookalike[b] + 0.05 * same_group, 0.10
    )
    return pd.DataFrame(
        {
            "score": np.concatenate((m_score, nm_score)),
            "mated": np.concatenate((np.ones(n_mated, bool), np.zeros(n_nonmated, bool))),
            "group_a": labels[np.concatenate((group[m_id], group[a]))],
            "group_b": labels[np.concatenate((group[m_id], group[b]))],
            "identity_a": np.concatenate((m_id, a)),
            "identity_b": np.concatenate((m_id, b)),
        }
    )


def pipeline(comparisons: pd.DataFrame, n_boot: int, targets=TARGETS) -> dict[str, float]:
    """Run every statistics step once; return wall seconds per part."""
    times: dict[str, float] = {}
    out: dict[str, Any] = {}

    def part(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        value = fn()
        times[name] = time.perf_counter() - t0
        return value

    nonmated_scores = comparisons.loc[~comparisons["mated"], "score"].to_numpy()
    choices = part("thresholds", lambda: [threshold_at_fmr(nonmated_scores, t) for t in targets])
    rates = part("rates + cross-group", lambda: [error_rates(comparisons, c.threshold)
                                                 for c in choices])
    # The bootstrap reuses the point rates of step 2 (checked against its own counts).
    boots = part("bootstrap", lambda: [bootstrap_group_rates(comparisons, c.threshold,
                                                             n_boot=n_boot, seed=0, rates=r)
                                       for c, r in zip(choices, rates, strict=True)])
    part("cross-group bootstrap", lambda: [bootstrap_cross_group_fmr(comparisons, c.threshold,
                                                                     n_boot=n_boot, seed=0,
                                                                     rates=r)
                                           for c, r in zip(choices, rates, strict=True)])
    part("disparity", lambda: [(summarize_disparity(b, alpha=0.5), rankable_groups(b))
                               for b in boots])
    part("DET + histograms", lambda: (det_curves(comparisons, max_points=500),
                                      score_histograms(comparisons, 60)))
    out.update(choices=choices, rates=rates, boots=boots)
    times["total"] = sum(times.values())
    pipeline.last = out  # type: ignore[attr-defined]
    return times


def median_times(comparisons: pd.DataFrame, n_boot: int, repeats: int) -> dict[str, float]:
    """Median wall time per part over ``repeats`` runs (the machine may be shared)."""
    runs = [pipeline(comparisons, n_boot) for _ in range(repeats)]
    return {k: float(np.median([r[k] for r in runs])) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nonmated", type=int, default=1_000_000)
    parser.add_argument("--mated", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--identities", type=int, default=100, help="identities per group")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median shown)")
    parser.add_argument("--no-tracemalloc", action="store_true")
    parser.add_argument("--no-scaling", action="store_true")
    args = parser.parse_args()

    print(f"cpus available: {len(os.sched_getaffinity(0))}; numpy {np.__version__}, "
          f"pandas {pd.__version__}")
    t0 = time.perf_counter()
    comparisons = make_comparisons(args.nonmated, args.mated, args.groups, args.identities)
    print(f"data: {args.nonmated:,} non-mated + {args.mated:,} mated comparisons, "
          f"{args.groups} groups x {args.identities} identities "
          f"(generated in {time.perf_counter() - t0:.2f} s, not counted)")

    pipeline(comparisons, args.n_boot)  # warm-up: imports, BLAS threads, page faults
    times = median_times(comparisons, args.n_boot, args.repeats)
    print(f"\nwall time per part, median of {args.repeats} runs ({args.n_boot} bootstrap "
          f"replicates, thresholds at FMR {', '.join(f'{t:g}' for t in TARGETS)}):")
    for name, seconds in times.items():
        print(f"  {name:<22} {seconds:7.3f} s")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB
    print(f"peak resident memory (ru_maxrss, whole process incl. data): {rss_mb:,.0f} MB")

    last = pipeline.last  # type: ignore[attr-defined]
    for choice, boot in zip(last["choices"], last["boots"], strict=True):
        table = boot.by_group
        print(f"\nFMR target {choice.target_fmr:g}: threshold {choice.threshold:.4f}, "
              f"achieved {choice.achieved_fmr:.2e}")
        print(f"  overall FNMR {boot.overall['fnmr']:.4f} "
              f"[{boot.overall['fnmr_lower']:.4f}, {boot.overall['fnmr_upper']:.4f}]")
        print("  group    FNMR [95% CI]               FMR [95% CI]")
        for g, row in table.head(3).iterrows():
            print(f"  {g}  {row['fnmr']:.4f} [{row['fnmr_lower']:.4f}, {row['fnmr_upper']:.4f}]"
                  f"   {row['fmr']:.2e} [{row['fmr_lower']:.2e}, {row['fmr_upper']:.2e}]")
        summary = summarize_disparity(boot, alpha=0.5).table
        for m in ("fnmr_max_min_ratio", "fmr_max_min_ratio", "fdr", "garbe"):
            r = summary.loc[m]
            print(f"  {m:<20} {r['estimate']:.4f} [{r['lower']:.4f}, {r['upper']:.4f}]")

    if not args.no_tracemalloc:
        tracemalloc.start()
        pipeline(comparisons, args.n_boot)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"\npeak traced allocation during the pipeline (tracemalloc, excl. the input "
              f"frame): {peak / 2**20:,.0f} MB")

    if not args.no_scaling:
        print(f"\nscaling (mated = non-mated / 10, {args.groups} x {args.identities} identities, "
              f"{args.n_boot} replicates, 2 thresholds), seconds:")
        header = ["non-mated", "thresholds", "rates", "bootstrap", "cross boot", "disparity",
                  "DET+hist", "total"]
        print("  " + " ".join(f"{h:>11}" for h in header))
        for n in (10_000, 100_000, 1_000_000):
            data = make_comparisons(n, n // 10, args.groups, args.identities, seed=1)
            t = median_times(data, args.n_boot, args.repeats)
            values = [t["thresholds"], t["rates + cross-group"], t["bootstrap"],
                      t["cross-group bootstrap"], t["disparity"], t["DET + histograms"],
                      t["total"]]
            print("  " + f"{n:>11,}" + " ".join(f"{v:>12.3f}" for v in values))


if __name__ == "__main__":
    main()
