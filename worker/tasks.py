"""Celery tasks: thin wrappers that load by primary key and call :mod:`worker.pipeline`.

Every task is idempotent (outputs keyed by design cell, state changes by compare-and-set), so
``acks_late`` is safe: a task whose worker dies mid-run is redelivered and simply redone
(``task_reject_on_worker_lost`` and the broker's visibility timeout, webapp/settings.py). The
filesystem broker keeps no taken task: there ``manage.py serve`` sends the lost work again before
it starts a new worker (worker.recovery).
"""

from __future__ import annotations

from celery import shared_task

from worker import pipeline
from worker.dispatch import dispatch

# Transient failures of the database, the broker or the object store (worker.state.
# TRANSIENT_ERRORS) are retried with exponential back-off (1 s, 2 s, 4 s ... capped
# at 60 s, with jitter), five times; any other failure is turned into a failed audit with a
# message by worker.state.stage_errors and never crashes the worker loop.
_options = {"acks_late": True, "ignore_result": True,
            "autoretry_for": pipeline.TRANSIENT_ERRORS, "retry_backoff": True,
            "retry_backoff_max": 60, "retry_jitter": True, "max_retries": 5}


@shared_task(name="worker.tasks.start_audit", **_options)
def start_audit(audit_id: int) -> None:
    pipeline.start(audit_id, dispatch)


@shared_task(name="worker.tasks.sample_identities", **_options)
def sample_identities(audit_id: int) -> None:
    pipeline.sample_identities(audit_id, dispatch)


@shared_task(name="worker.tasks.generate_images", **_options)
def generate_images(audit_id: int, identity_ids: list[int]) -> None:
    pipeline.generate_images(audit_id, identity_ids, dispatch)


@shared_task(name="worker.tasks.score_images", **_options)
def score_images(audit_id: int, image_ids: list[int]) -> None:
    pipeline.score_images(audit_id, image_ids, dispatch)


@shared_task(name="worker.tasks.aggregate", **_options)
def aggregate(audit_id: int) -> None:
    pipeline.aggregate(audit_id, dispatch)
