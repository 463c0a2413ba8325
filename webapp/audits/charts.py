"""Plotly figures built from a stored summary (views only embed them)."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go


def group_rates_figure(point: dict[str, Any], fr_model: str) -> go.Figure:
    """Grouped bars of FNMR and FMR per group at one operating point; rule-of-three upper bounds
    drawn as error bars where a group had no errors."""
    groups = list(point["by_group"])
    fig = go.Figure()
    for key, label, colour in (("fnmr", "FNMR", "#c0392b"), ("fmr", "FMR", "#2c7fb8")):
        values = [point["by_group"][g][key] for g in groups]
        upper = [point["by_group"][g].get(f"{key}_upper95") for g in groups]
        fig.add_bar(
            name=label, x=groups, y=[v if v is not None else 0 for v in values],
            marker_color=colour,
            error_y={"type": "data", "symmetric": False,
                     "array": [(u or 0) if (v == 0 and u) else 0 for v, u in zip(values, upper, strict=True)],
                     "arrayminus": [0] * len(groups), "visible": True},
            customdata=[[point["by_group"][g][f"n_{'mated' if key == 'fnmr' else 'nonmated'}"]]
                        for g in groups],
            hovertemplate=f"%{{x}}<br>{label} %{{y:.4f}}<br>n = %{{customdata[0]}}<extra></extra>")
    fig.update_layout(
        barmode="group", height=380, margin={"l": 60, "r": 20, "t": 50, "b": 60},
        title=f"{fr_model}: error rates per group at threshold {point['threshold']:.4f} "
              f"({point.get('label') or 'FMR ' + format(point['target_fmr'], 'g')})",
        yaxis_title="rate", legend={"orientation": "h", "y": -0.2})
    return fig
