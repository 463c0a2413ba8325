"""Results-side benchmark: dashboard HTML, report build and dataset zip for a large audit.

Builds (once; ``--keep DIR`` reuses it) an audit of 20,000 images and 2 FR models in a private
SQLite database and media folder, then times what a researcher waits for:

* **aggregation**: the real ``aggregate`` stage (``worker.results.compute_results``: thresholds,
  per-group rates, 1,000-replicate identity bootstrap, disparity, factor effects, quality, DET
  curves) on the stored embeddings, once, when the audit finishes;
* **dashboard**: ``GET /audits/<pk>/`` through Django's full request stack (test client, signed
  in), for every FR model x operating point filter: the first view of each (stored tables read,
  figures built and cached) is printed on its own, then ``--requests`` timed repeat requests;
  median and p95 in milliseconds (target: median <= 300 ms);
  then the first view of each again as another web process sees it (nothing in memory; the
  figures read from the files the first views kept in the audit's folder);
* **report**: ``GET /audits/<pk>/report.html``, the first request (built and kept; target:
  <= 20 s) and a later one (served from the kept file);
* **dataset zip**: the body of ``GET /audits/<pk>/download.zip`` consumed as the browser
  would, MB/s over the whole stream (target: >= 50 MB/s). The large text members were deflated
  once by the aggregation stage (``exports/export_cache.py``), as in production.

The audit: 4 groups (perceived gender x skin tone) x 500 identities x 10 variants (baseline,
control, blur 1 and 2, downscale 24 and 16, JPEG 30 and 10, noise 10 and 20) = 20,000 images;
FR models mobilefacenet and dlib_resnet; target FMRs 1e-3 and 1e-2. What is synthetic here, and
why: the embeddings are drawn, not computed (scoring 20,000 images is the scoring benchmark's
job): each identity has a random unit vector, each image adds Gaussian noise whose size grows
with the factor level and differs by group, so that groups differ measurably. The image files
are 256 real DCGAN faces (PNG, as the worker stores them) reused in turn, so the zip carries
real PNG bytes. Every statistic and every page is computed by the real code.

    .venv/bin/python bench/bench_dashboard.py [--requests 20] [--keep var/bench-dashboard]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = {
    "name": "Benchmark: 20,000 images, 2 FR models",
    "seed": 2024,
    "groups": {"perceived_gender": ["female", "male"], "skin_tone": ["darker", "lighter"]},
    "identities_per_group": 500,
    "factors": {"blur": [1.0, 2.0], "downscale": [24, 16], "jpeg": [30, 10], "noise": [10, 20]},
    "fr_models": ["mobilefacenet", "dlib_resnet"],
    "target_fmr": [0.001, 0.01],
}
EMBEDDING_SIZE = {"mobilefacenet": 128, "dlib_resnet": 128}


def setup_django(var_dir: Path) -> None:
    os.environ["FACEAUDIT_VAR_DIR"] = str(var_dir)
    os.environ["FACEAUDIT_MEDIA_ROOT"] = str(var_dir / "media")
    os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    if not os.environ.get("FACEAUDIT_MODEL_DIR"):
        os.environ["FACEAUDIT_MODEL_DIR"] = str(ROOT.parent / "shared" / "models")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def face_pngs(n: int) -> list[bytes]:
    """``n`` DCGAN faces encoded exactly as the worker stores them."""
    from generator.backends import load_dcgan_digiface
    from worker.pipeline import encode_png

    generator = load_dcgan_digiface()
    pixels = generator.generate(generator.sample_latents(list(range(n))))
    return [encode_png(p) for p in pixels]


def build_audit():
    """Create the audit rows, image files and drawn embeddings; run the real aggregation."""
    import hashlib

    import numpy as np
    from django.contrib.auth import get_user_model
    from django.core.files.storage import default_storage

    from exports.files import AuditFiles, group_slugs
    from generator.config import parse_config
    from generator.design import plan_design
    from webapp.audits.models import (
        Audit,
        Embedding,
        FaceAnalysis,
        GeneratedImage,
        SyntheticIdentity,
    )
    from worker import pipeline

    user, _ = get_user_model().objects.get_or_create(username="bench")
    cfg = parse_config(CONFIG, fr_models_available=list(EMBEDDING_SIZE))
    design = plan_design(cfg)
    audit = Audit.objects.create(owner=user, name=cfg.name, config=cfg.to_dict(), seed=cfg.seed,
                                 n_images_planned=cfg.n_images,
                                 state=Audit.State.AGGREGATING)
    rng = np.random.default_rng(cfg.seed)
    pngs = face_pngs(256)
    digests = [hashlib.sha256(p).hexdigest() for p in pngs]
    t0 = time.perf_counter()
    identities = SyntheticIdentity.objects.bulk_create([
        SyntheticIdentity(audit=audit, group_name=g.name, group_labels=g.as_dict,
                          index_in_group=i, candidate=i, latent_seed=int(rng.integers(2**62)))
        for g in design.groups for i in range(design.identities_per_group)])
    images, k = [], 0
    files, slugs = AuditFiles(audit.pk), group_slugs(g.name for g in design.groups)
    for ident in identities:
        for v in design.variants:
            name = files.image(slugs[ident.group_name], ident.index_in_group, v.key)
            default_storage.save(name, _content(pngs[k % len(pngs)]))
            images.append(GeneratedImage(audit=audit, identity=ident, variant=v.key,
                                         factor=v.factor, level=v.level, file=name,
                                         sha256=digests[k % len(pngs)], recipe={"bench": True},
                                         checks={"face_found": True, "passed": True}))
            k += 1
    images = GeneratedImage.objects.bulk_create(images, batch_size=2000)
    print(f"  {len(images):,} images written in {time.perf_counter() - t0:.1f} s")

    group_index = {g.name: j for j, g in enumerate(design.groups)}
    level_rank = {v.key: (0 if v.factor in ("baseline", "control") else
                          1 + sorted(cfg.factors[v.factor]).index(v.level)
                          if v.factor != "jpeg" else 2 - sorted(cfg.factors["jpeg"]).index(v.level))
                  for v in design.variants}
    analyses, embeddings = [], []
    for fr_model, dim in EMBEDDING_SIZE.items():
        centres = {ident.pk: _unit(rng.standard_normal(dim)) for ident in identities}
        by_pk = {ident.pk: ident for ident in identities}
        for img in images:
            ident = by_pk[img.identity_id]
            sigma = 0.35 + 0.25 * level_rank[img.variant] + 0.05 * group_index[ident.group_name]
            vec = _unit(centres[ident.pk] + sigma * rng.standard_normal(dim) / np.sqrt(dim) * 3)
            embeddings.append(Embedding(image=img, fr_model=fr_model, weights_sha256="bench",
                                        vector=vec.astype("<f4").tobytes()))
    for img in images:
        analyses.append(FaceAnalysis(
            image=img, face_found=True, det_score=0.8, bbox=[8, 8, 56, 56],
            keypoints=[[22, 26], [42, 26], [32, 36], [24, 46], [40, 46]],
            sensors={"quality": float(rng.uniform(0, 1)), "sharpness": float(rng.uniform(20, 90)),
                     "illumination_uniformity": float(rng.uniform(0.6, 1)),
                     "brightness": float(rng.uniform(90, 160)), "yaw": float(rng.normal(0, 10)),
                     "pitch": float(rng.normal(0, 5))},
            detector="bench"))
    FaceAnalysis.objects.bulk_create(analyses, batch_size=2000)
    Embedding.objects.bulk_create(embeddings, batch_size=2000)

    t0 = time.perf_counter()
    pipeline.aggregate(audit.pk, dispatch=lambda *args: None)
    audit.refresh_from_db()
    if audit.state != Audit.State.DONE:
        raise SystemExit(f"aggregation failed: {audit.error}")
    print(f"  aggregation (real statistics, 2 FR models): {time.perf_counter() - t0:.1f} s")
    return audit


def _content(data: bytes):
    from django.core.files.base import ContentFile

    return ContentFile(data)


def _unit(v):
    import numpy as np

    return v / np.linalg.norm(v)


def time_dashboard(audit, n_requests: int) -> list[float]:
    from django.test import Client
    from django.urls import reverse

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(audit.owner)
    url = reverse("audits:detail", args=[audit.pk])
    summary = audit.result.summary
    filters = [{"model": m, "fmr": p["label"]}
               for m, info in summary["fr_models"].items() for p in info["operating_points"]]
    from webapp.audits import result_tables, views

    times, first, other = [], [], []
    for params in filters:
        t0 = time.perf_counter()
        response = client.get(url, params)  # first view: tables read, figures built
        first.append(time.perf_counter() - t0)
        assert response.status_code == 200, response.status_code
        for _ in range(max(1, n_requests // len(filters))):
            t0 = time.perf_counter()
            response = client.get(url, params)
            times.append(time.perf_counter() - t0)
            assert response.status_code == 200
    # Another web process: nothing in its memory, the figures kept in the audit's folder.
    for params in filters:
        views._FIGURE_CACHE.clear()
        result_tables._read_table.cache_clear()
        t0 = time.perf_counter()
        assert client.get(url, params).status_code == 200
        other.append(time.perf_counter() - t0)
    return times, first, other


def time_report(audit) -> tuple[float, float, int]:
    """Seconds for the report view's first request (built and kept), for a later one (served
    from the kept file), and the report's size in bytes."""
    from django.test import Client
    from django.urls import reverse

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(audit.owner)
    url = reverse("audits:report", args=[audit.pk])
    t0 = time.perf_counter()
    size = len(client.get(url).content)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert len(client.get(url).content) == size
    return first, time.perf_counter() - t0, size


def time_zip(audit) -> tuple[float, int]:
    from django.test import Client
    from django.urls import reverse

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(audit.owner)
    t0 = time.perf_counter()
    response = client.get(reverse("audits:download", args=[audit.pk]))
    size = sum(len(chunk) for chunk in response.streaming_content)
    return time.perf_counter() - t0, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--keep", type=Path, default=None,
                        help="build the audit in DIR once and reuse it on later runs")
    args = parser.parse_args()

    var_dir = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="fa-bench-"))
    reuse = args.keep is not None and (var_dir / "faceaudit.sqlite3").exists()
    var_dir.mkdir(parents=True, exist_ok=True)
    setup_django(var_dir)
    from webapp.audits.models import Audit

    audit = Audit.objects.filter(state=Audit.State.DONE).order_by("-pk").first() if reuse else None
    try:
        if audit is None:
            print(f"building the benchmark audit in {var_dir} ...")
            audit = build_audit()
        n_images = audit.images.count()
        print(f"audit #{audit.pk}: {n_images:,} images, FR models "
              f"{', '.join(audit.result.summary['fr_models'])}")

        times, first, other = time_dashboard(audit, args.requests)
        times = sorted(times)
        print(f"dashboard HTML, first view of each of {len(first)} filter settings (tables read, "
              f"figures built): median {statistics.median(first) * 1000:.0f} ms, "
              f"max {max(first) * 1000:.0f} ms")
        print(f"dashboard HTML, first view of each in another web process (figures read from "
              f"the audit's folder): median {statistics.median(other) * 1000:.0f} ms, "
              f"max {max(other) * 1000:.0f} ms")
        median = statistics.median(times) * 1000
        p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))] * 1000
        print(f"dashboard HTML: median {median:.0f} ms, p95 {p95:.0f} ms over {len(times)} "
              f"requests (target <= 300 ms median: {'met' if median <= 300 else 'NOT met'})")

        seconds, again, size = time_report(audit)
        print(f"report: first request (built and kept) {seconds:.2f} s, {size / 1e6:.1f} MB "
              f"(target <= 20 s: {'met' if seconds <= 20 else 'NOT met'}); later requests "
              f"{again * 1000:.0f} ms")

        seconds, size = time_zip(audit)
        rate = size / 1e6 / seconds
        print(f"dataset zip: {size / 1e6:.0f} MB streamed in {seconds:.2f} s = {rate:.0f} MB/s "
              f"(target >= 50 MB/s: {'met' if rate >= 50 else 'NOT met'})")
    finally:
        if args.keep is None:
            shutil.rmtree(var_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
