"""The read side of an audit's ``summary.json``: one object that pages, report, API, compare,
exports and ``run_audit`` take instead of walking nested dicts.

The aggregation stage stores the summary as plain JSON (``AuditResult.summary``; the blocks are
built in :mod:`worker.results`). :meth:`AuditSummary.from_dict` wraps it without copying or
changing it::

    summary = AuditSummary.from_dict(result.summary)
    for model in summary.models.values():          # FR models in stored order
        for point in model.points:                 # operating points in stored order
            point.label, point.threshold, point.by_group["female"]["fnmr"]
            point.interval("female")               # identity-bootstrap intervals of one group
    summary.model("mobilefacenet").point("FMR 0.001")

Every other block of the summary (``design``, ``acquisition``, ``generator_checks``,
``quality``, ``factor_effects``, ...) is a named property returning the stored dict, or an
empty dict where an older summary lacks it. ``raw`` is the stored dict itself, for JSON answers
and templates.

:func:`same_number` is the one tolerance with which stored numbers (a target FMR, a threshold)
are matched against table columns (:func:`factor_effect_rows`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any


def same_number(a: Any, b: Any) -> bool:
    """Whether two stored numbers are the same value (relative 1e-9, absolute 1e-12: a float
    written to JSON or CSV and read back); False when either is missing or not a number."""
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError):
        return False
    if math.isnan(x) or math.isnan(y):
        return False
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def point_label(point: Mapping[str, Any]) -> str:
    """An operating point's name as every page shows it: the stored ``label``, else
    ``FMR 0.001`` for a target false-match rate, else ``threshold 0.4``."""
    if point.get("label"):
        return str(point["label"])
    if point.get("target_fmr") is not None:
        return f"FMR {point['target_fmr']:g}"
    return f"threshold {point['threshold']:g}"


#: Every disparity measure's name in words, in the order the report lists them
#: (:mod:`audit.disparity` computes them; docs/metrics.md defines them).
DISPARITY_LABELS = {"fnmr_max_min_ratio": "FNMR max/min ratio",
                    "fmr_max_min_ratio": "FMR max/min ratio",
                    "fnmr_max_gap": "FNMR max gap (B)", "fmr_max_gap": "FMR max gap (A)",
                    "fdr": "Fairness Discrepancy Rate (1 = fair)",
                    "fnmr_gini": "Gini of FNMR (n/(n-1) corrected)",
                    "fmr_gini": "Gini of FMR (n/(n-1) corrected)", "garbe": "GARBE (0 = fair)"}
#: The measures the dashboard and the compare page show, in that order.
HEADLINE_MEASURES = ("fnmr_max_min_ratio", "fmr_max_min_ratio", "fdr", "garbe")


def _block(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class OperatingPoint:
    """One operating point of one FR model: a threshold read at a target FMR (``target_fmr``)
    or given by the user (``target_fmr`` None), with every group's rates at it."""

    fr_model: str
    index: int  # position in the model's list (the dashboard's selection)
    raw: dict[str, Any]

    @property
    def label(self) -> str:
        return point_label(self.raw)

    @property
    def target_fmr(self) -> float | None:
        return self.raw.get("target_fmr")

    @property
    def threshold(self) -> float | None:
        return self.raw.get("threshold")

    @property
    def achieved_fmr(self) -> float | None:
        return self.raw.get("achieved_fmr")

    @property
    def by_group(self) -> dict[str, dict[str, Any]]:
        """Group -> ``{"fnmr", "fmr", "n_mated", "false_non_matches", ...}``."""
        return _block(self.raw, "by_group")

    @property
    def overall(self) -> dict[str, Any]:
        return _block(self.raw, "overall")

    @property
    def cross_group(self) -> dict[str, Any]:
        return _block(self.raw, "cross_group")

    @property
    def bootstrap(self) -> dict[str, Any]:
        """Identity-bootstrap intervals (``by_group``, ``overall``, replicates, seed)."""
        return _block(self.raw, "bootstrap")

    def interval(self, group: str) -> dict[str, Any]:
        """The bootstrap intervals of one group (empty when none were stored)."""
        return _block(self.bootstrap, "by_group").get(group) or {}

    @property
    def disparity(self) -> dict[str, Any]:
        return _block(self.raw, "disparity")

    @property
    def rankable(self) -> dict[str, Any]:
        """Group -> ``{"rankable": bool, "reason": str}``."""
        return _block(self.raw, "rankable")

    @property
    def identity_judge_view(self) -> dict[str, Any]:
        return _block(self.raw, "identity_judge_view")

    def matches(self, wanted: str) -> bool:
        """Whether ``wanted`` names this point: its label, or its target FMR as a number."""
        if self.label == wanted:
            return True
        try:
            return self.target_fmr is not None and float(wanted) == self.target_fmr
        except ValueError:
            return False


@dataclass(frozen=True)
class ModelResult:
    """One FR model under test: its provenance and its operating points in stored order."""

    name: str
    raw: dict[str, Any]

    @cached_property
    def points(self) -> tuple[OperatingPoint, ...]:
        stored = self.raw.get("operating_points") or []
        return tuple(OperatingPoint(self.name, i, p) for i, p in enumerate(stored))

    @property
    def labels(self) -> list[str]:
        return [p.label for p in self.points]

    @property
    def targets(self) -> list[float]:
        """The target FMRs of the model's points, in order (user thresholds have none)."""
        return [p.target_fmr for p in self.points if p.target_fmr is not None]

    def point(self, wanted: str) -> OperatingPoint | None:
        """The point whose label is ``wanted``, else the first whose target FMR equals it."""
        return next((p for p in self.points if p.label == wanted), None) or next(
            (p for p in self.points if p.matches(wanted)), None)


@dataclass(frozen=True)
class AuditSummary:
    """An audit's stored summary, read through named parts (see the module docstring)."""

    raw: dict[str, Any]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> AuditSummary:
        return cls(dict(raw) if raw is not None and not isinstance(raw, dict) else (raw or {}))

    @classmethod
    def of(cls, summary: AuditSummary | Mapping[str, Any] | None) -> AuditSummary:
        """``summary`` itself when it is already one, else :meth:`from_dict`."""
        return summary if isinstance(summary, AuditSummary) else cls.from_dict(summary)

    @cached_property
    def models(self) -> dict[str, ModelResult]:
        """FR model name -> its result, in stored order."""
        return {name: ModelResult(name, info or {})
                for name, info in _block(self.raw, "fr_models").items()}

    def model(self, name: str) -> ModelResult:
        """The named FR model's result (KeyError when the audit has no such model)."""
        return self.models[name]

    @property
    def models_with_points(self) -> list[str]:
        """The FR models that have at least one operating point, in stored order."""
        return [name for name, m in self.models.items() if m.points]

    def point(self, fr_model: str, index: int) -> OperatingPoint:
        return self.model(fr_model).points[index]

    def points(self) -> list[OperatingPoint]:
        """Every operating point of every model, models in stored order."""
        return [p for m in self.models.values() for p in m.points]

    def without_database_id(self) -> dict[str, Any]:
        """The stored dict (a shallow copy) less the audit's database id, which is not part
        of the result (exports number audits by nothing but their seed and config)."""
        raw = dict(self.raw)
        if isinstance(raw.get("audit"), dict):
            raw["audit"] = {k: v for k, v in raw["audit"].items() if k != "id"}
        return raw

    # the other blocks, as stored ------------------------------------------------------------

    @property
    def audit(self) -> dict[str, Any]:
        return _block(self.raw, "audit")

    @property
    def seed(self) -> int | None:
        return self.audit.get("seed")

    @property
    def design(self) -> dict[str, Any]:
        return _block(self.raw, "design")

    @property
    def acquisition(self) -> dict[str, Any]:
        return _block(self.raw, "acquisition")

    @property
    def generator_checks(self) -> dict[str, Any]:
        return _block(self.raw, "generator_checks")

    @property
    def quality(self) -> dict[str, Any]:
        return _block(self.raw, "quality")

    @property
    def factor_effects(self) -> dict[str, Any]:
        return _block(self.raw, "factor_effects")

    @property
    def comparisons(self) -> dict[str, Any]:
        return _block(self.raw, "comparisons")

    @property
    def model_files(self) -> dict[str, Any]:
        """Every model the audit used (detector, FR models, sensors) with its SHA-256 and
        licence (``summary["models"]``)."""
        return _block(self.raw, "models")

    @property
    def identity_sampling(self) -> dict[str, Any]:
        return _block(self.raw, "identity_sampling")

    @property
    def identity_judge(self) -> dict[str, Any]:
        return _block(self.raw, "identity_judge")


def factor_effect_rows(effects, fr_model: str, target_fmr: float | None = None,
                       threshold: float | None = None):
    """The rows of the factor-effects table (a pandas DataFrame; ``fr_model``, ``target_fmr``
    and ``threshold`` columns) of one FR model at one target FMR or, when ``target_fmr`` is
    None, at one threshold, matched with :func:`same_number`; every row of the model when
    neither is given or the table lacks the column. A table without an ``fr_model`` column is
    taken as one model's."""
    if effects is None or effects.empty:
        return effects.iloc[0:0] if effects is not None else None
    rows = effects
    if "fr_model" in rows.columns:
        rows = rows[rows["fr_model"].astype(str) == fr_model]
    if target_fmr is not None and "target_fmr" in rows.columns:
        rows = rows[[same_number(v, target_fmr) for v in rows["target_fmr"]]]
    elif target_fmr is None and threshold is not None and "threshold" in rows.columns:
        rows = rows[[same_number(v, threshold) for v in rows["threshold"]]]
    return rows
