"""The last stage: the audit's statistics (:func:`worker.results.compute_results`), stored as its
result (summary, comparisons as Parquet, tables as CSV), the dataset zip's large files deflated
once, and the audit marked done.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from exports.files import AuditFiles, save_file
from webapp.audits.models import Audit, AuditResult
from worker.state import Dispatch, State, advance, set_stage, stage_errors

log = logging.getLogger(__name__)


def aggregate(audit_id: int, dispatch: Dispatch) -> None:
    """Compare embeddings, set one global threshold per FR model and target FMR, compute
    per-group rates, store the summary and the comparisons table; mark the audit done."""
    audit = Audit.objects.filter(pk=audit_id).first()
    if audit is None or audit.state != State.AGGREGATING:  # deleted, cancelled, or already moved on
        return
    with stage_errors(audit_id, "computing statistics"):
        set_stage(audit_id, "aggregating", done=0, total=1)
        store_results(audit)
        build_export_cache(audit_id)
        set_stage(audit_id, "aggregating", done=1, total=1)
        advance(audit_id, State.AGGREGATING, State.DONE, finished_at=timezone.now())


def store_results(audit: Audit) -> None:
    """Compute the audit's statistics and store them as its result, replacing an earlier one:
    the summary on the row, the comparisons and the tables as files named for the audit."""
    from exports.comparison_store import comparisons_parquet
    from worker.results import compute_results

    summary, comparisons, extra = compute_results(audit)
    files = AuditFiles(audit.pk)
    name = save_file(files.result("comparisons.parquet"), comparisons_parquet(comparisons))
    tables = {fname: save_file(files.result(fname), df.to_csv(index=False).encode("utf-8"))
              for fname, df in extra.items()}
    AuditResult.objects.update_or_create(audit=audit, defaults={
        "summary": summary, "comparisons_file": name, "tables": tables})


def build_export_cache(audit_id: int) -> None:
    """Deflate the dataset zip's large files once (the export cache); if that fails, the
    downloads build them on the fly, so the audit is not failed for it."""
    from exports.dataset import cacheable_members
    from exports.export_cache import build_export_cache as build

    audit = Audit.objects.select_related("result").get(pk=audit_id)
    try:
        build(audit, cacheable_members(audit))
    except (OSError, ValueError) as exc:
        log.warning("audit %s: export cache not built (%s); downloads build files on the fly",
                    audit_id, exc)
