"""The ``fr_models`` block of ``summary.json``: for each FR model under test, its comparisons
scored, and at each operating point (a target FMR's global threshold, or a threshold the user
gave) the error rates per group with identity-bootstrap intervals, disparity summaries,
permutation tests, which groups can be ranked, and the identity judge's view.

Also the per-model tables that go with it: DET curves and score histograms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from generator.config import AuditConfig
from webapp.audits.models import Audit, Embedding
from worker.summary.blocks import model_spec

BOOTSTRAP_REPLICATES = 1000
DISPARITY_ALPHA = 0.5  # weight of false matches against false non-matches in FDR and GARBE
PERMUTATIONS = 999  # group-label shuffles of the "no difference between groups" tests
EDIT_KINDS = ("latent", "prompt")


@dataclass
class FRModelResults:
    """One FR model's part of the results: its ``fr_models`` entry and its tables."""

    block: dict[str, Any]
    comparisons: pd.DataFrame  # COMPARISON_COLUMNS and more, in pair order
    det_curves: pd.DataFrame
    score_histograms: pd.DataFrame


def fr_model_results(audit: Audit, config: AuditConfig, fr_model: str, pairs: pd.DataFrame,
                     images: pd.DataFrame, registry) -> FRModelResults:
    """Score ``pairs`` with ``fr_model``'s stored embeddings and compute its operating points
    and curves; a ValueError when too few faces were found for both kinds of comparison."""
    from audit.curves import det_curves, score_histograms
    from audit.pair_scores import score_pairs

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
    points = operating_points(comp, nonmated, images, config)
    det = det_curves(comp, max_points=300).assign(fr_model=fr_model)
    hist = score_histograms(comp, bins=50, range=(-1.0, 1.0)).assign(fr_model=fr_model)
    block = {
        "weights_sha256": emb[0][2] if emb else None,
        "licence": model_spec(registry, fr_model).licence,
        "embedding_size": int(matrix.shape[1]),
        "operating_points": points,
    }
    comp.attrs = {}  # build_pairs' metadata is in the summary; concat would compare it
    return FRModelResults(block, comp, det, hist)


def operating_points(comp: pd.DataFrame, nonmated: np.ndarray, images: pd.DataFrame,
                     config: AuditConfig) -> list[dict[str, Any]]:
    """One point per target FMR (its threshold set on the non-mated scores), then one per
    user-given threshold (rates read as they fall)."""
    from audit.rates import error_rates, threshold_at_fmr

    points = []
    for target in config.target_fmr:
        choice = threshold_at_fmr(nonmated, target)
        rates = error_rates(comp, choice.threshold)
        point = {"target_fmr": target, "threshold": choice.threshold,
                 "achieved_fmr": choice.achieved_fmr,
                 "nonmated_used": choice.n_nonmated, **rates.to_dict()}
        point.update(uncertainty(comp, rates, choice.threshold, config.seed))
        point["identity_judge_view"] = judged_view(comp, images, choice.threshold,
                                                   point["by_group"])
        point["label"] = f"FMR {target:g}"
        points.append(point)
    for t in config.thresholds:
        rates = error_rates(comp, t)
        point = {"target_fmr": None, "threshold": t,
                 "achieved_fmr": float((nonmated >= t).mean()),
                 "nonmated_used": int(len(nonmated)), **rates.to_dict(),
                 "label": f"threshold {t:g}"}
        point.update(uncertainty(comp, rates, t, config.seed))
        point["identity_judge_view"] = judged_view(comp, images, t, point["by_group"])
        points.append(point)
    return points


def uncertainty(comp: pd.DataFrame, rates, threshold: float, seed: int) -> dict[str, Any]:
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


def judged_view(comp: pd.DataFrame, images: pd.DataFrame, threshold: float,
                headline: dict[str, Any]) -> dict[str, Any]:
    """FNMR per group (and per edit factor) over the headline comparisons and over those whose
    images the identity judge calls the same person, at the same threshold.

    ``comp``: one FR model's comparisons (COMPARISON_COLUMNS less fr_model); ``images``: the
    :func:`~worker.summary.tables.image_table`; ``headline``: the operating point's
    ``by_group`` block. The headline results use every variant whose edit reached its target
    with the other attributes held; the judged-same view also drops the variants the judge
    calls another person (from mated and non-mated comparisons alike). ``difference`` =
    judged-same FNMR - headline FNMR.
    """
    different = set(images.loc[~images["judged_same"], "image_id"].astype(int))
    keep = ~(comp["image_a"].isin(different) | comp["image_b"].isin(different))
    by_group = _judged_by_group(comp[keep], threshold, headline)
    diffs = [abs(r["difference"]) for r in by_group.values() if r["difference"] is not None]
    return {"shown": "every variant whose edit reached its target with the other attributes "
                     "held (the identity judge's verdict not applied)",
            "images_judged_different": len(different & (set(comp["image_a"])
                                                        | set(comp["image_b"]))),
            "by_group": by_group,
            "max_abs_difference": max(diffs) if diffs else None,
            "by_factor": _judged_by_factor(comp, images, threshold, different)}


def _judged_by_group(judged: pd.DataFrame, threshold: float,
                     headline: dict[str, Any]) -> dict[str, Any]:
    """Per group of ``headline``: its FNMR beside the FNMR over the ``judged`` comparisons."""
    from audit.rates import error_rates

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
    return by_group


def _judged_by_factor(comp: pd.DataFrame, images: pd.DataFrame, threshold: float,
                      different: set[int]) -> dict[str, Any]:
    """Per edit factor (latent or prompt): FNMR over its mated comparisons, and over those
    whose variant is not in ``different`` (judged another person)."""
    from generator.config import FACTORS, prompt_factors

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
    return by_factor
