"""Models loaded once per worker process (generator, face analyzer), keyed by what defines them."""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings

# What this installation offers (generators, FR models, the identity judge): one rule for the
# form, the API, run_audit and the workers.
from webapp.audits.availability import (  # noqa: F401 - the worker's names for them
    NoIdentityJudge,
    available_fr_models,
    available_generators,
    choose_identity_judge,
    conditioning_model,
    identity_judge_for,
)

_lock = threading.Lock()

#: Faces sampling accepted, by (audit id, latent seed), kept in this process until the batch that
#: renders their identities takes them as its baselines (the same pixels it would render: each
#: latent renders on its own). At most :data:`SAMPLED_KEPT` faces (about 0.8 MB each at 512 px);
#: a batch in another process, or after eviction, renders its baselines as usual.
SAMPLED_KEPT = 256
_sampled: OrderedDict[tuple[int, int], Any] = OrderedDict()


def keep_sampled(audit_id: int, faces: dict[int, Any]) -> None:
    """Keep the sampled faces (latent seed -> (H, W, 3) uint8) of an audit for its batches."""
    with _lock:
        for seed, pixels in faces.items():
            _sampled[(audit_id, int(seed))] = pixels
        while len(_sampled) > SAMPLED_KEPT:
            _sampled.popitem(last=False)


def take_sampled(audit_id: int, seeds: list[int]) -> list[Any]:
    """The kept faces of these seeds (None where not kept), each given out once."""
    with _lock:
        return [_sampled.pop((audit_id, int(s)), None) for s in seeds]


def model_dir() -> Path:
    return Path(settings.FACEAUDIT_MODEL_DIR)


@lru_cache(maxsize=4)
def _backend(name: str, device: str):
    from generator.registry import backend_spec

    spec = backend_spec(name)
    options = {} if spec.offline else dict(settings.FACEAUDIT_DIFFUSION.get(name) or {})
    return spec.load(device=device, **options)


def get_backend(name: str):
    """The :class:`generator.registry.GeneratorBackend` registered as ``name`` (loaded once per
    worker process; a diffusion route with its FACEAUDIT_DIFFUSION settings)."""
    with _lock:
        return _backend(name, settings.FACEAUDIT_TORCH_DEVICE)


def get_generator(name: str):
    """The latent generator of backend ``name`` (None for a prompt-driven backend)."""
    return get_backend(name).latent


@lru_cache(maxsize=8)
def _analyzer(model_dir_str: str, recognizers: tuple[str, ...], threads: int | None, copy: int,
              quality: str | None = None):
    from audit.analysis import FaceAnalyzer
    from audit.registry import ModelRegistry

    return FaceAnalyzer(ModelRegistry(Path(model_dir_str)), recognizers=recognizers,
                        intra_op_num_threads=threads, quality=quality)


def get_analyzer(recognizers: tuple[str, ...] = (), *, threads: int | None = None,
                 copy: int = 0, quality: str | None = None):
    """A :class:`audit.analysis.FaceAnalyzer` with the given FR models (``()`` for sensors only)
    and optional quality model. ``copy`` tells apart instances run side by side in threads."""
    with _lock:
        return _analyzer(str(model_dir()), tuple(recognizers), threads, copy, quality)


def quality_model() -> str | None:
    """LightQNet when its file is in the model directory, else no quality model."""
    from audit.registry import ModelRegistry

    return "lightqnet" if "lightqnet" in ModelRegistry(model_dir()).available() else None


#: Sensors whose directions are learned (those a generator's faces give readings for): the
#: demographic axes, the edit factors and what the baseline rule looks at.
DIRECTION_SENSORS = ("male_probability", "age", "ita", "skin_tone_index", "brightness", "yaw",
                     "pitch", "smile", "mouth_open", "illumination_uniformity")


def cores_per_process() -> int:
    """CPU cores this worker process may keep busy: all of them, divided by the number of pool
    processes (or threads) the Celery worker runs tasks in (FACEAUDIT_WORKER_PROCESSES, set by
    ``worker.celery_app`` when the worker starts), at least 1."""
    import os

    cores = os.cpu_count() or 1
    try:
        processes = int(os.environ.get("FACEAUDIT_WORKER_PROCESSES") or 1)
    except ValueError:
        processes = 1
    return max(1, cores // max(1, processes))


def score_threads() -> int | None:
    """onnxruntime threads per scoring analyzer: FACEAUDIT_SCORE_THREADS when set; otherwise
    None (onnxruntime's choice, every core) in a single-process worker, or this process's share
    of the cores when several run side by side: their spinning thread pools would otherwise
    fight for the same cores."""
    import os

    if settings.FACEAUDIT_SCORE_THREADS > 0:
        return settings.FACEAUDIT_SCORE_THREADS
    share = cores_per_process()
    return None if share >= (os.cpu_count() or 1) else share


def sense_threads() -> int:
    return max(1, settings.FACEAUDIT_SENSE_THREADS or cores_per_process())


def get_sense(judge: str | None = None):
    """The sensing callable for generation checks: one single-threaded analyzer per core, run
    side by side (see worker.sensing); with ``judge``, ``sense(images)`` also returns that FR
    model's embeddings for the identity check."""
    from worker.sensing import make_sense

    n = sense_threads()
    plain = [sense_analyzer((), copy=k) for k in range(n)]
    full = [sense_analyzer((judge,), copy=k) for k in range(n)] if judge else plain
    return make_sense(full, judge, plain)


def sense_analyzer(recognizers: tuple[str, ...] = (), copy: int = 0):
    """Analyzer ``copy`` of the ones :func:`get_sense` runs side by side (cached per process):
    single-threaded when there are several, else with the scoring thread count."""
    threads = 1 if sense_threads() > 1 else score_threads()
    return get_analyzer(recognizers, threads=threads, copy=copy)


def shipped_directions_path(name: str) -> Path:
    """Where a direction file that comes with FaceAudit would be (``generator/data/
    directions/``, named like the cache's files: model id, weights hash, sensor version, latent
    version), so a fresh installation edits at once and every machine edits along the same
    directions."""
    import generator

    return Path(generator.__file__).parent / "data" / "directions" / name


def get_directions(generator, progress=None):
    """Learned directions for ``generator``: from the cache, else from the files that come with
    FaceAudit (:func:`shipped_directions_path`), when the weights hash, sensor version and latent
    version match; otherwise learned now (``FACEAUDIT_DIRECTION_SAMPLES`` faces: about a minute
    for the DCGAN, 0.3 s per face for MobileStyleGAN on 2 cores) and cached."""
    from audit.sensors import SENSOR_VERSION
    from generator.directions import DirectionSet, cache_path, learn_directions

    path = cache_path(settings.FACEAUDIT_CACHE_DIR, generator, SENSOR_VERSION)
    if path.exists():
        return DirectionSet.load(path)
    shipped = shipped_directions_path(path.name)
    if shipped.exists():
        return DirectionSet.load(shipped)
    sense = get_sense()
    probe = sense(generator.generate(generator.sample_latents([0])))
    sensors = [s for s in DIRECTION_SENSORS if s in probe]
    directions = learn_directions(generator, sense, sensors, sensor_version=SENSOR_VERSION,
                                  n_samples=settings.FACEAUDIT_DIRECTION_SAMPLES,
                                  progress=progress)
    directions.save(path)
    return directions
