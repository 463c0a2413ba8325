"""``python manage.py serve``: the embedded default, web app and a Celery worker together.

Applies migrations, makes a first account if there is none (printing its password once), binds
the port itself (a busy port is an error that names it and the fix), serves the web app with
gunicorn on that socket, and keeps a worker running on queues gpu and cpu. "FaceAudit is running
at ..." is printed once the web app answers on the port.

A worker that dies is replaced while the pages stay up; before each worker start (the first
one included) the work that a dead worker took with it is sent again (``worker.recovery``:
the filesystem broker forgets a task once a worker has taken it). Ctrl-C stops both.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

#: Seconds the web server may take to answer its first request.
WEB_START_TIMEOUT = 120
#: Seconds a stopping child gets to finish (a worker finishes its task) before it is killed.
STOP_TIMEOUT = 20
#: Longest path of a Unix socket (sun_path holds 108 bytes on Linux, 104 on macOS).
MAX_UNIX_SOCKET_PATH = 100


class Command(BaseCommand):
    help = "Run the web app and a Celery worker on the embedded defaults."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--concurrency", type=int, default=1,
                            help="worker processes (each loads its own models)")
        parser.add_argument("--no-worker", action="store_true", help="serve the web app only")
        parser.add_argument("--worker-nice", type=int, default=10,
                            help="scheduling niceness of the worker (0-19): pages stay quick "
                                 "while an audit keeps the cores busy")

    def handle(self, *args, **opts):
        host, port = opts["host"], opts["port"]
        listener = bind_port(host, port)  # first: a busy port is reported at once
        call_command("migrate", interactive=False, verbosity=0)
        self._first_account()
        self._check_models()
        env = dict(os.environ)
        web: subprocess.Popen | None = None
        worker: WorkerSupervisor | None = None
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            web = subprocess.Popen(gunicorn_command(listener, settings.VAR_DIR), env=env,
                                   pass_fds=[listener.fileno()], preexec_fn=_die_with_parent)
            wait_until_answering(host, port, web)
            if not opts["no_worker"]:
                worker = WorkerSupervisor(worker_command(opts["concurrency"]), env,
                                          opts["worker_nice"], log=self._say)
                worker.start()
            self._say(self.style.SUCCESS(
                f"FaceAudit is running at {url_for(host, port)}  (Ctrl-C stops it)"))
            supervise(web, worker)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            if web is not None:
                stop_process(web)
            if worker is not None:
                worker.stop()
            listener.close()

    def _say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()

    def _first_account(self) -> None:
        User = get_user_model()
        if User.objects.exists():
            return
        username = os.environ.get("FACEAUDIT_ADMIN_USER", "admin")
        password = os.environ.get("FACEAUDIT_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        self.stdout.write(self.style.WARNING(
            f"Created the first account: username '{username}', password '{password}' "
            "(shown once; change it in the admin)."))

    def _check_models(self) -> None:
        """Say which models are there; name every missing one, where it goes and where it
        comes from (the pages say the same, and refuse Launch until they are there)."""
        from audit.fetch import describe_missing
        from audit.registry import ModelRegistry

        registry = ModelRegistry(settings.FACEAUDIT_MODEL_DIR)
        names = registry.available()
        if names:
            self.stdout.write(f"Models in {settings.FACEAUDIT_MODEL_DIR}: {', '.join(names)}")
        missing = describe_missing(registry)
        if missing:
            self.stderr.write(self.style.ERROR(
                "Face models missing (audits cannot run until they are in place; "
                "`python manage.py fetch_models` downloads them on a machine with internet):\n"
                + "".join(f"  {line}\n" for line in missing)))


def _interrupt(*_args) -> None:
    """SIGTERM stops serve the way Ctrl-C does."""
    raise KeyboardInterrupt


# --- the web server --------------------------------------------------------------------------

def bind_port(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port``, bound here (gunicorn serves on it, ``fd://``), so
    that a busy port is reported before anything starts, and no other program can take the port
    between the check and the start. CommandError naming the port and the fix otherwise."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        listener = socket.create_server((host, port), family=family, backlog=2048)
    except socket.gaierror as exc:
        raise CommandError(f"Cannot listen on {host}: {exc.strerror}. Pass an address of this "
                           "machine with --host (the default is 127.0.0.1).") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CommandError(
                f"Port {port} on {host} is already in use (another FaceAudit or another program "
                f"is listening there). Stop it, or start FaceAudit on a free port: "
                f"./faceaudit up --port {port + 1}") from None
        raise CommandError(f"Cannot listen on {host}:{port}: {exc.strerror}. Choose another "
                           "port with --port (or address with --host).") from None
    listener.set_inheritable(True)
    return listener


def gunicorn_command(listener: socket.socket, var_dir: Path) -> list[str]:
    """gunicorn serving the web app on the already listening ``listener``."""
    return [sys.executable, "-m", "gunicorn", "webapp.wsgi",
            "--bind", f"fd://{listener.fileno()}", "--workers", "2", "--threads", "4",
            "--access-logfile", "-", "--timeout", "120", *control_socket_args(var_dir)]


def control_socket_args(var_dir: Path) -> list[str]:
    """gunicorn's control socket (for ``gunicornc``), this instance's own, in its var folder.

    gunicorn's default, $XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl, is one path
    for all of a user's instances: each one that starts replaces the socket of the one before,
    and removes it when it stops. Off when the folder's path is too long for a Unix socket."""
    path = Path(var_dir).resolve() / "gunicorn.ctl"
    if len(os.fsencode(str(path))) > MAX_UNIX_SOCKET_PATH:
        return ["--no-control-socket"]
    return ["--control-socket", str(path)]


def url_for(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def wait_until_answering(host: str, port: int, web: subprocess.Popen,
                         timeout: float = WEB_START_TIMEOUT) -> None:
    """Return once the web server answers an HTTP request on the port (any status: its workers
    have booted); CommandError if it exits first or does not answer within ``timeout``."""
    probe = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    deadline = time.monotonic() + timeout
    while not _answers(probe, port):
        if web.poll() is not None:
            raise CommandError(f"The web server (gunicorn) exited with code {web.returncode} "
                               "before it answered; its messages are above.")
        if time.monotonic() > deadline:
            raise CommandError(f"The web server did not answer on {url_for(host, port)} within "
                               f"{timeout:.0f} s.")
        time.sleep(0.2)


def _answers(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", "/")
        connection.getresponse()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


# --- the worker ------------------------------------------------------------------------------

def worker_command(concurrency: int) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", "gpu,cpu",
            "--concurrency", str(concurrency), "--loglevel", "INFO", "--hostname", "embedded@%h"]


class WorkerSupervisor:
    """Keeps one Celery worker running for ``serve``.

    The worker runs in a process group of its own, so that when its main process dies its pool
    processes are ended with it (none is left half way through a task), and Ctrl-C in the
    terminal reaches serve only, which stops the worker the warm way. Before each start, the
    work that a dead worker took with it is sent again (:func:`recover`). A worker that keeps
    dying soon after it starts is restarted after a growing pause (at most a minute).
    """

    #: A worker that ran longer than this before it died is restarted at once.
    HEALTHY_AFTER = 60.0

    def __init__(self, command: list[str], env: dict[str, str], nice: int,
                 log: Callable[[str], None]):
        self.command, self.env, self.nice, self.log = command, env, max(0, min(19, nice)), log
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.restart_at = 0.0
        self.quick_deaths = 0

    def start(self) -> None:
        recover(self.log)
        self.proc = subprocess.Popen(self.command, env=self.env, process_group=0,
                                     preexec_fn=self._prepare_child)
        self.started_at = time.monotonic()
        self.log(f"Worker started (pid {self.proc.pid}).")

    def check(self) -> None:
        """Notice a dead worker (end what is left of it and plan its restart) and restart it
        when its pause is over; called about once a second."""
        if self.proc is None:
            if time.monotonic() >= self.restart_at:
                self.start()
            return
        code = self.proc.poll()
        if code is None:
            return
        _kill_group(self.proc.pid)
        ran = time.monotonic() - self.started_at
        self.quick_deaths = self.quick_deaths + 1 if ran < self.HEALTHY_AFTER else 0
        pause = min(60, 2 ** self.quick_deaths - 1)
        self.log(f"The worker (pid {self.proc.pid}) exited with code {code}; the web app stays "
                 f"up, a new worker starts{f' in {pause} s' if pause else ''} and takes up the "
                 "unfinished work.")
        self.proc = None
        self.restart_at = time.monotonic() + pause

    def stop(self) -> None:
        """Stop the worker: it finishes its current task (for up to STOP_TIMEOUT seconds, then
        it is killed; that task is sent again at the next start)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.log(f"Stopping the worker: it finishes its current task (for up to "
                         f"{STOP_TIMEOUT} s; a task cut short is sent again at the next start).")
            stop_process(self.proc)
            _kill_group(self.proc.pid)

    def _prepare_child(self) -> None:
        """In the worker's process, before it runs: lower its priority, and end it if serve
        itself is killed (Linux)."""
        os.nice(self.nice)
        _die_with_parent()


def recover(log: Callable[[str], None]) -> None:
    """Send again the work that a dead worker took with it (worker.recovery); only for a broker
    that forgets taken tasks. A failure is reported and does not stop serve."""
    from django.db import connections

    from worker.dispatch import dispatch
    from worker.recovery import loses_taken_tasks, recover_lost_work

    if not loses_taken_tasks():
        return
    try:
        for line in recover_lost_work(dispatch):
            log(f"Resuming {line}")
    except Exception as exc:  # noqa: BLE001 - the pages and the worker must start regardless
        log(f"Could not look for lost work ({type(exc).__name__}: {exc}); press Retry on a "
            "stalled audit to resume it.")
    finally:
        connections.close_all()


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent (serve) dies."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _kill_group(pgid: int) -> None:
    """SIGKILL whatever is left of a process group (a dead worker's pool processes)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# --- running ---------------------------------------------------------------------------------

def supervise(web: subprocess.Popen, worker: WorkerSupervisor | None) -> None:
    """Keep the worker running for as long as the web server runs; CommandError when the web
    server exits."""
    while web.poll() is None:
        if worker is not None:
            worker.check()
        time.sleep(1)
    raise CommandError(f"The web server (gunicorn) exited with code {web.returncode}; stopping.")


def stop_process(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
