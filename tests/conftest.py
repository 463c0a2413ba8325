"""Shared fixtures: personas, model directory, a real Celery worker process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def model_dir() -> Path:
    return Path(os.environ.get("FACEAUDIT_MODEL_DIR", ROOT.parent / "shared" / "models"))


@pytest.fixture
def models_available():
    d = model_dir()
    if not (d / "scrfd_500m_bnkps.onnx").exists():
        pytest.skip(f"face models not found in {d}; set FACEAUDIT_MODEL_DIR")
    return d


@pytest.fixture
def media_root(settings, tmp_path):
    """A private media folder for one test (the worker subprocess gets it via the env)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_ROOT.mkdir()
    # FileSystemStorage listens for setting_changed and drops its cached location.
    return settings.MEDIA_ROOT


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-pass-123")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password="bob-pass-123")


def tcp_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def redis_unavailable() -> str | None:
    if not tcp_reachable("127.0.0.1", 6379):
        return "Redis is not reachable on 127.0.0.1:6379"
    try:
        import redis

        redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping()
    except Exception as exc:
        return f"Redis did not answer PING: {exc}"
    return None


def database_url_for_subprocess() -> str:
    """The URL of the test database this session created, for processes we start."""
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    if connection.vendor == "postgresql":
        return f"postgresql://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    raise RuntimeError(f"unsupported database {connection.vendor}")


class WorkerProcess:
    """A real ``celery worker`` process on the given broker, sharing the test database."""

    def __init__(self, broker_url: str, media: Path, var_dir: Path, log: Path,
                 queues: str = "gpu,cpu", env: dict[str, str] | None = None):
        self.log = log
        environ = dict(os.environ)
        environ.update({"CELERY_BROKER_URL": broker_url,
                        "DATABASE_URL": database_url_for_subprocess(),
                        "FACEAUDIT_MEDIA_ROOT": str(media), "FACEAUDIT_VAR_DIR": str(var_dir),
                        "FACEAUDIT_SCORE_BATCH": "16", "FACEAUDIT_GENERATE_BATCH": "4",
                        "PYTHONUNBUFFERED": "1"}, **(env or {}))
        self.env = environ
        name = queues.replace(",", "-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", queues,
             "--concurrency", "1", "--pool", "prefork", "--loglevel", "INFO",
             "--without-gossip", "--without-mingle", "--hostname",
             f"test-{name}-{os.getpid()}@%h"],
            cwd=ROOT, env=environ, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="session")
def object_store(tmp_path_factory):
    """The endpoint of a running SeaweedFS S3 gateway: the one ``.ci/run`` started
    (FACEAUDIT_TEST_S3_ENDPOINT), else one started for this session (skipped, saying why, when
    it cannot start)."""
    from tests.object_store import SeaweedFS, shared_endpoint

    endpoint = shared_endpoint()
    if endpoint:
        yield endpoint
        return
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    try:
        server.start()
    except RuntimeError as exc:
        pytest.skip(f"no S3-compatible object store: {exc}")
    yield server.endpoint
    server.stop()


@pytest.fixture
def s3_storage(settings, object_store):
    """The default storage in a fresh bucket of the object store, for one test; returns
    ``(endpoint, bucket)``."""
    from tests.object_store import new_bucket, storage_settings

    bucket = new_bucket(object_store)
    settings.STORAGES = storage_settings(object_store, bucket)
    return object_store, bucket
