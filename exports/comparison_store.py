"""The comparisons table in storage: one Parquet file per audit, not one ORM row per pair.

Columns and types (``COMPARISON_COLUMNS`` in :mod:`worker.results`): ``fr_model``, ``group_a``
and ``group_b`` as dictionary-encoded strings; ``image_a``, ``image_b``, ``identity_a``,
``identity_b`` as int64; ``mated`` as bool; ``score`` (cosine similarity) as float64, so that
thresholds recomputed from the file equal the stored ones exactly. Zstandard compression; a
million comparisons take about 8 MB.

Older audits stored a gzip CSV (``comparisons.csv.gz``); :func:`read_comparisons` and
:func:`comparisons_csv_chunks` read both. A gzip CSV is read as a stream; a Parquet file through
:func:`~exports.files.open_seekable` (pyarrow seeks: footer first, then row groups), which is
the file itself on the local file system and a temporary local copy on an object store.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from exports.files import open_seekable, open_stream

CATEGORICAL = ("fr_model", "group_a", "group_b")


def _open(name: str):
    """The stored comparisons ``name`` for reading: a stream for a gzip CSV, a seekable file
    for Parquet."""
    return open_stream(name) if name.endswith(".csv.gz") else open_seekable(name)


def comparisons_parquet(comparisons: pd.DataFrame) -> bytes:
    """``comparisons`` as Parquet bytes (string columns dictionary-encoded)."""
    table = pa.Table.from_pandas(comparisons, preserve_index=False)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", use_dictionary=list(CATEGORICAL),
                   row_group_size=1 << 20)
    return buf.getvalue()


def read_comparisons(name: str, columns: list[str] | None = None,
                     mated_only: bool = False) -> pd.DataFrame:
    """The stored comparisons table ``name`` (Parquet, or gzip CSV for older audits), or only
    ``columns`` of it; ``mated_only`` keeps the mated rows (read as such from Parquet)."""
    with _open(name) as f:
        if name.endswith(".csv.gz"):
            df = pd.read_csv(gzip.GzipFile(fileobj=f), usecols=columns)
            return df[df["mated"].astype(bool)].reset_index(drop=True) if mated_only else df
        filters = [("mated", "==", True)] if mated_only else None
        return pq.read_table(f, columns=columns, filters=filters).to_pandas()


def comparison_batches(name: str, columns: list[str] | None = None,
                       batch_rows: int = 200_000) -> Iterator[pd.DataFrame]:
    """The stored comparisons table (or ``columns`` of it) in DataFrames of at most
    ``batch_rows`` rows (bounded memory for large audits)."""
    with _open(name) as f:
        if name.endswith(".csv.gz"):
            with gzip.GzipFile(fileobj=f) as gz:
                yield from pd.read_csv(gz, usecols=columns, chunksize=batch_rows,
                                       keep_default_na=False, na_values=[""])
            return
        parquet = pq.ParquetFile(f)
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            yield batch.to_pandas()


def comparisons_csv_chunks(name: str, batch_rows: int = 200_000) -> Iterator[bytes]:
    """The stored comparisons table as CSV text, header first, in chunks of ``batch_rows``
    rows (bounded memory for large audits)."""
    with _open(name) as f:
        if name.endswith(".csv.gz"):
            with gzip.GzipFile(fileobj=f) as gz:
                yield from iter(lambda: gz.read(1 << 20), b"")
            return
        parquet = pq.ParquetFile(f)
        first = True
        for batch in parquet.iter_batches(batch_size=batch_rows):
            batch = pa.RecordBatch.from_arrays(
                [col.dictionary_decode() if pa.types.is_dictionary(col.type) else col
                 for col in batch.columns], names=batch.schema.names)
            out = io.BytesIO()
            pa_csv.write_csv(batch, out, pa_csv.WriteOptions(include_header=first,
                                                             quoting_style="needed"))
            first = False
            yield plain_booleans(out.getvalue())


def plain_booleans(data: bytes) -> bytes:
    """pyarrow writes booleans as ``true``/``false``; pandas' CSVs (and the README) use
    ``True``/``False``. Only the ``mated`` column holds booleans, and no other column holds
    those words unquoted (group names with commas are quoted)."""
    return data.replace(b",true,", b",True,").replace(b",false,", b",False,")


def parquet_chunks(name: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The stored file's bytes in chunks (the Parquet file as it is, for downloads)."""
    with open_stream(name) as f:
        yield from iter(lambda: f.read(chunk_size), b"")
