"""The sample-size planner's figures against simulated audits.

For a few designs (groups x identities per group x factor levels) and planning values (FNMR,
intra-identity correlation), simulates audits whose mated outcomes are clustered by identity
(each identity's failure probability drawn from a beta distribution with the planned mean and
correlation), computes every group's identity-bootstrap interval with the project's own
:func:`audit.uncertainty.bootstrap_group_rates`, and prints

- the planner's predicted 95% half-width of a group's FNMR and the mean simulated half-width;
- the planner's detectable FNMR ratio and the share of simulated two-group audits, with the
  second group at that ratio, in which a two-sided z-test on the log ratio (cluster variance of
  each group's FNMR) rejects at alpha 0.05: about 0.80 when the figure is right.

    .venv/bin/python bench/plan_check.py [--audits 100] [--n-boot 1000] [--power-trials 2000]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from audit.planner import Assumptions, plan_audit  # noqa: E402
from audit.uncertainty import bootstrap_group_rates  # noqa: E402

#: (groups, identities per group, factor levels, planning FNMR, intra-identity correlation)
DESIGNS = [
    (4, 8, 4, 0.05, 0.1),     # the form's old default
    (4, 30, 4, 0.05, 0.1),    # the form's default, default planning values
    (4, 30, 4, 0.30, 0.1),    # the same at the FNMR measured on the default generator + model
    (4, 30, 4, 0.05, 0.3),
    (2, 50, 1, 0.10, 0.2),
    (4, 20, 7, 0.05, 0.05),
    (2, 100, 4, 0.05, 0.3),
    (4, 130, 4, 0.05, 0.1),   # the size the planner suggests for an FNMR ratio of 2
]


def beta_parameters(rate: float, icc: float) -> tuple[float, float]:
    """Beta(a, b) with mean ``rate`` and beta-binomial intra-class correlation ``icc``
    (``icc = 1 / (a + b + 1)``)."""
    return rate * (1 - icc) / icc, (1 - rate) * (1 - icc) / icc


def simulated_comparisons(rng: np.random.Generator, groups: int, n: int, m: int, fnmr: float,
                          icc: float) -> pd.DataFrame:
    """A comparisons frame: ``m`` mated rows per identity (score 0 = false non-match, 1 =
    match at threshold 0.5) and a ring of within-group non-mated rows (score 0)."""
    a, b = beta_parameters(fnmr, icc)
    frames = []
    for g in range(groups):
        ids = np.arange(g * n, (g + 1) * n, dtype=np.int64)
        fails = rng.random((n, m)) < rng.beta(a, b, size=n)[:, None]
        mated_ids = np.repeat(ids, m)
        frames.append(pd.DataFrame({"score": np.where(fails.ravel(), 0.0, 1.0), "mated": True,
                                    "group_a": f"g{g}", "group_b": f"g{g}",
                                    "identity_a": mated_ids, "identity_b": mated_ids}))
        frames.append(pd.DataFrame({"score": 0.0, "mated": False, "group_a": f"g{g}",
                                    "group_b": f"g{g}", "identity_a": ids,
                                    "identity_b": np.roll(ids, 1)}))
    return pd.concat(frames, ignore_index=True)


def simulated_half_width(rng, groups, n, m, fnmr, icc, audits, n_boot) -> float:
    widths = []
    for _ in range(audits):
        frame = bootstrap_group_rates(simulated_comparisons(rng, groups, n, m, fnmr, icc), 0.5,
                                      n_boot=n_boot, seed=int(rng.integers(2**31))).by_group
        widths.extend(((frame["fnmr_upper"] - frame["fnmr_lower"]) / 2).tolist())
    return float(np.mean(widths))


def simulated_power(rng, n, m, fnmr, icc, ratio, trials) -> float:
    """Share of two-group audits (FNMR ``fnmr`` and ``ratio * fnmr``) where the log-ratio z-test
    rejects at two-sided alpha 0.05."""
    hits = 0
    for _ in range(trials):
        logs, variances = [], []
        for rate in (fnmr, min(fnmr * ratio, 0.999)):
            a, b = beta_parameters(rate, icc)
            per_identity = rng.binomial(m, rng.beta(a, b, size=n)) / m
            mean = max(per_identity.mean(), 0.5 / (n * m))
            logs.append(math.log(mean))
            variances.append(max(per_identity.var(ddof=1), 1e-12) / n / mean**2)
        hits += abs(logs[1] - logs[0]) / math.sqrt(sum(variances)) > 1.959964
    return hits / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--audits", type=int, default=100, help="simulated audits per design")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates")
    parser.add_argument("--power-trials", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{args.audits} simulated audits per design, {args.n_boot} identity-bootstrap "
          f"replicates each; power from {args.power_trials} two-group audits")
    header = (f"{'groups':>6} {'ids':>4} {'levels':>6} {'FNMR':>5} {'ICC':>5} | {'mated':>5} "
              f"{'pred ±':>7} {'sim ±':>7} {'pred/sim':>8} | {'ratio':>6} {'power':>6} | "
              f"{'rankable':>9} {'s':>5}")
    print(header)
    print("-" * len(header))
    for groups, n, levels, fnmr, icc in DESIGNS:
        t0 = time.perf_counter()
        plan = plan_audit(n_groups=groups, identities_per_group=n, n_levels=levels,
                          assumptions=Assumptions(fnmr=fnmr, icc=icc))
        m = levels + 1
        sim = simulated_half_width(rng, groups, n, m, fnmr, icc, args.audits, args.n_boot)
        power = (math.nan if plan.ratio is None else
                 simulated_power(rng, n, m, fnmr, icc, plan.ratio, args.power_trials))
        ratio = "n/a" if plan.ratio is None else f"{plan.ratio:.2f}"
        print(f"{groups:>6} {n:>4} {levels:>6} {fnmr:>5g} {icc:>5g} | {plan.counts.mated:>5} "
              f"{plan.half_width:>7.4f} {sim:>7.4f} {plan.half_width / sim:>8.2f} | "
              f"{ratio:>6} {power:>6.2f} | {plan.status:>9} {time.perf_counter() - t0:>5.1f}")


if __name__ == "__main__":
    main()
