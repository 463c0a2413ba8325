"""Load test on loopback: N concurrent clients on the dashboard, progress and download endpoints
while an audit runs.

Starts the embedded default exactly as ``./faceaudit up`` does (``manage.py serve``: gunicorn
with 2 processes x 4 threads, a Celery worker, SQLite, the filesystem broker) in a private
folder, signs in, runs one small audit to the end (the dashboard and zip under load need a
finished audit), launches a second, larger audit, and while the worker generates and scores
it, ``--clients`` threads each loop over three requests for ``--seconds`` seconds:

* the finished audit's dashboard page (``GET /audits/<pk>/``),
* the running audit's progress JSON (``GET /audits/<pk>/progress.json``),
* the finished audit's dataset zip (``GET /audits/<pk>/download.zip``, read to the end).

Prints, per endpoint: requests, errors (status >= 400 or a failed connection), p50 and p95
latency (for the zip, time to the last byte). Target: no errors and p95 under 1 s with 20
clients. Only 127.0.0.1 is contacted; the run is bounded by ``--seconds`` plus set-up.

    .venv/bin/python bench/load_test.py [--clients 20] [--seconds 30]
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "loadtest", "a-long-load-test-password"
SMALL = {"name": "load: finished", "seed": 1, "groups": {"perceived_gender": ["female", "male"]},
         "identities_per_group": 4, "factors": {"blur": [2.0]}, "fr_models": ["mobilefacenet"],
         "target_fmr": [0.05]}
RUNNING = {"name": "load: running", "seed": 2,
           "groups": {"perceived_gender": ["female", "male"], "skin_tone": ["darker", "lighter"]},
           "identities_per_group": 40, "factors": {"blur": [1.0, 2.0], "jpeg": [20]},
           "fr_models": ["mobilefacenet"], "target_fmr": [0.01]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Session:
    """A signed-in browser-like client (cookies, CSRF token) on one base URL."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def csrf(self) -> str:
        return next(c.value for c in self.jar if c.name == "csrftoken")

    def get(self, path: str, timeout: float = 60) -> tuple[int, bytes]:
        try:
            with self.opener.open(self.base + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def post_form(self, path: str, fields: dict) -> tuple[int, bytes, str]:
        data = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": self.csrf()}).encode()
        req = urllib.request.Request(self.base + path, data=data,
                                     headers={"Referer": self.base + path})
        with self.opener.open(req, timeout=60) as r:
            return r.status, r.read(), r.url

    def post_json(self, path: str, body: dict) -> tuple[int, dict]:
        req = urllib.request.Request(
            self.base + path, data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "X-CSRFToken": self.csrf(),
                     "Referer": self.base + path})
        try:
            with self.opener.open(req, timeout=60) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def sign_in(self) -> None:
        self.get("/accounts/login/")
        self.post_form("/accounts/login/", {"username": USER, "password": PASSWORD})


def start_server(var_dir: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "FACEAUDIT_MEDIA_ROOT")}
    env.update({"FACEAUDIT_VAR_DIR": str(var_dir), "FACEAUDIT_ADMIN_USER": USER,
                "FACEAUDIT_ADMIN_PASSWORD": PASSWORD, "PYTHONUNBUFFERED": "1"})
    if not env.get("FACEAUDIT_MODEL_DIR"):
        env["FACEAUDIT_MODEL_DIR"] = str(ROOT.parent / "shared" / "models")
    log = (var_dir / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=2)
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    raise SystemExit("the server did not start:\n" + (var_dir / "serve.log").read_text()[-3000:])


def create_audit(session: Session, config: dict) -> int:
    """Create an audit through the JSON API when it is there, else through the form."""
    status, body = session.post_json("/api/audits/", config)
    if status == 201:
        return int(body["id"])
    raise SystemExit(f"could not create the audit: HTTP {status} {body}")


def wait_state(session: Session, pk: int, states: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = session.get(f"/audits/{pk}/progress.json")
        state = json.loads(body).get("state") if status == 200 else None
        if state in states:
            return state
        time.sleep(1)
    raise SystemExit(f"audit {pk} did not reach {states} within {timeout:.0f} s")


def client_loop(base: str, done_pk: int, running_pk: int, stop_at: float,
                results: dict[str, list], errors: dict[str, list], lock: threading.Lock):
    session = Session(base)
    session.sign_in()
    paths = {"dashboard": f"/audits/{done_pk}/", "progress": f"/audits/{running_pk}/progress.json",
             "download": f"/audits/{done_pk}/download.zip"}
    while time.monotonic() < stop_at:
        for name, path in paths.items():
            t0 = time.perf_counter()
            try:
                status, _ = session.get(path)
                failed = status >= 400
                detail = f"HTTP {status}"
            except Exception as exc:  # a refused or broken connection counts as an error
                failed, detail = True, f"{type(exc).__name__}: {exc}"
            elapsed = time.perf_counter() - t0
            with lock:
                results[name].append(elapsed)
                if failed:
                    errors[name].append(detail)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()

    var_dir = Path(tempfile.mkdtemp(prefix="fa-load-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(var_dir, port)
    try:
        admin = Session(base)
        admin.sign_in()
        done_pk = create_audit(admin, SMALL)
        print(f"audit #{done_pk} (small) running to the end ...")
        if wait_state(admin, done_pk, {"done", "failed"}, 600) != "done":
            raise SystemExit("the small audit failed; see " + str(var_dir / "serve.log"))
        running_pk = create_audit(admin, RUNNING)
        wait_state(admin, running_pk, {"generating", "scoring"}, 120)
        print(f"audit #{running_pk} running; {args.clients} clients for {args.seconds:.0f} s ...")

        results = {k: [] for k in ("dashboard", "progress", "download")}
        errors = {k: [] for k in results}
        lock = threading.Lock()
        stop_at = time.monotonic() + args.seconds
        threads = [threading.Thread(target=client_loop, daemon=True,
                                    args=(base, done_pk, running_pk, stop_at, results, errors,
                                          lock)) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=args.seconds + 120)
        _, body = admin.get(f"/audits/{running_pk}/progress.json")
        state = json.loads(body).get("state")

        print(f"{'endpoint':<10} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8}")
        worst_p95, n_errors = 0.0, 0
        for name, times in results.items():
            if not times:
                print(f"{name:<10} {0:>8}")
                continue
            p50, p95 = percentile(times, 0.5) * 1000, percentile(times, 0.95) * 1000
            worst_p95, n_errors = max(worst_p95, p95), n_errors + len(errors[name])
            print(f"{name:<10} {len(times):>8} {len(errors[name]):>6} {p50:>8.0f} {p95:>8.0f}")
            for detail in sorted(set(errors[name]))[:5]:
                print(f"    error: {detail}")
        print(f"the running audit was '{state}' at the end (the worker kept working under load)")
        met = n_errors == 0 and worst_p95 < 1000
        print(f"target (no errors, p95 < 1 s with {args.clients} clients): "
              f"{'met' if met else 'NOT met'}")
        median_all = statistics.median([t for v in results.values() for t in v]) * 1000
        print(f"median over all requests: {median_all:.0f} ms")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
