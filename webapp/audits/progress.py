"""Per-stage progress of an audit, computed from its rows (exact even with many workers)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from webapp.audits.models import Audit, FaceAnalysis, GeneratedImage

ORDER = ["queued", "generating", "scoring", "aggregating", "done"]


def progress(audit: Audit) -> dict[str, Any]:
    images_total = audit.n_images_planned
    sampling = dict((audit.stage_progress or {}).get("sampling", {}))
    aggregating = dict((audit.stage_progress or {}).get("aggregating", {}))
    identities_total = sampling.get("total") or audit.n_identities_planned
    stages = [
        {"key": "sampling", "label": "Sampling identities per group",
         "done": int(sampling.get("done", 0)), "total": int(identities_total),
         "detail": (f"{sampling['candidates']:,} candidates tried"
                    if sampling.get("candidates") else "")},
        {"key": "generating", "label": "Generating images",
         "done": GeneratedImage.objects.filter(audit=audit).count(), "total": images_total,
         "detail": ""},
        {"key": "scoring", "label": "Scoring images (detection, FR embeddings, sensors)",
         "done": FaceAnalysis.objects.filter(image__audit=audit).count(), "total": images_total,
         "detail": ""},
        {"key": "aggregating", "label": "Computing statistics",
         "done": int(aggregating.get("done", 0)), "total": int(aggregating.get("total", 1)),
         "detail": ""},
    ]
    for s in stages:
        s["percent"] = round(100 * s["done"] / s["total"]) if s["total"] else 0
    return {"id": audit.pk, "state": audit.state, "state_label": audit.get_state_display(),
            "final": audit.is_final, "error": audit.error, "stages": stages,
            "updated_at": audit.updated_at.isoformat(), **stall(audit)}


def stall(audit: Audit) -> dict[str, Any]:
    """``{"idle_seconds", "stalled", "stalled_message"}``: how long ago a worker last stored
    progress for the audit (``updated_at``, stamped by every batch and stage change), and
    whether that is longer than FACEAUDIT_STALLED_AFTER for an unfinished audit: its worker
    may have stopped (a task of a worker that died is only handed out again after the broker's
    visibility timeout), or none is running."""
    idle = max(0.0, (timezone.now() - audit.updated_at).total_seconds()) if audit.updated_at \
        else 0.0
    stalled = not audit.is_final and idle > settings.FACEAUDIT_STALLED_AFTER
    message = ""
    if stalled:
        minutes = int(idle // 60)
        waiting = ("No worker has taken this audit" if audit.state == Audit.State.QUEUED
                   else "No worker has stored progress for this audit")
        message = (f"{waiting} for {minutes} minutes. Check that a worker is running "
                   "(./faceaudit up starts one), then press Retry: it sends the unfinished work "
                   "again and keeps everything already made.")
    return {"idle_seconds": round(idle, 1), "stalled": stalled, "stalled_message": message}
