"""Scoring benchmark: images per second on CPU for 64-px generated faces, our scoring path against
a plain insightface loop on the same images.

Images: ``--images`` DCGAN faces (the offline default generator), PNG-encoded and decoded back
exactly as the worker stores and reads them (``worker.pipeline.encode_png`` / ``read_image``):
64x64 RGB, no padding.

Paths timed (one warm-up pass each, then ``--repeats`` rounds that time every path once, in
turns, so that other load on the machine hits them alike; medians are printed):

* ``ours``: :class:`audit.analysis.FaceAnalyzer` with SCRFD-500M (upscale to 128 + pad 32, 192x192
  input, whole batches per onnxruntime call), MobileFaceNet, genderage, LightQNet quality and
  every sensor (gender/age, ITA, brightness, pose, sharpness, illumination) on one shared aligned
  crop per face. By default (``--mode processes``) it runs the way the CPU worker of
  docker-compose.yml runs scoring tasks: ``--workers`` (default: the core count) forked
  processes, as Celery's prefork pool, each loading one analyzer once and taking whole tasks of
  ``--batch`` images (the worker's FACEAUDIT_SCORE_BATCH, 128). Each analyzer runs
  ``--onnx-threads`` onnxruntime threads: default 1, what ``worker.runtime.score_threads``
  gives each of 2 processes on 2 cores; 0 is onnxruntime's own choice, the set-up before that. ``--mode threads`` instead runs one single-threaded analyzer per
  thread in this process, each fed its share of every batch, as the generation checks do
  (``worker/sensing.py``); the Python parts then queue for the GIL.
* ``insightface``: ``insightface.app.FaceAnalysis(allowed_modules=["detection", "recognition"])``
  over a temporary model pack of symlinks to ``scrfd_500m_bnkps.onnx`` and ``mobilefacenet.onnx``,
  ``prepare(ctx_id=-1, det_size=(640, 640))``, then ``app.get(bgr)`` per image (its default
  onnxruntime threading). It does detection and recognition only, no quality or sensors. It
  finds almost no faces on unpadded 64-px images (SCRFD misses faces that fill the frame), so it
  also skips recognition for them: the faces-found counts are printed beside the speed. (Its
  ``ArcFaceONNX`` also guesses the wrong input scaling for this MobileFaceNet file, see
  ``shared/models/MODELS.md``; that does not change its speed.)
* ``--also-padded``: insightface again on the same images upscaled to 128 and padded by 32 (the
  192x192 canvas our detector sees), so it finds the faces and runs recognition on them too.

Printed: images per second of each path (median pass), the ratio ours / insightface, the faces
each found, and the verdicts on the scoring requirement (ours >= 60 images/s on 2 cores, and
>= 3x insightface in the same run).

Then the inference floor (``--no-floor`` skips it): one more pass of a single single-threaded
analyzer over all images, timing every onnxruntime call by model. It prints each model's
milliseconds per item and per image, the rest of our path (decoding, alignment, sensors, Python),
and the ceiling ratio: insightface's measured rate against ``cores / (model inference per image)``,
the rate our path would reach with no work but the four networks' inference and perfect use of
every core. A ceiling under 3 means no scheduling or Python change can reach 3x on this machine;
only less network work per image (a smaller detector canvas, lower-precision weights, fewer
models) could, and each of those changes the scores.

    .venv/bin/python bench/bench_scoring.py [--images 512] [--repeats 5] [--also-padded]
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


def timed_interleaved(runs: dict, repeats: int) -> dict[str, tuple[float, float, float, object]]:
    """Time several paths in turns: one warm-up call of each, then ``repeats`` rounds that call
    every path once, so that load from other processes hits all paths alike.

    Returns ``{name: (median wall s, median process CPU s, slowest/fastest wall ratio, last
    result)}``. Each run returns ``(result, child CPU seconds)``; CPU time is this process's, all
    threads (onnxruntime's spinning thread pools included), plus what its child processes report:
    wall well above CPU / cores means other work held the cores.
    """
    results = {name: run()[0] for name, run in runs.items()}
    walls: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            wall, cpu = time.perf_counter(), time.process_time()
            results[name], child_cpu = run()
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu + child_cpu)
    return {
        name: (
            statistics.median(walls[name]),
            statistics.median(cpus[name]),
            max(walls[name]) / min(walls[name]),
            results[name],
        )
        for name in runs
    }


def our_path(images, registry, workers: int, batch: int, mode: str, onnx_threads: int):
    """The scoring path's run() and a close() for its pool (see the module docstring)."""
    if mode == "processes":
        return _our_processes(images, registry, workers, batch, onnx_threads)
    return _our_threads(images, registry, workers, batch), lambda: None


def _count(result) -> tuple[int, int]:
    import numpy as np

    return int(result.face_found.sum()), int(np.isfinite(result.quality).sum())


def _our_threads(images, registry, threads: int, batch: int):
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
                f, q = _count(result)
                found, quality = found + f, quality + q
        return (found, quality), 0.0

    return run


# Set before the pool forks, so that every child process shares the decoded images.
_CHILD: dict = {}


def _child_init() -> None:
    from audit.analysis import FaceAnalyzer

    _CHILD["analyzer"] = FaceAnalyzer(
        _CHILD["registry"], recognizers=("mobilefacenet",), quality="lightqnet",
        intra_op_num_threads=_CHILD["threads"] or None,
    )


def _child_task(span: tuple[int, int]) -> tuple[int, int, float]:
    """One scoring task: analyze images[start:stop] with this process's analyzer; returns the
    faces found, the faces given a quality score and the CPU seconds it took."""
    cpu = time.process_time()
    found, quality = _count(_CHILD["analyzer"].analyze(_CHILD["images"][span[0] : span[1]]))
    return found, quality, time.process_time() - cpu


def _our_processes(images, registry, workers: int, batch: int, onnx_threads: int):
    import multiprocessing

    _CHILD.update(images=images, registry=registry, threads=onnx_threads)
    pool = multiprocessing.get_context("fork").Pool(workers, initializer=_child_init)
    spans = [(start, min(start + batch, len(images))) for start in range(0, len(images), batch)]
    # Load the models in every child before timing (one warm-up task per process).
    pool.map(_child_task, [spans[0]] * workers, chunksize=1)

    def run():
        counts = pool.map(_child_task, spans, chunksize=1)
        found = sum(c[0] for c in counts)
        return (found, sum(c[1] for c in counts)), sum(c[2] for c in counts)

    def close():
        pool.terminate()
        pool.join()

    return run, close


def inference_floor(images, registry, batch: int) -> tuple[dict[str, tuple[int, float]], float]:
    """Time every onnxruntime call of one single-threaded analyzer over ``images`` (in batches of
    ``batch``), by model.

    Returns ``({model: (items, seconds)}, total wall seconds)``. The calls are timed by wrapping
    the ``run`` method of each of the analyzer's own sessions, so the inputs, batch sizes and cache
    state are exactly those of the scoring path.
    """
    from audit.analysis import FaceAnalyzer

    analyzer = FaceAnalyzer(
        registry, recognizers=("mobilefacenet",), quality="lightqnet", intra_op_num_threads=1
    )
    sessions = {
        analyzer.detector.name: analyzer.detector.session,
        "genderage": analyzer.genderage._runner.session,
        "lightqnet": analyzer.quality._runner.session,
        **{name: r._runner.session for name, r in analyzer.recognizers.items()},
    }
    spent: dict[str, list] = {name: [0, 0.0] for name in sessions}

    def timed(name, run):
        def wrapper(output_names, feed, *args, **kwargs):
            start = time.perf_counter()
            out = run(output_names, feed, *args, **kwargs)
            spent[name][1] += time.perf_counter() - start
            spent[name][0] += len(next(iter(feed.values())))
            return out

        return wrapper

    analyzer.analyze(images[:batch])  # warm-up, untimed
    for name, session in sessions.items():
        session.run = timed(name, session.run)
    start = time.perf_counter()
    for first in range(0, len(images), batch):
        analyzer.analyze(images[first : first + batch])
    total = time.perf_counter() - start
    return {name: (int(n), float(s)) for name, (n, s) in spent.items()}, total


def print_floor(spent: dict[str, tuple[int, float]], total: float, n: int, insightface_rate: float):
    cores = os.cpu_count() or 1
    print(f"inference floor: 1 single-threaded analyzer over {n} images, {1000 * total / n:.2f} "
          "ms/image in all")
    inference = 0.0
    for name, (items, seconds) in spent.items():
        inference += seconds
        per_item = 1000 * seconds / items if items else float("nan")
        print(f"  {name:<14} {items:5d} items {per_item:6.2f} ms/item {1000 * seconds / n:6.2f} "
              "ms/image")
    print(f"  {'inference':<14} {'':17} {1000 * inference / n:6.2f} ms/image "
          f"({100 * inference / total:.0f}% of the path)")
    print(f"  {'everything else':<14} {'':17} {1000 * (total - inference) / n:6.2f} ms/image")
    ceiling = cores * n / inference
    print(
        f"ceiling with inference only, {cores} cores fully used: {ceiling:.1f} images/s = "
        f"{ceiling / insightface_rate:.2f}x insightface's measured rate"
    )


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
        return (found, embedded), 0.0

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
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mode", choices=("processes", "threads"), default="processes",
                        help="analyzers side by side in forked processes or in threads (ours)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="analyzers side by side (ours)")
    parser.add_argument("--onnx-threads", type=int, default=1,
                        help="onnxruntime threads per analyzer process (0: its own choice)")
    parser.add_argument("--batch", type=int, default=128, help="images per scoring task (ours)")
    parser.add_argument("--seed", type=int, default=20_000)
    parser.add_argument("--also-padded", action="store_true")
    parser.add_argument("--no-floor", action="store_true", help="skip the inference floor")
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
        f"{onnxruntime.__version__}; median of {args.repeats} timed passes per path, taken in "
        "turns after a warm-up"
    )

    n = len(images)
    bgr = [np.ascontiguousarray(im[:, :, ::-1]) for im in images]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = make_pack(models, Path(tmp))
        ours, close = our_path(images, registry, args.workers, args.batch, args.mode,
                               args.onnx_threads)
        runs = {"ours": ours, "insightface": insightface_path(bgr, root)}
        if args.also_padded:
            padded = [np.ascontiguousarray(prepare_for_detection(im)[0]) for im in bgr]
            runs["padded"] = insightface_path(padded, root)
        try:
            timings = timed_interleaved(runs, args.repeats)
        finally:
            close()

    rates = {}
    details = {
        "ours": (f"{args.workers} analyzers in {args.mode}, "
                 + (f"{args.onnx_threads} onnxruntime thread(s) each" if args.onnx_threads
                    or args.mode == "threads" else "onnxruntime's own threads"))
        + f", tasks of {args.batch} images, detector + "
        "mobilefacenet + lightqnet + sensors; faces found {0}/{n}, quality scored {1}",
        "insightface": "FaceAnalysis.get at det 640x640, detection + recognition; faces found "
        "{0}/{n}, embedded {1}",
        "padded": "insightface as above on the images upscaled to 128 and padded to 192x192 "
        "(the canvas our detector sees); faces found {0}/{n}, embedded {1}",
    }
    for name, (wall, cpu, spread, result) in timings.items():
        rates[name] = n / wall
        print(
            f"{name:<12}: {rates[name]:7.1f} images/s ({1000 * wall / n:5.1f} ms/image wall, "
            f"{1000 * cpu / n:5.1f} ms/image CPU, slowest/fastest pass {spread:.2f}); "
            + details[name].format(*result, n=n)
        )
    ratio = rates["ours"] / rates["insightface"]
    print(f"ratio ours / insightface: {ratio:.2f}x")
    print(
        f"verdict: ours >= 60 images/s: {'PASS' if rates['ours'] >= 60 else 'FAIL'} "
        f"({rates['ours']:.1f}); ours >= 3x insightface: {'PASS' if ratio >= 3 else 'FAIL'} "
        f"({ratio:.2f}x)"
    )
    if "padded" in rates:
        print(
            f"ratio ours / insightface on padded canvases: {rates['ours'] / rates['padded']:.2f}x"
        )
    print(
        f"1-minute load average before timing: {load_before:.2f} on {os.cpu_count()} cores "
        "(other processes' work lowers the wall figures)"
    )
    if not args.no_floor:
        spent, total = inference_floor(images, registry, args.batch)
        print_floor(spent, total, n, rates["insightface"])


if __name__ == "__main__":
    main()
