"""The Audit row as the stages' state machine: compare-and-set state changes, progress, failures.

Also the two readings of the row's config that several stages need (:func:`audit_config`,
:func:`latent_factors`) and the batching of ids for the next stage (:func:`chunks`).

Every stage reads and writes its audit's state only through these helpers. A state change is a
compare-and-set update (``filter(state=old).update(state=new)``), so when two batches finish
together exactly one of them advances the audit; :func:`stage_errors` turns whatever a stage
raises into a failed audit with a message for the researcher (or, for a transient database,
broker or object-store failure, into a Celery retry).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.db import InterfaceError, OperationalError
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerConnectionError

from exports.files import AuditFiles
from generator.config import AuditConfig
from webapp.audits.models import Audit

try:  # only a storage on an object store needs botocore; without it there are no such errors
    from botocore import exceptions as _boto
except ImportError:  # pragma: no cover - botocore is in requirements.txt
    _boto = None

log = logging.getLogger(__name__)
State = Audit.State
#: ``dispatch(stage name, *args)``: schedules a stage (Celery's ``send_task`` in the workers, an
#: in-process queue in ``run_audit``).
Dispatch = Callable[..., None]


class StageError(Exception):
    """An expected failure with a message for the researcher (shown on the audit page)."""


class AuditDeleted(Exception):
    """The audit was deleted while one of its stages ran."""


class ObjectStoreBusy(Exception):
    """The object store answered a request with a server error (HTTP 5xx) or asked the client
    to slow down (``SlowDown``): it is up but overloaded or restarting, so the work is retried.
    :func:`stage_errors` raises it in place of botocore's ``ClientError``, whose class alone does
    not tell a passing failure (503) from a permanent one (403, 404)."""


def _object_store_connection_errors() -> tuple[type[Exception], ...]:
    """botocore's errors for an object store that cannot be reached for the moment (refused or
    dropped connection, timeout)."""
    names = ("EndpointConnectionError", "ConnectionClosedError", "ConnectTimeoutError",
             "ReadTimeoutError", "ResponseStreamingError")  # the last: dropped mid-body
    return tuple(getattr(_boto, n) for n in names if hasattr(_boto, n))


#: Failures worth retrying: the database or the broker went away or was locked for a moment
#: (kombu's OperationalError is a connection failure, not an SQL one), or the object store
#: could not be reached or was busy. Stages re-raise them (instead of failing the audit) so
#: that the task is retried with back-off; every write names its file after the work item and
#: overwrites, so a retried batch neither loses nor duplicates a file.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    OperationalError, InterfaceError, BrokerConnectionError, ObjectStoreBusy,
    *_object_store_connection_errors())

#: Error codes of an S3 answer that mean "try again" whatever its HTTP status (``RequestTimeout``
#: is a 400: the connection idled mid-upload).
_RETRY_CODES = frozenset({"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError",
                          "Throttling", "ThrottlingException"})


def object_store_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is an object store's answer worth retrying: a botocore ``ClientError``
    with HTTP status 5xx or a retry code (``SlowDown``, ...)."""
    if _boto is None or not isinstance(exc, _boto.ClientError):
        return False
    response = exc.response if isinstance(exc.response, dict) else {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return int(status) >= 500 or response.get("Error", {}).get("Code") in _RETRY_CODES


def audit_config(audit: Audit) -> AuditConfig:
    """The audit's stored configuration as an :class:`~generator.config.AuditConfig`."""
    return AuditConfig(**audit.config)


def latent_factors(config: AuditConfig) -> list[str]:
    """The config's latent edits (prompt and image factors are not latent)."""
    from generator.config import LATENT_FACTORS

    return [f for f in config.factors if f in LATENT_FACTORS]


def advance(audit_id: int, old: str, new: str, **fields: Any) -> bool:
    """Compare-and-set the audit's state; True for the one caller that made the change."""
    return bool(Audit.objects.filter(pk=audit_id, state=old).update(
        state=new, updated_at=timezone.now(), **fields))


def touch(audit_id: int) -> None:
    """Stamp the audit's ``updated_at``: a worker made progress on it. The page calls an
    unfinished audit stalled when this stamp gets too old (``webapp.audits.progress``)."""
    Audit.objects.filter(pk=audit_id).update(updated_at=timezone.now())


def is_cancelled(audit_id: int) -> bool:
    return Audit.objects.filter(pk=audit_id, state=State.CANCELLED).exists()


def set_stage(audit_id: int, stage: str, **values: Any) -> None:
    """Merge ``values`` into the audit's progress record for ``stage`` (shown on its page)."""
    audit = Audit.objects.only("stage_progress").get(pk=audit_id)
    progress = dict(audit.stage_progress or {})
    progress[stage] = {**progress.get(stage, {}), **values}
    Audit.objects.filter(pk=audit_id).update(stage_progress=progress, updated_at=timezone.now())


def throttled(report: Callable[..., None], every: float = 0.5) -> Callable[..., None]:
    """``report(done, total, *more)`` at most once per ``every`` seconds, and always at the end
    (``done == total``): long loops report often, the database is written seldom."""
    last = [0.0]

    def progress(done: int, total: int, *more: Any) -> None:
        if time.monotonic() - last[0] > every or done == total:
            last[0] = time.monotonic()
            report(done, total, *more)

    return progress


def fail(audit_id: int, message: str) -> None:
    """Mark an unfinished audit failed with ``message`` (a final audit keeps its state)."""
    Audit.objects.filter(pk=audit_id).exclude(state__in=Audit.FINAL_STATES).update(
        state=State.FAILED, error=message, finished_at=timezone.now())


@contextlib.contextmanager
def stage_errors(audit_id: int, stage: str) -> Iterator[None]:
    """Turn a stage's exception into a failed audit with a plain-words error, then re-raise
    nothing: a broken audit must not crash the worker loop."""
    from celery.exceptions import SoftTimeLimitExceeded

    from audit.registry import ModelError
    from generator.backends import GeneratorLoadError
    from generator.identities import GroupFillError

    try:
        try:
            yield
        except Exception as exc:
            if object_store_busy(exc):
                raise ObjectStoreBusy(str(exc)) from exc
            if isinstance(exc, TRANSIENT_ERRORS) or Audit.objects.filter(pk=audit_id).exists():
                raise
            raise AuditDeleted from exc
    except AuditDeleted:
        # Deleted while this batch ran (after a cancel): its inserts failed on their foreign
        # keys, or its rows were gone. Stop quietly and remove any file it wrote after the
        # deletion had removed the audit's files.
        log.info("audit %s was deleted while %s; the batch stops", audit_id, stage)
        AuditFiles(audit_id).delete()
    except TRANSIENT_ERRORS:
        raise  # the task retries with back-off (worker.tasks); the audit keeps its state
    except (StageError, GroupFillError, ModelError, GeneratorLoadError) as exc:
        log.warning("audit %s failed in %s: %s", audit_id, stage, exc)
        fail(audit_id, f"{stage}: {exc}")
    except OSError as exc:
        _fail_for_file_error(audit_id, stage, exc)
    except SoftTimeLimitExceeded:
        fail(audit_id, f"{stage}: the stage ran past its time limit; try a smaller audit or "
                       "raise FACEAUDIT_TASK_SOFT_TIME_LIMIT")
    except Exception as exc:
        log.exception("audit %s: unexpected error in %s", audit_id, stage)
        fail(audit_id, f"{stage}: internal error ({type(exc).__name__}: {exc}). The worker log "
                       "has the details; please report it.")


def _fail_for_file_error(audit_id: int, stage: str, exc: OSError) -> None:
    """A full disk is the researcher's to fix (and the work so far is kept); any other file
    error is unexpected and logged with its traceback."""
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        log.exception("audit %s: unexpected error in %s", audit_id, stage)
        fail(audit_id, f"{stage}: could not read or write a file ({exc}). The worker log "
                       "has the details.")
    else:
        log.warning("audit %s: disk full in %s: %s", audit_id, stage, exc)
        fail(audit_id, f"{stage}: the disk is full ({exc.strerror}). Free some space "
                       "(or delete old audits), then retry the audit: what was made so far "
                       "is kept.")


def chunks(items: list[int], size: int) -> Iterator[list[int]]:
    """``items`` in consecutive batches of ``size`` (the last one shorter)."""
    for i in range(0, len(items), size):
        yield items[i:i + size]
