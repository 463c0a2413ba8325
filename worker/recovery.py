"""Sending again the work that a dead worker took with it, on the filesystem broker.

kombu's filesystem transport (the embedded default's broker) hands a task to a worker by moving
its message file out of the queue folder: from then on the message exists only in that worker,
acknowledged or not. A worker that dies (SIGKILL, out of memory, stopped while a task still ran)
loses the tasks it held. Redis, by contrast, hands an unacknowledged task out again after the
visibility timeout (webapp/settings.py), so nothing here is needed there.

``manage.py serve`` calls :func:`recover_lost_work` each time it starts its worker (when it
starts, and after the worker died), at a moment when no worker holds a task: the work of an
unfinished audit that is neither done (judged from its rows) nor waiting in the queue folder is
the work a dead worker took, and :func:`worker.pipeline.resume` sends it again.
"""

from __future__ import annotations

import base64
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

log = logging.getLogger(__name__)

TASK_PREFIX = "worker.tasks."


def loses_taken_tasks() -> bool:
    """Whether this installation's broker forgets a task once a worker has taken it (kombu's
    filesystem transport)."""
    return settings.CELERY_BROKER_URL.startswith("filesystem://")


def queue_folder() -> Path:
    """The folder the filesystem transport keeps waiting messages in."""
    return Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])


def waiting_stage_tasks(folder: Path | None = None) -> dict[int, list[tuple[str, list]]]:
    """The audit stage tasks waiting in the filesystem broker's queue folder, by audit id, as
    ``(stage name, args)``. Files that cannot be read (taken meanwhile, half written) are left
    out: their work then counts as lost and is sent again, which is harmless."""
    waiting: dict[int, list[tuple[str, list]]] = defaultdict(list)
    for path in sorted((folder or queue_folder()).glob("*.msg")):
        task = _read_task(path)
        if task is not None:
            name, args = task
            waiting[args[0]].append((name, args))
    return dict(waiting)


def _read_task(path: Path) -> tuple[str, list] | None:
    """``(stage name, args)`` of one message file (Celery's message protocol 2, JSON body,
    base64-encoded by kombu), or None for a file that is gone, unreadable or not a stage task."""
    try:
        message = json.loads(path.read_bytes())
        name = message["headers"]["task"]
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    if not (isinstance(name, str) and name.startswith(TASK_PREFIX) and args
            and isinstance(args[0], int)):
        return None
    return name.removeprefix(TASK_PREFIX), args


def recover_lost_work(dispatch: Callable[..., None], folder: Path | None = None) -> list[str]:
    """Send again the unfinished work of every running audit (queued, generating, scoring,
    computing statistics) that is neither done nor waiting in the queue folder. Call it only
    while no worker holds a task of this broker (work a live worker holds would be done twice:
    stored once, but computed twice). Returns one sentence per audit, "audit N: what was sent";
    an audit that cannot be resumed is logged and skipped."""
    from webapp.audits.models import Audit
    from worker.pipeline import resume

    waiting = waiting_stage_tasks(folder)
    running = list(Audit.objects.exclude(state__in=Audit.FINAL_STATES).order_by("pk")
                   .values_list("pk", flat=True))
    report = []
    for audit_id in running:
        try:
            sent = resume(audit_id, dispatch, waiting.get(audit_id, []))
            report.append(f"audit {audit_id}: {sent}")
        except Exception:  # one broken audit must not stop the others (or serve) from going on
            log.exception("could not resume audit %s", audit_id)
    return report
