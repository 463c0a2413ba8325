"""The dashboard's charts, listed once: which figure each is, the stored table it reads, its
caption in the report, and how it is drawn for one FR model and operating point.

Adding a chart: write its figure function in :mod:`webapp.audits.charts`, add a :class:`Chart`
to :data:`CHARTS` here, and give it a section in ``templates/audits/_dashboard.html`` (the
report shows every chart with its caption on its own). A chart that reads a new stored table
also needs that table's schema in :mod:`webapp.audits.result_tables`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from audit.summary import AuditSummary, OperatingPoint
from webapp.audits.charts import (
    cross_group_figure,
    det_figure,
    edc_figure,
    factor_figures,
    group_rates_figure,
    histograms_figure,
    quality_figure,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChartInput:
    """What every chart may read: one operating point of one FR model, the stored tables by
    export name (missing ones are empty), the model's target FMRs and the whole summary."""

    summary: AuditSummary
    point: OperatingPoint
    tables: dict[str, pd.DataFrame]

    def table(self, name: str) -> pd.DataFrame:
        return self.tables.get(name, pd.DataFrame())

    @property
    def fr_model(self) -> str:
        return self.point.fr_model

    @property
    def groups(self) -> list[str]:
        return list(self.point.by_group)

    @cached_property
    def _factor_pass(self) -> tuple[dict[str, go.Figure], Exception | None]:
        try:
            return factor_figures(self.table("factor_effects.csv"), self.point, self.fr_model,
                                  self.summary.model(self.fr_model).targets), None
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            return {}, exc

    @property
    def factor_figures(self) -> dict[str, go.Figure]:
        """Both factor heat maps, drawn in one pass (a failure is raised to each of them, as
        the same exception, and reported once)."""
        figures, failure = self._factor_pass
        if failure is not None:
            raise failure
        return figures


@dataclass(frozen=True)
class Chart:
    """One dashboard chart: its key (the template's ``data-figure``), the stored table it
    draws from (None: the summary's rates), its caption in the report, and how it is drawn
    (None when its data is missing)."""

    key: str
    table: str | None
    source: str
    caption: str
    draw: Callable[[ChartInput], go.Figure | None]


#: Every dashboard chart, in the order pages and the report show them. Adding a chart: write its
#: figure function above, add it here, and give it a section in ``_dashboard.html``.
CHARTS: tuple[Chart, ...] = (
    Chart("group_rates", None, "the stored rates",
          "FNMR and FMR per group at the global threshold, with 95% intervals.",
          lambda c: group_rates_figure(c.point, c.fr_model) if c.groups else None),
    Chart("cross_group", None, "the stored cross-group rates",
          "Cross-group FMR: the share of non-mated comparisons between an image of the row "
          "group and one of the column group that match.",
          lambda c: cross_group_figure(c.point, c.fr_model)),
    Chart("det", "det_curves.csv", "det_curves.csv",
          "DET curves per group (log axes): FNMR of the group's mated pairs against FMR of its "
          "within-group non-mated pairs; the marker is the global threshold.",
          lambda c: det_figure(c.table("det_curves.csv"), c.point, c.fr_model)),
    Chart("histograms", "score_histograms.csv", "score_histograms.csv",
          "Mated and non-mated score distributions per group, with the threshold.",
          lambda c: histograms_figure(c.table("score_histograms.csv"), c.point, c.fr_model)),
    Chart("factor_fnmr", "factor_effects.csv", "factor_effects.csv",
          "Change in FNMR of each factor level against the control, per group "
          "(* significant after correction).",
          lambda c: c.factor_figures.get("factor_fnmr")),
    Chart("factor_similarity", "factor_effects.csv", "factor_effects.csv",
          "Mean change in mated similarity of each factor level against the control, per "
          "group (* significant after correction).",
          lambda c: c.factor_figures.get("factor_similarity")),
    Chart("quality", "quality.csv", "quality.csv",
          "Face image quality (LightQNet) by group; the line is the audit's low-quality line "
          "(10th percentile of its own baseline quality).",
          lambda c: quality_figure(c.table("quality.csv"), c.groups,
                                   c.summary.quality.get("low_quality_line"))),
    Chart("edc", "edc_curves.csv", "edc_curves.csv",
          "Error-versus-discard: FNMR at the fixed threshold after discarding the "
          "lowest-quality fraction of images, per group.",
          lambda c: edc_figure(c.table("edc_curves.csv"), c.point, c.fr_model, c.groups)),
)
FIGURE_KEYS = tuple(chart.key for chart in CHARTS)
#: The stored tables the charts read, in chart order.
CHART_TABLES = tuple(dict.fromkeys(chart.table for chart in CHARTS if chart.table))
FIGURE_CAPTIONS = {chart.key: chart.caption for chart in CHARTS}


def _drawn(chart: Chart, inputs: ChartInput, problems: list[str] | None,
           reported: list[Exception]) -> go.Figure | None:
    """``chart.draw(inputs)``, or None when the stored data it reads is malformed in a way the
    table checks (``webapp.audits.result_tables.TABLE_SCHEMAS``) did not catch; the failure is
    logged and described in ``problems`` (once per failure: ``reported`` holds those seen)."""
    try:
        return chart.draw(inputs)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        if any(exc is seen for seen in reported):
            return None
        reported.append(exc)
        logger.exception("dashboard figure %s could not be drawn", chart.key)
        if problems is not None:
            problems.append(f"The chart {chart.key!r} could not be drawn from {chart.source} "
                            f"({type(exc).__name__}: {exc}); the other charts are unaffected.")
        return None


def dashboard_figures(summary: AuditSummary | dict[str, Any], tables: dict[str, pd.DataFrame],
                      fr_model: str, point_index: int, problems: list[str] | None = None
                      ) -> dict[str, go.Figure]:
    """Every dashboard chart (:data:`CHARTS`) for one FR model and operating point.

    ``summary`` is the stored summary (an :class:`~audit.summary.AuditSummary` or its dict);
    ``tables`` maps export names (:data:`CHART_TABLES`) to DataFrames (missing or empty ones are
    fine); ``point_index`` indexes the model's operating points. Returns some of the keys of
    :data:`FIGURE_KEYS`, in that order; a key is left out when its data is missing, or when
    drawing it fails on malformed data (then a message is appended to ``problems``).
    Raises ``KeyError`` / ``IndexError`` for an unknown model or point (callers validate).
    """
    summary = AuditSummary.of(summary)
    inputs = ChartInput(summary, summary.point(fr_model, point_index), tables)
    reported: list[Exception] = []
    figures = {chart.key: _drawn(chart, inputs, problems, reported) for chart in CHARTS}
    return {key: fig for key, fig in figures.items() if fig is not None}
