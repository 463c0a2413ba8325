"""What each stage of an audit does, independent of Celery: the stages by name, and a runner.

Stages (the Audit row's state in brackets)::

    start [queued -> generating] -> sample_identities -> generate_images x batches
      -> [generating -> scoring] -> score_images x batches
      -> [scoring -> aggregating] -> aggregate -> [done]

Each stage receives a ``dispatch(name, *args)`` callable that schedules the next stage: Celery's
``send_task`` in the workers, an in-process queue in ``run_audit``. Every stage is idempotent:
outputs are keyed by design cell, a batch skips the cells it finds done and overwrites the rest,
state changes are compare-and-set updates (``filter(state=old).update(state=new)``), so a batch
that is sent twice does its work once, and two batches that finish together advance the audit
exactly once.

Each stage lives in a module named for its job; this module names them for the tasks
(:mod:`worker.tasks`), ``run_audit`` and the tests:

- :mod:`worker.state`: compare-and-set state changes, stage progress, failures
  (:func:`stage_errors`, :class:`StageError`, :data:`TRANSIENT_ERRORS`);
- :mod:`worker.sampling_stage`: :func:`start` and :func:`sample_identities`;
- :mod:`worker.identity_judge`: the model and cut-off that decide whether an edit kept the person;
- :mod:`worker.generation`: :func:`generate_images`; :mod:`worker.image_files` the PNG files;
- :mod:`worker.scoring`: :func:`score_images`;
- :mod:`worker.aggregation`: :func:`aggregate` (statistics from :mod:`worker.results`);
- :mod:`worker.resumption`: :func:`resume`, for an audit whose work was lost or failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from webapp.audits.models import Audit
from worker.aggregation import aggregate
from worker.aggregation import build_export_cache as _build_export_cache  # noqa: F401  (tests)
from worker.generation import generate_images
from worker.image_files import encode_png, read_image
from worker.resumption import Waiting, resume
from worker.sampling_stage import sample_identities, start
from worker.scoring import score_images
from worker.state import TRANSIENT_ERRORS, AuditDeleted, Dispatch, StageError, stage_errors

STAGES: dict[str, Callable[..., None]] = {
    "start_audit": start,
    "sample_identities": sample_identities,
    "generate_images": generate_images,
    "score_images": score_images,
    "aggregate": aggregate,
}


class InlineRunner:
    """Runs an audit's stages in this process, in order (for ``run_audit`` and tests)."""

    def __init__(self, on_stage: Callable[[str, tuple], None] | None = None):
        self.queue: list[tuple[str, tuple]] = []
        self.on_stage = on_stage

    def dispatch(self, name: str, *args: Any) -> None:
        self.queue.append((name, args))

    def run(self, audit_id: int) -> Audit:
        self.dispatch("start_audit", audit_id)
        return self.drain(audit_id)

    def drain(self, audit_id: int) -> Audit:
        """Run what has been dispatched (and what that dispatches) until nothing is left."""
        while self.queue:
            name, args = self.queue.pop(0)
            if self.on_stage is not None:
                self.on_stage(name, args)
            STAGES[name](*args, dispatch=self.dispatch)
        return Audit.objects.get(pk=audit_id)


__all__ = ["STAGES", "TRANSIENT_ERRORS", "AuditDeleted", "Dispatch", "InlineRunner", "StageError",
           "Waiting", "aggregate", "encode_png", "generate_images", "read_image", "resume",
           "sample_identities", "score_images", "stage_errors", "start"]
