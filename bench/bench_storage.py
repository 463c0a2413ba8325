"""Storage benchmark: the same small audit with its files on the local file system and in an
S3-compatible object store (SeaweedFS, started here on free local ports), in one run.

For each storage, a fresh process (its own SQLite database under ``--var``, settings from the
environment exactly as a worker gets them: FACEAUDIT_S3_* for the object store, nothing for the
file system) runs:

* **audit**: the whole audit in that process with :class:`worker.pipeline.InlineRunner` (the
  stage code the workers run; as ``manage.py run_audit`` does): identity sampling, generation
  and checks, scoring, statistics. Wall time in seconds, and the bytes and files it stored;
* **dataset zip**: the body of ``GET /audits/<pk>/download.zip`` through Django's full request
  stack (test client, signed in), consumed as the browser would: bytes over seconds, MB/s, the
  median of ``--zips`` requests (each one is printed), and milliseconds per zip member (every
  member is one file read from the storage, or a table built from one);
* **large file**: one 64 MB stored file read back in 1 MiB reads through
  :func:`exports.files.open_stream` (the zip's read path), the median of ``--zips`` reads: the
  storage's streaming speed once the per-file request cost no longer counts.

The audit: DCGAN ``dcgan-digiface`` (64-px faces, the fast offline generator), 2 groups x
``--identities`` identities, blur 1.5 px and JPEG quality 20 (4 images per identity: baseline,
control, blur, JPEG), MobileFaceNet at FMR 0.01. Printed: a table of both storages with the
medians, and the ratio object store / file system (time: above 1 is slower; MB/s: below 1 is
slower). The object store runs on this machine, on loopback: a store on another machine adds
the network's latency to every file.

    .venv/bin/python bench/bench_storage.py [--identities 10] [--audits 3] [--zips 3]
        [--var /tmp/faceaudit-bench-storage]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = {
    "name": "Benchmark: storage",
    "seed": 2026,
    "generator": "dcgan-digiface",
    "groups": {"perceived_gender": ["female", "male"]},
    "identities_per_group": 10,
    "factors": {"blur": [1.5], "jpeg": [20]},
    "fr_models": ["mobilefacenet"],
    "target_fmr": [0.01],
}


# -- one storage, in its own process ------------------------------------------------------------

def measure(identities: int, zips: int) -> dict:
    """Run the audit and stream its zip in this process (Django set up from the environment)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    from exports.files import audit_files, disk_usage
    from generator.config import parse_config
    from webapp.audits.availability import available_fr_models, available_generators
    from webapp.audits.launch import create_audit
    from webapp.audits.models import Audit
    from worker.pipeline import InlineRunner

    call_command("migrate", verbosity=0)
    config = parse_config(dict(CONFIG, identities_per_group=identities),
                          fr_models_available=available_fr_models(),
                          generators_available=available_generators())
    user, _ = get_user_model().objects.get_or_create(username="bench")
    audit = create_audit(user, config)
    t0 = time.perf_counter()
    audit = InlineRunner().run(audit.pk)
    audit_s = time.perf_counter() - t0
    if audit.state != Audit.State.DONE:
        raise SystemExit(f"audit #{audit.pk} ended {audit.state}: {audit.error}")

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    url = reverse("audits:download", args=[audit.pk])
    streams, members = [], 0
    for _ in range(zips):
        t0 = time.perf_counter()
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}")
        body = bytearray()
        for chunk in response.streaming_content:
            body += chunk
        streams.append((time.perf_counter() - t0, len(body)))
        members = len(zipfile.ZipFile(io.BytesIO(body)).namelist())  # after the clock stopped
    result = {"images": audit.images.count(), "audit_s": audit_s,
              "stored_files": sum(1 for _ in audit_files(audit.pk)),
              "stored_bytes": disk_usage(audit.pk), "zip_members": members, "zips": streams}
    result["large"] = large_reads(audit.pk, zips)
    return result


#: Size of the one large stored file read back whole (a photoreal export member is ~0.4 MB, a
#: comparisons table of a big audit tens of MB).
LARGE_MB = 64


def large_reads(audit_pk: int, repeats: int) -> list[float]:
    """Seconds to read a ``LARGE_MB`` stored file back in 1 MiB reads through
    :func:`exports.files.open_stream` (what the zip does for each member), ``repeats`` times:
    the storage's own streaming speed, without the per-file request cost."""
    import numpy as np

    from exports.files import AuditFiles, open_stream, save_file

    name = AuditFiles(audit_pk).result("bench-large.bin")
    save_file(name, np.random.default_rng(0).bytes(LARGE_MB << 20))
    seconds = []
    for _ in range(repeats):
        t0, n = time.perf_counter(), 0
        with open_stream(name) as f:
            while chunk := f.read(1 << 20):
                n += len(chunk)
        seconds.append(time.perf_counter() - t0)
        assert n == LARGE_MB << 20, n
    return seconds


# -- the driver ---------------------------------------------------------------------------------

def run_child(var_dir: Path, env_extra: dict[str, str], args) -> dict:
    shutil.rmtree(var_dir, ignore_errors=True)
    var_dir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FACEAUDIT_S3_") and k not in ("DATABASE_URL",
                                                              "CELERY_BROKER_URL")}
    env.update(FACEAUDIT_VAR_DIR=str(var_dir), FACEAUDIT_MEDIA_ROOT=str(var_dir / "media"),
               DJANGO_SETTINGS_MODULE="webapp.settings", **env_extra)
    env.setdefault("FACEAUDIT_MODEL_DIR", str(ROOT.parent / "shared" / "models"))
    proc = subprocess.run([sys.executable, __file__, "--child", "--identities",
                           str(args.identities), "--zips", str(args.zips)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"the {var_dir.name} run failed:\n{proc.stdout[-3000:]}"
                         f"{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identities", type=int, default=10, help="identities per group")
    parser.add_argument("--audits", type=int, default=3,
                        help="audits per storage, run in turns (median printed)")
    parser.add_argument("--zips", type=int, default=3, help="zip downloads per audit")
    parser.add_argument("--var", type=Path, default=Path("/tmp/faceaudit-bench-storage"),
                        help="private folder for databases, media and the store's data")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.identities, args.zips)))
        return

    from tests.object_store import SeaweedFS, new_bucket, storage_env

    var = args.var.resolve()
    # A fresh store each run: one restarted on other ports over old data waits for volume
    # servers that are gone.
    shutil.rmtree(var / "seaweedfs", ignore_errors=True)
    store = SeaweedFS(var / "seaweedfs")
    print(f"starting SeaweedFS in {store.folder} ...", flush=True)
    t0 = time.perf_counter()
    store.start()
    print(f"SeaweedFS answered at {store.endpoint} after {time.perf_counter() - t0:.1f} s",
          flush=True)
    results: dict[str, list[dict]] = {"file system": [], "object store": []}
    try:
        for i in range(args.audits):  # in turns, so that other load hits both alike
            for name in results:
                extra = (storage_env(store.endpoint, new_bucket(store.endpoint))
                         if name == "object store" else {})
                r = run_child(var / f"{name.replace(' ', '-')}-{i}", extra, args)
                rates = ", ".join(f"{size / 1e6 / s:.1f}" for s, size in r["zips"])
                print(f"{name:<12} audit {i + 1}: {r['images']} images in {r['audit_s']:.1f} s; "
                      f"{r['stored_files']} files, {r['stored_bytes'] / 1e6:.1f} MB stored; "
                      f"zip {r['zips'][0][1] / 1e6:.1f} MB, {r['zip_members']} members, at "
                      f"{rates} MB/s", flush=True)
                results[name].append(r)
    finally:
        # Its data is thrown away: no need for weed's 30-second graceful stop.
        if store.process is not None:
            store.process.kill()
            store.process.wait(timeout=10)

    def medians(runs: list[dict]) -> tuple[float, float, float, float]:
        audit_s = statistics.median(r["audit_s"] for r in runs)
        rate = statistics.median(size / 1e6 / s for r in runs for s, size in r["zips"])
        ms = statistics.median(1e3 * s / r["zip_members"] for r in runs for s, _ in r["zips"])
        large = statistics.median(LARGE_MB * 1.048576 / s for r in runs for s in r["large"])
        return audit_s, rate, ms, large

    fs_s, fs_rate, fs_ms, fs_large = medians(results["file system"])
    s3_s, s3_rate, s3_ms, s3_large = medians(results["object store"])
    first = results["file system"][0]
    print()
    print(f"{first['images']} images per audit, zip {first['zips'][0][1] / 1e6:.1f} MB of "
          f"{first['zip_members']} members; {os.cpu_count()} CPU cores; medians of "
          f"{args.audits} audit(s) and {args.audits * args.zips} zip downloads per storage")
    print(f"{'storage':<24} {'audit s':>8} {'images/s':>9} {'zip MB/s':>9} {'ms/member':>10} "
          f"{f'{LARGE_MB} MB file MB/s':>17}")
    for name, (audit_s, rate, ms, large) in (
            ("file system", (fs_s, fs_rate, fs_ms, fs_large)),
            ("object store (SeaweedFS)", (s3_s, s3_rate, s3_ms, s3_large))):
        print(f"{name:<24} {audit_s:8.1f} {first['images'] / audit_s:9.2f} {rate:9.1f} "
              f"{ms:10.2f} {large:17.1f}")
    print(f"{'ratio store / fs':<24} {s3_s / fs_s:8.2f} {fs_s / s3_s:9.2f} "
          f"{s3_rate / fs_rate:9.2f} {s3_ms / fs_ms:10.2f} {s3_large / fs_large:17.2f}")


if __name__ == "__main__":
    main()
