"""Plotly figures built from a stored result (views and the report only embed them).

Everything here reads the stored summary (``AuditResult.summary``) and the stored CSV tables
(``AuditResult.tables``, loaded with :func:`webapp.audits.result_tables.load_table`); nothing
recomputes a statistic. Rates are shares in [0, 1]; similarity scores are cosine similarities in
[-1, 1]; quality is LightQNet's score (higher is better).

Pages and the report draw them through :mod:`webapp.audits.dashboard`, which lists every chart
once (:data:`~webapp.audits.dashboard.CHARTS`).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from audit.counts import as_count
from audit.summary import OperatingPoint, factor_effect_rows

FNMR_COLOUR = "#c0392b"
FMR_COLOUR = "#2c7fb8"
MATED_COLOUR = "#1b9e77"
NONMATED_COLOUR = "#7570b3"
#: One colour per group, in the summary's group order (cycled when there are more groups).
GROUP_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
                 "#17becf", "#7f7f7f", "#bcbd22")
#: Text written on a factor-effect cell whose test stays significant after correction.
SIGNIFICANT_MARK = "*"



# ----------------------------------------------------------------------------- helpers


def level_label(level: Any) -> str:
    """A factor level as written in variant names (``2`` for 2.0, ``1.5``, or a prompt word)."""
    if level is None or (isinstance(level, float) and math.isnan(level)):
        return ""
    try:
        return f"{float(level):g}"
    except (TypeError, ValueError):
        return str(level)


def variant_key(factor: str, level: Any) -> str:
    """The stored ``GeneratedImage.variant`` of a factor level (``generator.design.Variant``)."""
    label = level_label(level)
    return f"{factor}_{label}" if label else factor


def group_colour(groups: list[str], group: str) -> str:
    return GROUP_COLOURS[groups.index(group) % len(GROUP_COLOURS)] if group in groups else "#444"


def _none_if_nan(value: Any) -> Any:
    if value is None:
        return None
    try:
        return None if math.isnan(float(value)) else value
    except (TypeError, ValueError):
        return value


def _groups(point: OperatingPoint) -> list[str]:
    return list(point.by_group)


def _layout(fig: go.Figure, title: str, height: int = 380, **kwargs: Any) -> go.Figure:
    fig.update_layout(title={"text": title, "font": {"size": 14}}, height=height,
                      margin={"l": 70, "r": 20, "t": 60, "b": 60},
                      legend={"orientation": "h", "y": -0.18}, **kwargs)
    return fig


def _panel_title(text: str, x: float, y: float = 1.0) -> dict[str, Any]:
    return {"text": text, "x": x, "y": y, "xref": "paper", "yref": "paper", "showarrow": False,
            "xanchor": "center", "yanchor": "bottom", "font": {"size": 12}}


def _by_group(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A table's rows split by its ``group`` column (one pass, not one filter per group)."""
    return {str(g): part for g, part in rows.groupby(rows["group"].astype(str), sort=False)}


def _model_rows(df: pd.DataFrame | None, fr_model: str) -> pd.DataFrame:
    """Rows of a stored table for one FR model (the whole table when it has no model column)."""
    if df is None or df.empty:
        return pd.DataFrame()
    if "fr_model" not in df.columns:
        return df
    return df[df["fr_model"].astype(str) == fr_model]


# ----------------------------------------------------------------------------- error rates


def rate_interval(point: OperatingPoint, group: str, key: str) -> tuple[float | None, float | None]:
    """The 95% interval of a group's ``key`` ("fnmr" or "fmr"): the stored identity-bootstrap
    bounds; where the summary has none and no error was seen, ``[0, 3/n]`` (rule of three)."""
    boot = point.interval(group)
    lower, upper = _none_if_nan(boot.get(f"{key}_lower")), _none_if_nan(boot.get(f"{key}_upper"))
    if lower is not None and upper is not None:
        return float(lower), float(upper)
    row = point.by_group.get(group, {})
    bound = row.get(f"{key}_upper95")
    if row.get(key) == 0 and bound is not None:
        return 0.0, float(bound)
    return None, None


def group_rates_figure(point: OperatingPoint, fr_model: str) -> go.Figure:
    """Per-group FNMR (left) and FMR (right) at the operating point's global threshold, as
    bars (shares of comparisons) with 95% whiskers: identity-bootstrap percentile bounds, or
    the rule-of-three upper bound where a group had no errors. Hover: errors / comparisons."""
    groups = _groups(point)
    fig = go.Figure()
    panels = ("FNMR (mated pairs)", "FMR (non-mated pairs within the group)")
    specs = (("fnmr", "FNMR", FNMR_COLOUR, "false_non_matches", "n_mated"),
             ("fmr", "FMR", FMR_COLOUR, "false_matches", "n_nonmated"))
    for col, (key, label, colour, errors, n) in enumerate(specs, start=1):
        values, plus, minus, custom = [], [], [], []
        for g in groups:
            row = point.by_group[g]
            value = row.get(key)
            lower, upper = rate_interval(point, g, key)
            v = float(value) if value is not None else 0.0
            values.append(v)
            plus.append(max(upper - v, 0.0) if upper is not None else 0.0)
            minus.append(max(v - lower, 0.0) if lower is not None else 0.0)
            custom.append([as_count(row.get(errors)), as_count(row.get(n)),
                           "n/a" if lower is None else f"{lower:.4g}",
                           "n/a" if upper is None else f"{upper:.4g}"])
        fig.add_bar(
            name=label, x=groups, y=values, marker_color=colour, customdata=custom,
            error_y={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus,
                     "visible": True, "color": "#333"},
            hovertemplate=(f"%{{x}}<br>{label} %{{y:.4g}} (%{{customdata[0]}} of "
                           f"%{{customdata[1]}})<br>95% interval [%{{customdata[2]}}, "
                           "%{customdata[3]}]<extra></extra>"),
            xaxis="x" if col == 1 else "x2", yaxis="y" if col == 1 else "y2")
    # Two panels side by side (hand-made axes: make_subplots costs ~80 ms per figure).
    fig.update_layout(
        xaxis={"domain": [0, 0.45]}, xaxis2={"domain": [0.55, 1], "anchor": "y2"},
        yaxis={"title": {"text": "rate"}, "rangemode": "tozero"},
        yaxis2={"anchor": "x2", "rangemode": "tozero"},
        annotations=[_panel_title(text, x) for text, x in zip(panels, (0.225, 0.775),
                                                              strict=True)])
    return _layout(fig, f"{fr_model}: error rates per group at threshold "
                        f"{point.threshold:.4f} ({point.label})", showlegend=False)


def cross_group_figure(point: OperatingPoint, fr_model: str) -> go.Figure | None:
    """Heat map of FMR for non-mated pairs between an image of one group (rows) and one of
    another (columns), at the global threshold. Hover: false matches / comparisons, and the
    95% interval when the summary stores ``lower`` / ``upper`` matrices."""
    cross = point.cross_group
    if not cross or not cross.get("groups") or not cross.get("fmr"):
        return None
    groups = list(cross["groups"])
    fmr = cross["fmr"]
    errors = cross.get("false_matches")
    counts = cross.get("n_nonmated")
    lower, upper = cross.get("lower"), cross.get("upper")
    custom, text = [], []
    for i in range(len(groups)):
        row_custom, row_text = [], []
        for j in range(len(groups)):
            value = fmr[i][j]
            interval = ""
            if lower is not None and upper is not None:
                lo, hi = _none_if_nan(lower[i][j]), _none_if_nan(upper[i][j])
                if lo is not None and hi is not None:
                    interval = f"<br>95% interval [{lo:.4g}, {hi:.4g}]"
            row_custom.append([as_count(errors[i][j]) if errors else "?",
                               as_count(counts[i][j]) if counts else "?", interval])
            row_text.append("n/a" if value is None else f"{value:.2g}")
        custom.append(row_custom)
        text.append(row_text)
    fig = go.Figure(go.Heatmap(
        z=fmr, x=groups, y=groups, colorscale="Blues", customdata=custom, text=text,
        texttemplate="%{text}", colorbar={"title": {"text": "FMR"}},
        hovertemplate=("%{y} vs %{x}<br>FMR %{z:.4g} (%{customdata[0]} of %{customdata[1]})"
                       "%{customdata[2]}<extra></extra>")))
    fig.update_yaxes(autorange="reversed", title_text="group of image A")
    fig.update_xaxes(title_text="group of image B")
    return _layout(fig, f"{fr_model}: cross-group FMR at threshold {point.threshold:.4f} "
                        f"({point.label})", height=max(360, 90 + 60 * len(groups)))


# ----------------------------------------------------------------------------- curves


def _positive_floor(value: float | None, bound: float | None, floor: float) -> tuple[float, bool]:
    """A rate to draw on a log axis: the rate when positive, else the rule-of-three bound (or
    ``floor``); the flag says the rate itself was zero."""
    if value is not None and value > 0:
        return float(value), False
    if bound:
        return float(bound), True
    return floor, True


def det_figure(det: pd.DataFrame, point: OperatingPoint, fr_model: str) -> go.Figure | None:
    """DET curves per group: FMR (within-group non-mated pairs, x) against FNMR (the group's
    mated pairs, y), both on log axes, one line per group exactly as stored in
    ``det_curves.csv`` (at most 300 points each). A marker per group shows its rates at the
    global threshold; where a rate is zero it is drawn at the rule-of-three bound (open
    marker), since zero has no place on a log axis."""
    rows = _model_rows(det, fr_model)
    if rows.empty:
        return None
    parts = _by_group(rows)
    groups = _groups(point) or sorted(parts)
    fig = go.Figure()
    positive = pd.concat([rows["fmr"][rows["fmr"] > 0], rows["fnmr"][rows["fnmr"] > 0]])
    floor = float(positive.min()) / 2 if not positive.empty else 1e-6
    for g in [g for g in groups if g in parts]:
        curve = parts[g]
        colour = group_colour(groups, g)
        fig.add_scatter(x=curve["fmr"].to_numpy(), y=curve["fnmr"].to_numpy(), mode="lines", name=g,
                        legendgroup=g, line={"color": colour},
                        customdata=curve["threshold"].to_numpy(),
                        hovertemplate=(f"{g}<br>threshold %{{customdata:.4f}}<br>FMR %{{x:.4g}}"
                                       "<br>FNMR %{y:.4g}<extra></extra>"))
        rates = point.by_group.get(g, {})
        x, x_zero = _positive_floor(rates.get("fmr"), rates.get("fmr_upper95"), floor)
        y, y_zero = _positive_floor(rates.get("fnmr"), rates.get("fnmr_upper95"), floor)
        note = " (a zero rate drawn at its rule-of-three bound)" if (x_zero or y_zero) else ""
        fig.add_scatter(x=[x], y=[y], mode="markers", name=f"{g} at threshold", legendgroup=g,
                        showlegend=False,
                        marker={"color": colour, "size": 11, "line": {"color": "#000", "width": 1},
                                "symbol": "circle-open" if (x_zero or y_zero) else "circle"},
                        hovertemplate=(f"{g} at threshold {point.threshold:.4f}<br>"
                                       f"FMR {rates.get('fmr')}<br>FNMR {rates.get('fnmr')}"
                                       f"{note}<extra></extra>"))
    fig.update_xaxes(type="log", title_text="FMR (log)")
    fig.update_yaxes(type="log", title_text="FNMR (log)")
    return _layout(fig, f"{fr_model}: DET curves per group; markers at threshold "
                        f"{point.threshold:.4f} ({point.label})", height=460)


def histograms_figure(hist: pd.DataFrame, point: OperatingPoint,
                      fr_model: str) -> go.Figure | None:
    """Mated and non-mated similarity distributions per group (one panel per group, stacked,
    sharing the x axis), from the stored 50-bin histograms over [-1, 1]. Bar height is the
    share of that group's pairs of that kind in the bin (so the far fewer mated pairs stay
    visible); hover gives the count. A dashed vertical line marks the global threshold."""
    rows = _model_rows(hist, fr_model)
    if rows.empty:
        return None
    parts = _by_group(rows.assign(kind=rows["kind"].astype(str).str.replace("-", "",
                                                                             regex=False)))
    groups = [g for g in (_groups(point) or sorted(parts)) if g in parts]
    fig = go.Figure()
    n = len(groups)
    gap = 0.35 / n if n > 1 else 0.0
    height = (1.0 - gap * (n - 1)) / n
    layout: dict[str, Any] = {"barmode": "overlay", "annotations": [], "shapes": []}
    for i, g in enumerate(groups):
        suffix = "" if i == 0 else str(i + 1)
        top = 1.0 - i * (height + gap)
        layout[f"yaxis{suffix}"] = {"domain": [max(top - height, 0.0), top],
                                    "anchor": "x", "tickformat": ".0%",
                                    "title": {"text": "share"}}
        layout["annotations"].append(_panel_title(g, 0.5, top))
        for kind, colour in (("mated", MATED_COLOUR), ("non-mated", NONMATED_COLOUR)):
            sel = parts[g][parts[g]["kind"] == kind.replace("-", "")]
            if sel.empty:
                continue
            total = float(sel["count"].sum()) or 1.0
            fig.add_bar(x=((sel["bin_left"] + sel["bin_right"]) / 2).to_numpy(),
                        y=(sel["count"] / total).to_numpy(),
                        width=(sel["bin_right"] - sel["bin_left"]).to_numpy(), name=kind,
                        legendgroup=kind, showlegend=(i == 0), marker_color=colour, opacity=0.6,
                        customdata=[[as_count(c), left, right] for c, left, right in zip(
                            sel["count"], sel["bin_left"], sel["bin_right"], strict=True)],
                        hovertemplate=(f"{g}, {kind}<br>score [%{{customdata[1]:.2f}}, "
                                       "%{customdata[2]:.2f})<br>%{customdata[0]} pairs "
                                       "(%{y:.1%})<extra></extra>"),
                        xaxis="x", yaxis=f"y{suffix}")
        layout["shapes"].append({"type": "line", "xref": "x", "yref": f"y{suffix} domain",
                                 "x0": point.threshold, "x1": point.threshold,
                                 "y0": 0, "y1": 1,
                                 "line": {"color": "#000", "dash": "dash", "width": 1}})
    last = "" if n == 1 else str(n)
    layout["xaxis"] = {"range": [-1, 1], "anchor": f"y{last}",
                       "title": {"text": "cosine similarity"}}
    fig.update_layout(**layout)
    return _layout(fig, f"{fr_model}: similarity distributions per group; dashed line: "
                        f"threshold {point.threshold:.4f} ({point.label})",
                   height=140 + 170 * n)


# ----------------------------------------------------------------------------- factor effects


def factor_rows(effects: pd.DataFrame, point: OperatingPoint,
                targets: list[float]) -> tuple[pd.DataFrame, float | None]:
    """The factor-effect rows for the point's FR model at its target FMR; for a user-given
    threshold (no target), those at the first of ``targets``. Returns ``(rows, target)``."""
    rows = _model_rows(effects, point.fr_model)
    if rows.empty:
        return rows, None
    target = point.target_fmr
    if target is None and targets:
        target = targets[0]
    return factor_effect_rows(rows, point.fr_model, target), target


def _cell_label(factor: str, level: Any) -> str:
    label = level_label(level)
    return f"{factor} {label}" if label else factor


def factor_heatmap(rows: pd.DataFrame, groups: list[str], value: str, significant: str,
                   p_adjusted: str, title: str, colour_title: str, value_format: str,
                   higher_is_worse: bool = False) -> go.Figure | None:
    """Group (rows) x factor level (columns) heat map of ``value``; cells whose ``significant``
    column is true carry :data:`SIGNIFICANT_MARK`. Every cell's text is the value (``–`` when
    undefined) and, on a second line, its number of pairs (``n=25``: identities with both the
    control and the level), so that no number is shown without what it rests on. Red always
    means worse recognition (a lower similarity, or with ``higher_is_worse`` a higher error
    rate), blue better. Each cell's customdata is ``[group, factor, level label, variant,
    n_pairs, adjusted p, value text]`` (pages use it to link the cell to its image pairs);
    ``n_pairs`` is an int, or ``""`` where the table has no such cell."""
    if rows.empty or value not in rows.columns:
        return None
    columns: list[tuple[str, Any]] = []
    for factor, level in zip(rows["factor"], rows["level"], strict=True):
        key = (str(factor), level_label(level))
        if key not in columns:
            columns.append(key)
    present = set(rows["group"].astype(str))
    groups = [g for g in groups if g in present] + sorted(present - set(groups))
    lookup = {(str(r["group"]), str(r["factor"]), level_label(r["level"])): r
              for r in rows.to_dict("records")}
    z, text, custom = [], [], []
    for g in groups:
        z_row, text_row, custom_row = [], [], []
        for factor, label in columns:
            r = lookup.get((g, factor, label))
            v = None if r is None else _none_if_nan(r[value])
            mark = SIGNIFICANT_MARK if (r is not None and bool(r.get(significant))) else ""
            shown = "" if v is None else format(float(v), value_format)
            n = None if r is None else as_count(r.get("n_pairs"))
            z_row.append(None if v is None else float(v))
            text_row.append("" if r is None else
                            f"{shown or '–'}{mark}<br>n={'?' if n is None else n}")
            p = None if r is None else _none_if_nan(r.get(p_adjusted))
            custom_row.append([g, factor, label, variant_key(factor, label),
                               "" if n is None else n,
                               "n/a" if p is None else f"{float(p):.3g}", shown + mark])
        z.append(z_row)
        text.append(text_row)
        custom.append(custom_row)
    finite = [abs(v) for row in z for v in row if v is not None]
    span = max(finite) if finite else 1.0
    fig = go.Figure(go.Heatmap(
        z=z, x=[_cell_label(f, label) for f, label in columns], y=groups, text=text,
        texttemplate="%{text}", customdata=custom,
        colorscale="RdBu_r" if higher_is_worse else "RdBu", zmid=0,
        zmin=-span, zmax=span, colorbar={"title": {"text": colour_title}},
        hovertemplate=("%{y}, %{x}<br>" + colour_title + " %{customdata[6]}<br>"
                       "n = %{customdata[4]} pairs (identities with both the control and the "
                       "level), adjusted p %{customdata[5]}"
                       "<br>click for the image pairs<extra></extra>")))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="factor and level")
    return _layout(fig, title, height=max(320, 130 + 55 * len(groups)))


def factor_figures(effects: pd.DataFrame, point: OperatingPoint, fr_model: str,
                   targets: list[float]) -> dict[str, go.Figure]:
    """The two factor-effect heat maps: ``factor_similarity`` (mean change of the mated
    similarity of the level against the control, cosine units; Wilcoxon signed-rank) and
    ``factor_fnmr`` (change of FNMR at the target's threshold, in rate units; McNemar). A
    ``*`` marks cells still significant after the stored multiple-comparison correction."""
    rows, target = factor_rows(effects, point, targets)
    if rows.empty:
        return {}
    groups = _groups(point)
    at = f"target FMR {target:g}" if target is not None else point.label
    if point.target_fmr is None and target is not None:
        at += " (factor effects are computed at target FMRs only)"
    out = {}
    similarity = factor_heatmap(
        rows, groups, "mean_change", "wilcoxon_significant", "wilcoxon_p_adjusted",
        f"{fr_model}: change in mated similarity against the control ({at}); "
        f"{SIGNIFICANT_MARK} Wilcoxon significant after correction",
        "mean change", "+.3f")
    fnmr = factor_heatmap(
        rows, groups, "fnmr_change", "mcnemar_significant", "mcnemar_p_adjusted",
        f"{fr_model}: change in FNMR against the control ({at}); {SIGNIFICANT_MARK} McNemar "
        "significant after correction", "FNMR change", "+.2f", higher_is_worse=True)
    if similarity is not None:
        out["factor_similarity"] = similarity
    if fnmr is not None:
        out["factor_fnmr"] = fnmr
    return out


# ----------------------------------------------------------------------------- quality


def quality_box_stats(quality: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """Per group: n, q1, median, q3 and Tukey whisker ends (the most extreme values within
    1.5 IQR of the quartiles) of the ``quality`` column, images with a score only."""
    rows = []
    parts = _by_group(quality[["group", "quality"]])
    for g in [g for g in groups if g in parts] + sorted(set(parts) - set(groups)):
        values = parts[g]["quality"].dropna()
        if values.empty:
            continue
        q1, median, q3 = (float(values.quantile(q)) for q in (0.25, 0.5, 0.75))
        iqr = q3 - q1
        inside = values[(values >= q1 - 1.5 * iqr) & (values <= q3 + 1.5 * iqr)]
        rows.append({"group": g, "n": int(len(values)), "q1": q1, "median": median, "q3": q3,
                     "lower": float(inside.min()), "upper": float(inside.max()),
                     "mean": float(values.mean())})
    return pd.DataFrame(rows)


def quality_figure(quality: pd.DataFrame, groups: list[str],
                   low_line: float | None = None) -> go.Figure | None:
    """Box plots of the image quality score (LightQNet, higher is better) per group over all
    the audit's images with a face; only the box statistics are sent, not every image. The
    dashed line is the audit's low-quality line when the summary has one."""
    if quality is None or quality.empty or "quality" not in quality.columns:
        return None
    stats = quality_box_stats(quality, groups)
    if stats.empty:
        return None
    fig = go.Figure()
    all_groups = list(stats["group"])
    for s in stats.to_dict("records"):
        fig.add_trace(go.Box(
            name=s["group"], x=[s["group"]], q1=[s["q1"]], median=[s["median"]], q3=[s["q3"]],
            lowerfence=[s["lower"]], upperfence=[s["upper"]], mean=[s["mean"]],
            marker_color=group_colour(groups or all_groups, s["group"]), boxpoints=False,
            hoverinfo="y+name"))
    if low_line is not None:
        fig.add_hline(y=low_line, line={"color": "#555", "dash": "dash", "width": 1},
                      annotation_text="low-quality line", annotation_position="top left")
    fig.update_yaxes(title_text="quality (higher is better)")
    counts = ", ".join(f"{g}: {n}" for g, n in zip(stats["group"], stats["n"], strict=True))
    return _layout(fig, f"Image quality per group (images scored: {counts})", showlegend=False)


def edc_figure(edc: pd.DataFrame, point: OperatingPoint, fr_model: str,
               groups: list[str]) -> go.Figure | None:
    """Error-versus-discard curves per group: FNMR (y, rate) after discarding the
    lowest-quality fraction (x, 0 to 0.5) of all images, at the fixed threshold stored with
    the curves (the first target FMR's). Hover: the remaining mated pairs and errors."""
    rows = _model_rows(edc, fr_model)
    if rows.empty:
        return None
    parts = _by_group(rows)
    fig = go.Figure()
    for g in [g for g in groups if g in parts] + sorted(set(parts) - set(groups)):
        curve = parts[g].sort_values("fraction")
        custom = [[as_count(n), as_count(e)] for n, e in zip(
            curve["n_mated"], curve["false_non_matches"], strict=True)]
        fig.add_scatter(x=curve["fraction"].to_numpy(), y=curve["fnmr"].to_numpy(), name=g,
                        mode="lines+markers", line={"color": group_colour(groups, g)},
                        customdata=custom,
                        hovertemplate=(f"{g}<br>discarded %{{x:.0%}}<br>FNMR %{{y:.4g}} "
                                       "(%{customdata[1]} of %{customdata[0]})<extra></extra>"))
    threshold = rows["threshold"].iloc[0] if "threshold" in rows.columns else point.threshold
    fig.update_xaxes(title_text="share of lowest-quality images discarded", tickformat=".0%")
    fig.update_yaxes(title_text="FNMR", rangemode="tozero")
    return _layout(fig, f"{fr_model}: error versus discard per group (threshold "
                        f"{float(threshold):.4f})")
