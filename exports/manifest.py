"""The export's per-image and per-identity tables: ``manifest.csv`` and ``manifest.parquet``
(one row per image, in export order) and ``identities.csv`` (one row per synthetic identity),
read from the audit's rows in the database and numbered by its :class:`~exports.plan.ExportPlan`.
The columns are described in the export's ``README.txt`` (:data:`exports.dataset.README`).
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from exports.plan import ExportPlan, ordered_images, plan_export
from exports.zip_stream import file_chunks
from webapp.audits.models import Audit, FaceAnalysis, SyntheticIdentity

MANIFEST_COLUMNS = ["image_path", "image_id", "identity_id", "group", "group_labels", "factor",
                    "level", "variant", "latent_seed", "factor_seed", "sha256", "face_found",
                    "check_passed", "edit_sensor", "edit_requested", "edit_achieved",
                    "latent_step", "on_target", "others_held", "moved", "identity_similarity",
                    "edit_ok", "identity_judge", "identity_cutoff", "identity_kept"]

#: Column types of ``manifest.parquet`` (missing values are nulls; in the CSV they are empty).
MANIFEST_SCHEMA = pa.schema([
    ("image_path", pa.string()), ("image_id", pa.int64()), ("identity_id", pa.int64()),
    ("group", pa.string()), ("group_labels", pa.string()), ("factor", pa.string()),
    ("level", pa.float64()), ("variant", pa.string()), ("latent_seed", pa.int64()),
    ("factor_seed", pa.int64()), ("sha256", pa.string()), ("face_found", pa.bool_()),
    ("check_passed", pa.bool_()), ("edit_sensor", pa.string()), ("edit_requested", pa.float64()),
    ("edit_achieved", pa.float64()), ("latent_step", pa.float64()),
    ("on_target", pa.bool_()), ("others_held", pa.bool_()), ("moved", pa.string()),
    ("identity_similarity", pa.float64()), ("edit_ok", pa.bool_()),
    ("identity_judge", pa.string()), ("identity_cutoff", pa.float64()),
    ("identity_kept", pa.bool_()),
])


#: Rows per batch when streaming the manifest.
BATCH_ROWS = 5000


# --- manifest ----------------------------------------------------------------------------------------

def _number(value: Any) -> float | None:
    """``value`` as a float, None when missing or not a number."""
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def _integer(value: Any) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def manifest_records(audit: Audit, plan: ExportPlan | None = None) -> Iterator[dict[str, Any]]:
    """One typed record per image (None where a value is missing), in export order."""
    plan = plan or plan_export(audit)
    found = dict(FaceAnalysis.objects.filter(image__audit=audit)
                 .values_list("image_id", "face_found"))
    judge = audit.identity_judge or {}
    for img in ordered_images(audit, plan):
        checks = img.checks or {}
        recipe = img.recipe or {}
        yield {
            "image_path": plan.paths.get(img.pk) or plan.image_path(img),
            "image_id": plan.numbers[img.pk],
            "identity_id": plan.identity_numbers[img.identity_id],
            "group": img.identity.group_name,
            "group_labels": json.dumps(img.identity.group_labels, sort_keys=True),
            "factor": img.factor, "level": img.level, "variant": img.variant,
            "latent_seed": img.identity.latent_seed,
            "factor_seed": _integer(recipe.get("factor_seed")),
            "sha256": img.sha256,
            "face_found": _flag(found.get(img.pk)),
            "check_passed": _flag(checks.get("passed")),
            "edit_sensor": checks.get("target_sensor") or None,
            "edit_requested": _number(checks.get("requested")),
            "edit_achieved": _number(checks.get("achieved")),
            "latent_step": _number((recipe.get("edit") or {}).get("latent_step")),
            "on_target": _flag(checks.get("on_target")),
            "others_held": _flag(checks.get("others_held")),
            "moved": ";".join(checks.get("broken") or []) or None,
            "identity_similarity": _number(checks.get("identity_similarity")),
            "edit_ok": _flag(checks.get("edit_ok", checks.get("passed"))),
            "identity_judge": checks.get("identity_judge") or judge.get("model") or None,
            "identity_cutoff": _number(checks.get("identity_threshold",
                                                  judge.get("cutoff"))),
            "identity_kept": _flag(checks.get("identity_kept")),
        }


def _csv_value(column: str, value: Any) -> Any:
    """How a manifest value is written in the CSV: empty for missing, ``true``/``false`` for
    flags, the level in its shortest exact form."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if column == "level":
        short = f"{value:g}"
        return short if float(short) == value else repr(value)
    return value


def manifest_rows(audit: Audit, plan: ExportPlan | None = None) -> Iterator[dict[str, Any]]:
    """The manifest's rows as they are written to ``manifest.csv`` (strings for flags)."""
    for record in manifest_records(audit, plan):
        yield {k: _csv_value(k, v) for k, v in record.items()}


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def manifest_csv_chunks(audit: Audit, plan: ExportPlan | None = None) -> Iterator[bytes]:
    """``manifest.csv`` in chunks of :data:`BATCH_ROWS` rows, header first."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for batch in _batched(manifest_rows(audit, plan), BATCH_ROWS):
        writer.writerows(batch)
        yield buf.getvalue().encode("utf-8")
        buf.seek(0)
        buf.truncate()
    if buf.tell():
        yield buf.getvalue().encode("utf-8")


def manifest_csv(audit: Audit) -> bytes:
    """``manifest.csv`` whole (small audits and tests; exports stream it)."""
    return b"".join(manifest_csv_chunks(audit))


def manifest_parquet_chunks(audit: Audit, plan: ExportPlan | None = None) -> Iterator[bytes]:
    """``manifest.parquet``: written batch by batch into a temporary file, then read back in
    chunks."""
    with tempfile.TemporaryFile() as tmp:
        with pq.ParquetWriter(tmp, MANIFEST_SCHEMA, compression="zstd") as writer:
            wrote = False
            for batch in _batched(manifest_records(audit, plan), BATCH_ROWS):
                writer.write_table(pa.Table.from_pylist(batch, schema=MANIFEST_SCHEMA))
                wrote = True
            if not wrote:
                writer.write_table(MANIFEST_SCHEMA.empty_table())
        tmp.seek(0)
        yield from file_chunks(tmp)


def identities_csv(audit: Audit, plan: ExportPlan) -> bytes:
    """``identities.csv``: each identity's seed and guidance shift (what regenerates it)."""
    rows = {i.pk: i for i in SyntheticIdentity.objects.filter(audit=audit)}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["identity_id", "group", "latent_seed", "latent_shift", "sensors"])
    for pk, number in sorted(plan.identity_numbers.items(), key=lambda kv: kv[1]):
        ident = rows.get(pk)
        if ident is None:
            continue
        shift = (ident.conditioning or {}).get("latent_shift")
        writer.writerow([number, ident.group_name, ident.latent_seed,
                         "" if shift is None else json.dumps(shift),
                         json.dumps(ident.sensors or {}, sort_keys=True)])
    return out.getvalue().encode("utf-8")
