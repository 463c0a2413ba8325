"""Pages and JSON endpoints. Every view requires sign-in and returns 404 for audits the user does
not own (staff see all), so other users' audits are not even confirmed to exist."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST

from webapp.audits.forms import AuditForm
from webapp.audits.models import Audit
from webapp.audits.progress import progress


def _owned(request: HttpRequest, pk: int) -> Audit:
    qs = Audit.objects.all() if request.user.is_staff else Audit.objects.filter(owner=request.user)
    return get_object_or_404(qs, pk=pk)


@login_required
@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    audits = Audit.objects.filter(owner=request.user)
    return render(request, "audits/audit_list.html", {"audits": audits})


@login_required
def audit_create(request: HttpRequest) -> HttpResponse:
    from worker.dispatch import enqueue_audit

    form = AuditForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if request.POST.get("action") == "check":
            return render(request, "audits/audit_form.html",
                          {"form": form, "estimate": form.estimate(), "checked": True})
        config = form.config
        assert config is not None
        with transaction.atomic():
            audit = Audit.objects.create(owner=request.user, name=config.name,
                                         config=config.to_dict(), seed=config.seed,
                                         n_images_planned=config.n_images)
            enqueue_audit(audit.pk)
        messages.success(request, f"Audit queued: {config.n_images:,} images will be made.")
        return redirect("audits:detail", pk=audit.pk)
    # An invalid form is shown again with its messages (200, as Django's FormView does).
    return render(request, "audits/audit_form.html", {"form": form, "estimate": None})


@login_required
@require_GET
def audit_detail(request: HttpRequest, pk: int) -> HttpResponse:
    audit = _owned(request, pk)
    context = {"audit": audit, "progress": progress(audit),
               "config_json": json.dumps(audit.config, indent=2)}
    result = getattr(audit, "result", None) if audit.state == Audit.State.DONE else None
    if result is not None:
        context.update(_results_context(request, result.summary))
    return render(request, "audits/audit_detail.html", context)


def _results_context(request: HttpRequest, summary: dict) -> dict:
    from webapp.audits.charts import group_rates_figure

    models = list(summary.get("fr_models", {}))
    fr_model = request.GET.get("model") if request.GET.get("model") in models else models[0]
    points = summary["fr_models"][fr_model]["operating_points"]
    fmrs = [p.get("label") or f"FMR {p['target_fmr']:g}" for p in points]
    idx = fmrs.index(request.GET["fmr"]) if request.GET.get("fmr") in fmrs else 0
    point = points[idx]
    acquisition = summary.get("acquisition", {}).get("by_group", {})
    boot = point.get("bootstrap", {}).get("by_group", {})
    rankable = point.get("rankable", {})
    rows = [{"group": g, **vals, "acquisition": acquisition.get(g, {}), "ci": boot.get(g, {}),
             "rank": rankable.get(g, {"rankable": True, "reason": ""})}
            for g, vals in point["by_group"].items()]
    disparity = point.get("disparity")
    measures = []
    if disparity:
        labels = {"fnmr_max_min_ratio": "FNMR max/min ratio", "fmr_max_min_ratio":
                  "FMR max/min ratio", "fdr": "Fairness Discrepancy Rate (1 = fair)",
                  "garbe": "GARBE (0 = fair)"}
        measures = [{"label": label, **disparity["measures"][key]}
                    for key, label in labels.items() if key in disparity["measures"]]
    checks = summary.get("generator_checks", {})
    check_rows = [{"group": g, **v} for g, v in checks.get("by_group", {}).items()]
    return {"summary": summary, "fr_models": models, "check_rows": check_rows,
            "measures": measures, "disparity": disparity,
            "check_overall": checks.get("overall"), "fr_model": fr_model, "fmrs": fmrs,
            "fmr": fmrs[idx], "point": point, "rows": rows,
            "model_info": summary["fr_models"][fr_model],
            "chart": json.loads(group_rates_figure(point, fr_model).to_json())}


@login_required
@require_GET
def audit_progress(request: HttpRequest, pk: int) -> JsonResponse:
    return JsonResponse(progress(_owned(request, pk)))


@login_required
@require_POST
def audit_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    from worker.dispatch import cancel_audit

    audit = _owned(request, pk)
    if cancel_audit(audit.pk):
        messages.info(request, "Audit cancelled. Images made so far are kept.")
    else:
        messages.warning(request, f"The audit had already finished ({audit.get_state_display()}).")
    return redirect("audits:detail", pk=audit.pk)


@login_required
@require_GET
def audit_download(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    from worker.exports import stream_zip

    audit = _owned(request, pk)
    if not audit.images.exists():
        raise Http404("This audit has no images yet.")
    filename = f"faceaudit-{audit.pk}-{slugify(audit.name)[:60] or 'audit'}.zip"
    response = StreamingHttpResponse(stream_zip(audit), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
