"""A small audit through a real Celery worker process, on Redis and on the filesystem broker."""

import pytest
from celery import Celery

from generator.config import parse_config
from tests.conftest import WorkerProcess, fresh_dir, redis_unavailable, wait_for
from webapp.audits.models import Audit, GeneratedImage

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker, pytest.mark.slow]

CONFIG = {"name": "worker", "seed": 3, "groups": {"perceived_gender": ["female", "male"]},
          "generator": "dcgan-digiface", "identities_per_group": 3, "factors": {"blur": [2.0], "jpeg": [15]},
          "fr_models": ["mobilefacenet"], "target_fmr": [0.05]}


def sender(broker_url: str, var_dir):
    """A Celery client on the same broker as the worker (the web process's role)."""
    app = Celery("test-sender", broker=broker_url)
    if broker_url.startswith("filesystem"):
        queue = var_dir / "broker" / "queue"
        app.conf.broker_transport_options = {
            "data_folder_in": str(queue), "data_folder_out": str(queue),
            "control_folder": str(var_dir / "broker" / "control"),
            "processed_folder": str(var_dir / "broker" / "processed")}
        for sub in ("queue", "control", "processed"):
            (var_dir / "broker" / sub).mkdir(parents=True, exist_ok=True)
    return app


@pytest.fixture(params=["redis", "filesystem"])
def broker_url(request):
    if request.param == "redis":
        reason = redis_unavailable()
        if reason:
            pytest.skip(reason)
        import redis

        redis.Redis(host="127.0.0.1", port=6379, db=14).flushdb()
        return "redis://127.0.0.1:6379/14"
    return "filesystem://"


def test_a_real_worker_runs_an_audit_to_done(broker_url, alice, media_root, models_available,
                                             tmp_path):
    var_dir = fresh_dir(tmp_path / "var")
    cfg = parse_config(CONFIG)
    audit = Audit.objects.create(owner=alice, name=cfg.name, config=cfg.to_dict(), seed=cfg.seed,
                                 n_images_planned=cfg.n_images)
    worker = WorkerProcess(broker_url, media_root, var_dir, tmp_path / "worker.log")
    try:
        sender(broker_url, var_dir).send_task("worker.tasks.start_audit", args=[audit.pk],
                                              queue="cpu")

        def finished():
            audit.refresh_from_db()
            assert worker.proc.poll() is None, "worker died:\n" + worker.tail()
            return audit.is_final

        wait_for(finished, timeout=300, what=f"audit to finish; worker log:\n{worker.tail()}")
    finally:
        worker.stop()
    assert audit.state == Audit.State.DONE, audit.error + "\n" + worker.tail()
    assert GeneratedImage.objects.filter(audit=audit).count() == 2 * 3 * 4
    point = audit.result.summary["fr_models"]["mobilefacenet"]["operating_points"][0]
    assert set(point["by_group"]) == {"female", "male"}
    # the stages went through the broker, one task per stage or batch
    names = set(audit.tasks.values_list("name", flat=True))
    assert {"sample_identities", "generate_images", "score_images", "aggregate"} <= names
