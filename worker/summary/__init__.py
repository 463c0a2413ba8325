"""The blocks of an audit's ``summary.json``, one builder per block, and the tables under them.

:func:`worker.results.compute_results` composes them, in this order (the JSON is compared byte
for byte between runs, so the order of blocks and of keys within them is part of the output):

==================== ===============================================================
``audit``            :func:`~worker.summary.blocks.audit_block`
``design``           :func:`~worker.summary.blocks.design_block`
``acquisition``      :func:`~worker.summary.blocks.acquisition_block`
``identity_sampling`` :func:`~worker.summary.blocks.identity_sampling_block`
``generator_checks`` :func:`~worker.summary.blocks.generator_checks_block`
``identity_judge``   :func:`~worker.summary.blocks.identity_judge_block`
``models``           :func:`~worker.summary.blocks.models_block`
``comparisons``      :func:`~worker.summary.blocks.comparisons_block`
``fr_models``        :func:`~worker.summary.operating_points.fr_model_results`, per FR model
``factor_effects``   :func:`~worker.summary.factor_effects.factor_effect_tables`
``quality``          :func:`~worker.summary.quality.quality_summary`
==================== ===============================================================

:mod:`worker.summary.tables` builds what they all read: the images in design order, the
comparison pairs and the mated scores.
"""

from worker.summary.blocks import (
    acquisition_block,
    audit_block,
    comparisons_block,
    design_block,
    generator_checks,
    generator_checks_block,
    generator_provenance,
    identity_judge_block,
    identity_sampling_block,
    models_block,
    skin_tone_label_moves,
)
from worker.summary.factor_effects import factor_effect_tables
from worker.summary.operating_points import FRModelResults, fr_model_results, judged_view
from worker.summary.quality import quality_summary, quality_table
from worker.summary.tables import (
    COMPARISON_COLUMNS,
    design_ordered_pairs,
    image_table,
    mated_table,
)

__all__ = ["COMPARISON_COLUMNS", "FRModelResults", "acquisition_block", "audit_block",
           "comparisons_block", "design_block", "design_ordered_pairs", "factor_effect_tables",
           "fr_model_results", "generator_checks", "generator_checks_block",
           "generator_provenance", "identity_judge_block", "identity_sampling_block",
           "image_table", "judged_view", "mated_table", "models_block", "quality_summary",
           "quality_table", "skin_tone_label_moves"]
