"""Counts stay whole numbers wherever they are shown or exported.

A count read back from a CSV table becomes a float as soon as its column holds one empty cell
(or is parsed as a number column), and then shows as ``10.0``. These helpers turn such values
back into integers: :func:`as_count` for one value, :func:`count_text` for display,
:func:`integral_counts` for a JSON structure (by key name), :func:`count_columns` for a table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

__all__ = ["COUNT_KEYS", "as_count", "count_columns", "count_text", "finite_number",
           "integral_counts"]

#: Keys and column names that hold counts in summaries and result tables.
COUNT_KEYS = frozenset({
    # acquisition, generator checks, comparisons
    "images", "faces_found", "latent_edits", "mated", "nonmated", "nonmated_total",
    "nonmated_used",
    # rates
    "n_mated", "n_nonmated", "false_matches", "false_non_matches", "n_identities",
    # factor effects and interaction
    "n_pairs", "n_missing_control", "n_missing_level", "wilcoxon_n_nonzero", "mcnemar_lost",
    "mcnemar_gained", "n_informative", "family_size", "n_obs", "n_obs_cell", "n_clusters",
    "dropped_nan_scores",
    # quality, curves, histograms
    "n", "n_missing", "below", "discarded_images", "count",
    # identifiers are whole numbers too
    "image_id", "identity_id", "image_a", "image_b", "identity_a", "identity_b",
})


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, None when missing, NaN, infinite, not a number or a bool."""
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def as_count(value: Any) -> int | None:
    """``value`` as an int when it is a whole, finite number (``10``, ``10.0``, ``"10"``,
    ``"10.0"``), else None (missing, NaN, fractional, text, booleans)."""
    x = finite_number(value)
    return None if x is None or x != math.floor(x) else int(x)


def count_text(value: Any, missing: str = "n/a", thousands: bool = False) -> str:
    """A count for display: ``"10"`` (never ``"10.0"``), ``missing`` when it is not a whole
    number; with ``thousands``, ``"12,345"``."""
    n = as_count(value)
    if n is None:
        return missing
    return f"{n:,}" if thousands else str(n)


def integral_counts(data: Any, key: str | None = None) -> Any:
    """A copy of a JSON-like structure in which whole floats under a count key
    (:data:`COUNT_KEYS`; also inside lists and matrices under that key) are ints. Nothing else
    changes."""
    if isinstance(data, Mapping):
        return {k: integral_counts(v, k) for k, v in data.items()}
    if isinstance(data, list):
        return [integral_counts(v, key) for v in data]
    if isinstance(data, float) and key in COUNT_KEYS:
        n = as_count(data)
        return data if n is None else n
    return data


def count_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every count column (:data:`COUNT_KEYS`) whose values are all whole numbers
    or missing as pandas' nullable ``Int64`` (missing cells stay missing, not NaN floats)."""
    out = df
    for column in df.columns:
        if column not in COUNT_KEYS or pd.api.types.is_integer_dtype(df[column]):
            continue
        values = pd.to_numeric(df[column], errors="coerce")
        present = values.dropna()
        if values.isna().sum() != df[column].isna().sum():
            continue  # text in the column: leave it alone
        if not present.empty and not (present.map(math.isfinite).all()
                                      and (present == present.round()).all()):
            continue
        if out is df:
            out = df.copy()
        out[column] = values.astype("Int64")
    return out
