"""The descriptive blocks of ``summary.json``: what was audited and how the images came about.

One builder per block, each returning the block's dict with its keys in the order the summary
has always had them (the JSON is compared byte for byte between runs): ``audit``, ``design``,
``acquisition``, ``identity_sampling``, ``generator_checks``, ``identity_judge``, ``models`` and
``comparisons``. The statistics per FR model are in :mod:`worker.summary.operating_points`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from generator.config import AuditConfig
from webapp.audits.models import Audit, GeneratedImage


def audit_block(audit: Audit, config: AuditConfig) -> dict[str, Any]:
    """``audit``: the audit's id, name, seed and full configuration."""
    return {"id": audit.pk, "name": audit.name, "seed": config.seed, "config": config.to_dict()}


def design_block(design) -> dict[str, Any]:
    """``design``: the groups, identities per group, variants and image count planned."""
    return {"groups": [g.name for g in design.groups],
            "identities_per_group": design.identities_per_group,
            "variants": [v.key for v in design.variants], "n_images": design.n_images}


def acquisition_block(images: pd.DataFrame) -> dict[str, Any]:
    """``acquisition``: images, faces found and the failure-to-acquire rate (ISO/IEC 19795-1),
    overall and per group."""
    def block(df: pd.DataFrame) -> dict[str, Any]:
        n, found = len(df), int(df["face_found"].sum())
        return {"images": n, "faces_found": found,
                "failure_to_acquire_rate": (n - found) / n if n else None}

    return {"overall": block(images),
            "by_group": {g: block(d) for g, d in images.groupby("group", sort=True)}}


def identity_sampling_block(audit: Audit) -> dict[str, Any]:
    """``identity_sampling``: the sampling rule in words and the acceptance report sampling
    stored in the audit's progress."""
    return {
        "rule": "candidates are rendered from seeded latents and join the first group whose "
                "levels the sensors confirm; acceptance_rate = candidates the sensors placed "
                "in the group / candidates rendered while it still needed identities; "
                "screened (guided sampling): latents drawn, of which only the first per "
                "rendered slot whose predicted attributes its shift can reach was rendered",
        **((audit.stage_progress or {}).get("sampling", {}).get("acceptance") or {})}


def generator_checks_block(audit: Audit, images: pd.DataFrame) -> dict[str, Any]:
    """``generator_checks``: :func:`generator_checks` with the skin tone label moves."""
    return {**generator_checks(images), "skin_tone_label_moves": skin_tone_label_moves(audit)}


def generator_checks(images: pd.DataFrame) -> dict[str, Any]:
    """Generator accountability per group, and per group and factor: share of images with a face
    found, of latent edits on target, with the other sensors held, with identity kept, and that
    passed every check; mean identity similarity to the baseline (drift)."""

    def block(df: pd.DataFrame) -> dict[str, Any]:
        checks = [c or {} for c in df["checks"]]
        edits = [c for c in checks if c.get("target_sensor")]

        def share(items, key):
            vals = [c.get(key) for c in items if c.get(key) is not None]
            return (sum(bool(v) for v in vals) / len(vals)) if vals else None

        sims = [c["identity_similarity"] for c in checks
                if c.get("identity_similarity") is not None and c.get("target_sensor") is not None]
        return {"images": len(df), "face_found": share(checks, "face_found"),
                "latent_edits": len(edits), "on_target": share(edits, "on_target"),
                "others_held": share(edits, "others_held"),
                "identity_kept": share(edits, "identity_kept"),
                "edit_ok": share(edits, "edit_ok"),
                "identity_similarity_mean": float(np.mean(sims)) if sims else None,
                "passed": share(checks, "passed"),
                "mean_attempts": float(np.mean([c.get("attempts", 1) for c in edits]))
                if edits else None}

    return {
        "overall": block(images),
        "by_group": {g: block(d) for g, d in images.groupby("group", sort=True)},
        "by_group_factor": {f"{g} | {f}": block(d) for (g, f), d in
                            images[~images["is_baseline"]].groupby(["group", "factor"], sort=True)},
        "note": ("images whose face was not found, whose edit missed its target or moved another "
                 "attribute are left out of the FR comparisons; the identity judge's verdict "
                 "does not remove an image from them, it defines the judged-same view reported "
                 "beside them (identity_judge_view)"),
    }


def skin_tone_label_moves(audit: Audit) -> dict[str, Any]:
    """Per factor, how many variants read as the other coarse skin tone (lighter/darker by the
    skin tone index, :func:`audit.sensors.coarse_skin_tone_from_index`) than their own baseline
    (``moved``), and how many of those take part in the comparisons (``moved_usable``: face
    found, edit on target with the other attributes held): a lighting change must not move a
    face's group label. From the readings each image's recipe records at generation; images
    without a reading are not counted."""
    from audit.sensors import coarse_skin_tone_from_index

    rows = list(GeneratedImage.objects.filter(audit=audit)
                .values_list("identity_id", "factor", "recipe", "checks"))

    def label(recipe) -> str | None:
        value = ((recipe or {}).get("sensors") or {}).get("skin_tone_index")
        return None if value is None else coarse_skin_tone_from_index(float(value))

    base = {i: label(r) for i, f, r, _ in rows if f == "baseline"}
    out: dict[str, dict[str, int]] = {}
    for identity, factor, recipe, checks in rows:
        a, b = base.get(identity), label(recipe)
        if factor == "baseline" or a is None or b is None:
            continue
        cell = out.setdefault(str(factor), {"images": 0, "moved": 0, "moved_usable": 0})
        cell["images"] += 1
        cell["moved"] += a != b
        cell["moved_usable"] += a != b and bool((checks or {}).get("edit_ok", True))
    return {"rule": "variants whose skin tone label (lighter/darker by the skin tone index) "
                    "differs from their baseline's; moved_usable: those in the comparisons",
            "by_factor": dict(sorted(out.items()))}


def identity_judge_block(audit: Audit) -> dict[str, Any]:
    """``identity_judge``: the judge and cut-off fixed on the audit row, and which comparisons
    the headline results use."""
    return {**(audit.identity_judge or {}),
            "comparisons_shown": "every variant whose face was found and whose "
                                 "edit reached its target with the other "
                                 "attributes held; the judged-same view is in "
                                 "each operating point's identity_judge_view"}


def models_block(audit: Audit, config: AuditConfig, registry) -> dict[str, Any]:
    """``models``: the generator (from the images' recipes), then the detector, the attribute
    model, the FR models under test and the identity judge: role, file, weights hash, licence
    and source of each."""
    from audit.sensors import gender_age_model

    return {
        "generator": generator_provenance(audit, config.generator),
        **{name: {"role": spec.role,
                  "file": getattr(spec, "filename", None) or getattr(spec, "package", ""),
                  "weights_sha256": spec.sha256 or _registered_sha256(registry, name),
                  "licence": spec.licence, "source": spec.source}
           for name in ("scrfd_500m", gender_age_model(registry), *config.fr_models,
                        *[m for m in [(audit.identity_judge or {}).get("model")]
                          if m and m not in config.fr_models])
           for spec in [model_spec(registry, name)]},
    }


def comparisons_block(pairs: pd.DataFrame) -> dict[str, Any]:
    """``comparisons``: how many mated and non-mated pairs were formed, and the design and match
    rule in words."""
    return {"mated": int(pairs["mated"].sum()),
            "nonmated": int((~pairs["mated"]).sum()),
            "nonmated_total": int(pairs.attrs.get("nonmated_total",
                                                  (~pairs["mated"]).sum())),
            "nonmated_design": "every image vs the baseline of every other identity",
            "match_rule": "similarity >= threshold"}


def generator_provenance(audit: Audit, name: str) -> dict[str, Any]:
    """The generator that made the audit's images, read from their recipes (every image records
    the model id, weights hash and licence it was rendered with): ``name``, ``model_id``,
    ``weights_sha256``, ``licence``, ``image_size`` (pixels, when recorded), and ``mixed`` when
    the images disagree (e.g. weights changed between a run and a Retry)."""
    from generator.backends import DCGAN_LICENCE

    seen: dict[tuple, dict[str, Any]] = {}
    for recipe in (GeneratedImage.objects.filter(audit=audit, factor="baseline")
                   .values_list("recipe", flat=True)):
        r = recipe or {}
        key = (r.get("model_id"), r.get("weights_sha256"))
        seen.setdefault(key, {"model_id": r.get("model_id"), "weights_sha256": r.get("weights_sha256"),
                              "licence": r.get("licence"), "image_size": r.get("image_size"),
                              "synthesised_at": r.get("synthesised_at"),
                              "truncation": r.get("truncation")})
    out: dict[str, Any] = {"name": name, "model_id": None, "weights_sha256": None,
                           "licence": None}
    if seen:
        first = seen[sorted(seen, key=str)[0]]
        out.update({k: v for k, v in first.items() if v is not None})
        if len(seen) > 1:
            out["mixed"] = [v for _, v in sorted(seen.items(), key=lambda kv: str(kv[0]))]
    if out.get("licence") is None and out.get("model_id") == "dcgan-digiface":
        out["licence"] = DCGAN_LICENCE  # images rendered before recipes carried the licence
    return out


def _registered_sha256(registry, name: str) -> str | None:
    """The recorded sha256 of a model file no source publishes a hash for (None if absent)."""
    from audit.registry import ModelError

    try:
        return registry.sha256(name)
    except (ModelError, AttributeError):
        return None


def model_spec(registry, name: str):
    """A model's registry entry, whether a model-directory file or a package model."""
    from types import SimpleNamespace

    from audit.registry import INSIGHTFACE_LICENCE, INSIGHTFACE_PACKS, UnknownModelError

    if name in INSIGHTFACE_PACKS:  # the operator's copy: hashed at load, recorded per embedding
        return SimpleNamespace(role="recognition", filename=f"{name}/{INSIGHTFACE_PACKS[name]}",
                               sha256=None, licence=INSIGHTFACE_LICENCE,
                               source="insightface model pack")
    try:
        return registry.spec(name)
    except UnknownModelError:
        return registry.package_spec(name)
