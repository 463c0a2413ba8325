"""The identity judge and the results both ways, for the dashboard and the report.

Headline FR results use every variant whose edit reached its target with the other attributes
held; the judged-same view also leaves out the variants the identity judge (an FR model not
under test) calls another person. Both pages say which one is shown and how far apart the
per-group FNMRs are (``worker.results.judged_view`` stores the numbers).
"""

from __future__ import annotations

from typing import Any

from audit.counts import as_count
from audit.summary import AuditSummary, OperatingPoint


def _share(value: Any) -> str:
    return "–" if value is None else f"{float(value):.3f}"


def _signed(value: Any) -> str:
    return "–" if value is None else f"{float(value):+.3f}"


def judge_info(summary: AuditSummary) -> dict[str, Any] | None:
    """The audit's identity judge (model, why it was chosen, cut-off and rule), or None for
    results stored before the judge existed."""
    judge = summary.identity_judge
    if not judge:
        return None
    return {"model": judge.get("model"), "chosen": judge.get("chosen", ""),
            "cutoff": None if judge.get("cutoff") is None else f"{float(judge['cutoff']):.4f}",
            "rule": judge.get("rule", ""), "n_baselines": as_count(judge.get("n_baselines")),
            "n_pairs": as_count(judge.get("n_impostor_pairs")),
            "shown": judge.get("comparisons_shown", "")}


def judged_rows(point: OperatingPoint) -> dict[str, Any] | None:
    """Per group and per edit factor: FNMR as shown (headline), FNMR judged-same, the
    difference and the counts; None when the point has no judged-same view."""
    view = point.identity_judge_view
    if not view:
        return None
    groups = [{"group": g, "n": as_count(r.get("n_mated")), "fnmr": _share(r.get("fnmr")),
               "n_judged": as_count(r.get("n_mated_judged_same")),
               "fnmr_judged": _share(r.get("fnmr_judged_same")),
               "difference": _signed(r.get("difference"))}
              for g, r in (view.get("by_group") or {}).items()]
    factors = [{"factor": f, "n": as_count(r.get("n_mated")), "fnmr": _share(r.get("fnmr")),
                "n_judged": as_count(r.get("n_mated_judged_same")),
                "fnmr_judged": _share(r.get("fnmr_judged_same"))}
               for f, r in (view.get("by_factor") or {}).items()]
    return {"shown": view.get("shown", ""), "groups": groups, "factors": factors,
            "images_judged_different": as_count(view.get("images_judged_different")),
            "max_abs_difference": _share(view.get("max_abs_difference"))}
