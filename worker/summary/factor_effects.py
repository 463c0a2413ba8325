"""The ``factor_effects`` block of ``summary.json`` and its tables (``factor_effects.csv``,
``interaction.csv``): how each image factor moves the mated scores, per target FMR, and the
group x condition interaction per FR model."""

from __future__ import annotations

from typing import Any

import pandas as pd


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
