"""The ``quality`` block of ``summary.json`` and its tables: per-image quality measures
(``quality.csv``) and error-versus-discard curves (``edc_curves.csv``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from webapp.audits.models import Audit, FaceAnalysis

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
    from audit.quality import quality_by_group

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
    return out, edc_table(table, comparisons, thresholds)


def edc_table(table: pd.DataFrame, comparisons: pd.DataFrame,
              thresholds: dict[str, float]) -> pd.DataFrame:
    """Error-versus-discard curves of each FR model's mated comparisons whose two images have a
    quality score, at ``thresholds[fr_model]``; empty when there are no FR models."""
    from audit.quality import edc_curves

    quality_of = table.set_index("image_id")["quality"]
    curves = []
    for fr_model, threshold in thresholds.items():
        comp = comparisons[(comparisons["fr_model"] == fr_model) & comparisons["mated"]]
        keep = comp["image_a"].map(quality_of).notna() & comp["image_b"].map(quality_of).notna()
        curves.append(edc_curves(comp[keep], quality_of, threshold).assign(
            fr_model=fr_model, threshold=threshold))
    return pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
