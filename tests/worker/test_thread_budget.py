"""Each worker process sizes its onnxruntime thread pools to its share of the cores.

The worker's process count comes from a real Celery ``WorkController`` (built, not started: its
``worker_init`` signal fires while it is set up). The machine's core count is the one boundary
replaced here, so that the arithmetic is checked for several machines.
"""

import os

import pytest

from worker.celery_app import app
from worker.runtime import cores_per_process, score_threads, sense_threads


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("FACEAUDIT_WORKER_PROCESSES", raising=False)
    yield
    os.environ.pop("FACEAUDIT_WORKER_PROCESSES", None)


def start_controller(concurrency: int, pool: str) -> None:
    app.WorkController(concurrency=concurrency, pool_cls=pool, hostname="budget@test")


@pytest.mark.parametrize("cores, concurrency, expected", [
    (2, 2, 1),   # docker-compose's CPU worker on 2 cores: one thread per process
    (8, 2, 4),
    (16, 3, 5),  # 16 // 3
    (2, 4, 1),   # more processes than cores: still one thread each
])
def test_prefork_worker_gives_each_process_its_share(clean_env, monkeypatch, settings, cores,
                                                      concurrency, expected):
    settings.FACEAUDIT_SCORE_THREADS = 0
    settings.FACEAUDIT_SENSE_THREADS = 0
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    start_controller(concurrency, "prefork")
    assert os.environ["FACEAUDIT_WORKER_PROCESSES"] == str(concurrency)
    assert cores_per_process() == expected
    assert score_threads() == expected
    assert sense_threads() == expected


def test_single_process_worker_lets_onnxruntime_choose(clean_env, monkeypatch, settings):
    settings.FACEAUDIT_SCORE_THREADS = 0
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    start_controller(1, "prefork")
    assert score_threads() is None
    assert sense_threads() == 4


def test_solo_pool_is_one_process(clean_env, monkeypatch, settings):
    settings.FACEAUDIT_SCORE_THREADS = 0
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    start_controller(3, "solo")
    assert "FACEAUDIT_WORKER_PROCESSES" not in os.environ
    assert score_threads() is None


def test_no_worker_means_one_process(clean_env, monkeypatch, settings):
    settings.FACEAUDIT_SCORE_THREADS = 0
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert cores_per_process() == 2
    assert score_threads() is None


def test_setting_wins(clean_env, monkeypatch, settings):
    settings.FACEAUDIT_SCORE_THREADS = 3
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    start_controller(2, "prefork")
    assert score_threads() == 3


def test_unreadable_process_count_falls_back_to_one_process(clean_env, monkeypatch, settings):
    settings.FACEAUDIT_SCORE_THREADS = 0
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setenv("FACEAUDIT_WORKER_PROCESSES", "two")
    assert cores_per_process() == 2
