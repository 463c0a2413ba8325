"""The tidy tables every block of the summary is computed from: one row per image in design
order, the comparison pairs formed in that order, and the mated scores per condition.

Design order (group, identity index, the design's variant order) does not change when an image
is regenerated under a new database id, so everything computed in it is the same however the
audit's work was split or resumed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from generator.config import AuditConfig
from generator.design import plan_design
from webapp.audits.models import Audit, FaceAnalysis, GeneratedImage, SyntheticIdentity

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
    df = in_design_order(df, audit)
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


def in_design_order(df: pd.DataFrame, audit: Audit) -> pd.DataFrame:
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


def design_ordered_pairs(usable: pd.DataFrame, seed: int) -> pd.DataFrame:
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
