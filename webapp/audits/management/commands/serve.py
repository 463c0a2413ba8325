"""``python manage.py serve``: the embedded default, web app and a Celery worker together.

Applies migrations, makes a first account if there is none (printing its password once), starts
a worker on queues gpu and cpu, and serves the web app with gunicorn. Ctrl-C stops both.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand


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
        call_command("migrate", interactive=False, verbosity=0)
        self._first_account()
        self._check_models()
        env = dict(os.environ)
        procs: list[subprocess.Popen] = []
        if not opts["no_worker"]:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "worker", "worker", "-Q", "gpu,cpu",
                 "--concurrency", str(opts["concurrency"]), "--loglevel", "INFO",
                 "--hostname", "embedded@%h"], env=env,
                preexec_fn=lambda n=opts["worker_nice"]: os.nice(max(0, min(19, n))) and None))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "webapp.wsgi", "--bind",
             f"{opts['host']}:{opts['port']}", "--workers", "2", "--threads", "4",
             "--access-logfile", "-", "--timeout", "120"], env=env))
        url = f"http://{opts['host']}:{opts['port']}/"
        self.stdout.write(self.style.SUCCESS(f"FaceAudit is running at {url}  (Ctrl-C stops it)"))

        def stop(*_):
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
            sys.exit(0)

        signal.signal(signal.SIGTERM, stop)
        try:
            while all(p.poll() is None for p in procs):
                time.sleep(1)
            dead = [p for p in procs if p.poll() is not None]
            self.stderr.write(f"a child process exited ({dead[0].args[2:5]}); stopping")
        except KeyboardInterrupt:
            pass
        stop()

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
        from audit.registry import ModelRegistry

        registry = ModelRegistry(settings.FACEAUDIT_MODEL_DIR)
        names = registry.available()
        if not names:
            self.stderr.write(self.style.ERROR(
                f"No face models found in {settings.FACEAUDIT_MODEL_DIR}; set FACEAUDIT_MODEL_DIR "
                "to the folder holding scrfd_500m_bnkps.onnx, mobilefacenet.onnx and "
                "genderage_2018.onnx (see README). Audits will fail until then."))
        else:
            self.stdout.write(f"Models in {settings.FACEAUDIT_MODEL_DIR}: {', '.join(names)}")
