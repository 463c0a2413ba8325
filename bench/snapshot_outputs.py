"""Every output of two stored audits, written to a folder, to prove a refactoring changes none.

    python bench/snapshot_outputs.py make DATA        # run two small audits into DATA (SQLite, media)
    python bench/snapshot_outputs.py render DATA OUT  # every page, download, API answer and export
    python bench/snapshot_outputs.py diff OUT_A OUT_B # which outputs differ, byte for byte

``render`` works on a copy of DATA with every cached figure, report and export member removed,
so each output is rebuilt by the code checked out now; the statistics are recomputed from the
stored scores too (``summary.json`` from :func:`worker.results.compute_results`). Run ``render``
before and after a change on the same DATA and ``diff`` the two folders: an empty list of
differences means no page, download, API answer or export file changed. CSRF tokens (random per
request), the idle time in progress answers and the report's build time (clock readings) are the
only things masked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONFIGS = [
    {"name": "snapshot two models", "seed": 11,
     "groups": {"perceived_gender": ["female", "male"]}, "generator": "dcgan-digiface",
     "identities_per_group": 8, "factors": {"blur": [1.0, 2.0], "jpeg": [20], "noise": [8]},
     "fr_models": ["mobilefacenet", "dlib_resnet"], "target_fmr": [0.05, 0.01],
     "thresholds": [0.4]},
    {"name": "snapshot same design", "seed": 12,
     "groups": {"perceived_gender": ["female", "male"]}, "generator": "dcgan-digiface",
     "identities_per_group": 8, "factors": {"blur": [1.0, 2.0], "jpeg": [20], "noise": [8]},
     "fr_models": ["mobilefacenet", "dlib_resnet"], "target_fmr": [0.05, 0.01],
     "thresholds": [0.4]},
    {"name": "snapshot latent edits", "seed": 13,
     "groups": {"perceived_gender": ["female", "male"]}, "generator": "dcgan-digiface",
     "identities_per_group": 8, "factors": {"yaw": [15], "lighting": [30], "blur": [1.5]},
     "fr_models": ["mobilefacenet"], "target_fmr": [0.05, 0.01]},
]


def _env(data: Path) -> dict[str, str]:
    env = dict(os.environ, FACEAUDIT_VAR_DIR=str(data), DJANGO_SETTINGS_MODULE="webapp.settings")
    env.pop("DATABASE_URL", None)
    env.setdefault("FACEAUDIT_MODEL_DIR", str(ROOT.parent / "shared" / "models"))
    return env


def make(data: Path) -> None:
    data.mkdir(parents=True, exist_ok=True)
    for i, cfg in enumerate(CONFIGS):
        path = data / f"config-{i}.json"
        path.write_text(json.dumps(cfg))
        subprocess.run([sys.executable, "manage.py", "run_audit", str(path), "--out",
                        str(data / f"run-{i}"), "--user", "snap"],
                       cwd=ROOT, env=_env(data), check=True)


CSRF = re.compile(rb'(name="csrfmiddlewaretoken" value=")[^"]+(")')
IDLE = re.compile(rb'("idle_seconds": )[0-9.]+')
BUILT = re.compile(rb'(report generated )\d{4}-\d\d-\d\d \d\d:\d\d UTC')


def _write(out: Path, name: str, body: bytes) -> None:
    path = out / name
    path.parent.mkdir(parents=True, exist_ok=True)
    for pattern, mask in ((CSRF, rb"\1MASKED\2"), (IDLE, rb"\1MASKED"), (BUILT, rb"\1MASKED")):
        body = pattern.sub(mask, body)
    path.write_bytes(body)


def render(data: Path, out: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="snapshot-"))
    shutil.copytree(data, work / "data")
    for cached in (work / "data").rglob("results/*"):
        if cached.name in ("dashboard", "export") or cached.name.startswith("report-"):
            shutil.rmtree(cached) if cached.is_dir() else cached.unlink()
    env = _env(work / "data")
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.test import Client

    from exports.dataset import export_to_dir
    from webapp.audits.models import Audit
    from worker.results import compute_results

    settings.ALLOWED_HOSTS = ["*"]
    cache.clear()
    out.mkdir(parents=True, exist_ok=True)
    client = Client()
    client.force_login(get_user_model().objects.get(username="snap"))

    def get(url: str, name: str) -> None:
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        _write(out, name, f"{response.status_code} {response.get('Content-Type')}\n".encode()
               + body)

    audits = list(Audit.objects.order_by("pk"))
    get("/", "list.html")
    get("/api/audits/", "api-list.json")
    for audit in audits:
        a = f"audit-{audit.pk}"
        summary = audit.result.summary
        recomputed, comparisons, tables = compute_results(audit)
        _write(out, f"{a}/recomputed/summary.json",
               json.dumps(recomputed, indent=1, default=str).encode())
        _write(out, f"{a}/recomputed/comparisons.csv", comparisons.to_csv(index=False).encode())
        for name, table in sorted(tables.items()):
            _write(out, f"{a}/recomputed/{name}.csv", table.to_csv(index=False).encode())
        get(f"/audits/{audit.pk}/", f"{a}/detail.html")
        for model, info in summary["fr_models"].items():
            for point in info["operating_points"]:
                fmr = str(point.get("target_fmr"))
                get(f"/audits/{audit.pk}/?model={model}&fmr={fmr}",
                    f"{a}/detail-{model}-{fmr}.html")
                label = point.get("label") or f"FMR {point['target_fmr']:g}"
                get(f"/api/audits/{audit.pk}/results/?fr_model={model}&operating_point={label}",
                    f"{a}/api-results-{model}-{label}.json")
        get(f"/audits/{audit.pk}/pairs/", f"{a}/pairs.html")
        get(f"/audits/{audit.pk}/report.html", f"{a}/report.html")
        get(f"/audits/{audit.pk}/download.zip", f"{a}/download.zip")
        get(f"/audits/{audit.pk}/tables.zip", f"{a}/tables.zip")
        for name in sorted(audit.result.tables):
            stem = name.rsplit(".", 1)[0]
            for fmt in ("csv", "json", "parquet"):
                get(f"/audits/{audit.pk}/tables/{stem}.{fmt}", f"{a}/table-{stem}.{fmt}")
        get(f"/api/audits/{audit.pk}/", f"{a}/api-detail.json")
        get(f"/api/audits/{audit.pk}/results/", f"{a}/api-results.json")
        get(f"/api/audits/{audit.pk}/progress/", f"{a}/api-progress.json")
        get(f"/audits/{audit.pk}/progress.json", f"{a}/progress.json")
        export_to_dir(audit, out / a / "export")
    first, second = audits[0], audits[-1]
    get(f"/audits/compare/?a={first.pk}", "compare-models.html")
    get(f"/audits/compare/?a={first.pk}&b={second.pk}", "compare-audits.html")
    get(f"/audits/compare/?a={first.pk}&b={second.pk}&point=threshold+0.4",
        "compare-audits-threshold.html")
    shutil.rmtree(work)


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def diff(a: Path, b: Path) -> int:
    da, db = _digests(a), _digests(b)
    only_a, only_b = sorted(set(da) - set(db)), sorted(set(db) - set(da))
    differ = sorted(k for k in set(da) & set(db) if da[k] != db[k])
    print(f"{len(da)} outputs in {a}, {len(db)} in {b}; {len(differ)} differ, "
          f"{len(only_a)} only in the first, {len(only_b)} only in the second")
    for name in differ:
        print("differs:", name)
    for name in only_a:
        print("only in", a, name)
    for name in only_b:
        print("only in", b, name)
    return 1 if (differ or only_a or only_b) else 0


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    if cmd == "make":
        make(Path(args[0]).resolve())
    elif cmd == "render":
        render(Path(args[0]).resolve(), Path(args[1]).resolve())
    elif cmd == "diff":
        sys.exit(diff(Path(args[0]), Path(args[1])))
    else:
        sys.exit(__doc__)
