"""The figures of an audit plan: assumptions, comparison counts, precision, power, rankability.

Used by :mod:`audit.planner` (and so by the web form's **Check**, the JSON API and
``run_audit``), with every formula stated where it is computed:

- :func:`comparison_counts`: the comparisons each group gets, following
  :func:`audit.comparisons.build_pairs` exactly (its ``max_nonmated`` cap is
  :data:`NONMATED_CAP`);
- :func:`design_effect` and :func:`fnmr_half_width`: a group's FNMR interval allowing for
  comparisons of one identity failing together (design effect ``1 + (m - 1) ICC``, Kish 1965);
- :func:`detectable_ratio`: the smallest FNMR ratio between two groups detectable with the
  stated power, on the log-rate scale;
- :func:`factor_detection`: the pairs per group x factor-level cell and which paired tests
  (McNemar, Wilcoxon) can reach significance after Holm's correction;
- :func:`rank_status`: whether groups will be rankable under
  :func:`audit.disparity.rankable_groups` (its own constants, not copies).

Every name here is also importable from :mod:`audit.planner`.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from scipy import stats

from audit.comparisons import build_pairs
from audit.paired_tests import MCNEMAR_EXACT_BELOW
from audit.rankability import MIN_IDENTITIES, MIN_MATED, MIN_NONMATED, rankable_groups

DEFAULT_FNMR = 0.05
#: Intra-identity correlation of match decisions used when none is given. Measured on the
#: 64-px DCGAN generator with MobileFaceNet (720 images, blur and downscale factors): 0.04-0.07
#: once each variant's own failure rate is taken out; 0.1 is rounded up to stay on the safe side.
DEFAULT_ICC = 0.1
#: Share of comparisons a design may lose to faces that are not found before a group at the
#: limit of the rankability rule falls below it (about 5% of images missed, squared: both
#: images of a pair must be found).
FACE_LOSS_MARGIN = 0.10
#: The non-mated sample cap of the audit: the default of :func:`audit.comparisons.build_pairs`
#: (read from its signature, so there is one source of the number).
NONMATED_CAP: int = inspect.signature(build_pairs).parameters["max_nonmated"].default
#: Largest identities per group the planner suggests (the config limit).
_MAX_IDENTITIES = 500
#: A ratio of FNMRs between two groups that an audit should be able to detect; when a design
#: cannot, the planner says how many identities would.
TARGET_RATIO = 2.0


#: Planning FNMRs accepted (beyond them the log-scale figures mean nothing).
_FNMR_RANGE = (1e-6, 0.99)


class PlanningError(ValueError):
    """A planning value is invalid. ``errors`` maps the field name to a message naming the fix."""

    def __init__(self, errors: dict[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


@dataclass(frozen=True)
class Assumptions:
    """What the plan assumes about the outcome: the planning FNMR, the intra-identity
    correlation (ICC) of match decisions, the interval level, and the power and two-sided alpha
    of the detection figures."""

    fnmr: float = DEFAULT_FNMR
    icc: float = DEFAULT_ICC
    confidence: float = 0.95
    power: float = 0.80
    alpha: float = 0.05


def _parse_number(value: Any, default: float) -> float | None:
    """A finite float from a number or a text, ``default`` for None or blank, else None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        return None
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def parse_assumptions(fnmr: Any = None, icc: Any = None) -> Assumptions:
    """Planning values from user input (numbers or texts; blank means the default).

    Raises :class:`PlanningError` keyed ``planning_fnmr`` / ``planning_icc`` with the fix.
    """
    errors: dict[str, str] = {}
    p = _parse_number(fnmr, DEFAULT_FNMR)
    if p is None or not _FNMR_RANGE[0] <= p <= _FNMR_RANGE[1]:
        errors["planning_fnmr"] = (f"the FNMR you expect, a number between 0 and 1 (from "
                                   f"{_FNMR_RANGE[0]:g} to {_FNMR_RANGE[1]:g}), e.g. "
                                   f"{DEFAULT_FNMR}")
    rho = _parse_number(icc, DEFAULT_ICC)
    if rho is None or not 0.0 <= rho <= 1.0:
        errors["planning_icc"] = (f"the intra-identity correlation, a number from 0 to 1, e.g. "
                                  f"{DEFAULT_ICC}")
    if errors:
        raise PlanningError(errors)
    assert p is not None and rho is not None
    return Assumptions(fnmr=p, icc=rho)


# --- counts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComparisonCounts:
    """Comparisons of a design in which every face is found (per group unless named total).

    ``nonmated_within`` is the expected count after the sample cap (exactly the count when
    nothing is sampled); ``nonmated_within_all`` the count before it.
    """

    identities: int
    mated: int
    mated_per_identity: int
    nonmated_within_all: int
    nonmated_within: float
    nonmated_total: int
    nonmated_kept: int
    sampled: bool


def comparison_counts(n_groups: int, identities_per_group: int, n_variants: int,
                      max_nonmated: int = NONMATED_CAP) -> ComparisonCounts:
    """Counts of :func:`audit.comparisons.build_pairs` (default modes) for a full design.

    With ``n`` identities per group, ``G`` groups, ``V`` images per identity (baseline, control
    and one per factor level) and ``B = G n`` baselines:

    - mated per group: ``n (V - 1)`` (every variant against its own baseline);
    - non-mated in all: ``C(B, 2) + B (V - 1) (B - 1) = B (B - 1) (2V - 1) / 2`` (baseline pairs
      once, every variant against every other identity's baseline);
    - within one group: ``n (n - 1) (2V - 1) / 2``;
    - when the total exceeds ``max_nonmated`` a uniform sample of ``max_nonmated`` is kept, so a
      group expects ``within * max_nonmated / total`` (hypergeometric mean).
    """
    n, v = int(identities_per_group), int(n_variants)
    baselines = int(n_groups) * n
    total = baselines * (baselines - 1) * (2 * v - 1) // 2
    within = n * (n - 1) * (2 * v - 1) // 2
    kept = min(total, int(max_nonmated))
    share = kept / total if total else 0.0
    return ComparisonCounts(identities=n, mated=n * (v - 1), mated_per_identity=v - 1,
                            nonmated_within_all=within, nonmated_within=within * share,
                            nonmated_total=total, nonmated_kept=kept, sampled=kept < total)


# --- precision and power ----------------------------------------------------------------------


def design_effect(per_identity: int, icc: float) -> float:
    """Kish's design effect for clustered samples: ``deff = 1 + (m - 1) * rho`` for ``m``
    comparisons per identity with intra-identity correlation ``rho`` (Kish, "Survey Sampling",
    1965, section 5.4). The variance of a rate is ``deff`` times the binomial one; the effective
    number of independent comparisons is ``M / deff``."""
    return 1.0 + (max(int(per_identity), 1) - 1) * float(icc)


def _z(prob: float) -> float:
    return float(stats.norm.ppf(prob))


def fnmr_half_width(fnmr: float, n_mated: float, deff: float, n_identities: int,
                    confidence: float = 0.95) -> float:
    """Expected half-width of a group's FNMR interval from the identity bootstrap.

    Normal approximation with the effective sample size ``M / deff``::

        half-width = z * sqrt(p (1 - p) * deff / M * (n - 1) / n)

    with ``z`` the two-sided normal quantile (1.96 for 95%), ``p`` the FNMR, ``M`` the mated
    comparisons and ``n`` the identities of the group. The factor ``(n - 1) / n`` is the
    identity bootstrap's plug-in variance of a mean over ``n`` identities (Efron & Tibshirani
    1993, section 5.2). With few expected errors the percentile interval comes out somewhat
    narrower than this (the estimate's spread shrinks with its value), so the figure errs wide.
    """
    if n_mated <= 0 or n_identities < 2:
        return math.inf
    z = _z(0.5 + confidence / 2)
    shrink = (n_identities - 1) / n_identities
    return z * math.sqrt(fnmr * (1.0 - fnmr) * deff / n_mated * shrink)


def _log_rate_variance(p: float, n_mated: float, deff: float) -> float:
    """Delta-method variance of ``log p_hat``: ``deff (1 - p) / (M p)`` (Katz et al. 1978, the
    log relative risk), with Kish's design effect for the clustering."""
    return deff * (1.0 - p) / (n_mated * p)


def detectable_ratio(fnmr: float, n_mated: float, deff: float, *, alpha: float = 0.05,
                     power: float = 0.80, rule: str = "test",
                     confidence: float = 0.95) -> float | None:
    """Smallest ratio ``r > 1`` between two groups' FNMRs (``p`` and ``r p``, equal sizes)
    detected with the given power, or None when even ``r p = 1`` is not.

    Test on the log scale: with ``s1^2 = V(p)`` and ``s2^2 = V(r p)`` from
    :func:`_log_rate_variance`, the smallest ``r`` solves

    - ``rule="test"`` (a two-sided z-test at ``alpha``)::

        log r = (z_{1 - alpha/2} + z_{power}) * sqrt(s1^2 + s2^2)

    - ``rule="no_overlap"`` (the dashboard's wording: a difference is stated only when the two
      groups' intervals at ``confidence`` do not overlap)::

        log r = z_{(1 + confidence)/2} * (s1 + s2) + z_{power} * sqrt(s1^2 + s2^2)

    Solved by bisection on ``r`` in ``(1, 1/p]`` (the left side rises and the right side falls
    with ``r``).
    """
    if n_mated <= 0 or not 0.0 < fnmr < 1.0:
        return None
    z_power = _z(power)
    z_test = _z(1.0 - alpha / 2)
    z_ci = _z(0.5 + confidence / 2)

    def gap(r: float) -> float:
        s1 = math.sqrt(_log_rate_variance(fnmr, n_mated, deff))
        s2 = math.sqrt(_log_rate_variance(min(fnmr * r, 1.0 - 1e-12), n_mated, deff))
        both = math.hypot(s1, s2)
        needed = (z_test + z_power) * both if rule == "test" else z_ci * (s1 + s2) + z_power * both
        return math.log(r) - needed

    low, high = 1.0, 1.0 / fnmr
    if gap(high) < 0:
        return None
    for _ in range(60):
        mid = math.sqrt(low * high)
        low, high = (mid, high) if gap(mid) < 0 else (low, mid)
    return high


@dataclass(frozen=True)
class FactorDetection:
    """What one group x factor-level cell can show (paired control vs level, ``pairs``
    identities) when Holm's correction runs over ``cells`` tests."""

    pairs: int
    cells: int
    holm_alpha: float
    mcnemar_min_lost: int
    wilcoxon_min_pairs: int
    detectable_shift_sd: float

    @property
    def mcnemar_possible(self) -> bool:
        return self.mcnemar_min_lost <= self.pairs

    @property
    def wilcoxon_possible(self) -> bool:
        return self.wilcoxon_min_pairs <= self.pairs


def _mcnemar_p_one_sided_all(lost: int) -> float:
    """McNemar's two-sided p when ``lost`` identities stop matching and none start, as
    :mod:`audit.factor_effects` computes it: exact binomial ``2 * 0.5**b`` below
    ``MCNEMAR_EXACT_BELOW`` discordant pairs, else chi-square with continuity correction
    ``(b - 1)^2 / b`` on 1 degree of freedom (McNemar 1947; Edwards 1948)."""
    if lost < MCNEMAR_EXACT_BELOW:
        return min(1.0, 2.0 * 0.5**lost)
    return float(stats.chi2.sf((lost - 1.0) ** 2 / lost, 1))


def factor_detection(pairs: int, cells: int, *, alpha: float = 0.05,
                     power: float = 0.80) -> FactorDetection:
    """Paired effects a factor cell can show after Holm's correction over ``cells`` tests.

    Holm (1979) compares the smallest p-value with ``alpha / K``; a single real effect among
    ``K`` cells must pass that. Then:

    - McNemar (decisions): the fewest identities ``b`` that must stop matching (none starting)
      for ``p <= alpha / K``; the smallest FNMR rise that can be flagged is ``b / n``;
    - Wilcoxon signed-rank (scores): with ``N`` non-zero differences its exact p is at least
      ``2^(1 - N)``, so it needs ``N >= 1 + log2(K / alpha)`` pairs at all;
    - the shift of the mean paired change, in standard deviations of the per-identity changes,
      detected with ``power``: ``d = (z_{1 - alpha/(2K)} + z_{power}) / sqrt(n * 3 / pi)``
      (normal approximation of the paired t-test; ``3 / pi`` is the signed-rank test's
      asymptotic relative efficiency under normal data, Hodges & Lehmann 1956).
    """
    k = max(int(cells), 1)
    level = alpha / k
    lost = 1
    while _mcnemar_p_one_sided_all(lost) > level:
        lost += 1
    wilcoxon = 1 + math.ceil(math.log2(k / alpha) - 1e-12)
    n_eff = max(int(pairs), 1) * 3.0 / math.pi
    shift = (_z(1.0 - level / 2) + _z(power)) / math.sqrt(n_eff)
    return FactorDetection(pairs=int(pairs), cells=k, holm_alpha=level, mcnemar_min_lost=lost,
                           wilcoxon_min_pairs=wilcoxon, detectable_shift_sd=shift)


# --- rankability ------------------------------------------------------------------------------


def _rank_reason(identities: float, mated: float, nonmated: float) -> str:
    """The reason :func:`audit.disparity.rankable_groups` gives ("" when rankable)."""
    frame = pd.DataFrame({"n_identities": [identities], "n_mated": [mated],
                          "n_nonmated": [nonmated]})
    return str(rankable_groups(frame)["reason"].iloc[0])


def _passes(identities: float, mated: float, nonmated: float) -> bool:
    """The test of :func:`audit.disparity.rankable_groups` with its default limits (a quick
    form for searches; :func:`_rank_reason` asks the function itself)."""
    return identities >= MIN_IDENTITIES and mated >= MIN_MATED and nonmated >= MIN_NONMATED


def rank_code(counts: ComparisonCounts) -> str:
    """``"ok"``: rankable; ``"edge"``: rankable only if (nearly) every face is found (a
    comparison count within :data:`FACE_LOSS_MARGIN` of its limit); ``"too_small"``."""
    if not _passes(counts.identities, counts.mated, counts.nonmated_within):
        return "too_small"
    keep = 1.0 - FACE_LOSS_MARGIN
    return "ok" if _passes(counts.identities, counts.mated * keep,
                           counts.nonmated_within * keep) else "edge"


def rank_status(counts: ComparisonCounts) -> tuple[str, str]:
    """The rank code and the reason in :func:`audit.disparity.rankable_groups`'s words (for
    ``"edge"``, the reason once :data:`FACE_LOSS_MARGIN` of the comparisons are lost)."""
    code = rank_code(counts)
    keep = 1.0 if code == "too_small" else 1.0 - FACE_LOSS_MARGIN
    reason = _rank_reason(counts.identities, counts.mated * keep, counts.nonmated_within * keep)
    return code, "" if code == "ok" else reason

