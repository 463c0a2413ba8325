"""Jobs that survive faults: a failed audit resumed, a worker killed with SIGKILL mid-audit, the
broker restarted mid-audit, two users' audits at once.

The reference for "the same statistics" is an uninterrupted in-process run of the same config
and seed (``InlineRunner``), compared on every operating point's threshold and per-group counts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest
from celery import Celery

from generator.config import parse_config
from tests.conftest import WorkerProcess, fresh_dir, redis_unavailable, wait_for
from webapp.audits.models import Audit, FaceAnalysis, GeneratedImage
from worker import pipeline, state
from worker.pipeline import InlineRunner

CONFIG = {"name": "faults", "seed": 5, "groups": {"perceived_gender": ["female", "male"]},
          "generator": "dcgan-digiface", "identities_per_group": 4, "factors": {"blur": [2.0], "jpeg": [15]},
          "fr_models": ["mobilefacenet"], "target_fmr": [0.05]}


def create(owner, config=CONFIG) -> Audit:
    cfg = parse_config(config)
    return Audit.objects.create(owner=owner, name=cfg.name, config=cfg.to_dict(), seed=cfg.seed,
                                n_images_planned=cfg.n_images)


def fingerprint(audit: Audit) -> dict:
    """What must not depend on faults: image hashes per design cell and every operating point's
    threshold and per-group counts."""
    images = sorted((i.identity.group_name, i.identity.index_in_group, i.variant, i.sha256)
                    for i in GeneratedImage.objects.filter(audit=audit).select_related("identity"))
    points = {m: [(round(p["threshold"], 9),
                   {g: (r["n_mated"], r["false_non_matches"], r["n_nonmated"], r["false_matches"])
                    for g, r in p["by_group"].items()})
                  for p in info["operating_points"]]
              for m, info in audit.result.summary["fr_models"].items()}
    return {"images": images, "points": points}


def assert_designed_images(audit: Audit) -> None:
    cfg = parse_config(audit.config)
    cells = list(GeneratedImage.objects.filter(audit=audit)
                 .values_list("identity_id", "variant"))
    assert len(cells) == cfg.n_images, (len(cells), cfg.n_images)
    assert len(set(cells)) == len(cells)  # no duplicate design cell
    assert FaceAnalysis.objects.filter(image__audit=audit).count() == cfg.n_images


# --- in process: resume after a failure ------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.slow
def test_a_failed_audit_resumes_where_it_stopped_with_the_same_results(alice, media_root,
                                                                       models_available):
    reference = InlineRunner().run(create(alice).pk)
    assert reference.state == Audit.State.DONE

    audit = create(alice)
    scored_batches = []

    def fail_after_first_score_batch(name, args):
        if name == "score_images":
            scored_batches.append(args)
            if len(scored_batches) == 2:  # the second scoring batch finds the audit failed
                state.fail(audit.pk, "scoring images: disk full (simulated)")

    from django.test import override_settings

    with override_settings(FACEAUDIT_SCORE_BATCH=8):
        runner = InlineRunner(on_stage=fail_after_first_score_batch)
        failed = runner.run(audit.pk)
        assert failed.state == Audit.State.FAILED
        produced = GeneratedImage.objects.filter(audit=audit).count()
        scored = FaceAnalysis.objects.filter(image__audit=audit).count()
        assert produced == failed.n_images_planned and 0 < scored < produced  # kept, not lost

        runner = InlineRunner()
        message = pipeline.resume(audit.pk, runner.dispatch)
        assert message == f"scoring sent again for {produced - scored} images"
        done = runner.drain(audit.pk)
    assert done.state == Audit.State.DONE, done.error
    assert done.error == ""
    assert_designed_images(done)
    assert fingerprint(done) == fingerprint(reference)
    # resuming a finished audit sends nothing
    assert pipeline.resume(audit.pk, runner.dispatch).startswith("nothing to resume")
    assert runner.queue == []


# --- real workers on Redis --------------------------------------------------------------------------

def sender(broker_url: str) -> Celery:
    return Celery("test-sender", broker=broker_url)


@pytest.fixture
def redis_db14():
    reason = redis_unavailable()
    if reason:
        pytest.skip(reason)
    import redis

    redis.Redis(host="127.0.0.1", port=6379, db=14).flushdb()
    return "redis://127.0.0.1:6379/14"


def start_worker(broker_url, media_root, var_dir, log) -> WorkerProcess:
    """A worker whose abandoned tasks come back after 8 s (instead of the production default of
    the hard time limit + 5 minutes), looked for every second."""
    os.environ["FACEAUDIT_VISIBILITY_TIMEOUT"] = "8"
    os.environ["FACEAUDIT_RESTORE_INTERVAL"] = "1"
    try:
        return WorkerProcess(broker_url, media_root, var_dir, log)
    finally:
        del os.environ["FACEAUDIT_VISIBILITY_TIMEOUT"], os.environ["FACEAUDIT_RESTORE_INTERVAL"]


def wait_done(audit: Audit, worker: WorkerProcess, timeout: float = 300) -> None:
    def finished():
        audit.refresh_from_db()
        assert worker.proc.poll() is None, "worker died:\n" + worker.tail()
        return audit.is_final

    wait_for(finished, timeout=timeout, interval=0.3, what="the audit to finish")
    assert audit.state == Audit.State.DONE, audit.error + "\n" + worker.tail()


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
@pytest.mark.slow
def test_a_worker_killed_mid_audit_is_replaced_and_the_audit_finishes_exactly(
        redis_db14, alice, media_root, models_available, tmp_path):
    reference = InlineRunner().run(create(alice).pk)
    expected = fingerprint(reference)

    audit = create(alice)
    var_dir = fresh_dir(tmp_path / "var")
    first = start_worker(redis_db14, media_root, var_dir, tmp_path / "worker1.log")
    try:
        sender(redis_db14).send_task("worker.tasks.start_audit", args=[audit.pk], queue="cpu")
        # kill it while it is generating (some images exist, not all)
        wait_for(lambda: GeneratedImage.objects.filter(audit=audit).exists(), timeout=180,
                 interval=0.1, what="the first images")
        os.killpg(first.proc.pid, signal.SIGKILL)
        first.proc.wait()
    finally:
        first.stop()
    audit.refresh_from_db()
    made = GeneratedImage.objects.filter(audit=audit).count()
    assert not audit.is_final and made < audit.n_images_planned, (audit.state, made)

    second = start_worker(redis_db14, media_root, var_dir, tmp_path / "worker2.log")
    try:
        wait_done(audit, second)
    finally:
        second.stop()
    assert_designed_images(audit)
    assert fingerprint(audit) == expected


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateRedis:
    """A redis-server of our own (append-only file on, as a production broker should run), so the
    test can kill and restart it without touching the machine's shared Redis."""

    def __init__(self, folder):
        self.folder, self.port = folder, free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.folder), "--appendonly", "yes", "--appendfsync", "always",
             "--save", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        wait_for(lambda: _pings(redis, self.port), timeout=20, interval=0.2,
                 what="the private redis-server")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def _pings(redis, port: int) -> bool:
    try:
        return bool(redis.Redis(host="127.0.0.1", port=port, socket_timeout=1).ping())
    except Exception:
        return False


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
@pytest.mark.slow
def test_the_broker_restarting_mid_audit_loses_nothing(alice, media_root, models_available,
                                                       tmp_path):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install -y redis-server)")
    reference = InlineRunner().run(create(alice).pk)
    expected = fingerprint(reference)

    broker = PrivateRedis(fresh_dir(tmp_path / "redis"))
    broker.start()
    audit = create(alice)
    worker = start_worker(broker.url, media_root, fresh_dir(tmp_path / "var"),
                          tmp_path / "worker.log")
    try:
        sender(broker.url).send_task("worker.tasks.start_audit", args=[audit.pk], queue="cpu")
        wait_for(lambda: GeneratedImage.objects.filter(audit=audit).exists(), timeout=180,
                 interval=0.1, what="the first images")
        broker.kill()  # the broker dies while the worker is busy ...
        time.sleep(8)  # long enough for the worker to finish a batch and try to send the next
        broker.start()  # ... and comes back with its append-only file
        wait_done(audit, worker)
    finally:
        worker.stop()
        if broker.proc and broker.proc.poll() is None:
            broker.kill()
    print(worker.tail(200))  # shown when the test fails: how the worker got through the outage
    assert_designed_images(audit)
    assert fingerprint(audit) == expected


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
@pytest.mark.slow
def test_two_users_audits_run_at_once_and_both_finish_correctly(
        redis_db14, alice, bob, media_root, models_available, tmp_path):
    other = {**CONFIG, "name": "bob's", "seed": 9, "factors": {"noise": [20.0]}}
    expected = {"alice": fingerprint(InlineRunner().run(create(alice).pk)),
                "bob": fingerprint(InlineRunner().run(create(bob, other).pk))}
    audits = {"alice": create(alice), "bob": create(bob, other)}
    worker = start_worker(redis_db14, media_root, fresh_dir(tmp_path / "var"),
                          tmp_path / "worker.log")
    try:
        app = sender(redis_db14)
        for audit in audits.values():
            app.send_task("worker.tasks.start_audit", args=[audit.pk], queue="cpu")
        for audit in audits.values():
            wait_done(audit, worker)
    finally:
        worker.stop()
    for who, audit in audits.items():
        assert audit.owner.username == who
        assert_designed_images(audit)
        assert fingerprint(audit) == expected[who]


@pytest.mark.django_db
def test_a_send_that_fails_on_a_dead_pooled_channel_is_sent_again_on_a_fresh_connection(
        redis_db14, alice, settings, monkeypatch):
    """After a broker restart, kombu's pooled producer was seen failing with AttributeError
    (a channel whose connection is gone); dispatch drops the pool and sends on a fresh
    connection to the real broker."""
    import redis

    from worker import dispatch as dispatch_module
    from worker.celery_app import app

    monkeypatch.setattr(app.conf, "broker_url", redis_db14)
    real_send = app.send_task
    calls = []

    def flaky_send(*args, **kwargs):
        calls.append(kwargs.get("connection"))
        if len(calls) == 1:
            raise AttributeError("'NoneType' object has no attribute 'client'")
        return real_send(*args, **kwargs)

    monkeypatch.setattr(app, "send_task", flaky_send)
    audit = Audit.objects.create(owner=alice, name="x", config={}, seed=1)
    try:
        dispatch_module.dispatch("aggregate", audit.pk)
    finally:  # the app's connection pool was rebuilt for this broker: drop it again
        app.pool.force_close_all()
        app._pool = None
    assert len(calls) == 2 and calls[0] is None and calls[1] is not None
    queued = redis.Redis(host="127.0.0.1", port=6379, db=14).llen("cpu")
    assert queued == 1  # the message reached the broker once
    assert list(audit.tasks.values_list("name", flat=True)) == ["aggregate"]
