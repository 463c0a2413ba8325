"""Celery workers: join the framework-free ``generator`` and ``audit`` libraries to the ORM.

- :mod:`worker.celery_app`: the Celery app (settings from Django under the ``CELERY_`` prefix).
- :mod:`worker.tasks`: thin Celery tasks, one per stage; queue ``gpu`` generates, ``cpu`` scores
  and aggregates.
- :mod:`worker.pipeline`: what each stage does, callable without Celery (``run_audit`` uses it).
- :mod:`worker.results`: the audit's statistics from its stored rows.
- :mod:`worker.dispatch`: scheduling, cancelling and resuming audit work; the only worker module
  the pages import.

The dataset export, the comparisons store and the streamed zips serve the web process as well
and live in the :mod:`exports` package.

Importing this package does not import torch; only running a generation or scoring stage does.
"""

from worker.celery_app import app as celery_app

__all__ = ["celery_app"]
