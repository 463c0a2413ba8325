"""The generation stage: render each identity's baseline and variants with their checks (the
generator's accountability), store every image as a PNG file and a row, and when the audit's
last image exists, move it to scoring.

A batch is a list of identity ids; an identity that already has every image (a batch sent
again) is skipped, and one with some of them is rendered again in full, each image overwriting
the file and row an earlier run left (names come from the design cell, not the run).
"""

from __future__ import annotations

import hashlib

from django.db import models

from exports.files import AuditFiles, group_slugs, save_file
from generator.design import plan_design
from webapp.audits.models import Audit, GeneratedImage, SyntheticIdentity
from worker.identity_judge import identity_cells, identity_policy
from worker.image_files import encode_png
from worker.state import (
    Dispatch,
    State,
    advance,
    audit_config,
    chunks,
    is_cancelled,
    latent_factors,
    stage_errors,
    touch,
)


def generate_images(audit_id: int, identity_ids: list[int], dispatch: Dispatch) -> None:
    """Render baseline + variants of the given identities with their checks (generator
    accountability), store them, and when the last image of the audit exists, move on to
    scoring. Identities that already have every image (a batch sent again) are skipped."""
    audit = Audit.objects.filter(pk=audit_id).first()
    if audit is None or audit.state != State.GENERATING:  # deleted, cancelled, or already moved on
        return
    with stage_errors(audit_id, "generating images"):
        design = plan_design(audit_config(audit))
        identities = identities_to_render(audit, identity_ids, len(design.variants))
        if identities:
            render_and_store(audit, identities, design)
        touch(audit_id)
        if is_cancelled(audit_id):
            return
        finish_generation(audit_id, design.n_images, dispatch)


def identities_to_render(audit: Audit, identity_ids: list[int], n_variants: int) -> list:
    """The given identities of the audit that still lack some of their ``n_variants`` images."""
    return list(SyntheticIdentity.objects.filter(audit=audit, pk__in=identity_ids)
                .annotate(n_images=models.Count("images")).filter(n_images__lt=n_variants)
                .order_by("id"))


def render_and_store(audit: Audit, identities: list, design) -> None:
    """Render the identities' baselines and variants with their checks and store each image
    (file and row), replacing whatever part of them an earlier run left."""
    from worker.runtime import get_backend, get_directions, get_sense, take_sampled

    audit_id = audit.pk
    config = audit_config(audit)
    backend = get_backend(config.generator)
    policy = identity_policy(audit_id, config, backend)
    sense = get_sense(policy.identity_judge)
    directions = (get_directions(backend.latent)
                  if latent_factors(config) and backend.latent is not None else None)
    kept = take_sampled(audit_id, [int(i.latent_seed) for i in identities])
    extra = {"baselines": kept} if any(k is not None for k in kept) else {}
    rendered = backend.render_and_check(identity_cells(identities), design.variants, config.seed,
                                        sense, policy, directions, **extra)
    _store_images(audit, identities, rendered, group_slugs(g.name for g in design.groups))


def _store_images(audit: Audit, identities: list, rendered, slugs: dict[str, str]) -> None:
    """Write each rendered image's PNG under its design cell's name and its row (recipe,
    checks, hash), overwriting what an earlier run stored for the same cell."""
    files = AuditFiles(audit.pk)
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


def finish_generation(audit_id: int, n_images: int, dispatch: Dispatch) -> None:
    """When every designed image exists, move to scoring (once) and schedule it in batches."""
    from django.conf import settings

    images = GeneratedImage.objects.filter(audit_id=audit_id)
    if images.count() >= n_images and advance(audit_id, State.GENERATING, State.SCORING):
        ids = list(images.order_by("id").values_list("id", flat=True))
        for chunk in chunks(ids, settings.FACEAUDIT_SCORE_BATCH):
            dispatch("score_images", audit_id, chunk)
