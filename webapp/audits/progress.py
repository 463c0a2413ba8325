"""Per-stage progress of an audit, computed from its rows (exact even with many workers)."""

from __future__ import annotations

from typing import Any

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
            "updated_at": audit.updated_at.isoformat()}
