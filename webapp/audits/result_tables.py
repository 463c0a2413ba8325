"""A finished audit's stored result tables, read from storage once and kept in a small cache.

``AuditResult.tables`` maps export names (``det_curves.csv``, ``factor_effects.csv``, ...) to
CSV files in the default storage; ``AuditResult.comparisons_file`` is the comparisons table
(Parquet, or gzip CSV for older audits). Pages read them here instead of recomputing anything.
The cache key includes ``result.created_at`` (updated whenever the result is stored again), so a
recomputed result is never served stale.
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd
from django.core.files.storage import default_storage

#: Result tables kept in memory at once per process (a few audits' worth of dashboards).
TABLE_CACHE_SIZE = 64
MATED_CACHE_SIZE = 8


def _stamp(result) -> str:
    return result.created_at.isoformat() if result.created_at else ""


@lru_cache(maxsize=TABLE_CACHE_SIZE)
def _read_table(pk: int, stamp: str, name: str, stored: str) -> pd.DataFrame:
    try:
        with default_storage.open(stored, "rb") as f:
            return pd.read_csv(f)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return pd.DataFrame()


def load_table(result, name: str) -> pd.DataFrame:
    """The stored table ``name`` (e.g. ``"det_curves.csv"``) of an ``AuditResult``, or an empty
    DataFrame when the result has no such table or its file is missing.

    Cached per ``(result.pk, result.created_at, name)``. The returned frame is a shallow copy
    of the cached one: adding columns is safe, editing values in place is not.
    """
    stored = (result.tables or {}).get(name)
    if not stored:
        return pd.DataFrame()
    return _read_table(result.pk, _stamp(result), name, stored).copy(deep=False)


def load_tables(result, names) -> dict[str, pd.DataFrame]:
    """``{name: load_table(result, name)}`` for each of ``names``."""
    return {name: load_table(result, name) for name in names}


@lru_cache(maxsize=MATED_CACHE_SIZE)
def _read_mated(pk: int, stamp: str, stored: str) -> pd.DataFrame:
    from worker.comparison_store import read_comparisons

    df = read_comparisons(stored, ["fr_model", "image_a", "image_b", "mated", "score"],
                          mated_only=True)
    df = df[df["mated"].astype(bool)].drop(columns="mated")
    df["fr_model"] = df["fr_model"].astype(str)
    return df.reset_index(drop=True)


def load_mated_scores(result) -> pd.DataFrame:
    """The mated comparisons of a result: ``fr_model``, ``image_a`` (the baseline),
    ``image_b`` (the variant), ``score`` (cosine similarity). Empty when the file is missing.
    Cached per ``(result.pk, result.created_at)``; treat as read-only."""
    if not result.comparisons_file:
        return pd.DataFrame(columns=["fr_model", "image_a", "image_b", "score"])
    try:
        return _read_mated(result.pk, _stamp(result), result.comparisons_file)
    except FileNotFoundError:
        return pd.DataFrame(columns=["fr_model", "image_a", "image_b", "score"])
