"""Paired tests and multiple-comparison corrections of the factor-effect cells.

For one cell (fr_model x group x factor level), with paired differences ``d_i = x_i - c_i``
between an identity's level and control mated scores:

- :func:`t_interval`: the 95% Student t-interval of the mean difference;
- :func:`median_interval`: the distribution-free order-statistic interval of the median
  (Conover 1999, section 3.2);
- :func:`wilcoxon`: the Wilcoxon signed-rank test (Wilcoxon 1945) of the paired scores;
- :func:`mcnemar`: McNemar's test (McNemar 1947) of the paired match decisions, exact below
  :data:`MCNEMAR_EXACT_BELOW` discordant pairs;
- :func:`adjust_pvalues`: Holm (1979) or Benjamini-Hochberg (1995) adjusted p-values for a
  family of tests.

:func:`adjust_pvalues` and :data:`MCNEMAR_EXACT_BELOW` are also importable from
:mod:`audit.factor_effects`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import stats

__all__ = [
    "MCNEMAR_EXACT_BELOW",
    "Correction",
    "adjust_pvalues",
    "mcnemar",
    "median_interval",
    "t_interval",
    "wilcoxon",
]

#: McNemar's test is exact (binomial) when the number of discordant pairs ``b + c`` is below this,
#: and the chi-square test with continuity correction otherwise (a common rule of thumb: the
#: chi-square approximation is poor for ``b + c < 25``).
MCNEMAR_EXACT_BELOW = 25

Correction = Literal["holm", "fdr_bh"]
_CORRECTIONS = ("holm", "fdr_bh")


def adjust_pvalues(pvalues: Sequence[float] | np.ndarray, method: str = "holm") -> np.ndarray:
    """Adjusted p-values for a family of tests (Holm 1979 or Benjamini-Hochberg 1995).

    With the ``m`` finite p-values sorted ascending, ``p_(1) <= ... <= p_(m)``:

    - Holm (step-down, controls the family-wise error rate under any dependence)::

          q_(i) = max_{j <= i} min(1, (m - j + 1) * p_(j))

    - Benjamini-Hochberg (step-up, controls the false discovery rate for independent or
      positively dependent tests)::

          q_(i) = min_{j >= i} min(1, m * p_(j) / j)

    A test is rejected at level ``alpha`` when ``q <= alpha``; this is the same decision as the
    sequential procedures in the papers. NaN entries (tests that were not run) are left NaN and
    do not count towards ``m``. Equals ``statsmodels.stats.multitest.multipletests(p,
    method="holm" | "fdr_bh")[1]`` on the finite entries.

    Parameters
    ----------
    pvalues:
        1-D array-like of p-values in [0, 1] or NaN, shape (k,).
    method:
        ``"holm"`` or ``"fdr_bh"``.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values, shape (k,), float64, in the input order.
    """
    if method not in _CORRECTIONS:
        raise ValueError(f"correction must be one of {_CORRECTIONS}, got {method!r}")
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-D, got shape {p.shape}")
    out = np.full(p.shape, np.nan)
    finite = ~np.isnan(p)
    values = p[finite]
    if np.any((values < 0) | (values > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    m = values.size
    if m == 0:
        return out
    order = np.argsort(values, kind="stable")
    ranked = values[order]
    rank = np.arange(1, m + 1)
    if method == "holm":
        adjusted = np.maximum.accumulate(np.minimum(1.0, (m - rank + 1) * ranked))
    else:
        adjusted = np.minimum.accumulate((m * ranked / rank)[::-1])[::-1]
        adjusted = np.minimum(1.0, adjusted)
    unsorted = np.empty(m)
    unsorted[order] = adjusted
    out[finite] = unsorted
    return out


# --- per-cell statistics ----------------------------------------------------------------------


def t_interval(diff: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student t-interval for the mean: mean -/+ t_{(1+level)/2, n-1} * sd / sqrt(n); n >= 2."""
    n = diff.size
    if n < 2:
        return math.nan, math.nan
    mean = float(diff.mean())
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * diff.std(ddof=1) / math.sqrt(n))
    return mean - half, mean + half


def median_interval(diff: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval for the median: ``[d_(k), d_(n-k+1)]`` of the sorted values.

    ``k`` is the largest integer >= 1 with ``P(Binomial(n, 1/2) <= k - 1) <= (1 - level) / 2``;
    the coverage is ``1 - 2 P(B <= k - 1) >= level`` (Conover 1999, 3.2). No such ``k`` exists for
    n < 6 at the 95% level: NaN.
    """
    n = diff.size
    if n == 0:
        return math.nan, math.nan
    ks = np.arange(1, n + 1)
    ok = stats.binom.cdf(ks - 1, n, 0.5) <= (1.0 - level) / 2
    if not ok.any():
        return math.nan, math.nan
    k = int(ks[ok].max())
    ordered = np.sort(diff)
    return float(ordered[k - 1]), float(ordered[n - k])


def wilcoxon(level: np.ndarray, control: np.ndarray) -> tuple[int, float, float]:
    """(non-zero differences, statistic, two-sided p) of the signed-rank test on the pairs.

    Rule: zero differences are dropped (Wilcoxon's own ``zero_method="wilcox"``). With no
    non-zero difference at all (every pair unchanged) the p-value is 1 (nothing moved; scipy
    returns the same value with a division warning). Otherwise ``scipy.stats.wilcoxon(level,
    control)`` with ``method="auto"``: exact null distribution for n <= 50 without ties or zeros,
    an exhaustive (hence deterministic) sign-flip permutation for n <= 13 with ties or zeros, the
    normal approximation with continuity and tie corrections otherwise. The exact and permutation
    p-values are valid for any n >= 1, but the smallest two-sided p attainable with n non-zero
    differences is ``2 ** (1 - n)``: cells with fewer than 6 cannot reach p < 0.05.
    """
    n_nonzero = int(np.count_nonzero(level - control))
    if level.size == 0:
        return 0, math.nan, math.nan
    if n_nonzero == 0:
        return 0, 0.0, 1.0
    result = stats.wilcoxon(level, control, zero_method="wilcox", alternative="two-sided")
    return n_nonzero, float(result.statistic), float(result.pvalue)


def mcnemar(lost: int, gained: int) -> tuple[str, float, float]:
    """(method, statistic, two-sided p) of McNemar's test on the discordant pair counts.

    ``lost`` = pairs matching in the control but not at the level (b), ``gained`` = the reverse
    (c). Under H0 (equal match rates) each discordant pair is lost or gained with probability 1/2.

    - ``b + c == 0``: no discordant pair, p = 1 (method ``"none"``).
    - ``b + c < MCNEMAR_EXACT_BELOW``: exact binomial test, ``p = min(1, 2 P(Bin(b + c, 1/2) <=
      min(b, c)))``, statistic ``min(b, c)`` (method ``"exact"``).
    - otherwise chi-square with continuity correction (Edwards 1948): ``X2 = (|b - c| - 1)^2 /
      (b + c)`` on 1 degree of freedom (method ``"chi2"``).

    Same numbers as ``statsmodels.stats.contingency_tables.mcnemar(table, exact=...,
    correction=True)``.
    """
    discordant = lost + gained
    if discordant == 0:
        return "none", 0.0, 1.0
    if discordant < MCNEMAR_EXACT_BELOW:
        small = min(lost, gained)
        p = min(1.0, 2.0 * float(stats.binom.cdf(small, discordant, 0.5)))
        return "exact", float(small), p
    statistic = (abs(lost - gained) - 1.0) ** 2 / discordant
    return "chi2", float(statistic), float(stats.chi2.sf(statistic, 1))
