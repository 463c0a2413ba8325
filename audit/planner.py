"""Sample-size planner: what an audit design can and cannot show, before anything is generated.

One place computes the figures that the web form's **Check**, the JSON API and ``run_audit``
show for a design (groups, identities per group, factor levels) and its target FMRs:

- the comparisons each group gets, following :func:`audit.comparisons.build_pairs` exactly
  (mated = every variant against its identity's baseline; non-mated = every image against the
  baseline of every other identity, with a seeded sample of at most ``NONMATED_CAP`` kept);
- how wide a group's 95% FNMR interval will be at a planning FNMR, allowing for comparisons of
  one identity failing together (a design effect from an intra-identity correlation);
- the smallest FNMR ratio between two groups detectable with 80% power at two-sided alpha 0.05;
- per target FMR, how many within-group false matches to expect and whether that is enough to
  estimate the rate;
- the pairs in each group x factor-level cell and roughly which paired effect survives Holm's
  correction;
- whether groups will be rankable under :func:`audit.disparity.rankable_groups` (its own rule and
  constants are used, not copies);
- and, when the design falls short, how many identities per group would fix it.

Assumptions (stated with every plan): every face is found (a missed image takes part in no
comparison; the default generator missed 4-7% of faces in a measured 720-image run, hence the
10% margin of :data:`FACE_LOSS_MARGIN`), each group's FNMR equals the planning FNMR, and each
group's FMR equals the target FMR.

Nothing here imports Django; the module is plain Python with numpy, pandas and scipy.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from scipy import stats

from audit.comparisons import build_pairs
from audit.disparity import MIN_IDENTITIES, MIN_MATED, MIN_NONMATED, rankable_groups
from audit.factor_effects import MCNEMAR_EXACT_BELOW

__all__ = [
    "DEFAULT_FNMR",
    "DEFAULT_ICC",
    "FACE_LOSS_MARGIN",
    "NONMATED_CAP",
    "Assumptions",
    "ComparisonCounts",
    "Plan",
    "PlanningError",
    "comparison_counts",
    "design_effect",
    "detectable_ratio",
    "factor_detection",
    "fnmr_half_width",
    "parse_assumptions",
    "plan_audit",
    "plan_for_config",
]

#: Planning FNMR used when none is given: a plausible FNMR of a good FR model at FMR 1e-3 on
#: mildly degraded faces. Weak models and hard factors run far higher (MobileFaceNet on the
#: 64-px DCGAN generator with blur 1-2 px and downscale 32/20 px: 0.26-0.30 at FMR 0.01 and
#: 0.34-0.39 at FMR 0.001 in a measured run; on the photoreal default with pose and lighting
#: edits 0.00-0.01 and 0.01-0.03), and FNMR rises as the target FMR gets stricter,
#: so plan with the value expected at the strictest target. A low FNMR is the harder case for
#: detecting ratios (few errors per group).
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


def _rank_code(counts: ComparisonCounts) -> str:
    """``"ok"``: rankable; ``"edge"``: rankable only if (nearly) every face is found (a
    comparison count within :data:`FACE_LOSS_MARGIN` of its limit); ``"too_small"``."""
    if not _passes(counts.identities, counts.mated, counts.nonmated_within):
        return "too_small"
    keep = 1.0 - FACE_LOSS_MARGIN
    return "ok" if _passes(counts.identities, counts.mated * keep,
                           counts.nonmated_within * keep) else "edge"


def _rank_status(counts: ComparisonCounts) -> tuple[str, str]:
    """The rank code and the reason in :func:`audit.disparity.rankable_groups`'s words (for
    ``"edge"``, the reason once :data:`FACE_LOSS_MARGIN` of the comparisons are lost)."""
    code = _rank_code(counts)
    keep = 1.0 if code == "too_small" else 1.0 - FACE_LOSS_MARGIN
    reason = _rank_reason(counts.identities, counts.mated * keep, counts.nonmated_within * keep)
    return code, "" if code == "ok" else reason


# --- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperatingPointPlan:
    """Figures at one target FMR (each group's FMR assumed equal to the target)."""

    target_fmr: float
    expected_false_matches: float
    nonmated_needed: int
    identities_needed: int | None

    @property
    def resolvable(self) -> bool:
        """Enough within-group non-mated comparisons to bound an FMR of this size: the rule of
        three (Jovanovic & Levy 1997) needs ``n >= 3 / FMR`` for a zero count to say anything."""
        return self.expected_false_matches >= 3.0 - 1e-9


@dataclass(frozen=True)
class Suggestion:
    """A larger design and what it would give."""

    identities_per_group: int
    images: int
    minutes: int | None
    status: str
    half_width: float
    ratio: float | None
    within_limit: bool
    purpose: str


@dataclass(frozen=True)
class Plan:
    """The plan of one design; build it with :func:`plan_audit` or :func:`plan_for_config`."""

    n_groups: int
    identities_per_group: int
    n_levels: int
    target_fmr: tuple[float, ...]
    assumptions: Assumptions
    counts: ComparisonCounts
    design_effect: float
    half_width: float
    ratio: float | None
    ratio_no_overlap: float | None
    status: str
    rank_reason: str
    factors: FactorDetection
    operating_points: tuple[OperatingPointPlan, ...]
    suggestions: tuple[Suggestion, ...] = field(default=())
    seconds_per_image: float | None = None

    @property
    def n_variants(self) -> int:
        return 2 + self.n_levels

    @property
    def images(self) -> int:
        return self.n_groups * self.identities_per_group * self.n_variants

    @property
    def rankable(self) -> bool:
        return self.status != "too_small"

    @property
    def expected_errors(self) -> float:
        return self.assumptions.fnmr * self.counts.mated

    @property
    def headline(self) -> str:
        return _headline(self)

    @property
    def sentences(self) -> list[str]:
        """The verdict in plain words, one finding per sentence, fixes last."""
        return _sentences(self)

    @property
    def assumption_text(self) -> str:
        a = self.assumptions
        return (f"Assumed: FNMR {_g(a.fnmr)} in every group (planning value), intra-identity "
                f"correlation {_g(a.icc)} (design effect 1 + (m - 1) x {_g(a.icc)} = "
                f"{self.design_effect:.2f} for m = {self.counts.mated_per_identity} mated "
                f"comparisons per identity), each group's FMR at the target, every face found; "
                f"{a.confidence:.0%} intervals, {a.power:.0%} power, two-sided alpha {_g(a.alpha)}.")

    def lines(self) -> list[str]:
        """The verdict as text lines (for a terminal)."""
        return [f"Plan: {self.headline}", *(f"  - {s}" for s in self.sentences),
                f"  {self.assumption_text}"]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable figures (``None`` where a figure does not exist)."""
        c, a, f = self.counts, self.assumptions, self.factors
        per_point = [{
            "target_fmr": p.target_fmr,
            "mated_per_group": c.mated,
            "nonmated_within_per_group": _round(c.nonmated_within),
            "fnmr": a.fnmr,
            "fnmr_half_width": _round(self.half_width, 6),
            "fnmr_detectable_ratio": _round(self.ratio, 4),
            "expected_false_matches_per_group": _round(p.expected_false_matches, 3),
            "fmr_resolvable": p.resolvable,
            "nonmated_needed": p.nonmated_needed,
            "identities_needed": p.identities_needed,
        } for p in self.operating_points]
        return {
            "design": {"groups": self.n_groups, "identities_per_group": self.identities_per_group,
                       "factor_levels": self.n_levels, "images_per_identity": self.n_variants,
                       "images": self.images},
            "assumptions": {"fnmr": a.fnmr, "icc": a.icc, "design_effect":
                            _round(self.design_effect, 4), "confidence": a.confidence,
                            "power": a.power, "alpha": a.alpha, "faces_found": "all",
                            "text": self.assumption_text},
            "per_group": {"identities": c.identities, "mated": c.mated,
                          "mated_per_identity": c.mated_per_identity,
                          "nonmated_within": _round(c.nonmated_within),
                          "nonmated_within_before_sampling": c.nonmated_within_all},
            "nonmated": {"total": c.nonmated_total, "kept": c.nonmated_kept,
                         "sampled": c.sampled, "cap": NONMATED_CAP},
            "fnmr": {"half_width": _round(self.half_width, 6),
                     "interval": [_round(max(a.fnmr - self.half_width, 0.0), 6),
                                  _round(min(a.fnmr + self.half_width, 1.0), 6)],
                     "expected_errors_per_group": _round(self.expected_errors, 2),
                     "detectable_ratio": _round(self.ratio, 4),
                     "detectable_ratio_no_overlap": _round(self.ratio_no_overlap, 4)},
            "operating_points": per_point,
            "rankable": {"rankable": self.rankable, "status": self.status,
                         "reason": self.rank_reason,
                         "rule": {"min_identities": MIN_IDENTITIES, "min_mated": MIN_MATED,
                                  "min_nonmated_within": MIN_NONMATED}},
            "factor_effects": {"pairs_per_cell": f.pairs, "cells_per_family": f.cells,
                               "holm_alpha": _round(f.holm_alpha, 8),
                               "mcnemar_min_lost": f.mcnemar_min_lost,
                               "mcnemar_min_fnmr_change": _round(f.mcnemar_min_lost / f.pairs, 4)
                               if f.pairs else None,
                               "mcnemar_possible": f.mcnemar_possible,
                               "wilcoxon_min_pairs": f.wilcoxon_min_pairs,
                               "wilcoxon_possible": f.wilcoxon_possible,
                               "detectable_shift_sd": _round(f.detectable_shift_sd, 4)},
            "suggestions": [{"identities_per_group": s.identities_per_group, "images": s.images,
                             "minutes": s.minutes, "status": s.status,
                             "fnmr_half_width": _round(s.half_width, 6),
                             "fnmr_detectable_ratio": _round(s.ratio, 4),
                             "within_image_limit": s.within_limit, "purpose": s.purpose}
                            for s in self.suggestions],
            "verdict": {"status": self.status, "headline": self.headline,
                        "sentences": self.sentences},
        }


def _round(value: float | None, digits: int = 1) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def _core(n_groups: int, n: int, n_levels: int, assumptions: Assumptions,
          max_nonmated: int) -> tuple[ComparisonCounts, float, float, float | None, str]:
    """Counts, design effect, half-width, detectable ratio and rank status of one size."""
    a = assumptions
    counts = comparison_counts(n_groups, n, 2 + n_levels, max_nonmated)
    deff = design_effect(counts.mated_per_identity, a.icc)
    half = fnmr_half_width(a.fnmr, counts.mated, deff, n, a.confidence)
    ratio = detectable_ratio(a.fnmr, counts.mated, deff, alpha=a.alpha, power=a.power)
    return counts, deff, half, ratio, _rank_code(counts)


def _identities_for_fmr(n_groups: int, n_variants: int, fmr: float,
                        max_nonmated: int) -> int | None:
    """Fewest identities per group whose within-group non-mated count reaches ``3 / fmr``."""
    needed = 3.0 / fmr
    for n in range(2, _MAX_IDENTITIES + 1):
        if comparison_counts(n_groups, n, n_variants, max_nonmated).nonmated_within >= needed:
            return n
    return None


def _round_up(n: int, step: int = 5) -> int:
    return min(_MAX_IDENTITIES, step * math.ceil(n / step))


def _suggestions(n_groups: int, n: int, n_levels: int, status: str, ratio: float | None,
                 assumptions: Assumptions, max_nonmated: int, seconds_per_image: float | None,
                 max_images: int | None) -> tuple[Suggestion, ...]:
    """Larger designs that fix what this one cannot do: the smallest (multiple of 5) that ranks
    groups with the face-loss margin, then the smallest that detects a ratio of
    :data:`TARGET_RATIO`."""
    wanted: list[tuple[int, str]] = []
    start = n
    if status != "ok":
        fix = next((m for m in range(n + 1, _MAX_IDENTITIES + 1)
                    if _core(n_groups, m, n_levels, assumptions, max_nonmated)[4] == "ok"), None)
        if fix is not None:
            start = _round_up(fix)
            wanted.append((start, "rank groups"))
    if ratio is None or ratio > TARGET_RATIO:
        fix = next((m for m in range(start + 1, _MAX_IDENTITIES + 1)
                    if (r := _core(n_groups, m, n_levels, assumptions, max_nonmated)[3])
                    is not None and r <= TARGET_RATIO), None)
        if fix is not None:
            wanted.append((_round_up(fix), f"detect an FNMR ratio of {_g(TARGET_RATIO)}"))
    out = []
    for m, purpose in wanted:
        _, _, half, r, st = _core(n_groups, m, n_levels, assumptions, max_nonmated)
        images = n_groups * m * (2 + n_levels)
        minutes = None if seconds_per_image is None else max(1, round(images * seconds_per_image
                                                                     / 60))
        out.append(Suggestion(identities_per_group=m, images=images, minutes=minutes, status=st,
                              half_width=half, ratio=r, purpose=purpose,
                              within_limit=max_images is None or images <= max_images))
    return tuple(out)


def plan_audit(*, n_groups: int, identities_per_group: int, n_levels: int,
               target_fmr: Sequence[float] = (1e-3,), assumptions: Assumptions | None = None,
               max_nonmated: int = NONMATED_CAP, seconds_per_image: float | None = None,
               max_images: int | None = None) -> Plan:
    """The plan of a design: ``n_groups`` groups of ``identities_per_group`` identities, each
    with a baseline, a control and ``n_levels`` factor levels (images per identity
    ``2 + n_levels``), read at each of ``target_fmr``.

    ``seconds_per_image`` (optional) adds run-time estimates to the suggestions;
    ``max_images`` (optional) marks suggestions over the config's image limit.
    """
    if n_groups < 1 or identities_per_group < 2 or n_levels < 0:
        raise ValueError("a design needs at least one group, two identities per group and "
                         "zero or more factor levels")
    a = assumptions or Assumptions()
    n = int(identities_per_group)
    counts, deff, half, ratio, status = _core(n_groups, n, n_levels, a, max_nonmated)
    _, reason = _rank_status(counts)
    no_overlap = detectable_ratio(a.fnmr, counts.mated, deff, alpha=a.alpha, power=a.power,
                                  rule="no_overlap", confidence=a.confidence)
    points = tuple(
        OperatingPointPlan(target_fmr=float(f),
                           expected_false_matches=counts.nonmated_within * float(f),
                           nonmated_needed=math.ceil(3.0 / float(f) - 1e-9),
                           identities_needed=_identities_for_fmr(n_groups, 2 + n_levels,
                                                                 float(f), max_nonmated))
        for f in sorted({float(x) for x in target_fmr}, reverse=True))
    factors = factor_detection(n, n_groups * n_levels, alpha=a.alpha, power=a.power)
    return Plan(n_groups=int(n_groups), identities_per_group=n, n_levels=int(n_levels),
                target_fmr=tuple(p.target_fmr for p in points), assumptions=a, counts=counts,
                design_effect=deff, half_width=half, ratio=ratio, ratio_no_overlap=no_overlap,
                status=status, rank_reason=reason, factors=factors, operating_points=points,
                suggestions=_suggestions(n_groups, n, n_levels, status, ratio, a, max_nonmated,
                                         seconds_per_image, max_images),
                seconds_per_image=seconds_per_image)


def plan_for_config(config: Any, assumptions: Assumptions | None = None, *,
                    seconds_per_image: float | None = None) -> Plan:
    """The plan of a validated :class:`generator.config.AuditConfig`."""
    from generator.config import MAX_IMAGES

    n_levels = sum(len(levels) for levels in config.factors.values())
    return plan_audit(n_groups=config.n_groups, identities_per_group=config.identities_per_group,
                      n_levels=n_levels, target_fmr=config.target_fmr, assumptions=assumptions,
                      seconds_per_image=seconds_per_image, max_images=MAX_IMAGES)


# --- words ------------------------------------------------------------------------------------


def _g(x: float) -> str:
    return f"{x:g}"


def _n(x: float) -> str:
    return f"{round(x):,}"


def _rule_text() -> str:
    return (f"the rule needs at least {MIN_IDENTITIES} identities, {MIN_MATED} mated and "
            f"{MIN_NONMATED:,} within-group non-mated comparisons per group")


def _headline(plan: Plan) -> str:
    n = plan.identities_per_group
    if plan.status == "too_small":
        return (f"With {n} identities per group no group can be ranked ({plan.rank_reason}; "
                f"{_rule_text()}).")
    if plan.status == "edge":
        return (f"Groups can be ranked only if nearly every face is found: {plan.rank_reason} "
                f"once {FACE_LOSS_MARGIN:.0%} of comparisons are lost to faces not found "
                f"({_rule_text()}).")
    return f"Every group can be ranked with {n} identities per group ({_rule_text()})."


def _counts_sentence(plan: Plan) -> str:
    c = plan.counts
    text = (f"Each of the {plan.n_groups} groups gets {plan.identities_per_group} identities, "
            f"{_n(c.mated)} mated comparisons ({c.mated_per_identity} per identity: the control "
            f"and {plan.n_levels} factor level{'' if plan.n_levels == 1 else 's'} against the "
            f"baseline) and about "
            f"{_n(c.nonmated_within)} within-group non-mated comparisons")
    if c.sampled:
        text += (f"; the {_n(c.nonmated_total)} non-mated comparisons are cut to a seeded "
                 f"sample of {_n(c.nonmated_kept)} ({c.nonmated_kept / c.nonmated_total:.1%})")
    return text + "."


def _fnmr_sentences(plan: Plan) -> list[str]:
    a = plan.assumptions
    lo, hi = max(a.fnmr - plan.half_width, 0.0), min(a.fnmr + plan.half_width, 1.0)
    out = [f"If a group's FNMR is {_g(a.fnmr)}, its 95% interval will be about "
           f"±{plan.half_width:.3f} ({lo:.3f} to {hi:.3f}), allowing for an identity's "
           f"comparisons failing together (intra-identity correlation {_g(a.icc)}, design "
           f"effect {plan.design_effect:.2f})."]
    if plan.expected_errors < 10:
        out.append(f"Only about {plan.expected_errors:.1f} false non-matches are expected per "
                   f"group, so its FNMR will rest on a handful of errors.")
    if plan.ratio is None:
        out.append("No FNMR ratio between two groups can be detected reliably at this size.")
    else:
        nov = ("" if plan.ratio_no_overlap is None else
               f"; the dashboard states a difference only when the two 95% intervals do not "
               f"overlap, which needs about {plan.ratio_no_overlap:.1f} times")
        out.append(f"Two groups' FNMRs must differ by a factor of about {plan.ratio:.1f} (e.g. "
                   f"{_g(a.fnmr)} against {min(a.fnmr * plan.ratio, 1):.3f}) to be detected "
                   f"with {a.power:.0%} power (two-sided test at alpha {_g(a.alpha)} on the "
                   f"log ratio){nov}.")
    return out


def _fmr_sentence(plan: Plan, point: OperatingPointPlan) -> str:
    head = (f"At FMR {_g(point.target_fmr)} each group expects about "
            f"{point.expected_false_matches:.1f} false matches among its "
            f"{_n(plan.counts.nonmated_within)} within-group non-mated comparisons")
    if point.resolvable:
        coarse = ("" if point.expected_false_matches >= 10 else
                  ", though a rate read from so few false matches is coarse")
        return (head + f": enough to see a rate of that size (3 / FMR = "
                       f"{point.nonmated_needed:,} needed){coarse}.")
    need = (f"about {point.identities_needed} identities per group" if point.identities_needed
            else "more identities than the limit allows")
    return (head + f": too few to estimate it (3 / FMR = {point.nonmated_needed:,} are needed, "
                   f"{need}); each group's FMR will read as a count or an upper bound.")


def _factor_sentence(plan: Plan) -> str:
    f = plan.factors
    head = (f"Factor effects: each group x factor-level cell pairs {f.pairs} identities (control "
            f"against level), and Holm's correction runs over {f.cells} cells per FR model and "
            f"test")
    if not f.mcnemar_possible and not f.wilcoxon_possible:
        return (head + f", so no factor effect can be significant: McNemar's test needs at "
                       f"least {f.mcnemar_min_lost} identities in a cell to stop matching and "
                       f"the signed-rank test at least {f.wilcoxon_min_pairs} changed pairs.")
    parts = []
    if f.mcnemar_possible:
        parts.append(f"a level is flagged on match decisions only if at least "
                     f"{f.mcnemar_min_lost} of the {f.pairs} identities of a group stop matching "
                     f"(FNMR up by {f.mcnemar_min_lost / f.pairs:.2f} or more)")
    else:
        parts.append(f"no level can be flagged on match decisions (McNemar needs "
                     f"{f.mcnemar_min_lost} identities to stop matching)")
    if f.wilcoxon_possible:
        parts.append(f"on scores when it shifts the mated score by about "
                     f"{f.detectable_shift_sd:.1f} standard deviations of the per-identity "
                     f"changes ({plan.assumptions.power:.0%} power)")
    else:
        parts.append(f"never on scores (the signed-rank test needs {f.wilcoxon_min_pairs} "
                     f"changed pairs)")
    return head + ": " + "; ".join(parts) + "."


def _suggestion_sentence(plan: Plan, s: Suggestion) -> str:
    time = f", about {s.minutes} min" if s.minutes is not None else ""
    limit = "" if s.within_limit else " (over the image limit: use fewer groups or levels)"
    ranks = {"ok": "groups can be ranked", "edge": "groups rank only if nearly every face is "
             "found", "too_small": "groups still cannot be ranked"}[s.status]
    ratio = ("no ratio detectable" if s.ratio is None else
             f"a ratio of {s.ratio:.1f} detectable")
    return (f"To {s.purpose}: {s.identities_per_group} identities per group ({s.images:,} "
            f"images{time}){limit}: {ranks}, FNMR ±{s.half_width:.3f}, {ratio}.")


def _sentences(plan: Plan) -> list[str]:
    out = [_counts_sentence(plan), *_fnmr_sentences(plan)]
    out.extend(_fmr_sentence(plan, p) for p in plan.operating_points)
    out.append(_factor_sentence(plan))
    out.extend(_suggestion_sentence(plan, s) for s in plan.suggestions)
    out.append("Counts assume every face is found: an image without a detected face takes part "
               "in no comparison (the 64-px DCGAN misses about 5% of faces; the photoreal default "
               "missed none of 560 in a measured run).")
    return out
