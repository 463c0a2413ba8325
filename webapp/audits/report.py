"""The self-contained HTML fairness report of a finished audit.

:func:`build_report` returns one HTML document that opens without a network: plotly.js is
included once, inline, from the installed plotly package; every figure is embedded as JSON and
drawn with ``Plotly.newPlot``; styles are inline; there are no external fonts or images.

Everything comes from what the audit stored (``AuditResult.summary`` and the result tables read
with :func:`webapp.audits.result_tables.load_table`); the comparisons table is never loaded and
no statistic is recomputed. Figures come from :func:`webapp.audits.dashboard.dashboard_figures`,
the same charts as the audit page. User text (audit name, description, group names) is escaped
by Django's template engine (autoescape on).
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from audit.counts import as_count, integral_counts
from audit.summary import DISPARITY_LABELS, AuditSummary, OperatingPoint, factor_effect_rows
from webapp.audits.dashboard import CHART_TABLES, FIGURE_CAPTIONS
from webapp.audits.models import Audit

#: Result tables the figures and tables of the report read.
REPORT_TABLES = (*CHART_TABLES, "interaction.csv")


#: Definitions of every measure in the report (see docs/metrics.md).
DEFINITIONS = [
    ("Mated / non-mated comparison", "A mated comparison compares two images of the same "
     "synthetic identity; a non-mated (impostor) comparison compares two different identities. "
     "A comparison matches when its similarity score is at or above the threshold."),
    ("FNMR (false non-match rate)", "The share of a group's mated comparisons that do not "
     "match: false non-matches / mated comparisons."),
    ("FMR (false match rate)", "The share of non-mated comparisons that match. A group's FMR "
     "uses non-mated comparisons with both images in that group (demographically matched "
     "impostors); cross-group FMR(d, e) uses pairs of an image of group d and one of group e."),
    ("FTA (failure to acquire)", "The share of a group's images in which the face detector "
     "found no face. Such images take part in no comparison (ISO/IEC 19795-1)."),
    ("Threshold", "One global threshold per FR model, set on all non-mated comparisons so that "
     "their FMR is at most the target FMR; every group's rates are read at that same "
     "threshold. User-given thresholds are read as they fall."),
    ("Rule of three", "When no error is observed in n trials the rate is reported as 0 with the "
     "95% upper bound 3/n, never as a bare zero."),
    ("Identity bootstrap interval", "95% percentile interval over replicates that resample "
     "identities with replacement within each group and rebuild the comparisons from the "
     "drawn identities (comparisons that share an identity are not independent, so resampling "
     "comparisons would give intervals that are too narrow)."),
    ("Disparity interval", "The 95% intervals of the disparity measures are not percentile "
     "intervals (those of a maximum over groups are biased away from parity): they come from "
     "one simultaneous (sup-t) band, from the same replicates, over all pairwise differences of "
     "the group rates (log rates for max/min ratios) or over the group rates (Gini, GARBE), "
     "mapped to each measure. Each holds its estimate and, when the groups could all be equal, "
     "parity. Beside them, a permutation test that shuffles group labels across identities "
     "gives a p-value of no difference between groups for FNMR and for FMR."),
    ("Max/min ratio", "max over groups of the rate divided by min over groups, for FNMR and for "
     "FMR. A zero rate is replaced by a floor, its rule-of-three bound 3/n, and the report says "
     "so; the ratio is undefined when every group has no error."),
    ("Fairness Discrepancy Rate (FDR)", "de Freitas Pereira and Marcel (2021): A = max over pairs "
     "of groups |FMR_i - FMR_j|, B = max over pairs |FNMR_i - FNMR_j|, FDR = 1 - (alpha A + "
     "(1 - alpha) B), with alpha = 0.5. 1 is perfectly fair. Gaps between tiny FMRs barely move "
     "it, which is why ratios are shown too."),
    ("GARBE", "Howard et al.: G(x) = (n / (n - 1)) sum_i sum_j |x_i - x_j| / (2 n^2 mean(x)), a "
     "Gini coefficient with the n/(n - 1) small-sample correction; GARBE = alpha G(FMR) + "
     "(1 - alpha) G(FNMR), alpha = 0.5. 0 is perfectly fair."),
    ("Rankable", "A group is ranked only with at least 20 identities, 100 mated and 1,000 "
     "within-group non-mated comparisons; smaller groups are named with the reason."),
    ("Factor effect", "Each factor level is paired, identity by identity, with the control "
     "condition (a null re-capture of the baseline: 1-pixel shift, JPEG quality 95); the mean "
     "change in mated similarity has a paired t-interval."),
    ("Wilcoxon signed-rank test", "A paired test of the mated scores at the level against the "
     "control, per group, factor and level."),
    ("McNemar's test", "A paired test of the match decisions: identities that stop matching "
     "(lost) against identities that start matching (gained); exact binomial below 25 discordant "
     "pairs, else chi-square with continuity correction."),
    ("Holm / Benjamini-Hochberg correction", "p-values are adjusted for the number of tests "
     "within one FR model and test type: Holm controls the family-wise error rate, "
     "Benjamini-Hochberg the false discovery rate. 'Significant' means adjusted p < 0.05 in "
     "either test."),
    ("Interaction", "A regression of the mated score on group, condition and group x condition "
     "with identity-clustered standard errors; a term says how much more the condition changes "
     "the mated score in this group than in the reference group."),
    ("EDC (error-versus-discard curve)", "FNMR at the fixed threshold after discarding the "
     "lowest-quality fraction (0 to 0.5) of images over the whole audit; a pair goes when either "
     "image goes. One curve per group shows whether quality filtering widens or narrows the "
     "gap."),
    ("Quality", "LightQNet face image quality (higher is better); the low-quality line is the "
     "10th percentile of the audit's own baseline quality, since raw scores have no universal "
     "scale."),
]

LIMITATIONS = [
    "The faces are synthetic. Error rates on them describe the FR model's behaviour on this "
    "generator's faces and need not match its error rates on real photographs.",
    "Group labels are perceived attributes read by automatic sensors (a gender-age model; the "
    "individual typology angle on skin pixels), not true attributes of anyone; sensors err, "
    "more so on small, low-resolution faces.",
    "The generator may serve some groups better than others. Images without a face or that "
    "failed the generator's checks are left out of the comparisons, per group (see generator "
    "accountability), so generator failures are not counted as FR errors, but they change what "
    "is compared.",
    "Intervals are wide for small groups; groups below the size rules are not ranked. A "
    "difference is claimed only when the intervals do not overlap.",
    "Factor levels are single settings of synthetic degradations or latent edits; they "
    "approximate, not reproduce, real capture conditions.",
    "Non-mated comparisons are probe-against-reference pairs (every image against the baseline "
    "of every other identity), possibly a seeded sample; FMR at very small targets rests on few "
    "false matches.",
]


# --- plotly.js ---------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The plotly.js bundle shipped with the plotly package, safe to inline in a script tag."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    else:  # pragma: no cover - other packagings of plotly
        from plotly.offline import get_plotlyjs

        text = get_plotlyjs()
    return text.replace("</script", "<\\/script")


def _figure_json(fig) -> SafeString:
    """A figure as JSON that can sit inside a ``<script type="application/json">`` element
    (``<``, ``>`` and ``&`` escaped as JSON unicode escapes, as Django's ``json_script``)."""
    text = fig.to_json()
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return mark_safe(text)


# --- number formatting -------------------------------------------------------------------------------

def _num(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def fmt(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits, "n/a" when missing."""
    x = _num(value)
    if x is None:
        return "n/a"
    if x == 0:
        return "0"
    if abs(x) >= 1e-3:
        return f"{x:.{digits}g}" if abs(x) < 1e4 else f"{x:,.0f}"
    return f"{x:.{max(digits - 1, 1)}e}"


def fmt_interval(low: Any, high: Any, digits: int = 4) -> str:
    lo, hi = _num(low), _num(high)
    if lo is None or hi is None:
        return "n/a"
    return f"[{fmt(lo, digits)}, {fmt(hi, digits)}]"


def fmt_share(value: Any) -> str:
    x = _num(value)
    return "n/a" if x is None else f"{100 * x:.1f}%"


def fmt_count(value: Any, missing: str = "") -> str:
    """A count as a whole number (``10``, never ``10.0``; ``12,345`` from 10,000 up, as
    :func:`fmt` writes large numbers), ``missing`` when absent or not whole."""
    n = as_count(value)
    if n is None:
        return missing
    return f"{n:,}" if abs(n) >= 10_000 else str(n)


def fmt_rate(rate: Any, errors: Any, n: Any, upper95: Any) -> str:
    """A rate with its count: ``0.25 (10/40)``; a zero rate with its rule-of-three bound."""
    x = _num(rate)
    e, t = fmt_count(errors, "?"), fmt_count(n, "?")
    if x is None:
        return f"n/a ({fmt_count(errors, '0')}/{fmt_count(n, '0')})"
    if x == 0 and _num(upper95) is not None:
        return f"0 (0/{t}; 95% upper bound {fmt(upper95)})"
    return f"{fmt(x)} ({e}/{t})"


# --- sections ----------------------------------------------------------------------------------------

def _narrative(point: OperatingPoint,
               acquisition: list[str] | None = None) -> list[str]:
    """Plain-language sentences for one operating point (empty when unavailable), followed by
    the failure-to-acquire sentences (``acquisition``, from :func:`_acquisition_sentences`)."""
    try:
        from audit.narrative import operating_point_sentences
    except ImportError:  # pragma: no cover - the narrative module is optional
        return list(acquisition or [])
    try:
        sentences = [str(s) for s in operating_point_sentences(point.raw, model=point.fr_model)]
    except Exception:  # a narrative must never stop the report; the tables say it all
        sentences = []
    return sentences + list(acquisition or [])


def _acquisition_sentences(summary: AuditSummary, quality: pd.DataFrame | None) -> list[str]:
    """Whether failure to acquire differs between groups, tested per identity on the stored
    ``quality.csv`` (:func:`audit.narrative.acquisition_sentences`); empty when unavailable."""
    try:
        from audit.acquisition import identity_counts
        from audit.narrative import acquisition_sentences

        identities = identity_counts(quality) if quality is not None else None
        return [str(s) for s in acquisition_sentences(summary.raw.get("acquisition"), identities)]
    except Exception:  # a narrative must never stop the report; the tables say it all
        return []


def _group_rows(point: OperatingPoint) -> list[dict[str, Any]]:
    rows = []
    for group, r in point.by_group.items():
        b = point.interval(group)
        rank = point.rankable.get(group) or {"rankable": True, "reason": ""}
        rows.append({
            "group": group,
            "n_identities": fmt_count(r.get("n_identities", b.get("n_identities"))),
            "fnmr": fmt_rate(r.get("fnmr"), r.get("false_non_matches"), r.get("n_mated"),
                             r.get("fnmr_upper95")),
            "fnmr_ci": fmt_interval(b.get("fnmr_lower"), b.get("fnmr_upper")),
            "fmr": fmt_rate(r.get("fmr"), r.get("false_matches"), r.get("n_nonmated"),
                            r.get("fmr_upper95")),
            "fmr_ci": fmt_interval(b.get("fmr_lower"), b.get("fmr_upper")),
            "rankable": bool(rank.get("rankable", True)), "reason": rank.get("reason", ""),
        })
    return rows


def _disparity(point: OperatingPoint) -> dict[str, Any]:
    disparity = point.disparity
    measures = disparity.get("measures") or {}
    rows = [{"label": label, "estimate": fmt(m.get("estimate")),
             "interval": fmt_interval(m.get("lower"), m.get("upper")),
             "definition": m.get("definition", "")}
            for key, label in DISPARITY_LABELS.items() if (m := measures.get(key))]
    return {"rows": rows, "notes": list(disparity.get("notes") or []),
            "alpha": disparity.get("alpha")}


def _cross_group(point: OperatingPoint) -> dict[str, Any] | None:
    cross = point.cross_group
    groups = cross.get("groups") or []
    if not groups:
        return None
    fmr, n, fm = cross.get("fmr") or [], cross.get("n_nonmated") or [], cross.get(
        "false_matches") or []
    rows = []
    for i, g in enumerate(groups):
        cells = []
        for j in range(len(groups)):
            try:
                cells.append(f"{fmt(fmr[i][j])} ({fmt_count(fm[i][j], '?')}/"
                             f"{fmt_count(n[i][j], '?')})")
            except (IndexError, TypeError):
                cells.append("n/a")
        rows.append({"group": g, "cells": cells})
    return {"groups": groups, "rows": rows}


def _factor_rows(effects: pd.DataFrame, point: OperatingPoint) -> list[dict]:
    """The factor effects of one FR model at one operating point (by target FMR, or by the
    threshold for user-given thresholds)."""
    if effects.empty or "fr_model" not in effects:
        return []
    rows = factor_effect_rows(effects, point.fr_model, point.target_fmr, point.threshold)
    out = []
    for r in rows.to_dict("records"):
        out.append({
            "group": r.get("group", ""), "factor": r.get("factor", ""),
            "level": fmt(r.get("level")) if _num(r.get("level")) is not None
            else str(r.get("level", "")),
            "n_pairs": fmt_count(r.get("n_pairs")),
            "mean_change": fmt(r.get("mean_change"), 3),
            "mean_change_ci": fmt_interval(r.get("mean_change_ci_low"),
                                           r.get("mean_change_ci_high"), 3),
            "wilcoxon_p": fmt(r.get("wilcoxon_p_adjusted"), 3),
            "fnmr": f"{fmt(r.get('fnmr_control'), 3)} → {fmt(r.get('fnmr_level'), 3)}",
            "mcnemar": f"{fmt_count(r.get('mcnemar_lost'))} / "
                       f"{fmt_count(r.get('mcnemar_gained'))}",
            "mcnemar_p": fmt(r.get("mcnemar_p_adjusted"), 3),
            "significant": str(r.get("significant")).lower() == "true",
        })
    return out


def _interaction_rows(interaction: pd.DataFrame, fr_model: str) -> list[dict[str, Any]]:
    if interaction.empty or "fr_model" not in interaction:
        return []
    rows = interaction[interaction["fr_model"].astype(str) == fr_model]
    return [{"term": r.get("term", ""), "group": r.get("group", ""),
             "factor": r.get("factor", ""), "level": fmt(r.get("level")),
             "n": fmt_count(r.get("n_obs_cell")), "estimate": fmt(r.get("estimate"), 3),
             "interval": fmt_interval(r.get("ci_low"), r.get("ci_high"), 3),
             "p": fmt(r.get("p_value"), 3), "reference": r.get("reference_group", "")}
            for r in rows.to_dict("records")]


def _accountability(summary: AuditSummary) -> dict[str, Any]:
    acquisition = summary.acquisition.get("by_group") or {}
    checks = summary.generator_checks
    rows = []
    for group in sorted(set(acquisition) | set(checks.get("by_group") or {})):
        a = acquisition.get(group) or {}
        c = (checks.get("by_group") or {}).get(group) or {}
        rows.append({"group": group, "images": fmt_count(a.get("images", c.get("images"))),
                     "faces_found": fmt_count(a.get("faces_found")),
                     "fta": fmt_share(a.get("failure_to_acquire_rate")),
                     "face_found": fmt_share(c.get("face_found")),
                     "latent_edits": fmt_count(c.get("latent_edits")),
                     "on_target": fmt_share(c.get("on_target")),
                     "others_held": fmt_share(c.get("others_held")),
                     "identity_kept": fmt_share(c.get("identity_kept")),
                     "passed": fmt_share(c.get("passed"))})
    from webapp.audits.judge_view import judge_info, judged_rows

    judged = []
    for point in summary.points():
        view = judged_rows(point)
        if view:
            judged.append({"fr_model": point.fr_model, "label": point.raw.get("label", ""),
                           **view})
    return {"rows": rows, "note": checks.get("note", ""), "judge": judge_info(summary),
            "judged": judged}


def _quality_rows(summary: AuditSummary, key: str) -> list[dict[str, Any]]:
    quality = summary.quality.get(key) or {}
    return [{"group": g, "n": fmt_count(q.get("n"), "n/a"),
             "missing": fmt_count(q.get("n_missing"), "n/a"),
             "mean": fmt(q.get("mean"), 3), "median": fmt(q.get("median"), 3),
             "iqr": fmt_interval(q.get("q25"), q.get("q75"), 3),
             "below": f"{fmt_count(q.get('below'), 'n/a')} ({fmt_share(q.get('share_below'))})"}
            for g, q in quality.items()]


def _models(summary: AuditSummary) -> list[dict[str, Any]]:
    out = []
    for name, info in summary.model_files.items():
        out.append({"name": info.get("name") or name,
                    "role": info.get("role") or ("generator" if name == "generator" else ""),
                    "file": info.get("file") or "", "sha256": info.get("weights_sha256") or "",
                    "licence": info.get("licence") or "", "source": info.get("source") or ""})
    return out


def _design(audit: Audit, summary: AuditSummary) -> dict[str, Any]:
    config = summary.audit.get("config") or audit.config or {}
    design = summary.design
    return {
        "axes": [{"axis": axis, "levels": ", ".join(str(v) for v in levels)}
                 for axis, levels in (config.get("groups") or {}).items()],
        "groups": design.get("groups") or [],
        "identities_per_group": design.get("identities_per_group",
                                           config.get("identities_per_group")),
        "factors": [{"factor": f, "levels": ", ".join(fmt(v) if _num(v) is not None else str(v)
                                                       for v in levels)}
                    for f, levels in (config.get("factors") or {}).items()],
        "variants": design.get("variants") or [],
        "n_images": design.get("n_images", audit.n_images_planned),
        "generator": config.get("generator", ""),
        "fr_models": config.get("fr_models") or [],
        "target_fmr": ", ".join(f"{t:g}" for t in config.get("target_fmr") or []),
        "thresholds": ", ".join(f"{t:g}" for t in config.get("thresholds") or []),
        "description": config.get("description", ""),
    }


def _figures(summary: AuditSummary, tables: dict[str, pd.DataFrame], point: OperatingPoint,
             problems: list[str]) -> dict[str, Any]:
    """The dashboard's figures for one FR model and operating point (empty when the charts
    module cannot draw them); charts that fail on malformed data are described in
    ``problems``."""
    try:
        from webapp.audits.dashboard import dashboard_figures
    except ImportError:  # pragma: no cover - the charts module ships with the app
        return {}
    return dashboard_figures(summary, tables, point.fr_model, point.index, problems)


def _load_tables(result) -> dict[str, pd.DataFrame]:
    from webapp.audits.result_tables import load_table

    return {name: load_table(result, name) for name in REPORT_TABLES}


def build_context(audit: Audit) -> dict[str, Any]:
    """Everything the report template shows, as plain values (strings, numbers, lists)."""
    result = getattr(audit, "result", None)
    if result is None:
        raise ValueError("the audit has no stored result")
    from webapp.audits.result_tables import table_problems

    summary = AuditSummary.of(result.summary)
    tables = _load_tables(result)
    problems = table_problems(result, REPORT_TABLES)
    effects = tables.get("factor_effects.csv", pd.DataFrame())
    interaction = tables.get("interaction.csv", pd.DataFrame())
    acquisition = _acquisition_sentences(summary, tables.get("quality.csv"))
    figures: list[dict[str, Any]] = []
    quality_figure = None
    sections = []
    for m, (fr_model, model) in enumerate(summary.models.items()):
        points = []
        for k, point in enumerate(model.points):
            charts = []
            for key, fig in _figures(summary, tables, point, problems).items():
                if key == "quality":  # the same for every model and point: shown once
                    if quality_figure is None:
                        quality_figure = {"id": "fig-quality", "json": _figure_json(fig),
                                          "caption": FIGURE_CAPTIONS["quality"]}
                        figures.append(quality_figure)
                    continue
                chart = {"id": f"fig-{m}-{k}-{key}", "json": _figure_json(fig),
                         "caption": FIGURE_CAPTIONS.get(key, "")}
                charts.append(chart)
                figures.append(chart)
            overall = point.overall
            points.append({
                "label": point.label, "anchor": f"m{m}-p{k}", "target_fmr": point.target_fmr,
                "threshold": fmt(point.threshold, 6),
                "achieved_fmr": fmt(point.achieved_fmr),
                "nonmated_used": fmt_count(point.raw.get("nonmated_used")),
                "overall_fnmr": fmt_rate(overall.get("fnmr"), overall.get("false_non_matches"),
                                         overall.get("n_mated"), overall.get("fnmr_upper95")),
                "overall_fmr": fmt_rate(overall.get("fmr"), overall.get("false_matches"),
                                        overall.get("n_nonmated"), overall.get("fmr_upper95")),
                "sentences": _narrative(point, acquisition),
                "groups": _group_rows(point), "disparity": _disparity(point),
                "cross_group": _cross_group(point),
                "factor_rows": _factor_rows(effects, point),
                "charts": charts,
            })
        sections.append({"fr_model": fr_model, "anchor": f"m{m}",
                         "sha256": model.raw.get("weights_sha256") or "",
                         "licence": model.raw.get("licence") or "",
                         "embedding_size": model.raw.get("embedding_size", ""), "points": points,
                         "interaction": _interaction_rows(interaction, fr_model)})
    points = summary.points()
    comparisons = integral_counts(summary.comparisons)
    factor_summary = summary.factor_effects
    return {
        "audit": audit, "generated_at": timezone.now(),
        "design": _design(audit, summary), "models": _models(summary),
        "detector": next((m for m in _models(summary) if m["role"] == "detector"), None),
        "comparisons": comparisons,
        "bootstrap_method": points[0].bootstrap.get("method", "") if points else "",
        "correction": factor_summary.get("correction", ""),
        "sections": sections, "accountability": _accountability(summary),
        "quality_line": fmt(summary.quality.get("low_quality_line"), 3),
        "quality_rows": _quality_rows(summary, "by_group"),
        "quality_baseline_rows": _quality_rows(summary, "baselines_by_group"),
        "quality_figure": quality_figure, "figures": figures,
        "data_problems": list(dict.fromkeys(problems)),
        "definitions": DEFINITIONS, "limitations": LIMITATIONS,
        "small_groups": sorted({r["group"] for s in sections for p in s["points"]
                                for r in p["groups"] if not r["rankable"]}),
        "plotly_js": mark_safe(plotly_js()),
    }


def build_report(audit: Audit) -> str:
    """The audit's fairness report as one self-contained HTML document."""
    return render_to_string("audits/report.html", build_context(audit))


def stored_report(audit: Audit) -> str:
    """The storage name of the audit's report, built at the first request for its current
    result and kept beside the result tables (``audits/<pk>/results/report-<stamp>.html``), so
    that every web process serves it from disk after that. ``<stamp>`` changes whenever the
    result is stored again, and reports of earlier results are then deleted."""
    from exports.files import AuditFiles, keep_built, result_stamp

    return keep_built(
        AuditFiles(audit.pk).results, f"report-{result_stamp(audit.result)}.html",
        lambda: build_report(audit).encode("utf-8"),
        stale=lambda name: name.startswith("report-") and name.endswith(".html"))
