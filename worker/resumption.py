"""Resuming an unfinished audit: send again whatever work it still needs, judged from its rows.

Used by the page's Retry button, the admin, ``manage.py resume_audit`` and ``serve`` (through
:mod:`worker.recovery`, which also says which of the audit's tasks still wait in the broker's
queue, so their work is not sent twice). A failed audit is first put back in the state of the
stage it had reached.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import models

from generator.design import plan_design
from webapp.audits.models import Audit, FaceAnalysis, GeneratedImage, SyntheticIdentity
from worker.generation import finish_generation
from worker.scoring import finish_scoring
from worker.state import Dispatch, State, audit_config, chunks

#: A stage task waiting in the broker's queue: ``(stage name, args)``, args as sent.
Waiting = tuple[str, list]


def resume(audit_id: int, dispatch: Dispatch, waiting: Iterable[Waiting] = ()) -> str:
    """Send again whatever work an unfinished audit still needs, judged from its rows; a failed
    audit is first put back in the state of the stage it had reached (its error cleared).

    ``waiting``: the audit's stage tasks known to be still in the broker's queue, as ``(stage
    name, args)`` (``worker.recovery`` reads them); the work they carry is not sent again.

    Safe to call at any time, also while workers are busy with the audit: every stage is
    idempotent, so work sent twice is stored once (and a batch that finds its work done skips
    it). Returns a sentence that says what was sent (for the page, the admin, ``manage.py
    resume_audit`` and ``serve``).
    """
    audit = Audit.objects.get(pk=audit_id)
    if audit.state in (State.DONE, State.CANCELLED):
        return f"nothing to resume: the audit is {audit.get_state_display().lower()}"
    design = plan_design(audit_config(audit))
    if audit.state == State.FAILED:
        stage = stage_from_rows(audit, design.n_identities)
        if not Audit.objects.filter(pk=audit_id, state=State.FAILED).update(
                state=stage, error="", finished_at=None):
            return "nothing to resume: the audit changed state meanwhile"
        audit.refresh_from_db()
    waiting = list(waiting)
    if audit.state == State.QUEUED:
        return _send_once(audit_id, "start_audit", waiting, dispatch, "start")
    if audit.state == State.GENERATING:
        return _resume_generation(audit, design, waiting, dispatch)
    if audit.state == State.SCORING:
        return _resume_scoring(audit, waiting, dispatch)
    return _send_once(audit_id, "aggregate", waiting, dispatch, "statistics")


def stage_from_rows(audit: Audit, n_identities: int) -> str:
    """The state a failed audit resumes in, judged from what it has produced."""
    if (SyntheticIdentity.objects.filter(audit=audit).count() < n_identities
            or GeneratedImage.objects.filter(audit=audit).count() < audit.n_images_planned):
        return State.GENERATING
    if FaceAnalysis.objects.filter(image__audit=audit).count() < audit.n_images_planned:
        return State.SCORING
    return State.AGGREGATING


def _send_once(audit_id: int, name: str, waiting: list[Waiting], dispatch: Dispatch,
               what: str) -> str:
    """Send stage ``name`` (no batch) again unless it is waiting in the queue."""
    if any(n == name for n, _ in waiting):
        return f"{what} is waiting in the queue"
    dispatch(name, audit_id)
    return f"{what} sent again"


def _resume_generation(audit: Audit, design, waiting: list[Waiting], dispatch: Dispatch) -> str:
    """Identity sampling if it is unfinished, else the identities that lack images, else the
    move to scoring."""
    from django.conf import settings

    if SyntheticIdentity.objects.filter(audit=audit).count() < design.n_identities:
        return _send_once(audit.pk, "sample_identities", waiting, dispatch, "identity sampling")
    missing = list(SyntheticIdentity.objects.filter(audit=audit)
                   .annotate(n=models.Count("images")).filter(n__lt=len(design.variants))
                   .order_by("id").values_list("id", flat=True))
    if not missing:
        finish_generation(audit.pk, design.n_images, dispatch)
        return "generation complete; scoring sent"
    return _send_batches(audit.pk, "generate_images", missing, settings.FACEAUDIT_GENERATE_BATCH,
                         waiting, dispatch, ("generation", "identities"))


def _resume_scoring(audit: Audit, waiting: list[Waiting], dispatch: Dispatch) -> str:
    """The images without an analysis, else the move to statistics."""
    from django.conf import settings

    missing = list(GeneratedImage.objects.filter(audit=audit, analysis__isnull=True)
                   .order_by("id").values_list("id", flat=True))
    if not missing:
        finish_scoring(audit.pk, audit.n_images_planned, dispatch)
        return "scoring complete; statistics sent"
    return _send_batches(audit.pk, "score_images", missing, settings.FACEAUDIT_SCORE_BATCH,
                         waiting, dispatch, ("scoring", "images"))


def _send_batches(audit_id: int, name: str, missing: list[int], size: int,
                  waiting: list[Waiting], dispatch: Dispatch, words: tuple[str, str]) -> str:
    """Send, in batches of ``size``, the ``missing`` ids (identities or images) that no waiting
    ``name`` batch carries; a sentence that says what was sent, ``words`` naming the stage and
    what it works on."""
    queued = {i for n, args in waiting if n == name and len(args) > 1 for i in args[1]}
    lost = [i for i in missing if i not in queued]
    for chunk in chunks(lost, size):
        dispatch(name, audit_id, chunk)
    stage, noun = words
    if not lost:
        return f"{stage} of {len(missing)} {noun} is waiting in the queue"
    sentence = f"{stage} sent again for {len(lost)} {noun}"
    if len(lost) < len(missing):
        sentence += f" ({len(missing) - len(lost)} more waiting in the queue)"
    return sentence
