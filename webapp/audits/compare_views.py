"""Compare: two FR models on one audit, or two audits with the same design, side by side.

Each side is one audit, one FR model and one operating point (the same target FMR or the same
user-given threshold on both sides; each side uses its own threshold for it). The statistics
come from :func:`audit.compare.compare_models` on the stored comparison tables: per-group FNMR
and FMR of both sides, their differences (B - A) with identity-bootstrap intervals (paired when
both sides are the same audit, independent otherwise), and the difference of every disparity
summary. The result is cached per (audits, their result versions, models, operating point).
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from audit.summary import DISPARITY_LABELS, HEADLINE_MEASURES, AuditSummary
from webapp.audits.access import visible_audits
from webapp.audits.models import Audit

#: Bootstrap replicates for the difference intervals (as for the audit's own intervals).
N_BOOT = 1000


def _done_audits(request: HttpRequest):
    return (visible_audits(request).filter(state=Audit.State.DONE, result__isnull=False)
            .order_by("-created_at"))


def _pick_audit(audits, raw: str | None, field: str, errors: dict[str, str]) -> Audit | None:
    if raw in (None, ""):
        return None
    try:
        return audits.get(pk=int(raw))
    except (ValueError, Audit.DoesNotExist):
        errors[field] = "choose one of your finished audits from the list"
        return None


def _summary(audit: Audit) -> AuditSummary:
    return AuditSummary.of(audit.result.summary)


def _threshold(audit: Audit, model: str, label: str) -> float:
    """The threshold of the model's operating point labelled ``label`` (the label is one both
    sides share, checked by the view)."""
    return next(p for p in _summary(audit).model(model).points if p.label == label).threshold


def same_design(a: Audit, b: Audit) -> str | None:
    """None when the two audits share their design (groups, identities per group, factors and
    levels), else what differs, in words."""
    da, db = _summary(a).design, _summary(b).design
    for key, words in (("groups", "groups"), ("identities_per_group", "identities per group"),
                       ("variants", "factors and levels")):
        if da.get(key) != db.get(key):
            return f"the two audits differ in their {words}"
    return None


class UnreadableComparisons(Exception):
    """An audit's stored comparisons file is missing or damaged; the message names the audit."""

    def __init__(self, audit_pk: int, message: str) -> None:
        super().__init__(message)
        self.audit_pk = audit_pk


def _side_table(audit: Audit, model: str):
    from exports.comparison_store import read_comparisons

    try:
        comp = read_comparisons(audit.result.comparisons_file)
        return comp[comp["fr_model"].astype(str) == model]
    except Exception as exc:  # noqa: BLE001 - any failure to read is reported at the field
        raise UnreadableComparisons(
            audit.pk, f"the stored comparisons of audit #{audit.pk} cannot be read ({type(exc).__name__}); "
            "run that audit again to rebuild them") from exc


def compute(a: Audit, model_a: str, b: Audit, model_b: str, label: str) -> dict[str, Any]:
    """The comparison as plain JSON-ready values (cached)."""
    key = ("compare", a.pk, a.result.created_at.isoformat(), model_a, b.pk,
           b.result.created_at.isoformat(), model_b, label)
    key = "compare:" + hashlib.sha256(repr(key).encode()).hexdigest()
    cached = cache.get(key)
    if cached is not None:
        return cached
    from audit.compare import compare_models

    result = compare_models(
        _side_table(a, model_a), _threshold(a, model_a, label),
        _side_table(b, model_b), _threshold(b, model_b, label),
        labels=(f"#{a.pk} {model_a}", f"#{b.pk} {model_b}"), n_boot=N_BOOT,
        seed=int(_summary(a).seed)).to_dict()
    cache.set(key, result, timeout=24 * 3600)
    return result


@login_required
@require_GET
def compare(request: HttpRequest) -> HttpResponse:
    """The form (audit A, audit B, FR model of each, operating point) and, when it is complete
    and valid, the side-by-side tables."""
    audits = _done_audits(request)
    errors: dict[str, str] = {}
    a = _pick_audit(audits, request.GET.get("a"), "a", errors)
    b = _pick_audit(audits, request.GET.get("b"), "b", errors) or a
    context: dict[str, Any] = {"audits": audits, "a": a, "b": b, "errors": errors,
                               "result": None}
    if a is None or b is None:
        return render(request, "audits/compare.html", context)

    models_a, models_b = list(_summary(a).models), list(_summary(b).models)
    model_a = request.GET.get("model_a") or models_a[0]
    default_b = models_b[1] if (b.pk == a.pk and len(models_b) > 1) else models_b[0]
    model_b = request.GET.get("model_b") or default_b
    if model_a not in models_a:
        errors["model_a"] = f"audit #{a.pk} was scored with {', '.join(models_a)}"
    if model_b not in models_b:
        errors["model_b"] = f"audit #{b.pk} was scored with {', '.join(models_b)}"
    if b.pk != a.pk and (problem := same_design(a, b)):
        errors["b"] = f"{problem}; compare audits made from the same design"
    if b.pk == a.pk and model_a == model_b and not errors:
        errors["model_b"] = ("choose another FR model, or another audit with the same design, "
                             "to compare with")
    labels: list[str] = []
    if "model_a" not in errors and "model_b" not in errors:
        labels_b = _summary(b).model(model_b).labels
        labels = [x for x in _summary(a).model(model_a).labels if x in labels_b]
        if not labels:
            errors["point"] = "the two sides share no operating point (target FMR or threshold)"
    label = request.GET.get("point") or (labels[0] if labels else "")
    if labels and label not in labels:
        errors["point"] = f"choose one of: {', '.join(labels)}"
    context.update(models_a=models_a, models_b=models_b, model_a=model_a, model_b=model_b,
                   labels=labels, point=label)
    if errors:
        return render(request, "audits/compare.html", context, status=200)

    try:
        result = compute(a, model_a, b, model_b, label)
    except UnreadableComparisons as exc:
        field = "a" if exc.audit_pk == a.pk else "b"
        errors[field] = str(exc)
        return render(request, "audits/compare.html", context, status=200)
    rows = [{"group": g, **vals} for g, vals in result["by_group"].items()]
    measures = [{"key": k, "label": DISPARITY_LABELS[k], **result["disparity"][k]}
                for k in HEADLINE_MEASURES if k in result["disparity"]]
    context.update(result=result, rows=rows, measures=measures)
    return render(request, "audits/compare.html", context)
