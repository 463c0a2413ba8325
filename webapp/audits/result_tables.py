"""A finished audit's stored result tables, read from storage once and kept in a small cache.

``AuditResult.tables`` maps export names (``det_curves.csv``, ``factor_effects.csv``, ...) to
CSV files in the default storage; ``AuditResult.comparisons_file`` is the comparisons table
(Parquet, or gzip CSV for older audits). Pages read them here instead of recomputing anything.
The cache key includes ``result.created_at`` (updated whenever the result is stored again), so a
recomputed result is never served stale.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import pandas as pd
from django.core.files.storage import default_storage

logger = logging.getLogger(__name__)

#: Result tables kept in memory at once per process (a few audits' worth of dashboards).
TABLE_CACHE_SIZE = 64
MATED_CACHE_SIZE = 8

#: The columns the pages read from each stored table: ``{table: {column: (kind, required)}}``
#: with kind ``"text"``, ``"number"`` (parsed as float; empty cells allowed) or ``"flag"``
#: (True/False, 1/0 or empty). A table that lacks a required column, or holds a value of the
#: wrong kind in any listed column, is treated as absent: the pages leave out what needs it and
#: say why (:func:`table_problems`).
TABLE_SCHEMAS: dict[str, dict[str, tuple[str, bool]]] = {
    "det_curves.csv": {"group": ("text", True), "threshold": ("number", True),
                       "fmr": ("number", True), "fnmr": ("number", True)},
    "score_histograms.csv": {"group": ("text", True), "kind": ("text", True),
                             "bin_left": ("number", True), "bin_right": ("number", True),
                             "count": ("number", True)},
    "factor_effects.csv": {"group": ("text", True), "factor": ("text", True),
                           "level": ("text", True), "n_pairs": ("number", True),
                           "mean_change": ("number", True), "fnmr_change": ("number", True),
                           "wilcoxon_significant": ("flag", True),
                           "mcnemar_significant": ("flag", True),
                           "wilcoxon_p_adjusted": ("number", False),
                           "mcnemar_p_adjusted": ("number", False),
                           "threshold": ("number", False), "target_fmr": ("number", False)},
    "quality.csv": {"group": ("text", True), "quality": ("number", True)},
    "edc_curves.csv": {"group": ("text", True), "fraction": ("number", True),
                       "fnmr": ("number", True), "n_mated": ("number", True),
                       "false_non_matches": ("number", True), "threshold": ("number", False)},
}
#: Required columns per table (the test suite and the docs read this).
REQUIRED_COLUMNS = {name: tuple(c for c, (_, required) in schema.items() if required)
                    for name, schema in TABLE_SCHEMAS.items()}
_FLAGS = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}
_FIX = ("The file was changed, or written by another version of FaceAudit: download the tables "
        "to inspect it, or run the audit again to rebuild it.")


def _stamp(result) -> str:
    return result.created_at.isoformat() if result.created_at else ""


def _example(values: pd.Series) -> str:
    text = str(values.iloc[0])
    return text if len(text) <= 20 else text[:17] + "..."


def check_table(name: str, df: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """``(df with number columns as float and flag columns as bool, None)`` when ``df`` fits
    ``TABLE_SCHEMAS[name]`` (tables without a schema pass unchanged), else ``(empty frame,
    message)`` naming the table, the column and what is wrong with it."""
    schema = TABLE_SCHEMAS.get(name, {})
    missing = [c for c, (_, required) in schema.items() if required and c not in df.columns]
    if missing:
        listed = ", ".join(repr(c) for c in missing)
        return pd.DataFrame(), (f"The stored table {name} lacks the column{'s' * (len(missing) > 1)} "
                                f"{listed}, so what needs it is left out. {_FIX}")
    df = df.copy()
    for column, (kind, _) in schema.items():
        if column not in df.columns or kind == "text":
            continue
        values = df[column]
        if kind == "number":
            parsed = pd.to_numeric(values, errors="coerce")
            bad = values[parsed.isna() & values.notna()]
            df[column] = parsed.astype(float)
        else:
            lowered = values.map(lambda v: None if pd.isna(v) else str(v).strip().lower())
            bad = values[lowered.notna() & ~lowered.isin(list(_FLAGS))]
            df[column] = lowered.map(lambda v: _FLAGS.get(v, False)).astype(bool)
        if not bad.empty:
            what = "numbers" if kind == "number" else "True or False"
            return pd.DataFrame(), (f"The stored table {name} has values in column {column!r} "
                                    f"that are not {what} (for example {_example(bad)!r}), so "
                                    f"what needs it is left out. {_FIX}")
    return df, None


@lru_cache(maxsize=TABLE_CACHE_SIZE)
def _read_table(pk: int, stamp: str, name: str, stored: str) -> tuple[pd.DataFrame, str | None]:
    try:
        with default_storage.open(stored, "rb") as f:
            df = pd.read_csv(f)
    except FileNotFoundError:
        return pd.DataFrame(), f"The stored table {name} is missing from storage. {_FIX}"
    except pd.errors.EmptyDataError:
        return pd.DataFrame(), f"The stored table {name} is empty. {_FIX}"
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        logger.warning("audit result %s: cannot read %s (%s)", pk, stored, exc)
        return pd.DataFrame(), f"The stored table {name} cannot be read as CSV. {_FIX}"
    return check_table(name, df)


def load_table(result, name: str) -> pd.DataFrame:
    """The stored table ``name`` (e.g. ``"det_curves.csv"``) of an ``AuditResult``, or an empty
    DataFrame when the result has no such table, its file is missing or unreadable, or it does
    not fit :data:`TABLE_SCHEMAS` (:func:`table_problems` says which).

    Cached per ``(result.pk, result.created_at, name)``. The returned frame is a shallow copy
    of the cached one: adding columns is safe, editing values in place is not.
    """
    stored = (result.tables or {}).get(name)
    if not stored:
        return pd.DataFrame()
    return _read_table(result.pk, _stamp(result), name, stored)[0].copy(deep=False)


def load_tables(result, names) -> dict[str, pd.DataFrame]:
    """``{name: load_table(result, name)}`` for each of ``names``."""
    return {name: load_table(result, name) for name in names}


def table_problems(result, names) -> list[str]:
    """One message per table of ``names`` that the result lists but that could not be used:
    missing file, not CSV, a required column missing, a value of the wrong kind."""
    problems = []
    for name in names:
        stored = (result.tables or {}).get(name)
        if stored:
            problem = _read_table(result.pk, _stamp(result), name, stored)[1]
            if problem:
                problems.append(problem)
    return problems


@lru_cache(maxsize=MATED_CACHE_SIZE)
def _read_mated(pk: int, stamp: str, stored: str) -> pd.DataFrame:
    from exports.comparison_store import read_comparisons

    df = read_comparisons(stored, ["fr_model", "image_a", "image_b", "mated", "score"],
                          mated_only=True)
    df = df[df["mated"].astype(bool)].drop(columns="mated")
    df["fr_model"] = df["fr_model"].astype(str)
    return df.reset_index(drop=True)


def load_mated_scores(result) -> pd.DataFrame:
    """The mated comparisons of a result: ``fr_model``, ``image_a`` (the baseline),
    ``image_b`` (the variant), ``score`` (cosine similarity). Empty when the file is missing or
    cannot be read.
    Cached per ``(result.pk, result.created_at)``; treat as read-only."""
    if not result.comparisons_file:
        return pd.DataFrame(columns=["fr_model", "image_a", "image_b", "score"])
    try:
        return _read_mated(result.pk, _stamp(result), result.comparisons_file)
    except FileNotFoundError:
        return pd.DataFrame(columns=["fr_model", "image_a", "image_b", "score"])
    except Exception as exc:  # noqa: BLE001 - a damaged file: show no scores, never a 500
        logger.warning("audit result %s: cannot read %s (%s)", result.pk,
                       result.comparisons_file, exc)
        return pd.DataFrame(columns=["fr_model", "image_a", "image_b", "score"])
