"""Build an audit's statistics from its stored rows with the framework-free ``audit`` library.

:func:`compute_results` composes the blocks of ``summary.json`` (one builder per block, in
:mod:`worker.summary`) and the tables stored beside it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from generator.config import AuditConfig
from generator.design import plan_design
from webapp.audits.models import Audit
from worker.summary import (
    COMPARISON_COLUMNS,
    acquisition_block,
    audit_block,
    comparisons_block,
    design_block,
    design_ordered_pairs,
    factor_effect_tables,
    fr_model_results,
    generator_checks,
    generator_checks_block,
    generator_provenance,
    identity_judge_block,
    identity_sampling_block,
    image_table,
    judged_view,
    mated_table,
    models_block,
    quality_summary,
    quality_table,
    skin_tone_label_moves,
)


def compute_results(audit: Audit) -> tuple[dict[str, Any], pd.DataFrame, dict[str, pd.DataFrame]]:
    """Return ``(summary, comparisons, tables)``; ``tables`` maps export file names
    (``factor_effects.csv``, ``interaction.csv``) to DataFrames.

    ``summary`` is JSON-serialisable (the audit's ``summary.json``); ``comparisons`` has one row
    per comparison per FR model with :data:`COMPARISON_COLUMNS`. Images where no face was found
    take part in no comparison; their share per group is reported as the failure-to-acquire
    rate (ISO/IEC 19795-1).
    """
    from audit.registry import ModelRegistry
    from worker.runtime import model_dir

    registry = ModelRegistry(model_dir())
    config = AuditConfig(**audit.config)
    design = plan_design(config)
    images = image_table(audit)
    usable = images[images["usable"]].reset_index(drop=True)
    pairs = design_ordered_pairs(usable, config.seed)
    summary: dict[str, Any] = {
        "audit": audit_block(audit, config),
        "design": design_block(design),
        "acquisition": acquisition_block(images),
        "identity_sampling": identity_sampling_block(audit),
        "generator_checks": generator_checks_block(audit, images),
        "identity_judge": identity_judge_block(audit),
        "models": models_block(audit, config, registry),
        "comparisons": comparisons_block(pairs),
        "fr_models": {},
    }
    per_model = []
    for fr_model in config.fr_models:
        result = fr_model_results(audit, config, fr_model, pairs, images, registry)
        summary["fr_models"][fr_model] = result.block
        per_model.append(result)
    comparisons = pd.concat([r.comparisons for r in per_model],
                            ignore_index=True)[COMPARISON_COLUMNS]
    thresholds = _thresholds_by_target(summary["fr_models"], config.target_fmr)
    effects, interactions, summary["factor_effects"] = factor_effect_tables(
        mated_table(comparisons, images), thresholds)
    qtable = quality_table(audit, images)
    summary["quality"], edc = quality_summary(
        qtable, comparisons, thresholds[config.target_fmr[0]])
    extra = {"factor_effects.csv": effects, "interaction.csv": interactions,
             "quality.csv": qtable, "edc_curves.csv": edc,
             "det_curves.csv": pd.concat([r.det_curves for r in per_model], ignore_index=True),
             "score_histograms.csv": pd.concat([r.score_histograms for r in per_model],
                                               ignore_index=True)}
    return summary, comparisons, extra


def _thresholds_by_target(fr_models: dict[str, Any], targets) -> dict[float, dict[str, float]]:
    """target FMR -> FR model -> the threshold its operating point set for that target."""
    return {target: {m: next(p["threshold"] for p in info["operating_points"]
                             if p["target_fmr"] == target)
                     for m, info in fr_models.items()}
            for target in targets}


__all__ = ["COMPARISON_COLUMNS", "compute_results", "factor_effect_tables", "generator_checks",
           "generator_provenance", "image_table", "judged_view", "mated_table",
           "quality_summary", "quality_table", "skin_tone_label_moves"]
