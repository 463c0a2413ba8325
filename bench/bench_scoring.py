"""Scoring benchmark: images per second on CPU for 64-px generated faces, our scoring path against
a plain insightface loop on the same images.

Images: ``--images`` DCGAN faces (the offline default generator), PNG-encoded and decoded back
exactly as the worker stores and reads them (``worker.pipeline.encode_png`` / ``read_image``):
64x64 RGB, no padding.

Paths timed (each: one warm-up pass, then ``--repeats`` timed passes in this process; the median
is printed):

* ``ours``: :class:`audit.analysis.FaceAnalyzer` with SCRFD-500M (upscale to 128 + pad, 256x256
  input), MobileFaceNet, LightQNet quality and every sensor (gender/age, ITA, brightness, pose,
  sharpness, illumination), run the way the worker runs analyzers side by side
  (``worker/sensing.py``): one single-threaded analyzer per thread (``--threads``, default 2),
  each fed its share of every ``--batch`` images (the worker's FACEAUDIT_SCORE_BATCH, 128).
* ``insightface``: ``insightface.app.FaceAnalysis(allowed_modules=["detection", "recognition"])``
  over a temporary model pack of symlinks to ``scrfd_500m_bnkps.onnx`` and ``mobilefacenet.onnx``,
  ``prepare(ctx_id=-1, det_size=(640, 640))``, then ``app.get(bgr)`` per image (its default
  onnxruntime threading). It does detection and recognition only, no quality or sensors. It
  finds almost no faces on unpadded 64-px images (SCRFD misses faces that fill the frame), so it
  also skips recognition for them: the faces-found counts are printed beside the speed. (Its
  ``ArcFaceONNX`` also guesses the wrong input scaling for this MobileFaceNet file, see
  ``shared/models/MODELS.md``; that does not change its speed.)
* ``--also-padded``: insightface again on the same images upscaled to 128 and padded by 64 (the
  canvas our detector sees), so it finds the faces and runs recognition on them too.

    .venv/bin/python bench/bench_scoring.py [--images 512] [--repeats 3] [--also-padded]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def model_dir() -> Path:
    value = os.environ.get("FACEAUDIT_MODEL_DIR", "").strip()
    return Path(value) if value else ROOT.parent / "shared" / "models"


def stored_images(n: int, seed: int):
    """``n`` DCGAN faces as the worker stores (PNG) and reads them back: 64x64 uint8 RGB."""
    import cv2
    import numpy as np

    from generator.backends import load_dcgan_digiface

    generator = load_dcgan_digiface()
    pixels = generator.generate(generator.sample_latents(list(range(seed, seed + n))))
    images = []
    for rgb in pixels:
        ok, buf = cv2.imencode(".png", rgb[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 6])
        assert ok
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        images.append(np.ascontiguousarray(bgr[:, :, ::-1]))
    return images


def timed(run, repeats: int) -> tuple[float, float, object]:
    """``(median wall s, median process CPU s, last result)`` of ``repeats`` calls of ``run()``
    after one warm-up. CPU time is this process's, all threads (onnxruntime's spinning thread
    pools included); it shows what other load on the machine took from the wall-clock figure."""
    result = run()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def our_path(images, registry, threads: int, batch: int):
    import numpy as np

    from audit.analysis import FaceAnalyzer

    analyzers = [
        FaceAnalyzer(
            registry,
            recognizers=("mobilefacenet",),
            quality="lightqnet",
            intra_op_num_threads=1 if threads > 1 else None,
        )
        for _ in range(threads)
    ]
    pool = ThreadPoolExecutor(threads)

    def analyze_chunk(chunk):
        if threads == 1:
            return [analyzers[0].analyze(chunk)]
        parts = np.array_split(np.arange(len(chunk)), threads)
        return list(
            pool.map(
                lambda job: job[0].analyze([chunk[i] for i in job[1]]),
                zip(analyzers, parts, strict=True),
            )
        )

    def run():
        found = quality = 0
        for start in range(0, len(images), batch):
            for result in analyze_chunk(images[start : start + batch]):
                found += int(result.face_found.sum())
                quality += int(np.isfinite(result.quality).sum())
        return found, quality

    return run


def insightface_path(images_bgr, pack_root: Path):
    from insightface.app import FaceAnalysis

    app = FaceAnalysis(
        name="bench_pack",
        root=str(pack_root),
        allowed_modules=["detection", "recognition"],
        providers=["CPUExecutionProvider"],
    )
    app.prepare(ctx_id=-1, det_size=(640, 640))

    def run():
        found = embedded = 0
        for image in images_bgr:
            faces = app.get(image)
            found += bool(faces)
            embedded += sum(getattr(f, "embedding", None) is not None for f in faces)
        return found, embedded

    return run


def make_pack(models: Path, folder: Path) -> Path:
    """``folder/models/bench_pack/`` with symlinks to the detector and MobileFaceNet; returns the
    root to give insightface."""
    pack = folder / "models" / "bench_pack"
    pack.mkdir(parents=True)
    for name in ("scrfd_500m_bnkps.onnx", "mobilefacenet.onnx"):
        (pack / name).symlink_to(models / name)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="analyzers side by side (ours)")
    parser.add_argument("--batch", type=int, default=128, help="images per scoring task (ours)")
    parser.add_argument("--seed", type=int, default=20_000)
    parser.add_argument("--also-padded", action="store_true")
    args = parser.parse_args()

    import numpy as np
    import onnxruntime

    from audit.detection import prepare_for_detection
    from audit.registry import ModelRegistry

    onnxruntime.set_default_logger_severity(3)
    models = model_dir()
    registry = ModelRegistry(models)
    t = time.perf_counter()
    images = stored_images(args.images, args.seed)
    print(
        f"{len(images)} DCGAN faces {images[0].shape[1]}x{images[0].shape[0]} px (as stored) in "
        f"{time.perf_counter() - t:.1f} s; {os.cpu_count()} CPU cores; onnxruntime "
        f"{onnxruntime.__version__}; median of {args.repeats} timed passes after a warm-up"
    )

    n = len(images)

    def line(label: str, wall: float, cpu: float, detail: str) -> float:
        rate = n / wall
        print(
            f"{label:<12}: {rate:7.1f} images/s ({1000 * wall / n:5.1f} ms/image wall, "
            f"{1000 * cpu / n:5.1f} ms/image CPU); {detail}"
        )
        return rate

    load_before = os.getloadavg()[0]
    ours_wall, ours_cpu, (ours_found, ours_quality) = timed(
        our_path(images, registry, args.threads, args.batch), args.repeats
    )
    ours_rate = line(
        "ours",
        ours_wall,
        ours_cpu,
        f"{args.threads} single-threaded analyzers, batches of {args.batch}, detector + "
        f"mobilefacenet + lightqnet + sensors; faces found {ours_found}/{n}, quality scored "
        f"{ours_quality}",
    )

    bgr = [np.ascontiguousarray(im[:, :, ::-1]) for im in images]
    with tempfile.TemporaryDirectory() as tmp:
        root = make_pack(models, Path(tmp))
        wall, cpu, (found, embedded) = timed(insightface_path(bgr, root), args.repeats)
        insight_rate = line(
            "insightface",
            wall,
            cpu,
            f"FaceAnalysis.get at det 640x640, detection + recognition; faces found "
            f"{found}/{n}, embedded {embedded}",
        )
        print(
            f"ratio ours / insightface: {ours_rate / insight_rate:.2f}x (targets: ratio >= 3x, "
            f"ours >= 60 images/s on 2 cores)"
        )
        if args.also_padded:
            padded = [np.ascontiguousarray(prepare_for_detection(im)[0]) for im in bgr]
            wall, cpu, (found, embedded) = timed(insightface_path(padded, root), args.repeats)
            rate = line(
                "insightface",
                wall,
                cpu,
                f"same, on the {padded[0].shape[1]}x{padded[0].shape[0]} upscaled and padded "
                f"canvases our detector sees; faces found {found}/{n}, embedded {embedded}",
            )
            print(f"ratio ours / insightface on padded canvases: {ours_rate / rate:.2f}x")
    print(
        f"1-minute load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after "
        f"(above {os.cpu_count()}, other work shared the cores and the wall figures are low)"
    )


if __name__ == "__main__":
    main()
