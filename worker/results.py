"""Build an audit's statistics from its stored rows with the framework-free ``audit`` library."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from generator.config import AuditConfig
from generator.design import plan_design
from webapp.audits.models import (
    Audit,
    Embedding,
    FaceAnalysis,
    GeneratedImage,
    SyntheticIdentity,
)

COMPARISON_COLUMNS = ["fr_model", "image_a", "image_b", "identity_a", "identity_b", "group_a",
                      "group_b", "mated", "score"]


def image_table(audit: Audit) -> pd.DataFrame:
    """One row per image, in design order (group, identity, image): image_id, identity_id,
    group, factor, level, is_baseline, face_found (by the scoring detector), check_passed (every
    generator check, the identity judge's included), edit_ok (face found at generation, edit on
    target, other attributes held), judged_same (the identity judge did not call it another
    person), usable (face_found and edit_ok: the images the FR comparisons use)."""
    rows = (GeneratedImage.objects.filter(audit=audit)
            .order_by("identity__group_name", "identity__index_in_group", "id")
            .values_list("id", "identity_id", "identity__group_name", "factor", "level",
                         "checks", "variant"))
    df = pd.DataFrame(list(rows), columns=["image_id", "identity_id", "group", "factor", "level",
                                           "checks", "variant"])
    df = _in_design_order(df, audit)
    found = dict(FaceAnalysis.objects.filter(image__audit=audit)
                 .values_list("image_id", "face_found"))
    df["is_baseline"] = df["factor"] == "baseline"
    df["face_found"] = df["image_id"].map(found).fillna(False).astype(bool)
    df["check_passed"] = [bool(c.get("passed", True)) if c else True for c in df["checks"]]
    # Checks stored before edit_ok existed: their "passed" is the closest rule.
    df["edit_ok"] = [bool(c.get("edit_ok", c.get("passed", True))) if c else True
                     for c in df["checks"]]
    df["judged_same"] = [(c or {}).get("identity_kept") is not False for c in df["checks"]]
    df["usable"] = df["face_found"] & df["edit_ok"]
    return df


def _in_design_order(df: pd.DataFrame, audit: Audit) -> pd.DataFrame:
    """``df`` (rows of images with group, identity_id, variant) sorted by group, identity
    index and the design's variant order, with ``design_no`` (1, 2, ... in that order) and
    ``identity_no``: keys that do not change when an image is regenerated under a new
    database id, so everything computed in this order is the same however the audit's work
    was split or resumed."""
    order = {v.key: i for i, v in enumerate(plan_design(AuditConfig(**audit.config)).variants)}
    index = dict(SyntheticIdentity.objects.filter(audit=audit)
                 .values_list("id", "index_in_group"))
    df = df.assign(_index=df["identity_id"].map(index),
                   _variant=df["variant"].map(lambda v: order.get(v, len(order))))
    df = df.sort_values(["group", "_index", "_variant", "image_id"], kind="stable")
    df = df.drop(columns=["_index", "_variant"]).reset_index(drop=True)
    df["design_no"] = np.arange(1, len(df) + 1)
    df["identity_no"] = pd.factorize(df["identity_id"])[0] + 1
    return df


def _design_ordered_pairs(usable: pd.DataFrame, seed: int) -> pd.DataFrame:
    """:func:`audit.comparisons.build_pairs` over the usable images, formed in design order
    (it orders pairs by image and identity id, so it is given the design numbers) and returned
    with the database ids."""
    from audit.comparisons import build_pairs

    keyed = usable[["design_no", "identity_no", "group", "is_baseline"]].rename(
        columns={"design_no": "image_id", "identity_no": "identity_id"})
    pairs = build_pairs(keyed, seed=seed, nonmated="reference")
    image_of = usable.set_index("design_no")["image_id"]
    identity_of = usable.drop_duplicates("identity_no").set_index("identity_no")["identity_id"]
    attrs = dict(pairs.attrs)
    pairs = pairs.assign(image_a=image_of.loc[pairs["image_a"]].to_numpy(),
                         image_b=image_of.loc[pairs["image_b"]].to_numpy(),
                         identity_a=identity_of.loc[pairs["identity_a"]].to_numpy(),
                         identity_b=identity_of.loc[pairs["identity_b"]].to_numpy())
    pairs.attrs = attrs
    return pairs


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


def _acquisition(images: pd.DataFrame) -> dict[str, Any]:
    def block(df: pd.DataFrame) -> dict[str, Any]:
        n, found = len(df), int(df["face_found"].sum())
        return {"images": n, "faces_found": found,
                "failure_to_acquire_rate": (n - found) / n if n else None}

    return {"overall": block(images),
            "by_group": {g: block(d) for g, d in images.groupby("group", sort=True)}}


def _registered_sha256(registry, name: str) -> str | None:
    """The recorded sha256 of a model file no source publishes a hash for (None if absent)."""
    from audit.registry import ModelError

    try:
        return registry.sha256(name)
    except (ModelError, AttributeError):
        return None


def _spec(registry, name: str):
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


BOOTSTRAP_REPLICATES = 1000
DISPARITY_ALPHA = 0.5  # weight of false matches against false non-matches in FDR and GARBE
PERMUTATIONS = 999  # group-label shuffles of the "no difference between groups" tests


def _uncertainty(comp: pd.DataFrame, rates, threshold: float, seed: int) -> dict[str, Any]:
    """Identity-bootstrap intervals per group and overall, disparity summaries with intervals
    from the same replicates and permutation tests of equal rates (same seed), and which groups
    are too small to rank."""
    from audit.disparity import rankable_groups, summarize_disparity
    from audit.uncertainty import bootstrap_cross_group_fmr, bootstrap_group_rates

    boot = bootstrap_group_rates(comp, threshold, n_boot=BOOTSTRAP_REPLICATES, seed=seed,
                                 rates=rates)
    disparity = summarize_disparity(boot, alpha=DISPARITY_ALPHA, comparisons=comp,
                                    n_permutations=PERMUTATIONS, seed=seed)
    rank = rankable_groups(boot)
    # Same seed: the same identity draws as the per-group intervals (its diagonal equals them).
    cross = bootstrap_cross_group_fmr(comp, threshold, n_boot=BOOTSTRAP_REPLICATES, seed=seed,
                                      rates=rates).to_dict()
    cross_group = {**rates.to_dict()["cross_group"],
                   **{k: cross[k] for k in ("lower", "upper", "interval", "confidence",
                                            "method")}}
    return {"cross_group": cross_group,
            "bootstrap": boot.to_dict(), "disparity": disparity.to_dict(),
            "rankable": {str(g): {"rankable": bool(r["rankable"]), "reason": r["reason"] or ""}
                         for g, r in rank.iterrows()}}


QUALITY_MEASURES = ("quality", "sharpness", "illumination_uniformity", "brightness", "yaw",
                    "pitch", "inter_eye_distance")
#: "Low quality" for the share-below summary: the audit's own 10th percentile of baseline
#: quality (raw FIQA scores have no universal scale).
LOW_QUALITY_PERCENTILE = 10.0


def quality_table(audit: Audit, images: pd.DataFrame) -> pd.DataFrame:
    """One row per image: group, factor, level and the quality measures (LightQNet ``quality``,
    ISO/IEC 29794-5-style sharpness, illumination uniformity, mean luminance, pose, inter-eye
    distance in pixels), each also as a percentile of the audit's own baseline images."""
    from audit.quality import percentile_against

    rows = {}
    for image_id, sensors, kps in (FaceAnalysis.objects.filter(image__audit=audit)
                                   .values_list("image_id", "sensors", "keypoints")):
        row = {k: (sensors or {}).get(k) for k in QUALITY_MEASURES if k != "inter_eye_distance"}
        row["inter_eye_distance"] = (float(np.hypot(kps[1][0] - kps[0][0], kps[1][1] - kps[0][1]))
                                     if kps else None)
        rows[image_id] = row
    table = images[["image_id", "identity_id", "group", "factor", "level", "face_found"]].copy()
    for m in QUALITY_MEASURES:
        table[m] = pd.to_numeric(table["image_id"].map(lambda i, m=m: rows.get(i, {}).get(m)),
                                 errors="coerce")
    base = table["factor"] == "baseline"
    for m in ("quality", "sharpness"):
        ref = table.loc[base, m].dropna().to_numpy()
        table[f"{m}_percentile"] = (percentile_against(table[m].to_numpy(), ref)
                                    if len(ref) else np.nan)
    return table


def quality_summary(table: pd.DataFrame, comparisons: pd.DataFrame,
                    thresholds: dict[str, float]) -> tuple[dict[str, Any], pd.DataFrame]:
    """Quality by group (all images, and baselines only) with the share below the audit's own
    low-quality line, and error-versus-discard curves per FR model at its first threshold."""
    from audit.counts import COUNT_KEYS
    from audit.quality import edc_curves, quality_by_group

    out: dict[str, Any] = {"measure": "quality (LightQNet; higher is better)",
                           "low_quality_line": None, "by_group": {}, "baselines_by_group": {}}
    values = table["quality"].dropna()
    if values.empty:
        out["note"] = "no quality model in the model directory (LightQNet)"
        return out, pd.DataFrame()
    base = table[table["factor"] == "baseline"]
    line = float(np.percentile(base["quality"].dropna(), LOW_QUALITY_PERCENTILE))
    out["low_quality_line"] = line
    out["low_quality_rule"] = (f"the {LOW_QUALITY_PERCENTILE:g}th percentile of the audit's "
                               "baseline quality")
    for key, frame in (("by_group", table), ("baselines_by_group", base)):
        by = quality_by_group(frame, "quality", line)
        out[key] = {str(g): {c: (None if pd.isna(v) else int(v) if c in COUNT_KEYS
                                 else float(v)) for c, v in r.items()}
                    for g, r in by.iterrows()}
    quality_of = table.set_index("image_id")["quality"]
    curves = []
    for fr_model, threshold in thresholds.items():
        comp = comparisons[(comparisons["fr_model"] == fr_model) & comparisons["mated"]]
        keep = comp["image_a"].map(quality_of).notna() & comp["image_b"].map(quality_of).notna()
        curves.append(edc_curves(comp[keep], quality_of, threshold).assign(
            fr_model=fr_model, threshold=threshold))
    return out, pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()


def mated_table(comparisons: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """Mated scores per identity and condition: fr_model, identity_id, group, factor, level,
    score (the condition is the variant's, image_b; the control is the reference)."""
    info = images.set_index("image_id")[["factor", "level"]]
    mated = comparisons[comparisons["mated"]]
    out = pd.DataFrame({"fr_model": mated["fr_model"].to_numpy(),
                        "identity_id": mated["identity_a"].to_numpy(),
                        "group": mated["group_a"].to_numpy(),
                        "factor": info.loc[mated["image_b"], "factor"].to_numpy(),
                        "level": info.loc[mated["image_b"], "level"].to_numpy(),
                        "score": mated["score"].to_numpy()})
    return out


def factor_effect_tables(mated: pd.DataFrame, thresholds: dict[float, dict[str, float]]
                         ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Factor effects at every target FMR (``thresholds``: target -> fr_model -> threshold) and
    the group x condition interaction per FR model; tables and a summary block."""
    from audit.factor_effects import factor_effects, interaction_model

    effects, summary = [], {"correction": "holm", "by_target_fmr": {}, "interaction": {}}
    for target, per_model in thresholds.items():
        result = factor_effects(mated, per_model, correction="holm")
        effects.append(result.effects.assign(target_fmr=target))
        summary["by_target_fmr"][str(target)] = result.to_dict()
    interactions = []
    for fr_model in sorted(mated["fr_model"].unique()):
        try:
            inter = interaction_model(mated, fr_model)
        except ValueError as exc:  # e.g. a single group: nothing to interact with
            summary["interaction"][fr_model] = {"skipped": str(exc)}
            continue
        interactions.append(inter.interactions.assign(fr_model=fr_model,
                                                      reference_group=inter.reference_group))
        summary["interaction"][fr_model] = inter.to_dict()
    effects_df = pd.concat(effects, ignore_index=True) if effects else pd.DataFrame()
    inter_df = pd.concat(interactions, ignore_index=True) if interactions else pd.DataFrame()
    return effects_df, inter_df, summary


EDIT_KINDS = ("latent", "prompt")


def judged_view(comp: pd.DataFrame, images: pd.DataFrame, threshold: float,
                headline: dict[str, Any]) -> dict[str, Any]:
    """FNMR per group (and per edit factor) over the headline comparisons and over those whose
    images the identity judge calls the same person, at the same threshold.

    ``comp``: one FR model's comparisons (COMPARISON_COLUMNS less fr_model); ``images``: the
    :func:`image_table`; ``headline``: the operating point's ``by_group`` block. The headline
    results use every variant whose edit reached its target with the other attributes held; the
    judged-same view also drops the variants the judge calls another person (from mated and
    non-mated comparisons alike). ``difference`` = judged-same FNMR - headline FNMR.
    """
    from audit.rates import error_rates
    from generator.config import FACTORS, prompt_factors

    different = set(images.loc[~images["judged_same"], "image_id"].astype(int))
    keep = ~(comp["image_a"].isin(different) | comp["image_b"].isin(different))
    judged = comp[keep]
    groups = sorted(set(headline))
    by_group: dict[str, Any] = {}
    if judged["mated"].any() and (~judged["mated"]).any():
        rates = error_rates(judged, threshold, groups=groups).to_dict()["by_group"]
    else:
        rates = {}
    for g in groups:
        h, j = headline.get(g, {}), rates.get(g, {})
        fnmr_h, fnmr_j = h.get("fnmr"), j.get("fnmr")
        by_group[g] = {"n_mated": h.get("n_mated"), "fnmr": fnmr_h,
                       "n_mated_judged_same": j.get("n_mated", 0),
                       "false_non_matches_judged_same": j.get("false_non_matches", 0),
                       "fnmr_judged_same": fnmr_j,
                       "difference": (None if fnmr_h is None or fnmr_j is None
                                      else float(fnmr_j) - float(fnmr_h))}
    diffs = [abs(r["difference"]) for r in by_group.values() if r["difference"] is not None]
    factor_of = images.set_index("image_id")["factor"]
    mated = comp[comp["mated"]].assign(factor=lambda d: d["image_b"].map(factor_of))
    by_factor = {}
    for factor, rows in mated.groupby("factor", sort=True):
        spec = FACTORS.get(str(factor))
        if not (spec is not None and spec.kind in EDIT_KINDS) \
                and str(factor) not in prompt_factors():
            continue
        kept = rows[~rows["image_b"].isin(different)]
        by_factor[str(factor)] = {
            "n_mated": int(len(rows)), "fnmr": float((rows["score"] < threshold).mean()),
            "n_mated_judged_same": int(len(kept)),
            "fnmr_judged_same": (float((kept["score"] < threshold).mean()) if len(kept)
                                 else None)}
    return {"shown": "every variant whose edit reached its target with the other attributes "
                     "held (the identity judge's verdict not applied)",
            "images_judged_different": len(different & (set(comp["image_a"])
                                                        | set(comp["image_b"]))),
            "by_group": by_group,
            "max_abs_difference": max(diffs) if diffs else None, "by_factor": by_factor}


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


def compute_results(audit: Audit) -> tuple[dict[str, Any], pd.DataFrame, dict[str, pd.DataFrame]]:
    """Return ``(summary, comparisons, tables)``; ``tables`` maps export file names
    (``factor_effects.csv``, ``interaction.csv``) to DataFrames.

    ``summary`` is JSON-serialisable (the audit's ``summary.json``); ``comparisons`` has one row
    per comparison per FR model with :data:`COMPARISON_COLUMNS`. Images where no face was found
    take part in no comparison; their share per group is reported as the failure-to-acquire
    rate (ISO/IEC 19795-1).
    """
    from audit.comparisons import score_pairs
    from audit.curves import det_curves, score_histograms
    from audit.rates import error_rates, threshold_at_fmr
    from audit.registry import ModelRegistry
    from audit.sensors import gender_age_model
    from worker.runtime import model_dir

    registry = ModelRegistry(model_dir())

    config = AuditConfig(**audit.config)
    design = plan_design(config)
    images = image_table(audit)
    usable = images[images["usable"]].reset_index(drop=True)
    pairs = _design_ordered_pairs(usable, config.seed)
    summary: dict[str, Any] = {
        "audit": {"id": audit.pk, "name": audit.name, "seed": config.seed,
                  "config": config.to_dict()},
        "design": {"groups": [g.name for g in design.groups],
                   "identities_per_group": design.identities_per_group,
                   "variants": [v.key for v in design.variants], "n_images": design.n_images},
        "acquisition": _acquisition(images),
        "identity_sampling": {
            "rule": "candidates are rendered from seeded latents and join the first group whose "
                    "levels the sensors confirm; acceptance_rate = candidates the sensors placed "
                    "in the group / candidates rendered while it still needed identities; "
                    "screened (guided sampling): latents drawn, of which only the first per "
                    "rendered slot whose predicted attributes its shift can reach was rendered",
            **((audit.stage_progress or {}).get("sampling", {}).get("acceptance") or {})},
        "generator_checks": {**generator_checks(images),
                             "skin_tone_label_moves": skin_tone_label_moves(audit)},
        "identity_judge": {**(audit.identity_judge or {}),
                           "comparisons_shown": "every variant whose face was found and whose "
                                                "edit reached its target with the other "
                                                "attributes held; the judged-same view is in "
                                                "each operating point's identity_judge_view"},
        "models": {
            "generator": generator_provenance(audit, config.generator),
            **{name: {"role": spec.role,
                      "file": getattr(spec, "filename", None) or getattr(spec, "package", ""),
                      "weights_sha256": spec.sha256 or _registered_sha256(registry, name),
                      "licence": spec.licence, "source": spec.source}
               for name in ("scrfd_500m", gender_age_model(registry), *config.fr_models,
                            *[m for m in [(audit.identity_judge or {}).get("model")]
                              if m and m not in config.fr_models])
               for spec in [_spec(registry, name)]},
        },
        "comparisons": {"mated": int(pairs["mated"].sum()),
                        "nonmated": int((~pairs["mated"]).sum()),
                        "nonmated_total": int(pairs.attrs.get("nonmated_total",
                                                              (~pairs["mated"]).sum())),
                        "nonmated_design": "every image vs the baseline of every other identity",
                        "match_rule": "similarity >= threshold"},
        "fr_models": {},
    }
    tables, det_tables, hist_tables = [], [], []
    for fr_model in config.fr_models:
        emb = list(Embedding.objects.filter(image__audit=audit, fr_model=fr_model)
                   .values_list("image_id", "vector", "weights_sha256"))
        index_of = {image_id: i for i, (image_id, _, _) in enumerate(emb)}
        matrix = (np.stack([np.frombuffer(bytes(v), dtype="<f4") for _, v, _ in emb])
                  if emb else np.zeros((0, 1), dtype=np.float32))
        scores = score_pairs(pairs, matrix, index_of)
        comp = pairs.assign(score=scores, fr_model=fr_model)
        nonmated = comp.loc[~comp["mated"], "score"].to_numpy()
        if len(nonmated) == 0 or not comp["mated"].any():
            raise ValueError("too few faces were found to form both mated and non-mated "
                             "comparisons")
        points = []
        for target in config.target_fmr:
            choice = threshold_at_fmr(nonmated, target)
            rates = error_rates(comp, choice.threshold)
            point = {"target_fmr": target, "threshold": choice.threshold,
                     "achieved_fmr": choice.achieved_fmr,
                     "nonmated_used": choice.n_nonmated, **rates.to_dict()}
            point.update(_uncertainty(comp, rates, choice.threshold, config.seed))
            point["identity_judge_view"] = judged_view(comp, images, choice.threshold,
                                                       point["by_group"])
            point["label"] = f"FMR {target:g}"
            points.append(point)
        for t in config.thresholds:  # user-given thresholds: rates read as they fall
            rates = error_rates(comp, t)
            point = {"target_fmr": None, "threshold": t,
                     "achieved_fmr": float((nonmated >= t).mean()),
                     "nonmated_used": int(len(nonmated)), **rates.to_dict(),
                     "label": f"threshold {t:g}"}
            point.update(_uncertainty(comp, rates, t, config.seed))
            point["identity_judge_view"] = judged_view(comp, images, t, point["by_group"])
            points.append(point)
        curves = det_curves(comp, max_points=300)
        det_tables.append(curves.assign(fr_model=fr_model))
        hist_tables.append(score_histograms(comp, bins=50, range=(-1.0, 1.0))
                           .assign(fr_model=fr_model))
        summary["fr_models"][fr_model] = {
            "weights_sha256": emb[0][2] if emb else None,
            "licence": _spec(registry, fr_model).licence,
            "embedding_size": int(matrix.shape[1]),
            "operating_points": points,
        }
        comp.attrs = {}  # build_pairs' metadata is in the summary; concat would compare it
        tables.append(comp)
    comparisons = pd.concat(tables, ignore_index=True)[COMPARISON_COLUMNS]
    thresholds = {target: {m: next(p["threshold"] for p in info["operating_points"]
                               if p["target_fmr"] == target)
                           for m, info in summary["fr_models"].items()}
                  for target in config.target_fmr}
    effects, interactions, summary["factor_effects"] = factor_effect_tables(
        mated_table(comparisons, images), thresholds)
    qtable = quality_table(audit, images)
    summary["quality"], edc = quality_summary(
        qtable, comparisons, thresholds[config.target_fmr[0]])
    extra = {"factor_effects.csv": effects, "interaction.csv": interactions,
             "quality.csv": qtable, "edc_curves.csv": edc,
             "det_curves.csv": pd.concat(det_tables, ignore_index=True),
             "score_histograms.csv": pd.concat(hist_tables, ignore_index=True)}
    return summary, comparisons, extra
