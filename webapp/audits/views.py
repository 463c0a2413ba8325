"""Pages and JSON endpoints. Every view requires sign-in and returns 404 for audits the user does
not own (staff see all), so other users' audits are not even confirmed to exist."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from audit.summary import DISPARITY_LABELS, HEADLINE_MEASURES, AuditSummary, OperatingPoint
from webapp.audits.access import owned_audit
from webapp.audits.forms import AuditForm
from webapp.audits.models import Audit
from webapp.audits.progress import progress


@login_required
@require_GET
def audit_list(request: HttpRequest) -> HttpResponse:
    audits = Audit.objects.filter(owner=request.user)
    return render(request, "audits/audit_list.html", {"audits": audits})


@login_required
def audit_create(request: HttpRequest) -> HttpResponse:
    from webapp.audits.launch import LaunchRefused, launch_audit

    form = AuditForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if request.POST.get("action") == "check":
            return render(request, "audits/audit_form.html",
                          {"form": form, "estimate": form.estimate(), "checked": True})
        config = form.config
        assert config is not None
        try:
            audit = launch_audit(request.user, config)
        except LaunchRefused as exc:
            form.add_error(None, str(exc))
            return render(request, "audits/audit_form.html",
                          {"form": form, "estimate": form.estimate()})
        messages.success(request, f"Audit queued: {config.n_images:,} images will be made.")
        return redirect("audits:detail", pk=audit.pk)
    # An invalid form is shown again with its messages (200, as Django's FormView does).
    return render(request, "audits/audit_form.html", {"form": form, "estimate": None})


@login_required
@require_GET
def audit_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The audit page: progress while it runs; when done, the dashboard for the FR model and
    operating point chosen with ``?model=`` and ``?fmr=`` (unknown values fall back to the
    first ones). Everything shown comes from the stored result."""
    audit = owned_audit(request, pk)
    context = {"audit": audit, "progress": progress(audit), "disk_use": disk_use(audit),
               "config_json": json.dumps(audit.config, indent=2)}
    result = getattr(audit, "result", None) if audit.state == Audit.State.DONE else None
    if result is not None and AuditSummary.of(result.summary).models_with_points:
        context.update(_results_context(request, AuditSummary.of(result.summary)))
        context.update(_dashboard_context(audit, result, context["fr_model"],
                                          context["point_index"]))
    return render(request, "audits/audit_detail.html", context)


def _selection(request: HttpRequest, summary: AuditSummary) -> OperatingPoint:
    """The chosen FR model's chosen operating point; unknown or malformed ``model`` / ``fmr``
    parameters fall back to the first model and point."""
    models = summary.models_with_points
    fr_model = request.GET.get("model") if request.GET.get("model") in models else models[0]
    model = summary.model(fr_model)
    labels = model.labels
    return model.points[labels.index(request.GET["fmr"]) if request.GET.get("fmr") in labels
                        else 0]


def _results_context(request: HttpRequest, summary: AuditSummary) -> dict:
    point = _selection(request, summary)
    fr_model, idx, fmrs = point.fr_model, point.index, summary.model(point.fr_model).labels
    acquisition = summary.acquisition.get("by_group", {})
    rows = [{"group": g, **vals, "acquisition": acquisition.get(g, {}), "ci": point.interval(g),
             "rank": point.rankable.get(g, {"rankable": True, "reason": ""})}
            for g, vals in point.by_group.items()]
    disparity = point.raw.get("disparity")
    measures = []
    if disparity:
        measures = [{"label": DISPARITY_LABELS[key], **disparity["measures"][key]}
                    for key in HEADLINE_MEASURES if key in disparity["measures"]]
    checks = summary.generator_checks
    check_rows = [{"group": g, **v} for g, v in checks.get("by_group", {}).items()]
    from webapp.audits.judge_view import judge_info, judged_rows

    return {"summary": summary.raw, "fr_models": summary.models_with_points,
            "check_rows": check_rows, "judge": judge_info(summary), "judged": judged_rows(point),
            "measures": measures, "disparity": disparity,
            "check_overall": checks.get("overall"), "fr_model": fr_model, "fmrs": fmrs,
            "fmr": fmrs[idx], "point_index": idx, "point": point.raw, "rows": rows,
            "model_info": summary.model(fr_model).raw}


# Dashboard ------------------------------------------------------------------------------------

#: Identities per group shown in the sample grids.
GRID_IDENTITIES = 3
_JSON_SCRIPT_ESCAPES = {ord("<"): "\\u003C", ord(">"): "\\u003E", ord("&"): "\\u0026"}
_FIGURE_CACHE: OrderedDict[tuple, tuple[str, list[str]]] = OrderedDict()
_FIGURE_CACHE_SIZE = 32
_FIGURE_LOCK = threading.Lock()


def dashboard_json(result, fr_model: str, point_index: int) -> tuple[str, list[str], list[str]]:
    """All dashboard figures of one FR model and operating point as one JSON object (figure
    key -> plotly figure), safe to place inside a ``<script type="application/json">``, the
    figure keys it holds, and messages about stored tables or charts that could not be used.

    Built once per ``(result, created_at, model, point)`` and kept twice: in this process's
    memory, and as a file beside the result tables (:func:`_stored_figures`) that every other
    web process reads instead of building the figures again."""
    key = (result.pk, result.created_at, fr_model, point_index)
    with _FIGURE_LOCK:
        if key in _FIGURE_CACHE:
            _FIGURE_CACHE.move_to_end(key)
            return _FIGURE_CACHE[key]
    entry = _stored_figures(result, fr_model, point_index)
    with _FIGURE_LOCK:
        _FIGURE_CACHE[key] = entry
        while len(_FIGURE_CACHE) > _FIGURE_CACHE_SIZE:
            _FIGURE_CACHE.popitem(last=False)
    return entry


def _build_figures(result, fr_model: str, point_index: int) -> tuple[str, list[str], list[str]]:
    import plotly.io as pio

    from webapp.audits.dashboard import CHART_TABLES, dashboard_figures
    from webapp.audits.result_tables import load_tables, table_problems

    problems = table_problems(result, CHART_TABLES)
    figures = dashboard_figures(result.summary, load_tables(result, CHART_TABLES),
                                fr_model, point_index, problems)
    text = "{" + ",".join(f"{json.dumps(name)}:{pio.to_json(fig, validate=False)}"
                          for name, fig in figures.items()) + "}"
    return text.translate(_JSON_SCRIPT_ESCAPES), list(figures), problems


def _stored_figures(result, fr_model: str, point_index: int) -> tuple[str, list[str], list[str]]:
    """The figures from ``audits/<pk>/results/dashboard/<stamp>-<selection>.json``, or built now
    and written there. ``<stamp>`` changes whenever the result is stored again; files of
    earlier results are then deleted. A file that cannot be read is built again."""
    import hashlib

    from django.core.files.storage import default_storage

    from exports.files import AuditFiles, keep_built, result_stamp

    stamp = result_stamp(result)
    selection = hashlib.sha256(f"{fr_model}\x00{point_index}".encode()).hexdigest()[:16]
    folder = AuditFiles(result.audit_id).dashboard
    name = f"{folder}/{stamp}-{selection}.json"
    try:
        with default_storage.open(name, "rb") as f:
            stored = json.loads(f.read())
        return stored["charts"], list(stored["keys"]), list(stored["problems"])
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError):  # damaged: replace it
        default_storage.delete(name)
    entry = _build_figures(result, fr_model, point_index)
    keep_built(folder, f"{stamp}-{selection}.json",
               lambda: json.dumps({"charts": entry[0], "keys": entry[1],
                                   "problems": entry[2]}).encode("utf-8"),
               stale=lambda other: not other.startswith(stamp))
    return entry


def _dashboard_context(audit: Audit, result, fr_model: str, point_index: int) -> dict:
    charts_json, figure_keys, problems = dashboard_json(result, fr_model, point_index)
    summary = AuditSummary.of(result.summary)
    point = summary.point(fr_model, point_index)
    return {"charts_json": charts_json, "figure_keys": figure_keys,
            "data_problems": problems,
            "filter_query": urlencode({"model": fr_model, "fmr": point.label}),
            "factor_cells": _factor_cells(result, point),
            "grids": _sample_grids(audit, summary),
            "sentences": _sentences(summary, point, result)}


def _sentences(summary: AuditSummary, point: OperatingPoint, result=None) -> list[str]:
    """Plain-language sentences for the top of the dashboard (:mod:`audit.narrative`): overall
    rates, groups too small to rank, and the highest-versus-lowest group per rate, claimed
    only where the intervals do not overlap; then failure to acquire across groups
    (:func:`audit.narrative.acquisition_sentences`, tested per identity with the stored
    ``quality.csv`` of ``result``). A malformed point gives no sentences rather than a broken
    page."""
    from audit.narrative import operating_point_sentences

    try:
        sentences = operating_point_sentences(point.raw, model=point.fr_model)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        sentences = []
    return sentences + _acquisition_sentences(summary, result)


_ACQUISITION_CACHE: OrderedDict[tuple, list[str]] = OrderedDict()


def _acquisition_sentences(summary: AuditSummary, result=None) -> list[str]:
    """The failure-to-acquire sentences of a result (the same for every model and point), kept
    per ``(result, created_at)`` in this process: the identity-level test relabels identities
    a few thousand times."""
    from audit.acquisition import identity_counts
    from audit.narrative import acquisition_sentences
    from webapp.audits.result_tables import load_table

    key = None if result is None else (result.pk, result.created_at)
    with _FIGURE_LOCK:
        if key is not None and key in _ACQUISITION_CACHE:
            return list(_ACQUISITION_CACHE[key])
    try:
        identities = identity_counts(load_table(result, "quality.csv")) if result else None
        sentences = acquisition_sentences(summary.raw.get("acquisition"), identities)
    except Exception:  # malformed stored data: no sentence rather than a broken page
        sentences = []
    if key is not None:
        with _FIGURE_LOCK:
            _ACQUISITION_CACHE[key] = sentences
            while len(_ACQUISITION_CACHE) > _FIGURE_CACHE_SIZE:
                _ACQUISITION_CACHE.popitem(last=False)
    return list(sentences)


def _factor_cells(result, point: OperatingPoint) -> dict | None:
    """The factor-effect cells as a table of links to their image pairs (the keyboard and
    screen-reader route to what the heat maps show): columns = factor levels, rows = groups.
    Each cell carries its number of pairs (``n_pairs``, an int; None where not stored)."""
    from audit.counts import as_count
    from webapp.audits.charts import _none_if_nan, factor_rows, level_label, variant_key
    from webapp.audits.result_tables import load_table

    targets = AuditSummary.of(result.summary).model(point.fr_model).targets
    rows, _ = factor_rows(load_table(result, "factor_effects.csv"), point, targets)
    if rows.empty:
        return None
    columns: list[tuple[str, str]] = []
    for factor, level in zip(rows["factor"].astype(str), rows["level"], strict=True):
        if (factor, level_label(level)) not in columns:
            columns.append((factor, level_label(level)))
    cells = {(str(r.group), str(r.factor), level_label(r.level)): r
             for r in rows.itertuples(index=False)}
    groups = list(point.by_group) or sorted({g for g, _, _ in cells})
    table = []
    for g in groups:
        out = []
        for factor, label in columns:
            r = cells.get((g, factor, label))
            out.append(None if r is None else {
                "variant": variant_key(factor, label), "n_pairs": as_count(r.n_pairs),
                "mean_change": _none_if_nan(r.mean_change),
                "fnmr_change": _none_if_nan(r.fnmr_change),
                "significant": bool(r.wilcoxon_significant) or bool(r.mcnemar_significant)})
        table.append({"group": g, "cells": out})
    return {"columns": [f"{f} {label}".strip() for f, label in columns], "rows": table}


def _sample_grids(audit: Audit, summary: AuditSummary) -> list[dict]:
    """Per group, the first :data:`GRID_IDENTITIES` identities' images in design order:
    ``[{"group", "variants", "identities": [{"label", "images": [{"id", "variant"}]}]}]``
    (``id`` is None where the identity has no such image)."""
    from webapp.audits.models import GeneratedImage

    images = (GeneratedImage.objects
              .filter(audit=audit, identity__index_in_group__lt=GRID_IDENTITIES)
              .values_list("id", "variant", "identity__group_name", "identity__index_in_group")
              .order_by("identity__group_name", "identity__index_in_group", "id"))
    by_identity: dict[tuple[str, int], dict[str, int]] = {}
    seen_variants: list[str] = []
    for image_id, variant, group, index in images:
        by_identity.setdefault((group, index), {})[variant] = image_id
        if variant not in seen_variants:
            seen_variants.append(variant)
    variants = [v for v in summary.design.get("variants", []) if v in seen_variants]
    variants += [v for v in seen_variants if v not in variants]
    groups = summary.design.get("groups") or sorted({g for g, _ in by_identity})
    grids = []
    for group in groups:
        identities = [{"label": f"identity {index + 1}",
                       "images": [{"id": by_identity[(group, index)].get(v), "variant": v}
                                  for v in variants]}
                      for g, index in sorted(by_identity) if g == group]
        if identities:
            grids.append({"group": group, "variants": variants, "identities": identities})
    return grids


@login_required
@require_GET
def audit_pairs(request: HttpRequest, pk: int) -> HttpResponse:
    """The image pairs behind one factor-effect cell (``?group=`` and ``?variant=``, plus the
    dashboard's ``model`` / ``fmr``): per identity of the group, its baseline, its control and
    the varied image, with the stored mated similarity of each against the baseline and the
    match decision at the threshold the factor effects were computed at. An image without a
    score says why it took no part (:func:`webapp.audits.pair_reasons.pair_reasons`: no face
    found, edit off target, another attribute moved); a compared image the identity judge
    called a different person carries that verdict as a note."""
    from audit.counts import COUNT_KEYS, as_count
    from webapp.audits.charts import factor_rows, level_label
    from webapp.audits.models import GeneratedImage
    from webapp.audits.pair_reasons import pair_reasons
    from webapp.audits.result_tables import load_mated_scores, load_table

    audit = owned_audit(request, pk)
    result = getattr(audit, "result", None) if audit.state == Audit.State.DONE else None
    summary = AuditSummary.of(result.summary if result is not None else None)
    if not summary.models_with_points:
        raise Http404("This audit has no results yet.")
    group, variant = request.GET.get("group", ""), request.GET.get("variant", "")
    images = list(GeneratedImage.objects
                  .filter(audit=audit, identity__group_name=group,
                          variant__in=["baseline", "control", variant])
                  .values("id", "variant", "factor", "level", "identity_id",
                          "identity__index_in_group", "checks", "analysis__face_found"))
    varied = [img for img in images if img["variant"] == variant]
    if not varied or variant in ("baseline", "control"):
        raise Http404("No such group and factor level in this audit.")
    point = _selection(request, summary)
    fr_model = point.fr_model
    factor, level = varied[0]["factor"], level_label(varied[0]["level"]) or variant
    effects, target = factor_rows(load_table(result, "factor_effects.csv"), point,
                                  summary.model(fr_model).targets)
    effect = None
    if not effects.empty:
        match = effects[(effects["group"].astype(str) == group)
                        & (effects["factor"].astype(str) == factor)
                        & (effects["level"].map(level_label) == level_label(varied[0]["level"]))]
        effect = match.iloc[0].to_dict() if not match.empty else None
    if effect:  # counts read back from the table are floats: show them as whole numbers
        effect = {k: (as_count(v) if k in COUNT_KEYS and as_count(v) is not None else v)
                  for k, v in effect.items()}
    threshold = float(effect["threshold"]) if effect and effect.get("threshold") is not None \
        else float(point.threshold)
    mated = load_mated_scores(result)
    mated = mated[mated["fr_model"] == fr_model]
    score_of = dict(zip(mated["image_b"].astype(int), mated["score"].astype(float), strict=True))
    by_identity: dict[int, dict] = {}
    for img in images:
        entry = by_identity.setdefault(img["identity_id"], {
            "index": img["identity__index_in_group"] + 1})
        entry[img["variant"] if img["variant"] in ("baseline", "control") else "varied"] = img
    pairs = []
    for _, entry in sorted(by_identity.items(), key=lambda kv: kv[1]["index"]):
        if "varied" not in entry:
            continue
        base = entry.get("baseline", {})
        row = {"index": entry["index"], "baseline": base.get("id")}
        for key in ("control", "varied"):
            image = entry.get(key, {})
            image_id = image.get("id")
            score = score_of.get(image_id) if image_id is not None else None
            why = pair_reasons(image.get("checks"), image.get("analysis__face_found"),
                               scored=score is not None, baseline_checks=base.get("checks"),
                               baseline_face_found=base.get("analysis__face_found"))
            row[key] = {"id": image_id, "score": score,
                        "match": None if score is None else score >= threshold,
                        "excluded": [r.text for r in why.excluded],
                        "notes": [r.text for r in why.notes]}
        c, v = row["control"]["score"], row["varied"]["score"]
        row["change"] = None if c is None or v is None else v - c
        pairs.append(row)
    context = {"audit": audit, "group": group, "variant": variant, "factor": factor,
               "level": level, "fr_model": fr_model, "fmr": point.label,
               "target": target, "threshold": threshold, "effect": effect, "pairs": pairs,
               "n_matches": sum(bool(p["varied"]["match"]) for p in pairs),
               "n_compared": sum(p["varied"]["score"] is not None for p in pairs),
               "back_query": urlencode({"model": fr_model, "fmr": point.label})}
    return render(request, "audits/pairs.html", context)


@login_required
@require_GET
def audit_image(request: HttpRequest, pk: int, image_id: int) -> FileResponse:
    """One generated image (PNG) of an audit the user may see; 404 otherwise. Images never
    change once stored (keyed by their design cell), so browsers may keep them for a year."""
    from django.core.files.storage import default_storage

    from webapp.audits.models import GeneratedImage

    audit = owned_audit(request, pk)
    image = get_object_or_404(GeneratedImage.objects.only("file", "sha256"), pk=image_id,
                              audit=audit)
    try:
        handle = default_storage.open(image.file, "rb")
    except (FileNotFoundError, OSError):
        raise Http404("The image file is missing.") from None
    response = FileResponse(handle, content_type="image/png")
    response["Cache-Control"] = "private, max-age=31536000, immutable"
    if image.sha256:
        response["ETag"] = f'"{image.sha256}"'
    return response


@login_required
@require_GET
def audit_progress(request: HttpRequest, pk: int) -> JsonResponse:
    """The audit's progress, with its current disk use (the page shows both as they change)."""
    return JsonResponse(progress_with_disk_use(owned_audit(request, pk)))


def progress_with_disk_use(audit: Audit) -> dict:
    """:func:`progress` plus ``disk_use`` (bytes stored so far) and its text: the page's
    ``progress.json`` and the API's progress are this same JSON."""
    from django.template.defaultfilters import filesizeformat

    used = disk_use(audit)
    return {**progress(audit), "disk_use": used,
            "disk_use_text": f"{filesizeformat(used)} on disk"}


@login_required
@require_POST
def audit_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    from worker.dispatch import cancel_audit

    audit = owned_audit(request, pk)
    if cancel_audit(audit.pk):
        messages.info(request, "Audit cancelled. Images made so far are kept.")
    else:
        messages.warning(request, f"The audit had already finished ({audit.get_state_display()}).")
    return redirect("audits:detail", pk=audit.pk)


@login_required
@require_POST
def audit_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete a finished, failed or cancelled audit with its rows and files (the files go once
    the deletion commits: webapp/audits/apps.py). A running audit must be cancelled first, or
    its running batches would write files after the deletion."""
    audit = owned_audit(request, pk)
    if not audit.is_final:
        messages.warning(request, "Cancel the audit first: it is still running, and its running "
                                  "work would write files after the deletion.")
        return redirect("audits:detail", pk=audit.pk)
    name = audit.name
    from webapp.audits.deletion import delete_audit

    if not delete_audit(audit.pk):
        messages.warning(request, "The audit could not be deleted just now: its last running "
                                  "work is still storing results. Try again in a moment.")
        return redirect("audits:detail", pk=audit.pk)
    messages.success(request, f"Deleted audit “{name}” with its images and results.")
    return redirect("audits:list")


@login_required
@require_POST
def audit_resume(request: HttpRequest, pk: int) -> HttpResponse:
    """Retry a failed audit from the stage it had reached (what it produced is kept and
    reused), or re-send the work an unfinished audit still needs."""
    from worker.dispatch import resume_audit

    audit = owned_audit(request, pk)
    messages.info(request, f"Resume: {resume_audit(audit.pk)}.")
    return redirect("audits:detail", pk=audit.pk)


def disk_use(audit: Audit) -> int:
    """Bytes of the audit's files so far, kept for a while (walking thousands of files on every
    progress poll would be slow): until the audit's row changes (every stored batch and stage
    change stamps it), and at most 10 seconds while it runs, as files land before the stamp."""
    from django.core.cache import cache

    from exports.files import disk_usage

    stamp = audit.updated_at.timestamp() if audit.updated_at else 0
    key = f"disk-use:{audit.pk}:{audit.state}:{stamp}"
    value = cache.get(key)
    if value is None:
        value = disk_usage(audit.pk)
        cache.set(key, value, timeout=60 if audit.is_final else 10)
    return value
