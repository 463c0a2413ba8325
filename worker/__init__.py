"""Celery workers: join the framework-free ``generator`` and ``audit`` libraries to the ORM.

- :mod:`worker.celery_app`: the Celery app (settings from Django under the ``CELERY_`` prefix).
- :mod:`worker.tasks`: thin Celery tasks, one per stage; queue ``gpu`` generates, ``cpu`` scores
  and aggregates.
- :mod:`worker.pipeline`: what each stage does, callable without Celery (``run_audit`` uses it).
- :mod:`worker.results`: the audit's statistics from its stored rows.
- :mod:`worker.exports`: the dataset export (manifest, pair lists, comparisons, tables, summary,
  images); :mod:`worker.dataset_card`, :mod:`worker.export_cache` (large members deflated once)
  and :mod:`worker.zip_stream` (the zip streamed to the client) serve it.
- :mod:`worker.comparison_store`: the comparisons table as Parquet in the storage.

Importing this package does not import torch; only running a generation or scoring stage does.
"""

from worker.celery_app import app as celery_app

__all__ = ["celery_app"]
