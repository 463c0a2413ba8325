"""``manage.py serve``, the embedded default, run as a user runs it (a subprocess with its own var
folder): the worker it supervises is replaced when it dies and no task is lost on the filesystem
broker, "running" is printed only once the port answers, a busy port is a clear error, and each
instance has its own gunicorn control socket."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, database_url_for_subprocess, fresh_dir, wait_for

RUNNING = "FaceAudit is running at"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    """``manage.py serve`` in a process group of its own, its output in a log file."""

    def __init__(self, tmp: Path, name: str = "serve", args: tuple[str, ...] = ("--no-worker",),
                 port: int | None = None, env: dict[str, str] | None = None):
        self.var_dir = fresh_dir(tmp / f"{name}-var")
        self.port = port or free_port()
        self.log = tmp / f"{name}.log"
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "FACEAUDIT_MEDIA_ROOT",
                                 "XDG_RUNTIME_DIR")}
        self.env.update({"FACEAUDIT_VAR_DIR": str(self.var_dir), "PYTHONUNBUFFERED": "1",
                         "FACEAUDIT_ADMIN_PASSWORD": "a-long-test-password",
                         "HOME": str(fresh_dir(tmp / f"{name}-home"))}, **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(self.port), *args], cwd=ROOT,
            env=self.env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 90) -> None:
        def seen():
            if text in self.output():
                return True
            assert self.proc.poll() is None, f"serve exited early:\n{self.output()[-4000:]}"
            return False

        wait_for(seen, timeout=timeout, interval=0.05, what=f"{text!r} from serve")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def status(url: str) -> int:
    with urllib.request.urlopen(url + "/accounts/login/", timeout=10) as response:
        return response.status


# --- the web server ---------------------------------------------------------------------------

def test_running_is_printed_only_once_the_port_answers(tmp_path):
    serve = Serve(tmp_path)
    try:
        serve.wait_for_output(RUNNING)
        assert status(serve.url) == 200  # at once, not a moment later
        assert f"{RUNNING} http://127.0.0.1:{serve.port}/" in serve.output()
    finally:
        serve.stop()


def test_a_busy_port_is_an_error_that_names_the_port_and_the_fix(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        serve = Serve(tmp_path, port=port)
        try:
            code = serve.proc.wait(timeout=60)
        finally:
            serve.stop()
    out = serve.output()
    assert code != 0, out
    assert f"Port {port} on 127.0.0.1 is already in use" in out
    assert f"--port {port + 1}" in out  # the fix, with a port to try
    assert RUNNING not in out


def test_two_instances_each_have_their_own_gunicorn_control_socket(tmp_path):
    """gunicorn's default control socket is one path per user (~/.gunicorn/gunicorn.ctl): the
    second instance would take it over and remove it when it stops. Each instance keeps its own
    in its var folder, and stopping one leaves the other's."""
    home = fresh_dir(tmp_path / "shared-home")
    first = Serve(tmp_path, "first", env={"HOME": str(home)})
    second = Serve(tmp_path, "second", env={"HOME": str(home)})
    try:
        first.wait_for_output(RUNNING)
        second.wait_for_output(RUNNING)
        sockets = [serve.var_dir / "gunicorn.ctl" for serve in (first, second)]
        wait_for(lambda: all(p.is_socket() for p in sockets), timeout=30,
                 what="both control sockets")
        assert not (home / ".gunicorn").exists()  # nobody uses the shared default
        second.stop()
        assert sockets[0].is_socket() and not sockets[1].exists()
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(sockets[0]))  # the first instance still answers on its own
        assert status(first.url) == 200
    finally:
        first.stop()
        second.stop()


# --- the supervised worker --------------------------------------------------------------------

def worker_pids(out: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"Worker started \(pid (\d+)\)", out)]


def generating_now(out: str) -> bool:
    """Whether the worker has taken a generation batch it has not finished (its log)."""
    received = set(re.findall(r"generate_images\[([0-9a-f-]+)\] received", out))
    finished = set(re.findall(r"generate_images\[([0-9a-f-]+)\] succeeded", out))
    return bool(received - finished)


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
@pytest.mark.slow
def test_a_worker_killed_mid_audit_is_replaced_and_the_audit_finishes_on_the_filesystem_broker(
        alice, media_root, models_available, tmp_path):
    """The filesystem broker forgets a task once a worker has taken it: the generation batch
    the killed worker held exists nowhere but in the audit's missing rows. serve starts a new
    worker, sends that work again first, and the pages stay up meanwhile. The audit was also
    created while serve was not running (its start message gone): serve's start sends it."""
    from tests.worker.test_faults import assert_designed_images, create, fingerprint
    from webapp.audits.models import Audit
    from worker.pipeline import InlineRunner

    expected = fingerprint(InlineRunner().run(create(alice).pk))
    audit = create(alice)
    serve = Serve(tmp_path, args=(), env={
        "DATABASE_URL": database_url_for_subprocess(), "FACEAUDIT_MEDIA_ROOT": str(media_root),
        "FACEAUDIT_GENERATE_BATCH": "2", "FACEAUDIT_SCORE_BATCH": "16"})
    try:
        serve.wait_for_output(RUNNING)
        assert f"Resuming audit {audit.pk}: start sent again" in serve.output()
        wait_for(lambda: generating_now(serve.output()), timeout=180, interval=0.05,
                 what="the worker to take a generation batch")
        killed = worker_pids(serve.output())[-1]
        os.kill(killed, signal.SIGKILL)  # the worker's main process, mid-batch

        assert status(serve.url) == 200  # the pages stay up
        serve.wait_for_output(f"Resuming audit {audit.pk}: generation", timeout=60)
        # the lost work is sent again before the new worker starts: its pid line comes after
        wait_for(lambda: worker_pids(serve.output())[-1] != killed, timeout=60, interval=0.1,
                 what="a new worker to start")

        def finished():
            audit.refresh_from_db()
            assert serve.proc.poll() is None, serve.output()[-4000:]
            return audit.is_final

        wait_for(finished, timeout=240, interval=0.5, what="the audit to finish")  # no Retry
        assert status(serve.url) == 200
    finally:
        serve.stop()
    assert audit.state == Audit.State.DONE, audit.error + "\n" + serve.output()[-4000:]
    assert_designed_images(audit)  # every design cell once: no duplicate image
    assert fingerprint(audit) == expected
