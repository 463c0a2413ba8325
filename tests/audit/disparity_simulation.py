"""Simulated audits with known group rates, for the coverage checks of the disparity intervals.

Used by ``tests/audit/test_disparity_coverage.py`` and ``bench/coverage_disparity.py``.

Model (a latent-score model with identity random effects, so comparisons that share an identity
are correlated and the identity bootstrap matters). Threshold 0; identity i of group d has
effects ``z_i ~ N(0, 1)`` and ``w_i = -(rho z_i + sqrt(1 - rho^2) v_i)``, ``v_i ~ N(0, 1)``
(a face that is easy to verify tends to be distinctive too, so its mated and non-mated outcomes
are correlated):

- ``mated_per_identity`` mated comparisons, score ``mu_d + s_m z_i + sigma e``: marginally
  ``N(mu_d, s_m^2 + sigma^2)``, so ``FNMR_d = Phi(-mu_d / sqrt(s_m^2 + sigma^2))`` exactly;
- one non-mated comparison per pair of identities of one group, score
  ``nu_d + s_n (w_i + w_j) + sigma e``: ``FMR_d = Phi(nu_d / sqrt(2 s_n^2 + sigma^2))``;
- optionally one per pair of identities of different groups, score
  ``nu_cross + s_n (w_i + w_j) + sigma e`` (for the permutation test of FMR).

``mu_d`` and ``nu_d`` are solved from the requested rates, so the true per-group rates, and hence
the true value of every disparity measure, are known.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np
import pandas as pd
from scipy.stats import norm

from audit.disparity import MEASURES, summarize_disparity
from audit.uncertainty import bootstrap_group_rates


@dataclass(frozen=True)
class Design:
    """Sizes and effect strengths of a simulated audit."""

    per_group: int = 40
    mated_per_identity: int = 5
    s_mated: float = 1.0
    s_nonmated: float = 0.5
    sigma: float = 1.0
    rho: float = 0.5


def simulate_audit(
    rng: np.random.Generator,
    fnmr: np.ndarray,
    fmr: np.ndarray,
    design: Design = Design(),
    cross_fmr: float | None = None,
) -> pd.DataFrame:
    """One comparison table (columns of ``bootstrap_group_rates``) with the given true rates.

    ``cross_fmr``: true FMR of cross-group pairs; None leaves cross-group pairs out.
    """
    fnmr, fmr = np.asarray(fnmr, float), np.asarray(fmr, float)
    n_groups, per = fnmr.size, design.per_group
    group = np.repeat(np.arange(n_groups), per)
    z = rng.standard_normal(group.size)
    w = -(design.rho * z + np.sqrt(1 - design.rho**2) * rng.standard_normal(group.size))
    sd_m = np.hypot(design.s_mated, design.sigma)
    sd_n = np.sqrt(2 * design.s_nonmated**2 + design.sigma**2)
    mu, nu = -sd_m * norm.ppf(fnmr), sd_n * norm.ppf(fmr)

    ident = np.repeat(np.arange(group.size), design.mated_per_identity)
    mated = mu[group[ident]] + design.s_mated * z[ident] + design.sigma * rng.standard_normal(
        ident.size)
    iu, ju = np.triu_indices(group.size, 1)
    same = group[iu] == group[ju]
    if cross_fmr is None:
        iu, ju, same = iu[same], ju[same], same[same]
    cross_level = 0.0 if cross_fmr is None else sd_n * norm.ppf(cross_fmr)
    level = np.where(same, nu[group[iu]], cross_level)
    nonmated = level + design.s_nonmated * (w[iu] + w[ju]) + design.sigma * rng.standard_normal(
        iu.size)
    labels = np.array([f"g{d}" for d in range(n_groups)], dtype=object)
    a = np.concatenate((ident, iu))
    b = np.concatenate((ident, ju))
    return pd.DataFrame({
        "score": np.concatenate((mated, nonmated)),
        "mated": np.concatenate((np.ones(ident.size, bool), np.zeros(iu.size, bool))),
        "group_a": labels[group[a]], "group_b": labels[group[b]],
        "identity_a": a, "identity_b": b,
    })


def naive_gini(x: np.ndarray) -> float:
    """Corrected Gini by the double loop of the definition (metrics sheet)."""
    n = len(x)
    total = sum(abs(p - q) for p, q in product(x, x))
    return 0.0 if total == 0 else n / (n - 1) * total / (2 * n * n * np.mean(x))


def true_measures(fnmr: np.ndarray, fmr: np.ndarray, alpha: float) -> dict[str, float]:
    """Every disparity measure of the true rates, from the definitions (no code under test)."""
    fnmr, fmr = np.asarray(fnmr, float), np.asarray(fmr, float)
    a_gap, b_gap = fmr.max() - fmr.min(), fnmr.max() - fnmr.min()
    g_fm, g_fnm = naive_gini(fmr), naive_gini(fnmr)
    return {
        "fnmr_max_min_ratio": fnmr.max() / fnmr.min(),
        "fmr_max_min_ratio": fmr.max() / fmr.min(),
        "fmr_max_gap": a_gap,
        "fnmr_max_gap": b_gap,
        "fdr": 1 - (alpha * a_gap + (1 - alpha) * b_gap),
        "fmr_gini": g_fm,
        "fnmr_gini": g_fnm,
        "garbe": alpha * g_fm + (1 - alpha) * g_fnm,
    }


@dataclass(frozen=True)
class Coverage:
    """Share of simulated audits whose interval held the true value, per measure."""

    covered: dict[str, float]
    contains_estimate: dict[str, float]
    naive_percentile_ratio: float  # old method: percentile interval of the FNMR max/min ratio
    n_audits: int


def run_coverage(
    fnmr: np.ndarray,
    fmr: np.ndarray,
    *,
    n_audits: int,
    n_boot: int,
    seed: int,
    alpha: float = 0.5,
    design: Design = Design(),
) -> Coverage:
    """Simulate ``n_audits`` audits, run the real bootstrap and summary on each, count coverage.

    Each audit: :func:`simulate_audit`, :func:`audit.uncertainty.bootstrap_group_rates` (threshold
    0, ``n_boot`` replicates, 95%) and :func:`audit.disparity.summarize_disparity`. The old
    percentile interval of the FNMR max/min ratio is recomputed by hand from the same replicates
    for comparison.
    """
    truth = true_measures(fnmr, fmr, alpha)
    rng = np.random.default_rng(seed)
    hits = dict.fromkeys(MEASURES, 0)
    inside = dict.fromkeys(MEASURES, 0)
    naive_hits = 0
    for k in range(n_audits):
        comp = simulate_audit(rng, fnmr, fmr, design)
        boot = bootstrap_group_rates(comp, 0.0, n_boot=n_boot, seed=k)
        table = summarize_disparity(boot, alpha=alpha).table
        for m in MEASURES:
            est, lo, hi = (float(table.at[m, c]) for c in ("estimate", "lower", "upper"))
            hits[m] += lo - 1e-12 <= truth[m] <= hi + 1e-12
            inside[m] += lo <= est <= hi
        reps = boot.fnmr_replicates.to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = reps.max(axis=1) / reps.min(axis=1)
        lo, hi = np.quantile(ratios[np.isfinite(ratios)], [0.025, 0.975])
        naive_hits += lo <= truth["fnmr_max_min_ratio"] <= hi
    return Coverage(
        covered={m: hits[m] / n_audits for m in MEASURES},
        contains_estimate={m: inside[m] / n_audits for m in MEASURES},
        naive_percentile_ratio=naive_hits / n_audits,
        n_audits=n_audits,
    )


def scenario_rates(name: str, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """True (FNMR, FMR) per group: ``"parity"`` (all equal) or ``"ratio2"`` (group 0's FNMR is
    twice the others', FMR equal)."""
    fnmr = np.full(n_groups, 0.10)
    fmr = np.full(n_groups, 0.05)
    if name == "ratio2":
        fnmr[0] = 0.20
    elif name != "parity":
        raise ValueError(f"unknown scenario {name!r}")
    return fnmr, fmr
