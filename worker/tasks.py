"""Celery tasks: thin wrappers that load by primary key and call :mod:`worker.pipeline`.

Every task is idempotent (outputs keyed by design cell, state changes by compare-and-set), so
``acks_late`` is safe: a task whose worker dies mid-run is redelivered and simply redone.
"""

from __future__ import annotations

from celery import shared_task

from worker import pipeline
from worker.dispatch import dispatch

_options = {"acks_late": True, "ignore_result": True}


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
