"""The Celery application. Start a worker with::

    celery -A worker worker -Q gpu,cpu --concurrency 1
"""

import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("faceaudit")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["worker"], related_name="tasks")


@signals.worker_init.connect
def _share_cores(sender=None, **_kwargs) -> None:
    """Record how many processes or threads this worker runs tasks in, before its pool starts,
    so that every pool process (forked, it inherits the environment) can size its onnxruntime
    thread pools to its share of the cores (``worker.runtime.cores_per_process``)."""
    concurrency = getattr(sender, "concurrency", None)
    pool = str(getattr(sender, "pool_cls", "") or "")
    if isinstance(concurrency, int) and concurrency > 0 and "solo" not in pool.lower():
        os.environ["FACEAUDIT_WORKER_PROCESSES"] = str(concurrency)
