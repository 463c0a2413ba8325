"""Scheduling, cancelling and resuming audit work: the only part of ``worker`` the pages use.
Light on purpose: the web process imports this (never :mod:`worker.tasks`), sending tasks by
name; :func:`resume_audit` imports :mod:`worker.pipeline` (no torch) only when called."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

log = logging.getLogger(__name__)

#: While the broker is away (restarting, network blip), keep trying to send for about two
#: minutes (0.5 s, 1 s, ... then every 5 s) before giving up.
PUBLISH_RETRY = {"max_retries": 30, "interval_start": 0.5, "interval_step": 0.5,
                 "interval_max": 5}


def dispatch(name: str, *args: Any) -> None:
    """Send stage ``name`` to its queue (settings.CELERY_TASK_ROUTES) and record the task id on
    the audit (``args[0]``) for cancellation."""
    from webapp.audits.models import AuditTask
    from worker.celery_app import app

    try:
        result = app.send_task(f"worker.tasks.{name}", args=list(args), retry=True,
                               retry_policy=PUBLISH_RETRY)
    except Exception as exc:  # noqa: BLE001 - see below; a second failure propagates
        # After the broker restarted, a pooled producer can keep a dead channel that fails with
        # errors kombu does not retry (seen: AttributeError "'NoneType' object has no attribute
        # 'client'" from the Redis transport). Drop the pool and send once more on a fresh
        # connection, waiting for the broker as above.
        log.warning("sending %s for audit %s failed (%s: %s); retrying on a fresh connection",
                    name, args[0], type(exc).__name__, exc)
        with contextlib.suppress(Exception):
            app.pool.force_close_all()
        with app.connection_for_write() as connection:
            result = app.send_task(f"worker.tasks.{name}", args=list(args), retry=True,
                                   retry_policy=PUBLISH_RETRY, connection=connection)
    AuditTask.objects.create(audit_id=args[0], task_id=result.id, name=name)


def enqueue_audit(audit_id: int) -> None:
    """Schedule a newly created audit once the transaction that created it commits (a worker
    must never look for a row that is not visible yet)."""
    transaction.on_commit(lambda: dispatch("start_audit", audit_id))


def cancel_audit(audit_id: int) -> bool:
    """Mark an unfinished audit cancelled and revoke its queued tasks. Stages that are already
    running notice the state at their next check and stop; what was produced is kept."""
    from webapp.audits.models import Audit, AuditTask
    from worker.celery_app import app

    changed = bool(Audit.objects.filter(pk=audit_id).exclude(state__in=Audit.FINAL_STATES)
                   .update(state=Audit.State.CANCELLED, finished_at=timezone.now()))
    if changed:
        ids = list(AuditTask.objects.filter(audit_id=audit_id).values_list("task_id", flat=True))
        if ids:
            try:
                app.control.revoke(ids)
            except Exception:  # revoking is an optimisation; the state check is what stops work
                log.warning("could not revoke tasks of audit %s", audit_id, exc_info=True)
    return changed


def resume_audit(audit_id: int) -> str:
    """Send again whatever work the audit still needs, after putting a failed audit back in the
    state of the stage it had reached (:func:`worker.pipeline.resume`); returns the sentence that
    says what was sent. The one way the pages and ``manage.py resume_audit`` resume an audit."""
    from worker.pipeline import resume

    return resume(audit_id, dispatch)
