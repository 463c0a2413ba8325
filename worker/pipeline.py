"""What each stage of an audit does, independent of Celery.

Stages (the Audit row's state in brackets)::

    start [queued -> generating] -> sample_identities -> generate_images x batches
      -> [generating -> scoring] -> score_images x batches
      -> [scoring -> aggregating] -> aggregate -> [done]

Each stage receives a ``dispatch(name, *args)`` callable that schedules the next stage: Celery's
``send_task`` in the workers, an in-process queue in ``run_audit``. Every stage is idempotent:
outputs are keyed by design cell, a batch skips the cells it finds done and overwrites the rest,
state changes are compare-and-set updates (``filter(state=old).update(state=new)``), so a batch
that is sent twice does its work once, and two batches that finish together advance the audit
exactly once.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import cv2
import numpy as np
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError, models
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerConnectionError

from exports.files import AuditFiles, group_slugs, save_file
from generator.config import AuditConfig
from generator.design import plan_design
from webapp.audits.models import (
    Audit,
    AuditResult,
    Embedding,
    FaceAnalysis,
    GeneratedImage,
    SyntheticIdentity,
)

log = logging.getLogger(__name__)
State = Audit.State
Dispatch = Callable[..., None]


class StageError(Exception):
    """An expected failure with a message for the researcher (shown on the audit page)."""


class AuditDeleted(Exception):
    """The audit was deleted while one of its stages ran."""


#: Failures worth retrying: the database or the broker went away or was locked for a moment
#: (kombu's OperationalError is a connection failure, not an SQL one). Stages re-raise
#: them (instead of failing the audit) so that the task is retried with back-off.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError,
                                                  BrokerConnectionError)


# --- helpers -------------------------------------------------------------------------------------

def _config(audit: Audit) -> AuditConfig:
    return AuditConfig(**audit.config)


def _advance(audit_id: int, old: str, new: str, **fields: Any) -> bool:
    """Compare-and-set the audit's state; True for the one caller that made the change."""
    return bool(Audit.objects.filter(pk=audit_id, state=old).update(
        state=new, updated_at=timezone.now(), **fields))


def _touch(audit_id: int) -> None:
    """Stamp the audit's ``updated_at``: a worker made progress on it. The page calls an
    unfinished audit stalled when this stamp gets too old (``webapp.audits.progress``)."""
    Audit.objects.filter(pk=audit_id).update(updated_at=timezone.now())


def _is_cancelled(audit_id: int) -> bool:
    return Audit.objects.filter(pk=audit_id, state=State.CANCELLED).exists()


def _set_stage(audit_id: int, stage: str, **values: Any) -> None:
    audit = Audit.objects.only("stage_progress").get(pk=audit_id)
    progress = dict(audit.stage_progress or {})
    progress[stage] = {**progress.get(stage, {}), **values}
    Audit.objects.filter(pk=audit_id).update(stage_progress=progress, updated_at=timezone.now())


def _fail(audit_id: int, message: str) -> None:
    Audit.objects.filter(pk=audit_id).exclude(state__in=Audit.FINAL_STATES).update(
        state=State.FAILED, error=message, finished_at=timezone.now())


@contextlib.contextmanager
def stage_errors(audit_id: int, stage: str) -> Iterator[None]:
    """Turn a stage's exception into a failed audit with a plain-words error, then re-raise
    nothing: a broken audit must not crash the worker loop."""
    from celery.exceptions import SoftTimeLimitExceeded

    from audit.registry import ModelError
    from generator.backends import GeneratorLoadError
    from generator.identities import GroupFillError

    try:
        try:
            yield
        except Exception as exc:
            if isinstance(exc, TRANSIENT_ERRORS) or Audit.objects.filter(pk=audit_id).exists():
                raise
            raise AuditDeleted from exc
    except AuditDeleted:
        # Deleted while this batch ran (after a cancel): its inserts failed on their foreign
        # keys, or its rows were gone. Stop quietly and remove any file it wrote after the
        # deletion had removed the audit's files.
        log.info("audit %s was deleted while %s; the batch stops", audit_id, stage)
        AuditFiles(audit_id).delete()
    except TRANSIENT_ERRORS:
        raise  # the task retries with back-off (worker.tasks); the audit keeps its state
    except (StageError, GroupFillError, ModelError, GeneratorLoadError) as exc:
        log.warning("audit %s failed in %s: %s", audit_id, stage, exc)
        _fail(audit_id, f"{stage}: {exc}")
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            log.exception("audit %s: unexpected error in %s", audit_id, stage)
            _fail(audit_id, f"{stage}: could not read or write a file ({exc}). The worker log "
                            "has the details.")
        else:
            log.warning("audit %s: disk full in %s: %s", audit_id, stage, exc)
            _fail(audit_id, f"{stage}: the disk is full ({exc.strerror}). Free some space "
                            "(or delete old audits), then retry the audit: what was made so far "
                            "is kept.")
    except SoftTimeLimitExceeded:
        _fail(audit_id, f"{stage}: the stage ran past its time limit; try a smaller audit or "
                        "raise FACEAUDIT_TASK_SOFT_TIME_LIMIT")
    except Exception as exc:
        log.exception("audit %s: unexpected error in %s", audit_id, stage)
        _fail(audit_id, f"{stage}: internal error ({type(exc).__name__}: {exc}). The worker log "
                        "has the details; please report it.")


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG of an ``(H, W, 3) uint8`` RGB image, with fixed settings so the bytes are
    reproducible."""
    ok, buf = cv2.imencode(".png", pixels[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise StageError("could not encode a PNG image")
    return buf.tobytes()


def read_image(name: str) -> np.ndarray:
    with default_storage.open(name, "rb") as f:
        data = np.frombuffer(f.read(), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise StageError(f"stored image {name} cannot be decoded")
    return np.ascontiguousarray(img[:, :, ::-1])


# --- stages --------------------------------------------------------------------------------------

def start(audit_id: int, dispatch: Dispatch) -> None:
    """Claim the queued audit and schedule identity sampling."""
    if _advance(audit_id, State.QUEUED, State.GENERATING, started_at=timezone.now()):
        dispatch("sample_identities", audit_id)


def sample_identities(audit_id: int, dispatch: Dispatch) -> None:
    """Sample identities until every group is full (sensor-confirmed), store them, and schedule
    image generation in batches."""
    from django.conf import settings

    from worker.runtime import get_backend, keep_sampled

    audit = Audit.objects.filter(pk=audit_id).first()
    if audit is None or audit.state != State.GENERATING:  # deleted, cancelled, or already moved on
        return
    with stage_errors(audit_id, "sampling identities"):
        config = _config(audit)
        design = plan_design(config)
        _choose_identity_judge(config)  # refuse before any work when no model can judge
        sampled: dict[int, np.ndarray] | None = None  # latent seed -> baseline pixels
        if SyntheticIdentity.objects.filter(audit=audit).count() < design.n_identities:
            _check_identity_model(config)  # a diffusion route's identity model, before weights
            backend = get_backend(config.generator)
            last = [0.0]

            def progress(found: int, needed: int, tried: int) -> None:
                if time.monotonic() - last[0] > 0.5 or found == needed:
                    last[0] = time.monotonic()
                    _set_stage(audit_id, "sampling", done=found, total=needed, candidates=tried)

            labeller, encoder = _labeller_and_encoder(config, backend)
            report: dict[str, Any] = {}
            guidance = _guidance(audit_id, backend)
            draws = backend.sample_identities(design, labeller, config.seed, encoder=encoder,
                                              progress=progress, report=report,
                                              should_stop=lambda: _is_cancelled(audit_id),
                                              keep_images=design.n_identities <= KEEP_SAMPLED,
                                              **guidance)
            if _is_cancelled(audit_id):
                return
            if report and hasattr(encoder, "describe"):
                report["identity_model"] = encoder.describe()  # what the identities are
            if report:
                _set_stage(audit_id, "sampling", acceptance=report)
            rows = []
            for d in draws:
                sensors = dict(d.sensors)
                conditioning = {k: sensors.pop(k) for k in CONDITIONING_KEYS if k in sensors}
                rows.append(SyntheticIdentity(
                    audit=audit, group_name=d.group.name, group_labels=d.group.as_dict,
                    index_in_group=d.index_in_group, candidate=d.candidate,
                    latent_seed=d.latent_seed, sensors=sensors, conditioning=conditioning))
            SyntheticIdentity.objects.bulk_create(rows, ignore_conflicts=True)
            if all(d.image is not None for d in draws):
                sampled = {int(d.latent_seed): d.image for d in draws}
                keep_sampled(audit_id, sampled)
        _set_stage(audit_id, "sampling", done=design.n_identities, total=design.n_identities)
        if _latent_factors(config):
            _learn_directions_with_progress(audit_id, config)
        _identity_policy(audit_id, config, baselines=sampled)
        ids = list(SyntheticIdentity.objects.filter(audit=audit).order_by("id")
                   .values_list("id", flat=True))
        for chunk in _chunks(ids, settings.FACEAUDIT_GENERATE_BATCH):
            dispatch("generate_images", audit_id, chunk)


#: Up to this many identities, sampling keeps each accepted face in memory (about 0.8 MB at 512
#: px) so that the identity judge's cut-off reads them instead of rendering the baselines again.
KEEP_SAMPLED = 256

#: Readings of a draw that say how to render the identity again, stored as its conditioning: a
#: diffusion anchor's embedding and prompt, or a latent generator's guidance shift.
CONDITIONING_KEYS = ("identity_embedding", "identity_embedding_sha256", "anchor_prompt", "anchor_seed",
                     "anchor_identity", "anchor_render", "latent_shift")


def _guidance(audit_id: int, backend) -> dict[str, Any]:
    """Keyword arguments that turn on guided sampling for a backend that asks for it (a latent
    generator with a baseline rule): its learned directions (learned now on first use, with
    progress), the groups' boundaries and the sensors to hold. Empty for the others."""
    if backend.latent is None or not getattr(backend, "guided", False):
        return {}
    from worker.labels import group_bands
    from worker.runtime import DIRECTION_SENSORS, get_directions

    return {"directions": get_directions(backend.latent,
                                         progress=_directions_progress(audit_id)),
            "aims": group_bands, "hold": DIRECTION_SENSORS}


def _directions_progress(audit_id: int):
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.monotonic() - last[0] > 0.5 or done == total:
            last[0] = time.monotonic()
            _set_stage(audit_id, "sampling", directions_done=done, directions_total=total)

    return progress


def _labeller_and_encoder(config: AuditConfig, backend):
    """The labeller that confirms a candidate's group (attribute sensors), and for a backend
    conditioned on an FR embedding, the encoder that embeds its anchors with that model the way
    the route's authors did (:class:`audit.conditioning.IdentityEncoder`: insightface's
    detector at 640x640 on the whole image, not the analysis crop)."""
    from worker.labels import make_labeller
    from worker.runtime import get_analyzer, model_dir, score_threads

    model = backend.conditioning_model
    labeller = make_labeller(get_analyzer((), threads=score_threads()), config.groups)
    if model is None:
        return labeller, None
    from audit.conditioning import identity_encoder

    return labeller, identity_encoder(model_dir(), model, intra_op_num_threads=score_threads())


def _check_identity_model(config: AuditConfig) -> None:
    """For a diffusion route: a StageError naming the fix when its settings name another
    identity model than the one it was trained on, or when that model's files are not in the
    model directory (each file, where it goes, where it comes from). Cheap: called before any
    weights are loaded (:func:`generator.diffusion.backend.route_problems`)."""
    from django.conf import settings

    from generator.registry import backend_spec

    if not backend_spec(config.generator).prompt_driven:
        return
    from generator.diffusion.backend import route_problems
    from worker.runtime import model_dir

    problems = route_problems(config.generator,
                              settings.FACEAUDIT_DIFFUSION.get(config.generator) or {},
                              model_dir())
    if problems:
        raise StageError(" | ".join(problems))


def _cells(identities: list) -> list:
    """The stored identities as the backends' :class:`generator.registry.IdentityCell`."""
    from generator.registry import IdentityCell

    return [IdentityCell(int(i.latent_seed), dict(i.group_labels or {}),
                         dict(i.conditioning or {})) for i in identities]


def _latent_factors(config: AuditConfig) -> list[str]:
    """The config's latent edits (prompt and image factors are not latent)."""
    from generator.config import LATENT_FACTORS

    return [f for f in config.factors if f in LATENT_FACTORS]


def _learn_directions_with_progress(audit_id: int, config: AuditConfig) -> None:
    """Learn (or load) the generator's directions, then refuse the audit, naming the fix,
    when a factor's direction is too unreliable to edit along (held-out R^2 below
    :data:`generator.directions.MIN_EDIT_R2`)."""
    from generator.config import FACTORS
    from generator.directions import UnreliableDirection
    from worker.runtime import get_backend, get_directions

    latent = get_backend(config.generator).latent
    if latent is None:
        raise StageError(f"{config.generator} has no latent space: use its prompt factors "
                         "instead of latent edits")
    directions = get_directions(latent, progress=_directions_progress(audit_id))
    try:
        directions.check_editable([FACTORS[f].sensor for f in _latent_factors(config)])
    except UnreliableDirection as exc:
        raise StageError(str(exc)) from None


#: The identity judge's cut-off: this percentile of its similarities between different
#: identities' baselines over the whole audit (generator.editing.identity_cutoff).
IDENTITY_CUTOFF_QUANTILE = 99.0


def _choose_identity_judge(config: AuditConfig) -> tuple[str, str] | None:
    """``(judge, why it was chosen)`` for an audit whose edits need one, else None; a
    StageError naming the fix when every available FR model is under test or conditions the
    generator (worker.runtime.identity_judge_for). Cheap: called first thing, before any
    weights are loaded."""
    from worker.runtime import NoIdentityJudge, identity_judge_for

    try:
        return identity_judge_for(config)
    except NoIdentityJudge as exc:
        raise StageError(str(exc)) from None


def _identity_policy(audit_id: int, config: AuditConfig, generator=None,
                     baselines: dict[int, np.ndarray] | None = None):
    """The audit's :class:`generator.editing.CheckPolicy`: the generator's own tolerances (a
    backend may carry ``check_policy``, measured on its faces) with the audit's identity judge
    and cut-off, fixing both first if the audit has none yet (idempotent: every caller computes
    the same values from the same baselines). ``baselines``: latent seed -> the baseline's
    pixels as sampling rendered them, used where they cover every stored identity."""
    from generator.editing import CheckPolicy

    judge = Audit.objects.only("identity_judge").get(pk=audit_id).identity_judge
    if not judge:
        judge = _fix_identity_judge(audit_id, config, baselines)
    return CheckPolicy(**getattr(generator, "check_policy", {}),
                       identity_min_similarity=judge.get("cutoff"),
                       identity_judge=judge.get("model"))


def _fix_identity_judge(audit_id: int, config: AuditConfig,
                        baselines: dict[int, np.ndarray] | None = None) -> dict[str, Any]:
    """Choose the identity judge and fix its cut-off from the whole audit's baselines, before
    any edit is judged; stored on the audit row (and from there in summary.json, the manifest
    and the report). Never a model under test (worker.runtime.choose_identity_judge)."""
    from generator.editing import identity_cutoff
    from worker.runtime import get_backend, get_sense, sense_analyzer

    choice = _choose_identity_judge(config)
    if choice is None:
        judge: dict[str, Any] = {
            "model": None, "cutoff": None,
            "chosen": "not needed: image factors degrade the same face, identity is not judged"}
    else:
        model, why = choice
        identities = list(SyntheticIdentity.objects.filter(audit_id=audit_id).order_by(
            "group_name", "index_in_group"))
        if baselines is not None and all(int(i.latent_seed) in baselines for i in identities):
            pixels = np.stack([baselines[int(i.latent_seed)] for i in identities])
        else:
            pixels = get_backend(config.generator).baselines(_cells(identities))
        readings = get_sense(model)(pixels)
        found = np.asarray(readings["face_found"], dtype=bool)
        cutoff, n_pairs = identity_cutoff(np.asarray(readings["embedding"])[found],
                                          IDENTITY_CUTOFF_QUANTILE)
        recognizer = sense_analyzer((model,)).recognizers[model]  # the one sense used
        judge = {"model": model, "weights_sha256": recognizer.weights_sha256, "chosen": why,
                 "cutoff": None if cutoff is None else round(cutoff, 6),
                 "quantile": IDENTITY_CUTOFF_QUANTILE, "n_baselines": int(found.sum()),
                 "n_impostor_pairs": n_pairs,
                 "rule": (f"an edit keeps identity when the {model} cosine similarity to its own "
                          f"baseline is at least the {IDENTITY_CUTOFF_QUANTILE:g}th percentile "
                          "of its similarities between different identities' baselines over "
                          "the whole audit")}
    Audit.objects.filter(pk=audit_id).update(identity_judge=judge)
    return judge


def generate_images(audit_id: int, identity_ids: list[int], dispatch: Dispatch) -> None:
    """Render baseline + variants of the given identities with their checks (generator
    accountability), store them, and when the last image of the audit exists, move on to
    scoring. Identities that already have every image (a batch sent again) are skipped."""
    audit = Audit.objects.filter(pk=audit_id).first()
    if audit is None or audit.state != State.GENERATING:  # deleted, cancelled, or already moved on
        return
    with stage_errors(audit_id, "generating images"):
        design = plan_design(_config(audit))
        identities = _identities_to_render(audit, identity_ids, len(design.variants))
        if identities:
            _render_and_store(audit, identities, design)
        _touch(audit_id)
        if _is_cancelled(audit_id):
            return
        _finish_generation(audit_id, design.n_images, dispatch)


def _identities_to_render(audit: Audit, identity_ids: list[int], n_variants: int) -> list:
    """The given identities of the audit that still lack some of their ``n_variants`` images."""
    return list(SyntheticIdentity.objects.filter(audit=audit, pk__in=identity_ids)
                .annotate(n_images=models.Count("images")).filter(n_images__lt=n_variants)
                .order_by("id"))


def _render_and_store(audit: Audit, identities: list, design) -> None:
    """Render the identities' baselines and variants with their checks and store each image
    (file and row), replacing whatever part of them an earlier run left."""
    from worker.runtime import get_backend, get_directions, get_sense, take_sampled

    audit_id = audit.pk
    config = _config(audit)
    backend = get_backend(config.generator)
    policy = _identity_policy(audit_id, config, backend)
    sense = get_sense(policy.identity_judge)
    directions = (get_directions(backend.latent)
                  if _latent_factors(config) and backend.latent is not None else None)
    kept = take_sampled(audit_id, [int(i.latent_seed) for i in identities])
    files, slugs = AuditFiles(audit_id), group_slugs(g.name for g in design.groups)
    extra = {"baselines": kept} if any(k is not None for k in kept) else {}
    rendered = backend.render_and_check(_cells(identities), design.variants, config.seed,
                                        sense, policy, directions, **extra)
    for identity, row in zip(identities, rendered, strict=True):
        for img in row:
            data = encode_png(img.pixels)
            name = save_file(files.image(slugs[identity.group_name], identity.index_in_group,
                                         img.variant.key), data)
            GeneratedImage.objects.update_or_create(
                identity=identity, variant=img.variant.key,
                defaults={"audit": audit, "factor": img.variant.factor,
                          "level": img.variant.level, "file": name,
                          "sha256": hashlib.sha256(data).hexdigest(),
                          "recipe": img.recipe, "checks": img.checks or {}})


def _finish_generation(audit_id: int, n_images: int, dispatch: Dispatch) -> None:
    """When every designed image exists, move to scoring (once) and schedule it in batches."""
    from django.conf import settings

    images = GeneratedImage.objects.filter(audit_id=audit_id)
    if images.count() >= n_images and _advance(audit_id, State.GENERATING, State.SCORING):
        ids = list(images.order_by("id").values_list("id", flat=True))
        for chunk in _chunks(ids, settings.FACEAUDIT_SCORE_BATCH):
            dispatch("score_images", audit_id, chunk)


def score_images(audit_id: int, image_ids: list[int], dispatch: Dispatch) -> None:
    """Detect, align, embed (each FR model) and sense the given images; when every image of the
    audit has been analysed, move on to aggregation. Images already analysed (a batch sent
    again) are skipped: an image's analysis is stored after its embeddings."""
    audit = Audit.objects.filter(pk=audit_id).first()
    if audit is None or audit.state != State.SCORING:  # deleted, cancelled, or already moved on
        return
    with stage_errors(audit_id, "scoring images"):
        images = list(GeneratedImage.objects.filter(audit=audit, pk__in=image_ids,
                                                    analysis__isnull=True).order_by("id"))
        if images:
            _analyse_and_store(_config(audit), images)
        _touch(audit_id)
        if _is_cancelled(audit_id):
            return
        _finish_scoring(audit_id, audit.n_images_planned, dispatch)


def _analyse_and_store(config: AuditConfig, images: list) -> None:
    """Analyse the images with the audit's FR models and store each one's embeddings, then its
    analysis (replacing what an earlier run left)."""
    from worker.runtime import get_analyzer, quality_model, score_threads

    analyzer = get_analyzer(tuple(config.fr_models), quality=quality_model(),
                            threads=score_threads())
    batch = analyzer.analyze([read_image(img.file) for img in images])
    recognizers = analyzer.recognizers
    for i, img in enumerate(images):
        row = batch.row(i)
        found = bool(batch.face_found[i])
        for fr_model in config.fr_models:
            if found:
                vec = np.asarray(batch.embeddings[fr_model][i], dtype="<f4")
                Embedding.objects.update_or_create(
                    image=img, fr_model=fr_model,
                    defaults={"weights_sha256": recognizers[fr_model].weights_sha256,
                              "vector": vec.tobytes()})
            else:
                Embedding.objects.filter(image=img, fr_model=fr_model).delete()
        FaceAnalysis.objects.update_or_create(
            image=img,
            defaults={"face_found": found, "det_score": row.get("det_score"),
                      "bbox": row.get("bbox"), "keypoints": row.get("kps"),
                      "sensors": {k: row.get(k) for k in
                                  ("male_probability", "age", "ita", "skin_tone_index",
                                   "skin_hue", "brightness", "yaw", "pitch", "roll", "smile",
                                   "mouth_open", "sharpness", "sharpness_normalised",
                                   "illumination_uniformity", "quality")},
                      "detector": analyzer.detector.name})


def _finish_scoring(audit_id: int, n_images: int, dispatch: Dispatch) -> None:
    """When every image has its analysis, move to aggregation (once) and schedule it."""
    done = FaceAnalysis.objects.filter(image__audit_id=audit_id).count()
    if done >= n_images and _advance(audit_id, State.SCORING, State.AGGREGATING):
        dispatch("aggregate", audit_id)


def aggregate(audit_id: int, dispatch: Dispatch) -> None:
    """Compare embeddings, set one global threshold per FR model and target FMR, compute
    per-group rates, store the summary and the comparisons table; mark the audit done."""
    from worker.comparison_store import comparisons_parquet
    from worker.results import compute_results

    audit = Audit.objects.filter(pk=audit_id).first()
    if audit is None or audit.state != State.AGGREGATING:  # deleted, cancelled, or already moved on
        return
    with stage_errors(audit_id, "computing statistics"):
        _set_stage(audit_id, "aggregating", done=0, total=1)
        summary, comparisons, extra = compute_results(audit)
        files = AuditFiles(audit_id)
        name = save_file(files.result("comparisons.parquet"), comparisons_parquet(comparisons))
        tables = {fname: save_file(files.result(fname),
                                   df.to_csv(index=False).encode("utf-8"))
                  for fname, df in extra.items()}
        AuditResult.objects.update_or_create(audit=audit, defaults={
            "summary": summary, "comparisons_file": name, "tables": tables})
        _build_export_cache(audit_id)
        _set_stage(audit_id, "aggregating", done=1, total=1)
        _advance(audit_id, State.AGGREGATING, State.DONE, finished_at=timezone.now())


def _stage_from_rows(audit: Audit, n_identities: int) -> str:
    """The state a failed audit resumes in, judged from what it has produced."""
    if (SyntheticIdentity.objects.filter(audit=audit).count() < n_identities
            or GeneratedImage.objects.filter(audit=audit).count() < audit.n_images_planned):
        return State.GENERATING
    if FaceAnalysis.objects.filter(image__audit=audit).count() < audit.n_images_planned:
        return State.SCORING
    return State.AGGREGATING


#: A stage task waiting in the broker's queue: ``(stage name, args)``, args as sent.
Waiting = tuple[str, list]


def resume(audit_id: int, dispatch: Dispatch, waiting: Iterable[Waiting] = ()) -> str:
    """Send again whatever work an unfinished audit still needs, judged from its rows; a failed
    audit is first put back in the state of the stage it had reached (its error cleared).

    ``waiting``: the audit's stage tasks known to be still in the broker's queue, as ``(stage
    name, args)`` (``worker.recovery`` reads them); the work they carry is not sent again.

    Safe to call at any time, also while workers are busy with the audit: every stage is
    idempotent, so work sent twice is stored once (and a batch that finds its work done skips
    it). Returns a sentence that says what was sent (for the page, the admin, ``manage.py
    resume_audit`` and ``serve``).
    """
    audit = Audit.objects.get(pk=audit_id)
    if audit.state in (State.DONE, State.CANCELLED):
        return f"nothing to resume: the audit is {audit.get_state_display().lower()}"
    design = plan_design(_config(audit))
    if audit.state == State.FAILED:
        stage = _stage_from_rows(audit, design.n_identities)
        if not Audit.objects.filter(pk=audit_id, state=State.FAILED).update(
                state=stage, error="", finished_at=None):
            return "nothing to resume: the audit changed state meanwhile"
        audit.refresh_from_db()
    waiting = list(waiting)
    if audit.state == State.QUEUED:
        return _send_once(audit_id, "start_audit", waiting, dispatch, "start")
    if audit.state == State.GENERATING:
        return _resume_generation(audit, design, waiting, dispatch)
    if audit.state == State.SCORING:
        return _resume_scoring(audit, waiting, dispatch)
    return _send_once(audit_id, "aggregate", waiting, dispatch, "statistics")


def _send_once(audit_id: int, name: str, waiting: list[Waiting], dispatch: Dispatch,
               what: str) -> str:
    """Send stage ``name`` (no batch) again unless it is waiting in the queue."""
    if any(n == name for n, _ in waiting):
        return f"{what} is waiting in the queue"
    dispatch(name, audit_id)
    return f"{what} sent again"


def _resume_generation(audit: Audit, design, waiting: list[Waiting], dispatch: Dispatch) -> str:
    """Identity sampling if it is unfinished, else the identities that lack images, else the
    move to scoring."""
    from django.conf import settings

    if SyntheticIdentity.objects.filter(audit=audit).count() < design.n_identities:
        return _send_once(audit.pk, "sample_identities", waiting, dispatch, "identity sampling")
    missing = list(SyntheticIdentity.objects.filter(audit=audit)
                   .annotate(n=models.Count("images")).filter(n__lt=len(design.variants))
                   .order_by("id").values_list("id", flat=True))
    if not missing:
        _finish_generation(audit.pk, design.n_images, dispatch)
        return "generation complete; scoring sent"
    return _send_batches(audit.pk, "generate_images", missing, settings.FACEAUDIT_GENERATE_BATCH,
                         waiting, dispatch, ("generation", "identities"))


def _resume_scoring(audit: Audit, waiting: list[Waiting], dispatch: Dispatch) -> str:
    """The images without an analysis, else the move to statistics."""
    from django.conf import settings

    missing = list(GeneratedImage.objects.filter(audit=audit, analysis__isnull=True)
                   .order_by("id").values_list("id", flat=True))
    if not missing:
        _finish_scoring(audit.pk, audit.n_images_planned, dispatch)
        return "scoring complete; statistics sent"
    return _send_batches(audit.pk, "score_images", missing, settings.FACEAUDIT_SCORE_BATCH,
                         waiting, dispatch, ("scoring", "images"))


def _send_batches(audit_id: int, name: str, missing: list[int], size: int,
                  waiting: list[Waiting], dispatch: Dispatch, words: tuple[str, str]) -> str:
    """Send, in batches of ``size``, the ``missing`` ids (identities or images) that no waiting
    ``name`` batch carries; a sentence that says what was sent, ``words`` naming the stage and
    what it works on."""
    queued = {i for n, args in waiting if n == name and len(args) > 1 for i in args[1]}
    lost = [i for i in missing if i not in queued]
    for chunk in _chunks(lost, size):
        dispatch(name, audit_id, chunk)
    stage, noun = words
    if not lost:
        return f"{stage} of {len(missing)} {noun} is waiting in the queue"
    sentence = f"{stage} sent again for {len(lost)} {noun}"
    if len(lost) < len(missing):
        sentence += f" ({len(missing) - len(lost)} more waiting in the queue)"
    return sentence


def _build_export_cache(audit_id: int) -> None:
    """Deflate the dataset zip's large files once (worker/export_cache.py); if that fails, the
    downloads build them on the fly, so the audit is not failed for it."""
    from worker.export_cache import build_export_cache
    from worker.exports import cacheable_members

    audit = Audit.objects.select_related("result").get(pk=audit_id)
    try:
        build_export_cache(audit, cacheable_members(audit))
    except (OSError, ValueError) as exc:
        log.warning("audit %s: export cache not built (%s); downloads build files on the fly",
                    audit_id, exc)


STAGES: dict[str, Callable[..., None]] = {
    "start_audit": start,
    "sample_identities": sample_identities,
    "generate_images": generate_images,
    "score_images": score_images,
    "aggregate": aggregate,
}


class InlineRunner:
    """Runs an audit's stages in this process, in order (for ``run_audit`` and tests)."""

    def __init__(self, on_stage: Callable[[str, tuple], None] | None = None):
        self.queue: list[tuple[str, tuple]] = []
        self.on_stage = on_stage

    def dispatch(self, name: str, *args: Any) -> None:
        self.queue.append((name, args))

    def run(self, audit_id: int) -> Audit:
        self.dispatch("start_audit", audit_id)
        return self.drain(audit_id)

    def drain(self, audit_id: int) -> Audit:
        """Run what has been dispatched (and what that dispatches) until nothing is left."""
        while self.queue:
            name, args = self.queue.pop(0)
            if self.on_stage is not None:
                self.on_stage(name, args)
            STAGES[name](*args, dispatch=self.dispatch)
        return Audit.objects.get(pk=audit_id)


__all__ = ["STAGES", "TRANSIENT_ERRORS", "InlineRunner", "StageError", "resume"]
