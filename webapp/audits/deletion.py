"""Deleting an audit safely at any moment, even while a batch of its work is still storing rows
(a batch that was running when the audit was cancelled finishes storing what it made).

The audit's row is locked before its rows are collected, so a batch's insert waits until the
deletion has committed and then fails on its foreign key (the worker stops quietly:
:func:`worker.pipeline.stage_errors`), instead of landing between the collection and the
deletion, where it would make the deletion fail."""

from __future__ import annotations

import logging
import time

from django.db import IntegrityError, OperationalError, transaction

from webapp.audits.models import Audit, GeneratedImage, SyntheticIdentity

log = logging.getLogger(__name__)

#: Tries before giving up on a deletion that keeps colliding with a batch's inserts.
ATTEMPTS = 4


def delete_audit(audit_id: int) -> bool:
    """Delete the audit with every row that refers to it (its files go once the deletion
    commits: webapp/audits/apps.py). True when the audit is gone (now or already), False when
    a running batch's inserts made every attempt fail (nothing was deleted then)."""
    for attempt in range(ATTEMPTS):
        try:
            with transaction.atomic():
                # PostgreSQL: a row lock on the audit holds off new rows that refer to it
                # (identities, images) and locks on its images hold off new analyses and
                # embeddings until this commits. SQLite: the transaction is IMMEDIATE
                # (webapp/settings.py), so no other connection writes until it commits.
                audit = Audit.objects.select_for_update().filter(pk=audit_id).first()
                if audit is None:
                    return True
                # Its identities too: an image's insert checks its identity's key before the
                # audit's, so with the identities unlocked it could hold one of them while
                # waiting for the audit, and the deletion would wait for it (a deadlock).
                for model in (SyntheticIdentity, GeneratedImage):
                    list(model.objects.select_for_update().filter(audit_id=audit_id)
                         .values_list("pk", flat=True))
                audit.delete()
            return True
        except (IntegrityError, OperationalError) as exc:
            # IntegrityError: a row inserted between the collection and the deletion;
            # OperationalError: PostgreSQL broke a deadlock with the batch's inserts by aborting
            # this transaction (or SQLite was busy). Nothing was deleted: try again.
            log.warning("audit %s: deletion attempt %d collided with a batch storing rows (%s)",
                        audit_id, attempt + 1, exc)
            time.sleep(0.2 * (attempt + 1))
    return False
