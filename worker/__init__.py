"""Celery workers: join the framework-free ``generator`` and ``audit`` libraries to the ORM.

- :mod:`worker.celery_app`: the Celery app (settings from Django under the ``CELERY_`` prefix).
- :mod:`worker.tasks`: thin Celery tasks, one per stage; queue ``gpu`` generates, ``cpu`` scores
  and aggregates.
- One module per stage, each callable without Celery: :mod:`worker.sampling_stage` (start,
  identity sampling), :mod:`worker.generation`, :mod:`worker.scoring`,
  :mod:`worker.aggregation`; :mod:`worker.state` is the audit row's state machine (compare-and-
  set moves, progress, which errors are transient), :mod:`worker.identity_judge` the FR model
  that judges whether an edit kept identity, :mod:`worker.resumption` Resume.
  :mod:`worker.pipeline` ties them together (``InlineRunner`` runs every stage in-process for
  ``run_audit``).
- :mod:`worker.results`: ``summary.json`` and the result tables from the stored rows, composed
  from one builder per block (:mod:`worker.summary`; a new block of statistics goes there, and
  its reader in :mod:`audit.summary`).
- :mod:`worker.runtime`: models loaded once per process; :mod:`worker.recovery`: re-sending the
  work a dead worker took from the filesystem broker.
- :mod:`worker.dispatch`: scheduling, cancelling and resuming audit work; the only worker module
  the pages import.

The dataset export, the comparisons store and the streamed zips serve the web process as well
and live in the :mod:`exports` package.

Importing this package does not import torch; only running a generation or scoring stage does.
"""

from worker.celery_app import app as celery_app

__all__ = ["celery_app"]
