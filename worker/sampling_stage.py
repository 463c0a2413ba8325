"""The first stages: claim a queued audit, then sample its synthetic identities.

Sampling renders candidates from seeded latents until every group of the design holds its
identities (each confirmed by the attribute sensors), stores them, learns or loads the latent
directions the audit's edits need, fixes the identity judge's cut-off from the baselines, and
sends the identities to generation in batches. Refusals that need no weights (no identity
judge, a diffusion route missing its identity model) come before any work.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.utils import timezone

from generator.config import AuditConfig
from generator.design import plan_design
from webapp.audits.models import Audit, SyntheticIdentity
from worker.identity_judge import choose_identity_judge, identity_policy
from worker.state import (
    Dispatch,
    StageError,
    State,
    advance,
    audit_config,
    chunks,
    is_cancelled,
    latent_factors,
    set_stage,
    stage_errors,
    throttled,
)

#: Up to this many identities, sampling keeps each accepted face in memory (about 0.8 MB at 512
#: px) so that the identity judge's cut-off reads them instead of rendering the baselines again.
KEEP_SAMPLED = 256

#: Readings of a draw that say how to render the identity again, stored as its conditioning: a
#: diffusion anchor's embedding and prompt, or a latent generator's guidance shift.
CONDITIONING_KEYS = ("identity_embedding", "identity_embedding_sha256", "anchor_prompt", "anchor_seed",
                     "anchor_identity", "anchor_render", "latent_shift")


def start(audit_id: int, dispatch: Dispatch) -> None:
    """Claim the queued audit and schedule identity sampling."""
    if advance(audit_id, State.QUEUED, State.GENERATING, started_at=timezone.now()):
        dispatch("sample_identities", audit_id)


def sample_identities(audit_id: int, dispatch: Dispatch) -> None:
    """Sample identities until every group is full (sensor-confirmed), store them, and schedule
    image generation in batches."""
    from worker.runtime import keep_sampled

    audit = Audit.objects.filter(pk=audit_id).first()
    if audit is None or audit.state != State.GENERATING:  # deleted, cancelled, or already moved on
        return
    with stage_errors(audit_id, "sampling identities"):
        config = audit_config(audit)
        design = plan_design(config)
        choose_identity_judge(config)  # refuse before any work when no model can judge
        sampled: dict[int, np.ndarray] | None = None  # latent seed -> baseline pixels
        if SyntheticIdentity.objects.filter(audit=audit).count() < design.n_identities:
            check_identity_model(config)  # a diffusion route's identity model, before weights
            draws = _draw_identities(audit_id, config, design)
            if draws is None:  # cancelled meanwhile
                return
            _store_draws(audit, draws)
            if all(d.image is not None for d in draws):
                sampled = {int(d.latent_seed): d.image for d in draws}
                keep_sampled(audit_id, sampled)
        set_stage(audit_id, "sampling", done=design.n_identities, total=design.n_identities)
        if latent_factors(config):
            learn_directions_with_progress(audit_id, config)
        identity_policy(audit_id, config, baselines=sampled)
        _schedule_generation(audit, dispatch)


def _draw_identities(audit_id: int, config: AuditConfig, design) -> list | None:
    """The generator's accepted draws for the whole design, with sampling progress (and its
    acceptance report) written to the audit; None when the audit was cancelled meanwhile."""
    from worker.runtime import get_backend

    backend = get_backend(config.generator)
    progress = throttled(lambda found, needed, tried: set_stage(
        audit_id, "sampling", done=found, total=needed, candidates=tried))
    labeller, encoder = labeller_and_encoder(config, backend)
    report: dict[str, Any] = {}
    guidance = guided_sampling(audit_id, backend)
    draws = backend.sample_identities(design, labeller, config.seed, encoder=encoder,
                                      progress=progress, report=report,
                                      should_stop=lambda: is_cancelled(audit_id),
                                      keep_images=design.n_identities <= KEEP_SAMPLED,
                                      **guidance)
    if is_cancelled(audit_id):
        return None
    if report and hasattr(encoder, "describe"):
        report["identity_model"] = encoder.describe()  # what the identities are
    if report:
        set_stage(audit_id, "sampling", acceptance=report)
    return draws


def _store_draws(audit: Audit, draws: list) -> None:
    """One SyntheticIdentity row per draw (a row stored by an earlier run is kept), its
    re-rendering readings split off as its conditioning."""
    rows = []
    for d in draws:
        sensors = dict(d.sensors)
        conditioning = {k: sensors.pop(k) for k in CONDITIONING_KEYS if k in sensors}
        rows.append(SyntheticIdentity(
            audit=audit, group_name=d.group.name, group_labels=d.group.as_dict,
            index_in_group=d.index_in_group, candidate=d.candidate,
            latent_seed=d.latent_seed, sensors=sensors, conditioning=conditioning))
    SyntheticIdentity.objects.bulk_create(rows, ignore_conflicts=True)


def _schedule_generation(audit: Audit, dispatch: Dispatch) -> None:
    """Send the audit's identities to generation in batches, in id order."""
    from django.conf import settings

    ids = list(SyntheticIdentity.objects.filter(audit=audit).order_by("id")
               .values_list("id", flat=True))
    for chunk in chunks(ids, settings.FACEAUDIT_GENERATE_BATCH):
        dispatch("generate_images", audit.pk, chunk)


def guided_sampling(audit_id: int, backend) -> dict[str, Any]:
    """Keyword arguments that turn on guided sampling for a backend that asks for it (a latent
    generator with a baseline rule): its learned directions (learned now on first use, with
    progress), the groups' boundaries and the sensors to hold. Empty for the others."""
    if backend.latent is None or not getattr(backend, "guided", False):
        return {}
    from worker.labels import group_bands
    from worker.runtime import DIRECTION_SENSORS, get_directions

    return {"directions": get_directions(backend.latent,
                                         progress=directions_progress(audit_id)),
            "aims": group_bands, "hold": DIRECTION_SENSORS}


def directions_progress(audit_id: int):
    """A throttled ``progress(done, total)`` for learning directions, written to the audit."""
    return throttled(lambda done, total: set_stage(
        audit_id, "sampling", directions_done=done, directions_total=total))


def labeller_and_encoder(config: AuditConfig, backend):
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


def check_identity_model(config: AuditConfig) -> None:
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


def learn_directions_with_progress(audit_id: int, config: AuditConfig) -> None:
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
    directions = get_directions(latent, progress=directions_progress(audit_id))
    try:
        directions.check_editable([FACTORS[f].sensor for f in latent_factors(config)])
    except UnreliableDirection as exc:
        raise StageError(str(exc)) from None
