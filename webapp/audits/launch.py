"""Creating an audit from a validated config: :func:`create_audit` is the one place an audit
row is made (the form and the JSON API through :func:`launch_audit`, which also checks the
models and the queue and enqueues it; ``run_audit`` directly, as it runs the audit in-process).

A user may have at most ``FACEAUDIT_MAX_QUEUED_IMAGES_PER_USER`` images planned in audits that
are not finished yet (queued or running); an audit that would go beyond that is refused with a
message, so one account cannot fill the workers' queue for everyone.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Sum

from generator.config import MAX_IMAGES, AuditConfig
from webapp.audits.models import Audit

#: The default cap: one audit of the largest allowed design, or several smaller ones.
DEFAULT_MAX_QUEUED_IMAGES_PER_USER = MAX_IMAGES


class LaunchRefused(Exception):
    """The audit cannot be launched now; ``str()`` says why and what to do."""


class QueueFull(LaunchRefused):
    """The user's unfinished audits already hold too many images; ``str()`` says what to do."""


class ModelsMissing(LaunchRefused):
    """A face model every audit's scoring needs is missing; ``str()`` names the files."""


def max_queued_images() -> int:
    """The per-user cap on images in unfinished audits (0 or less: no cap)."""
    return int(getattr(settings, "FACEAUDIT_MAX_QUEUED_IMAGES_PER_USER",
                       DEFAULT_MAX_QUEUED_IMAGES_PER_USER))


def queued_images(owner) -> int:
    """Images planned in ``owner``'s audits that are queued or running."""
    total = (Audit.objects.filter(owner=owner).exclude(state__in=Audit.FINAL_STATES)
             .aggregate(total=Sum("n_images_planned"))["total"])
    return int(total or 0)


def queue_problem(owner, n_images: int) -> str | None:
    """Why ``owner`` may not queue ``n_images`` more images now, naming the fix; else None."""
    limit = max_queued_images()
    if limit <= 0:
        return None
    if n_images > limit:
        return (f"This design makes {n_images:,} images, more than the {limit:,} one account may "
                f"have queued or running; use fewer identities per group, groups or factor "
                f"levels.")
    queued = queued_images(owner)
    if queued + n_images > limit:
        return (f"Your unfinished audits already hold {queued:,} images queued or running; "
                f"this one would add {n_images:,}, beyond the limit of {limit:,} per account. "
                f"Wait for them to finish, or cancel one, then launch this audit.")
    return None


def create_audit(owner, config: AuditConfig) -> Audit:
    """The audit row for ``config``, queued, owned by ``owner``."""
    return Audit.objects.create(owner=owner, name=config.name, config=config.to_dict(),
                                seed=config.seed, n_images_planned=config.n_images)


def launch_audit(owner, config: AuditConfig) -> Audit:
    """Create the audit row for ``config`` and enqueue it once the transaction commits.

    Raises :class:`ModelsMissing` when no image could be scored (a required face model is
    missing: refused now rather than failing in the worker), :class:`QueueFull` when the
    owner's queued work would exceed the cap. The owner's row is locked while counting, so two
    simultaneous launches cannot both slip under it.
    """
    from webapp.audits.model_status import scoring_problem
    from worker.dispatch import enqueue_audit

    problem = scoring_problem()
    if problem:
        raise ModelsMissing(problem)
    with transaction.atomic():
        list(get_user_model().objects.select_for_update().filter(pk=owner.pk)
             .values_list("pk", flat=True))
        problem = queue_problem(owner, config.n_images)
        if problem:
            raise QueueFull(problem)
        audit = create_audit(owner, config)
        enqueue_audit(audit.pk)
    return audit
