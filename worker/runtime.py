"""Models loaded once per worker process (generator, face analyzer), keyed by what defines them."""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

from django.conf import settings

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


def available_generators() -> list[str]:
    """The offline generators that are installed plus the diffusion generators configured in
    settings, in registry order (the default first)."""
    from generator.registry import BACKENDS

    return [name for name, spec in BACKENDS.items()
            if (spec.offline and spec.is_installed())
            or (not spec.offline and name in settings.FACEAUDIT_DIFFUSION)]


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


def available_fr_models() -> list[str]:
    """FR models whose files are present in the model directory (no onnxruntime import)."""
    from audit.registry import ModelRegistry, available_packs

    return [*ModelRegistry(model_dir()).available_recognizers(), *available_packs(model_dir())]


#: Sensors whose directions are learned (those a generator's faces give readings for): the
#: demographic axes, the edit factors and what the baseline rule looks at.
DIRECTION_SENSORS = ("male_probability", "age", "ita", "skin_tone_index", "brightness", "yaw",
                     "pitch", "smile", "mouth_open", "illumination_uniformity")


#: Identity judges in order of preference when FACEAUDIT_DRIFT_MODEL is "auto": an FR family
#: other than the models under test (dlib's ResNet and MobileFaceNet are trained on different
#: data with different architectures), then any insightface pack in the model directory.
JUDGE_PREFERENCE = ("dlib_resnet", "mobilefacenet")


class NoIdentityJudge(ValueError):
    """Every FR model that could judge identity is under test (or conditions the generator)."""


def choose_identity_judge(fr_models, conditioning: str | None = None) -> tuple[str, str]:
    """The FR model that judges whether an edit kept identity, and a sentence saying why.

    Never a model under test (``fr_models``): its own similarity would decide which variants it
    is then scored on, censoring its false non-matches. Never the model that conditions a
    diffusion generator (``conditioning``), which the generator was optimised to please.
    FACEAUDIT_DRIFT_MODEL names a preferred judge; "auto" (the default) picks the first
    available of :data:`JUDGE_PREFERENCE`, then insightface packs. Raises
    :class:`NoIdentityJudge` naming the fix when no model qualifies.
    """
    excluded = set(fr_models) | ({conditioning} if conditioning else set())
    available = available_fr_models()
    wanted = settings.FACEAUDIT_DRIFT_MODEL
    if wanted and wanted != "auto":
        if wanted not in excluded and wanted in available:
            return wanted, f"{wanted}, set by FACEAUDIT_DRIFT_MODEL"
        role = ("is a model under test in this audit" if wanted in fr_models else
                "conditions the generator" if wanted == conditioning else
                "is not available in the model directory")
        prefix = f"FACEAUDIT_DRIFT_MODEL={wanted} {role}; "
    else:
        prefix = ""
    for name in [*JUDGE_PREFERENCE, *sorted(available)]:
        if name in available and name not in excluded:
            return name, (f"{prefix}{name}, the first available FR model that is not under test"
                          + (" and does not condition the generator" if conditioning else ""))
    under_test = ", ".join(sorted(fr_models))
    raise NoIdentityJudge(
        f"no FR model is left to judge whether edits keep identity: {under_test} "
        f"{'are' if len(fr_models) > 1 else 'is'} under test"
        + (f" and {conditioning} conditions the generator" if conditioning else "")
        + f" (available: {', '.join(sorted(available)) or 'none'}). Take one model out of the "
        "FR models under test, or add another FR model to the model directory (e.g. an "
        "insightface pack such as buffalo_l) so that it can judge identity")


def needs_identity_judge(config) -> bool:
    """Latent and prompt edits change the face itself, so whether identity survived is judged;
    image factors degrade the same face and are not."""
    from generator.config import LATENT_FACTORS
    from generator.registry import backend_spec

    return (any(f in LATENT_FACTORS for f in config.factors)
            or backend_spec(config.generator).prompt_driven)


def conditioning_model(config) -> str | None:
    """The FR model whose embedding conditions the config's diffusion generator, else None."""
    from generator.registry import backend_spec

    if not backend_spec(config.generator).prompt_driven:
        return None
    from generator.diffusion.backend import render_options

    return render_options(settings.FACEAUDIT_DIFFUSION.get(config.generator) or {},
                          config.generator)[0]


def identity_judge_for(config) -> tuple[str, str] | None:
    """``(judge, why)`` for an :class:`generator.config.AuditConfig` whose edits need one,
    else None; :class:`NoIdentityJudge` naming the fix when no FR model qualifies. One rule for
    the form, the API and the workers."""
    if not needs_identity_judge(config):
        return None
    return choose_identity_judge(config.fr_models, conditioning=conditioning_model(config))


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
