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

import math
from collections.abc import Sequence
from typing import Any

from audit.plan_report import OperatingPointPlan, Plan, Suggestion
from audit.plan_statistics import (
    _MAX_IDENTITIES,
    DEFAULT_FNMR,
    DEFAULT_ICC,
    FACE_LOSS_MARGIN,
    NONMATED_CAP,
    TARGET_RATIO,
    Assumptions,
    ComparisonCounts,
    FactorDetection,
    PlanningError,
    comparison_counts,
    design_effect,
    detectable_ratio,
    factor_detection,
    fnmr_half_width,
    parse_assumptions,
    rank_code,
    rank_status,
)

__all__ = [
    "DEFAULT_FNMR",
    "DEFAULT_ICC",
    "FACE_LOSS_MARGIN",
    "NONMATED_CAP",
    "Assumptions",
    "ComparisonCounts",
    "FactorDetection",
    "OperatingPointPlan",
    "Plan",
    "PlanningError",
    "Suggestion",
    "comparison_counts",
    "design_effect",
    "detectable_ratio",
    "factor_detection",
    "fnmr_half_width",
    "parse_assumptions",
    "plan_audit",
    "plan_for_config",
]

# The figures are in audit.plan_statistics, the Plan object and its words in audit.plan_report;
# this module puts them together for a design and suggests a size when it falls short.


def _core(n_groups: int, n: int, n_levels: int, assumptions: Assumptions,
          max_nonmated: int) -> tuple[ComparisonCounts, float, float, float | None, str]:
    """Counts, design effect, half-width, detectable ratio and rank status of one size."""
    a = assumptions
    counts = comparison_counts(n_groups, n, 2 + n_levels, max_nonmated)
    deff = design_effect(counts.mated_per_identity, a.icc)
    half = fnmr_half_width(a.fnmr, counts.mated, deff, n, a.confidence)
    ratio = detectable_ratio(a.fnmr, counts.mated, deff, alpha=a.alpha, power=a.power)
    return counts, deff, half, ratio, rank_code(counts)


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
            wanted.append((_round_up(fix), f"detect an FNMR ratio of {TARGET_RATIO:g}"))
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
    _, reason = rank_status(counts)
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
