"""``DATASET_CARD.md`` of an audit's dataset export: composition per group and factor level, the
recipe, the licences of every model that made or scored it, intended and out-of-scope uses, and
known limitations (in the spirit of Gebru et al. 2021, "Datasheets for Datasets")."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

from django.db.models import Count

from audit.summary import AuditSummary
from exports.plan import ExportPlan, plan_export
from webapp.audits.models import Audit, FaceAnalysis, GeneratedImage, SyntheticIdentity


def _md(text: Any) -> str:
    """``text`` for a Markdown table cell or line: one line, with backslashes, pipes, angle
    brackets and backticks escaped (no table breaks, no HTML)."""
    value = " ".join(str(text).split())
    return re.sub(r"([\\`<>|])", r"\\\1", value)


def _level_text(level: Any) -> str:
    """A factor level as in variant names: ``1`` for 1.0, ``1.5``, or a prompt word."""
    return f"{level:g}" if isinstance(level, int | float) else str(level)


def _composition(audit: Audit) -> dict[str, Any]:
    """Identities and images per group, per group and variant, faces found and generator check
    failures per group, counted in the database."""
    identities = dict(SyntheticIdentity.objects.filter(audit=audit).values_list("group_name")
                      .annotate(n=Count("id")).values_list("group_name", "n"))
    images: Counter[str] = Counter()
    cells: dict[str, Counter[str]] = defaultdict(Counter)
    variants: dict[str, tuple[str, Any]] = {}
    rows = (GeneratedImage.objects.filter(audit=audit)
            .values("identity__group_name", "variant", "factor", "level")
            .annotate(n=Count("id")))
    for row in rows:
        group = row["identity__group_name"]
        images[group] += row["n"]
        cells[group][row["variant"]] += row["n"]
        variants[row["variant"]] = (row["factor"], row["level"])
    failed = Counter(dict(
        GeneratedImage.objects.filter(audit=audit, checks__passed=False)
        .values_list("identity__group_name").annotate(n=Count("id"))
        .values_list("identity__group_name", "n")))
    no_face = Counter(dict(
        FaceAnalysis.objects.filter(image__audit=audit, face_found=False)
        .values_list("image__identity__group_name").annotate(n=Count("id"))
        .values_list("image__identity__group_name", "n")))
    order = ["baseline", "control"]
    ordered = sorted(variants, key=lambda v: (order.index(v) if v in order else 2,
                                              variants[v][0], str(variants[v][1])))
    return {"groups": sorted(set(identities) | set(images)), "identities": identities,
            "images": images, "cells": cells, "variants": ordered, "variant_info": variants,
            "failed": failed, "no_face": no_face}


DATASET_CARD_USES = """\
## Intended use

- Auditing face recognition models for demographic differentials: per-group false non-match and
  false match rates at a global threshold, and the effect of controlled image factors per group.
- Research on bias measurement, face image quality and synthetic data for biometrics.

## Out-of-scope uses

- Training or fine-tuning face recognition, attribute or demographic classifiers meant for
  deployment; the images are few, synthetic and labelled with perceived attributes only.
- Drawing conclusions about real people or real demographic groups, or about an FR model's
  accuracy in a deployment, from these images alone.
- Identifying, verifying or profiling any person; inferring anyone's gender, age or ethnicity.
- Any use that the licences above do not allow (several models are licensed for
  non-commercial research only).
"""


def dataset_card(audit: Audit, plan: ExportPlan | None = None) -> str:
    """``DATASET_CARD.md``: composition per group and factor level, recipe, licences of every
    model, intended and out-of-scope uses, known limitations."""
    result = getattr(audit, "result", None)
    summary = AuditSummary.of(result.summary if result is not None else None)
    config = audit.config or {}
    comp = _composition(audit)
    if plan is None:
        plan = plan_export(audit)
    lines = [f"# Dataset card: {_md(audit.name)} (FaceAudit)", ""]
    if config.get("description"):
        lines += [_md(config["description"]), ""]
    lines += _composition_lines(comp, plan)
    lines += _recipe_lines(audit, summary, config)
    lines += _model_lines(summary.model_files)
    lines += ["", "The images inherit the most restrictive of these licences.", "",
              DATASET_CARD_USES]
    lines += _limitations(summary, comp, config)
    return "\n".join(lines) + "\n"


def _composition_lines(comp: dict[str, Any], plan: ExportPlan) -> list[str]:
    """The summary paragraph and the composition tables (per group, per group and variant)."""
    groups = comp["groups"]
    n_images = sum(comp["images"].values())
    per_group = sorted(set(comp["images"].values()))
    lines = [
        "## Summary", "",
        f"{n_images:,} synthetic face images of {sum(comp['identities'].values()):,} synthetic "
        f"identities in {len(groups)} demographic groups, made by a controlled design: every "
        "identity has one baseline image, one control image (a null re-capture of the "
        "baseline) and one image per factor level, changing one thing at a time with the "
        "identity and seed held fixed. The groups are balanced by construction"
        + (f": {per_group[0]:,} images in each group." if len(per_group) == 1
           else f" (images per group: {', '.join(str(n) for n in per_group)}; an audit that "
                "stopped early can be unbalanced)."),
        "", "## Composition", "",
        "| group | folder | identities | images | no face found | failed generator checks |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for g in groups:
        lines.append(f"| {_md(g)} | images/{plan.slugs.get(g, '')}/ | "
                     f"{comp['identities'].get(g, 0)} | {comp['images'].get(g, 0)} | "
                     f"{comp['no_face'].get(g, 0)} | {comp['failed'].get(g, 0)} |")
    lines += ["", "Images per group and factor level (variant):", "",
              "| variant | factor | level | " + " | ".join(_md(g) for g in groups) + " |",
              "|---|---|---|" + "---:|" * len(groups)]
    for v in comp["variants"]:
        factor, level = comp["variant_info"][v]
        level_text = "" if level is None else _level_text(level)
        lines.append(f"| {_md(v)} | {_md(factor)} | {level_text} | "
                     + " | ".join(str(comp["cells"][g].get(v, 0)) for g in groups) + " |")
    lines += ["", "Group labels are perceived attributes read by sensors on the generated "
                  "faces (the gender-age model; the individual typology angle on skin pixels), "
                  "never true attributes of a person.", ""]
    return lines


def _recipe_lines(audit: Audit, summary: AuditSummary, config: dict[str, Any]) -> list[str]:
    """How the images were made: generator, image size, seed, groups, factors, FR models."""
    generator = summary.model_files.get("generator", {})
    axes = config.get("groups") or {}
    factors = config.get("factors") or {}
    return [
        "## Recipe", "",
        f"- Generator: `{_md(generator.get('name') or config.get('generator', ''))}`, "
        f"weights SHA-256 `{generator.get('weights_sha256') or 'unknown'}`; licence: "
        f"{_md(generator.get('licence') or 'unknown')}.",
        f"- Image size: {_image_size_text(generator)}",
        f"- Audit seed: {audit.seed}. Every identity's latent seed and every factor seed "
        "are derived from it and the cell's coordinates (BLAKE2b); manifest.csv lists them per "
        "image. The same config and seed give the same images on the same platform.",
        "- Groups (all combinations of the levels): "
        + "; ".join(f"{_md(axis)}: {', '.join(_md(v) for v in levels)}"
                    for axis, levels in axes.items()) + ".",
        f"- Identities per group: {config.get('identities_per_group', '')}."
        + _acceptance_text(summary.identity_sampling),
        "- Factors and levels: "
        + ("; ".join(f"{_md(f)}: {', '.join(_md(_level_text(v)) for v in levels)}"
                     for f, levels in factors.items()) or "none")
        + ". Plus the baseline and the control condition (1-pixel shift, JPEG quality 95).",
        f"- FR models under test: {', '.join(_md(m) for m in config.get('fr_models', []))}; "
        f"target FMR: {', '.join(f'{t:g}' for t in config.get('target_fmr', []))}.",
    ]


def _model_lines(models: dict[str, Any]) -> list[str]:
    """Every model that made, checked or scored the images, with its SHA-256 and licence."""
    lines = ["", "## Models and licences", "",
             "Every model that made, checked or scored these images:", "",
             "| model | role | file | SHA-256 | licence | source |", "|---|---|---|---|---|---|"]
    for name, info in models.items():
        role = info.get("role") or ("generator" if name == "generator" else "")
        label = info.get("name") or name
        lines.append(f"| {_md(label)} | {_md(role)} | {_md(info.get('file') or '')} | "
                     f"`{info.get('weights_sha256') or ''}` | {_md(info.get('licence') or '')} | "
                     f"{_md(info.get('source') or '')} |")
    if not models:
        lines.append("| (no results stored) | | | | | |")
    return lines


def _acceptance_text(sampling: dict[str, Any]) -> str:
    """Per-group acceptance rates of identity sampling, as one sentence (empty when unknown)."""
    groups = sampling.get("groups") or {}
    rates = [f"{_md(g)} {v['acceptance_rate']:.0%}" for g, v in groups.items()
             if v.get("acceptance_rate") is not None]
    if not rates:
        return ""
    screened = sampling.get("screened")
    drawn = (f" (picked from {screened:,} latents by their predicted attributes)"
             if screened and screened > sampling.get("candidates", 0) else "")
    return (f" Of {sampling.get('candidates', 0):,} rendered candidates{drawn}, the share the "
            f"sensors placed in each group while it was open: {', '.join(rates)}.")


def _image_size_text(generator: dict[str, Any]) -> str:
    """What the stored images' size is and where it comes from (the recipe's ``image_size`` and,
    for generators that synthesise larger, ``synthesised_at``)."""
    size = generator.get("image_size")
    if not size:
        return "as recorded per image in manifest.csv."
    text = f"{size} x {size} pixels, stored and scored at this size (lossless PNG)"
    full = generator.get("synthesised_at")
    if full and full != size:
        text += (f"; synthesised at {full} x {full} and box-downscaled, which keeps face "
                 "detection and FR similarity of the full image")
    return text + "."


def _limitations(summary: AuditSummary, comp: dict[str, Any],
                 config: dict[str, Any]) -> list[str]:
    lines = [
        "## Known limitations", "",
        "- Synthetic faces: the images come from a generator trained on its own data (the "
        "photoreal default on FFHQ, whose faces are mostly young adults, often smiling); error "
        "rates on them need not match those on real photographs.",
        "- Perceived attributes: group labels are read by automatic sensors on the generated "
        "faces and can be wrong; they describe how a face looks to a model, not who anyone is.",
        "- Generator bias: the generator may work better for some groups. Per group, images "
        "where no face was found and images that failed the generator's checks are left out of "
        "the FR comparisons (counts below and in summary.json, generator_checks).",
    ]
    for g in comp["groups"]:
        images = comp["images"].get(g, 0)
        lines.append(f"  - {_md(g)}: {comp['failed'].get(g, 0)} of {images} images failed the "
                     f"generator checks; no face found in {comp['no_face'].get(g, 0)}.")
    small = []
    for fr_model, model in summary.models.items():
        rankable = model.points[0].rankable if model.points else {}
        for g, r in rankable.items():
            if not r.get("rankable", True):
                small.append(f"  - {_md(fr_model)}, {_md(g)}: {_md(r.get('reason', ''))}")
    ipg = int(config.get("identities_per_group") or 0)
    lines.append(
        f"- Small cells: {ipg} identities per group. Intervals are wide for small groups, and "
        "groups with fewer than 20 identities, 100 mated or 1,000 within-group non-mated "
        "comparisons are not ranked" + (":" if small else "."))
    lines += small
    lines += ["- Factor levels are single settings of synthetic degradations or latent edits; "
              "they approximate, not reproduce, real capture conditions.", ""]
    return lines


