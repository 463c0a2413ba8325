"""An audit plan as a result: the :class:`Plan` object, its JSON form and its verdict in words.

:func:`audit.planner.plan_audit` builds a :class:`Plan` from the figures of
:mod:`audit.plan_statistics`; :attr:`Plan.headline`, :attr:`Plan.sentences` and
:meth:`Plan.lines` say in plain words what the design can and cannot show (one finding per
sentence, fixes last) and :meth:`Plan.to_dict` gives the same as JSON. Every name here is also
importable from :mod:`audit.planner`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from audit.plan_statistics import (
    FACE_LOSS_MARGIN,
    NONMATED_CAP,
    Assumptions,
    ComparisonCounts,
    FactorDetection,
)
from audit.rankability import MIN_IDENTITIES, MIN_MATED, MIN_NONMATED

__all__ = ["OperatingPointPlan", "Plan", "Suggestion"]


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
