"""The export's files read from the audit's stored result: the comparisons (``comparisons.csv``,
``comparisons.parquet``) and the pair lists (``pairs_mated.csv``, ``pairs_nonmated.csv``) from
the stored comparisons table (:mod:`exports.comparison_store`), ``summary.json`` from the stored
summary, and ``tables/<name>.csv`` / ``.json`` from the stored result tables. Image and identity
ids are written as the export's numbers (:class:`~exports.plan.ExportPlan`). The result-table
functions serve the table downloads of the pages as well.

Everything streams in batches (:data:`COMPARISON_BATCH_ROWS`, :data:`TABLE_BATCH_ROWS`): an
audit's millions of comparisons are never whole in memory.
"""

from __future__ import annotations

import io
import json
import re
import tempfile
from collections.abc import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from audit.summary import AuditSummary
from exports.files import open_stream
from exports.plan import ExportPlan, plan_export
from exports.zip_stream import file_chunks
from webapp.audits.models import Audit

PAIR_COLUMNS = ["image_a", "image_b", "path_a", "path_b", "identity_a", "identity_b", "group_a",
                "group_b", "variant_a", "variant_b"]

#: Rows per batch when streaming the comparisons and the result tables.
COMPARISON_BATCH_ROWS = 200_000
TABLE_BATCH_ROWS = 20_000


# --- comparisons and pair lists ---------------------------------------------------------------------

def _comparisons_name(audit: Audit) -> str | None:
    result = getattr(audit, "result", None)
    return result.comparisons_file if result is not None and result.comparisons_file else None


def _renumbered_batches(audit: Audit, plan: ExportPlan) -> Iterator[pd.DataFrame]:
    """The stored comparisons in batches, with the export's image and identity numbers in place
    of database ids (:class:`ExportPlan`)."""
    name = _comparisons_name(audit)
    if name is None:
        return
    for batch in _comparison_batches(name):
        batch = batch.copy()
        for col in ("image_a", "image_b"):
            batch[col] = plan.renumber(batch[col])
        for col in ("identity_a", "identity_b"):
            batch[col] = plan.renumber(batch[col], identities=True)
        yield batch


def _arrow(batch: pd.DataFrame) -> pa.Table:
    table = pa.Table.from_pandas(batch, preserve_index=False)
    return pa.table([col.dictionary_decode() if pa.types.is_dictionary(col.type) else col
                     for col in (c.combine_chunks() for c in table.columns)],
                    names=table.column_names)


def comparisons_csv_chunks(audit: Audit, plan: ExportPlan | None = None) -> Iterator[bytes]:
    """The comparisons table as CSV (export numbers for images and identities), in chunks (it
    can be large)."""
    import pyarrow.csv as pa_csv

    from exports.comparison_store import plain_booleans

    plan = plan or plan_export(audit)
    first = True
    for batch in _renumbered_batches(audit, plan):
        out = io.BytesIO()
        pa_csv.write_csv(_arrow(batch), out, pa_csv.WriteOptions(include_header=first,
                                                                  quoting_style="needed"))
        first = False
        yield plain_booleans(out.getvalue())


def comparisons_parquet_chunks(audit: Audit, plan: ExportPlan | None = None) -> Iterator[bytes]:
    """The comparisons table as Parquet (export numbers for images and identities), written
    batch by batch through a temporary file."""
    from exports.comparison_store import CATEGORICAL

    plan = plan or plan_export(audit)
    with tempfile.TemporaryFile() as tmp:
        writer = None
        for batch in _renumbered_batches(audit, plan):
            table = pa.Table.from_pandas(batch, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd",
                                          use_dictionary=list(CATEGORICAL))
            writer.write_table(table.cast(writer.schema))
        if writer is None:
            return
        writer.close()
        tmp.seek(0)
        yield from file_chunks(tmp)


def _comparison_batches(name: str, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """The stored comparisons table in DataFrames of at most :data:`COMPARISON_BATCH_ROWS`."""
    from exports.comparison_store import comparison_batches

    return comparison_batches(name, columns, batch_rows=COMPARISON_BATCH_ROWS)


def pairs_csv_chunks(audit: Audit, plan: ExportPlan, mated: bool) -> Iterator[bytes]:
    """``pairs_mated.csv`` or ``pairs_nonmated.csv``: the pairs compared, with the images'
    paths. Every FR model scores the same pairs, so they are read from the first model's rows.

    Written column-wise with pyarrow (paths and variants looked up by position in a sorted id
    array): an audit's millions of non-mated pairs stream at well over 100 MB/s."""
    import numpy as np
    import pyarrow.csv as pa_csv

    name = _comparisons_name(audit)
    yield (",".join(PAIR_COLUMNS) + "\n").encode()
    if name is None:
        return
    models = list(AuditSummary.of(audit.result.summary).models)
    first: str | None = models[0] if models else None
    ids = np.array(sorted(plan.paths), dtype=np.int64)
    paths = pa.array([plan.paths[i] for i in ids.tolist()], type=pa.string())
    variants = pa.array([plan.variants.get(i, "") for i in ids.tolist()], type=pa.string())

    def lookup(column: pd.Series) -> pa.Array:
        return pa.array(np.searchsorted(ids, column.to_numpy(dtype=np.int64)))

    columns = ["fr_model", "image_a", "image_b", "identity_a", "identity_b", "group_a",
               "group_b", "mated"]
    options = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
    for batch in _comparison_batches(name, columns):
        if first is None and len(batch):
            first = str(batch["fr_model"].iloc[0])
        mated_col = batch["mated"].astype(str).str.lower() == "true"
        rows = batch[(batch["fr_model"].astype(str) == first) & (mated_col == mated)]
        if rows.empty:
            continue
        at_a, at_b = lookup(rows["image_a"]), lookup(rows["image_b"])
        table = pa.table({
            "image_a": plan.renumber(rows["image_a"]), "image_b": plan.renumber(rows["image_b"]),
            "path_a": paths.take(at_a), "path_b": paths.take(at_b),
            "identity_a": plan.renumber(rows["identity_a"], identities=True),
            "identity_b": plan.renumber(rows["identity_b"], identities=True),
            "group_a": pa.array(rows["group_a"].astype(str)),
            "group_b": pa.array(rows["group_b"].astype(str)),
            "variant_a": variants.take(at_a), "variant_b": variants.take(at_b)})
        out = io.BytesIO()
        pa_csv.write_csv(table, out, options)
        yield out.getvalue()


# --- summary and tables ------------------------------------------------------------------------------

def summary_json(audit: Audit) -> bytes:
    """``summary.json``: the stored summary, with every count written as an integer (``12``,
    never ``12.0``; :func:`audit.counts.integral_counts`)."""
    from audit.counts import integral_counts

    result = getattr(audit, "result", None)
    summary = integral_counts(AuditSummary.of(result.summary).without_database_id()) \
        if result else {}
    return json.dumps(summary, indent=2, allow_nan=False).encode()


def result_tables(audit: Audit) -> list[tuple[str, str]]:
    """The stored result tables as (table name without ``.csv``, storage name), sorted; only
    plain ``<name>.csv`` file names are kept."""
    result = getattr(audit, "result", None)
    tables = (result.tables or {}) if result is not None else {}
    out = []
    for fname, stored in sorted(tables.items()):
        stem = fname[:-4] if fname.endswith(".csv") else ""
        if stem and re.fullmatch(r"[A-Za-z0-9_]+", stem) and stored:
            out.append((stem, stored))
    return out


def table_csv_chunks(stored: str) -> Iterator[bytes]:
    """A stored result table as it is (CSV), in chunks."""
    with open_stream(stored) as f:
        yield from file_chunks(f)


def table_json_chunks(stored: str) -> Iterator[bytes]:
    """A stored CSV result table as a JSON list of records (empty cells become null), converted
    in batches of :data:`TABLE_BATCH_ROWS` rows. Count columns stay integers even where some
    cells are empty (pandas would read such a column as floats and write ``10.0``)."""
    from audit.counts import count_columns

    yield b"["
    first = True
    with open_stream(stored) as f:
        try:
            reader = pd.read_csv(f, chunksize=TABLE_BATCH_ROWS, keep_default_na=False,
                                 na_values=[""])
            for chunk in reader:
                text = count_columns(chunk).to_json(orient="records", double_precision=15)
                if text in ("[]", ""):
                    continue
                yield (("" if first else ",") + text[1:-1]).encode("utf-8")
                first = False
        except pd.errors.EmptyDataError:
            pass
    yield b"]"


#: Result tables with image or identity ids, written with the export's numbers (:class:`ExportPlan`).
NUMBERED_TABLES = ("quality",)


def numbered_table_chunks(stored: str, plan: ExportPlan, fmt: str) -> Iterator[bytes]:
    """A stored table whose ``image_id`` / ``identity_id`` columns are database ids, with the
    export's numbers in their place, as CSV (``fmt="csv"``) or a JSON list of records (pandas
    reads floats back exactly, so every other cell is written as stored)."""
    from audit.counts import count_columns

    with open_stream(stored) as f:
        try:
            table = pd.read_csv(f, keep_default_na=False, na_values=[""])
        except pd.errors.EmptyDataError:
            yield b"[]" if fmt == "json" else b""
            return
    if "image_id" in table.columns:
        table["image_id"] = plan.renumber(table["image_id"])
    if "identity_id" in table.columns:
        table["identity_id"] = plan.renumber(table["identity_id"], identities=True)
    if fmt == "json":
        yield count_columns(table).to_json(orient="records", double_precision=15).encode()
    else:
        yield table.to_csv(index=False).encode("utf-8")
