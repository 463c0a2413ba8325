"""The tidy mated-score table of the factor analyses: its checks and its conditions.

One row per fr_model x identity x condition with columns ``fr_model``, ``identity_id``,
``group``, ``factor`` (:data:`CONTROL` for the control image, else the factor name), ``level``
and ``score`` (the mated cosine similarity with the identity's baseline; NaN = missing), as
described in :mod:`audit.factor_effects`. :func:`clean_input` checks it (one group per
identity, one row per cell, finite scores) and :func:`conditions_of` / :func:`condition_codes`
give the factor levels in a stable order (numbers numerically, then text). Shared by
:func:`audit.factor_effects.factor_effects` and :func:`audit.interactions.interaction_model`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CONTROL", "clean_input", "condition_codes", "conditions_of", "level_sort_key"]

#: Value of ``factor`` that marks the control (null re-capture) image.
CONTROL = "control"

_INPUT_COLUMNS = ("fr_model", "identity_id", "group", "factor", "level", "score")


def level_sort_key(level: Any) -> tuple[int, float, str]:
    """Numbers first in numeric order, then everything else by its text."""
    if isinstance(level, (int, float, np.integer, np.floating)) and not isinstance(
        level, (bool, np.bool_)
    ):
        return (0, float(level), "")
    return (1, 0.0, str(level))


def clean_input(mated: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Checked copy of ``mated`` with control levels set to None; NaN scores removed.

    Returns the frame and the number of NaN-score rows removed.
    """
    if not isinstance(mated, pd.DataFrame):
        raise ValueError(f"mated must be a pandas DataFrame, got {type(mated).__name__}")
    missing = [c for c in _INPUT_COLUMNS if c not in mated.columns]
    if missing:
        raise ValueError(
            f"mated is missing column(s) {missing}: expected columns {list(_INPUT_COLUMNS)}"
        )
    frame = mated.loc[:, list(_INPUT_COLUMNS)].copy()
    for col in ("fr_model", "identity_id", "group", "factor"):
        if frame[col].isna().any():
            raise ValueError(f"mated column {col!r} has missing values: fill or drop those rows")
    try:
        frame["score"] = frame["score"].astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"mated column 'score' must be numeric: {exc}") from exc
    if np.isinf(frame["score"].to_numpy()).any():
        raise ValueError("mated column 'score' has infinite values: scores must be finite")
    frame["level"] = frame["level"].astype(object)
    is_control = (frame["factor"] == CONTROL).to_numpy()
    frame.loc[is_control, "level"] = None
    if frame.loc[~is_control, "level"].isna().any():
        raise ValueError(
            "mated column 'level' is missing for a non-control row: every factor row needs a level"
        )
    groups_per_identity = frame.groupby("identity_id", sort=False)["group"].nunique()
    bad = groups_per_identity[groups_per_identity > 1]
    if len(bad):
        raise ValueError(
            f"identity_id {bad.index[0]!r} appears in more than one group: an identity belongs "
            "to exactly one demographic group"
        )
    keys = pd.Series(
        list(
            zip(
                frame["fr_model"],
                frame["identity_id"],
                frame["factor"],
                frame["level"],
                strict=True,
            )
        ),
        dtype=object,
    )
    duplicated = keys.duplicated().to_numpy()
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise ValueError(
            f"duplicate mated score for fr_model={row['fr_model']!r}, identity_id="
            f"{row['identity_id']!r}, factor={row['factor']!r}, level={row['level']!r}: keep one "
            "row per identity and condition"
        )
    nan_rows = int(frame["score"].isna().sum())
    return frame[frame["score"].notna()].reset_index(drop=True), nan_rows


def conditions_of(frame: pd.DataFrame) -> list[tuple[Any, Any]]:
    """Distinct (factor, level) of the non-control rows, by factor, then level (numbers first)."""
    variants = frame[frame["factor"] != CONTROL]
    found = set(zip(variants["factor"], variants["level"], strict=True))
    return sorted(found, key=lambda c: (str(c[0]), level_sort_key(c[1])))


def condition_codes(frame: pd.DataFrame, conditions: list[tuple[Any, Any]]) -> np.ndarray:
    """Per row: 0 for the control, ``1 + k`` for ``conditions[k]``."""
    lookup = {c: k for k, c in enumerate(conditions, start=1)}
    return np.array(
        [
            0 if f == CONTROL else lookup[(f, lv)]
            for f, lv in zip(frame["factor"], frame["level"], strict=True)
        ],
        dtype=np.int64,
    )
