"""Celery workers: join the framework-free ``generator`` and ``audit`` libraries to the ORM.

- :mod:`worker.celery_app`: the Celery app (settings from Django under the ``CELERY_`` prefix).
- :mod:`worker.tasks`: thin Celery tasks, one per stage; queue ``gpu`` generates, ``cpu`` scores
  and aggregates.
- :mod:`worker.pipeline`: what each stage does, callable without Celery (``run_audit`` uses it).
- :mod:`worker.exports`: manifest, comparisons and summary files, and the streamed zip.

Importing this package does not import torch; only running a generation or scoring stage does.
"""

from worker.celery_app import app as celery_app

__all__ = ["celery_app"]
