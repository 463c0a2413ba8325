"""Audit exports: the balanced dataset with its manifest, pair lists, scores, result tables,
summary and dataset card, as a folder (``run_audit --out``) or a zip streamed to the browser.
Both hold the same files in the same layout::

    README.txt                    what every file and column means
    DATASET_CARD.md               composition, recipe, licences, intended use, limitations
    summary.json                  thresholds and per-group error rates (AuditResult.summary)
    manifest.csv                  one row per image
    identities.csv                one row per identity: its seed and guidance shift
    manifest.parquet              the same rows, typed
    pairs_mated.csv               the mated comparison pairs, with image paths
    pairs_nonmated.csv            the non-mated comparison pairs, with image paths
    comparisons.csv               one row per comparison per FR model (with the score)
    comparisons.parquet           the same, typed
    tables/<name>.csv             every result table (factor_effects, interaction, quality, ...)
    tables/<name>.json            the same table as a JSON list of records
    images/<group>/id<NNN>/<variant>.png

Folder scheme of the images: group / identity / variant, where ``<variant>`` is ``baseline``,
``control`` or ``<factor>_<level>`` (so the factor is the first part of the file name).
``<group>`` is a slug of the group name (letters, digits and underscores only, unique within the
audit); ``id<NNN>`` is the identity's index within its group. Every path is built from checked
parts and checked again before it is written, so no text from a config reaches a path as it is.

Everything is produced piece by piece: images one at a time, tables and comparisons in batches,
the Parquet manifest through a temporary file. Memory stays bounded for large audits. No torch
here: the web process streams downloads with this module.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from django.core.files.storage import default_storage

from exports.files import group_slugs, image_relpath, safe_slug
from webapp.audits.models import Audit, FaceAnalysis, GeneratedImage, SyntheticIdentity
from worker.dataset_card import dataset_card
from worker.export_cache import load_export_cache
from worker.zip_stream import SAFE_PART, ExportFile, check_relpath, file_chunks, stream_files_zip

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

PAIR_COLUMNS = ["image_a", "image_b", "path_a", "path_b", "identity_a", "identity_b", "group_a",
                "group_b", "variant_a", "variant_b"]

#: Rows per batch when streaming the manifest, comparisons and tables.
BATCH_ROWS = 5000
COMPARISON_BATCH_ROWS = 200_000
TABLE_BATCH_ROWS = 20_000

README = """\
FaceAudit export: {name}

A balanced synthetic-face dataset and the results of a demographic bias audit of face
recognition (FR) models on it. DATASET_CARD.md describes its composition, how it was made, the
licences of the models that made and scored it, and its intended use and limitations.

images/<group>/id<NNN>/<variant>.png
    RGB PNG images (64x64 for the default generator), one folder per demographic group, one
    sub-folder per synthetic identity (NNN = index of the identity within its group), one file
    per variant. <variant> is "baseline", "control" or <factor>_<level> (e.g. blur_1.5).
    <group> is a slug of the group name (letters, digits and underscores); manifest.csv gives
    the group name of every image. Every group has the same number of identities and every
    identity the same variants, so the groups have equal numbers of images.

manifest.csv (one row per image; manifest.parquet holds the same rows with typed columns)
    image_path    path of the image inside this export
    image_id      image number in this export, 1, 2, ... in the order of this file (group,
                  identity, variant; used in comparisons.csv and the pair lists). Numbers, not
                  database ids, so the same audit exports the same files however its work was
                  split or resumed
    identity_id   synthetic identity number (1, 2, ... in the same order); all images of one
                  identity share it
    group         demographic group, e.g. "female / darker" (levels in axis order)
    group_labels  the same as JSON: axis -> level, as confirmed by the attribute sensors
    factor        "baseline", "control" (a null re-capture of the baseline: 1-pixel shift and
                  JPEG quality 95, the reference condition for factor effects) or the varied
                  factor
    level         the factor's level in its unit (empty for the baseline)
    variant       baseline or <factor>_<level>
    latent_seed   seed of the identity's latent vector (NumPy PCG64 standard normal; for a
                  generator that aims its candidates, plus the identity's guidance shift)
    factor_seed   seed used by the factor (only noise draws random numbers)
    sha256        SHA-256 of the PNG file
    face_found    whether the face detector found a face (images without a face take part in
                  no comparison; see acquisition in summary.json)
    check_passed  whether the image passed every generator check (face found; for edits also
                  on target, other sensors held, and the identity judge's verdict)
    edit_ok       whether the image takes part in the comparisons: face found and, for edits,
                  on target with the other sensors held (the identity judge's verdict is not
                  applied; see identity_judge in summary.json)
    edit_sensor, edit_requested, edit_achieved
                  latent edits: the sensor the edit targets, the change asked for and the change
                  measured, in the sensor's unit (degrees, years, grey levels)
    latent_step   latent edits: the step taken along the conditional direction (latent units)
    on_target     latent edits: whether the target sensor moved by the change asked for, within
                  the generator's tolerance
    others_held   latent edits: whether every held sensor stayed within its tolerance
    moved         latent edits: the held sensors that moved beyond it, separated by ";"
    identity_similarity
                  edits: cosine similarity to the identity's baseline by the identity judge, an
                  FR model that is not under test
    identity_judge, identity_cutoff, identity_kept
                  the judge, its cut-off (the 99th percentile of its similarities between
                  different identities' baselines over the whole audit, fixed before any edit
                  was judged) and whether the edit reached it; images judged another person stay
                  in the comparisons and are left out of the judged-same view only

identities.csv (one row per synthetic identity, in identity_id order)
    identity_id   as in manifest.csv
    group         demographic group
    latent_seed   seed of the identity's latent vector
    latent_shift  for a generator that aims its candidates at their group (guided sampling):
                  the shift added to the seed's latent, as a JSON list of numbers in the
                  generator's latent space (whitened W for MobileStyleGAN); empty when none.
                  The identity's face is generate(sample_latents([latent_seed]) + latent_shift)
    sensors       what the attribute sensors read on the accepted face (JSON)

pairs_mated.csv, pairs_nonmated.csv (one row per compared pair; the same pairs for every FR
model)
    image_a, image_b      image ids (mated: image_a is the identity's baseline; non-mated:
                          an image against the baseline of another identity, the reference)
    path_a, path_b        the two images' paths inside this export
    identity_a/_b         identity ids
    group_a/_b            groups of the two images
    variant_a/_b          variants of the two images

comparisons.csv (one row per comparison and FR model; comparisons.parquet is the same table)
    fr_model              face recognition model
    image_a, image_b      image ids (mated: image_a is the identity's baseline)
    identity_a/_b         identity ids
    group_a/_b            groups of the two images
    mated                 true when both images show the same identity
    score                 cosine similarity of the L2-normalised embeddings (-1..1); a pair
                          matches when score >= threshold

tables/<name>.csv and tables/<name>.json (the same table: CSV, and a JSON list of records)
    factor_effects        factor effects against the control condition, per FR model, target
                          FMR, group, factor and level (paired Wilcoxon and McNemar tests with
                          Holm-corrected p-values)
    interaction           group x condition interaction terms of a regression of the mated
                          score, identity-clustered errors
    quality               per image quality measures and their percentiles
    edc_curves            error-versus-discard curves per FR model and group
    det_curves            DET curves per FR model and group
    score_histograms      mated and non-mated score histograms per FR model and group
    The columns are described in the project README.

summary.json
    per FR model and target false-match rate (FMR): the global threshold set on all non-mated
    comparisons, the FMR it achieved, and overall and per-group FNMR and FMR with their counts
    (group FMR uses non-mated pairs within the group; cross_group covers every pair of groups);
    rule-of-three 95% upper bounds where no errors were observed; identity-bootstrap intervals;
    disparity measures; the models with their SHA-256 and licences.
"""


# --- paths -----------------------------------------------------------------------------------------

def _variant_part(variant: str) -> str:
    """The variant as a file name part: kept when already plain (``blur_1.5``), else slugged."""
    return variant if SAFE_PART.match(variant) and ".." not in variant else safe_slug(
        variant, "variant")


# --- the audit's images ------------------------------------------------------------------------------

@dataclass
class _Plan:
    """What every file of one export needs: the group folders, every image's path, and the
    export's own image and identity numbers.

    Images are numbered 1, 2, ... in design order (group, identity index, the design's variant
    order) and identities likewise, so an export names its images the same however the work was
    split, retried or resumed (database ids are not: a regenerated image gets a new one)."""

    audit: Audit
    slugs: dict[str, str]
    paths: dict[int, str] = field(default_factory=dict)  # in export order
    variants: dict[int, str] = field(default_factory=dict)
    files: dict[int, str] = field(default_factory=dict)  # storage names
    numbers: dict[int, int] = field(default_factory=dict)  # image pk -> export number
    identity_numbers: dict[int, int] = field(default_factory=dict)  # identity pk -> number
    _lookup: dict[str, tuple[Any, Any]] = field(default_factory=dict, repr=False)

    def image_path(self, img: GeneratedImage) -> str:
        return check_relpath(image_relpath(self.slugs[img.identity.group_name],
                                           img.identity.index_in_group, _variant_part(img.variant)))

    def renumber(self, ids: Any, identities: bool = False) -> Any:
        """Database ids (array-like) -> export numbers, vectorised (the sorted lookup arrays
        are built once per plan)."""
        import numpy as np

        kind = "identities" if identities else "images"
        if kind not in self._lookup:
            mapping = self.identity_numbers if identities else self.numbers
            keys = np.array(sorted(mapping), dtype=np.int64)
            self._lookup[kind] = (keys, np.array([mapping[k] for k in keys.tolist()],
                                                 dtype=np.int64))
        keys, values = self._lookup[kind]
        return values[np.searchsorted(keys, np.asarray(ids, dtype=np.int64))]


def _variant_order(audit: Audit) -> dict[str, int]:
    """The design's variant order (baseline, control, factors as configured)."""
    from generator.config import AuditConfig
    from generator.design import plan_design

    try:
        return {v.key: i for i, v in enumerate(plan_design(AuditConfig(**audit.config)).variants)}
    except (TypeError, ValueError, KeyError):
        return {}


def _plan(audit: Audit) -> _Plan:
    names = (SyntheticIdentity.objects.filter(audit=audit)
             .values_list("group_name", flat=True).distinct())
    plan = _Plan(audit=audit, slugs=group_slugs(names))
    order = _variant_order(audit)
    # Plain values, not model instances: no JSON fields decoded (20,000 images in ~0.2 s).
    cells = list(GeneratedImage.objects.filter(audit=audit)
                 .values_list("id", "variant", "file", "identity__group_name",
                              "identity__index_in_group", "identity_id"))
    cells.sort(key=lambda c: (c[3], c[4], order.get(c[1], len(order)), c[1]))
    for pk, variant, file, group, index, identity in cells:
        plan.paths[pk] = check_relpath(image_relpath(plan.slugs[group], index,
                                                     _variant_part(variant)))
        plan.variants[pk] = variant
        plan.files[pk] = file
        plan.numbers[pk] = len(plan.numbers) + 1
        plan.identity_numbers.setdefault(identity, len(plan.identity_numbers) + 1)
    return plan


def _ordered_images(audit: Audit, plan: _Plan) -> Iterator[GeneratedImage]:
    """The audit's images in export order (group, identity, design's variant order), read from
    the DB in chunks."""
    pks = list(plan.paths)
    for start in range(0, len(pks), 2000):
        chunk = pks[start:start + 2000]
        rows = GeneratedImage.objects.filter(pk__in=chunk).select_related("identity").in_bulk()
        for pk in chunk:
            if pk in rows:
                yield rows[pk]


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


def manifest_records(audit: Audit, plan: _Plan | None = None) -> Iterator[dict[str, Any]]:
    """One typed record per image (None where a value is missing), in export order."""
    plan = plan or _plan(audit)
    found = dict(FaceAnalysis.objects.filter(image__audit=audit)
                 .values_list("image_id", "face_found"))
    judge = audit.identity_judge or {}
    for img in _ordered_images(audit, plan):
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


def manifest_rows(audit: Audit, plan: _Plan | None = None) -> Iterator[dict[str, Any]]:
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


def manifest_csv_chunks(audit: Audit, plan: _Plan | None = None) -> Iterator[bytes]:
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


def manifest_parquet_chunks(audit: Audit, plan: _Plan | None = None) -> Iterator[bytes]:
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


# --- comparisons and pair lists ---------------------------------------------------------------------

def _comparisons_name(audit: Audit) -> str | None:
    result = getattr(audit, "result", None)
    return result.comparisons_file if result is not None and result.comparisons_file else None


def _renumbered_batches(audit: Audit, plan: _Plan) -> Iterator[pd.DataFrame]:
    """The stored comparisons in batches, with the export's image and identity numbers in place
    of database ids (:class:`_Plan`)."""
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


def comparisons_csv_chunks(audit: Audit, plan: _Plan | None = None) -> Iterator[bytes]:
    """The comparisons table as CSV (export numbers for images and identities), in chunks (it
    can be large)."""
    import pyarrow.csv as pa_csv

    from worker.comparison_store import _plain_booleans

    plan = plan or _plan(audit)
    first = True
    for batch in _renumbered_batches(audit, plan):
        out = io.BytesIO()
        pa_csv.write_csv(_arrow(batch), out, pa_csv.WriteOptions(include_header=first,
                                                                  quoting_style="needed"))
        first = False
        yield _plain_booleans(out.getvalue())


def comparisons_parquet_chunks(audit: Audit, plan: _Plan | None = None) -> Iterator[bytes]:
    """The comparisons table as Parquet (export numbers for images and identities), written
    batch by batch through a temporary file."""
    from worker.comparison_store import CATEGORICAL

    plan = plan or _plan(audit)
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
    from worker.comparison_store import comparison_batches

    return comparison_batches(name, columns, batch_rows=COMPARISON_BATCH_ROWS)


def pairs_csv_chunks(audit: Audit, plan: _Plan, mated: bool) -> Iterator[bytes]:
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
    models = list((audit.result.summary or {}).get("fr_models", {}))
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
    summary = integral_counts(result.summary) if result else {}
    if isinstance(summary.get("audit"), dict):  # the database id is not part of the result
        summary["audit"] = {k: v for k, v in summary["audit"].items() if k != "id"}
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
    with default_storage.open(stored, "rb") as f:
        yield from file_chunks(f)


def table_json_chunks(stored: str) -> Iterator[bytes]:
    """A stored CSV result table as a JSON list of records (empty cells become null), converted
    in batches of :data:`TABLE_BATCH_ROWS` rows. Count columns stay integers even where some
    cells are empty (pandas would read such a column as floats and write ``10.0``)."""
    from audit.counts import count_columns

    yield b"["
    first = True
    with default_storage.open(stored, "rb") as f:
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


#: Result tables with image or identity ids, written with the export's numbers (:class:`_Plan`).
NUMBERED_TABLES = ("quality",)


def numbered_table_chunks(stored: str, plan: _Plan, fmt: str) -> Iterator[bytes]:
    """A stored table whose ``image_id`` / ``identity_id`` columns are database ids, with the
    export's numbers in their place, as CSV (``fmt="csv"``) or a JSON list of records (pandas
    reads floats back exactly, so every other cell is written as stored)."""
    from audit.counts import count_columns

    with default_storage.open(stored, "rb") as f:
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


# --- the export as a list of files ---------------------------------------------------------------

def identities_csv(audit: Audit, plan: _Plan) -> bytes:
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


def export_files(audit: Audit) -> Iterator[ExportFile]:
    """Every file of the export in order; each file's content is produced only when its
    ``chunks()`` is called."""
    plan = _plan(audit)
    cache = load_export_cache(audit)
    yield ExportFile("README.txt", lambda: [README.format(name=audit.name).encode()])
    yield ExportFile("DATASET_CARD.md", lambda: [dataset_card(audit, plan).encode("utf-8")])
    yield ExportFile("summary.json", lambda: [summary_json(audit)])
    yield ExportFile("identities.csv", lambda: [identities_csv(audit, plan)])
    for path, chunks in cacheable_members(audit, plan).items():
        yield ExportFile(path, chunks, precompressed=cache.get(path))
    for stem, stored in result_tables(audit):
        if stem in NUMBERED_TABLES:
            yield ExportFile(f"tables/{stem}.csv",
                             lambda s=stored: numbered_table_chunks(s, plan, "csv"))
            yield ExportFile(f"tables/{stem}.json",
                             lambda s=stored: numbered_table_chunks(s, plan, "json"))
            continue
        yield ExportFile(f"tables/{stem}.csv", lambda s=stored: table_csv_chunks(s))
        yield ExportFile(f"tables/{stem}.json", lambda s=stored: table_json_chunks(s))
    for pk, path in plan.paths.items():
        yield ExportFile(path, lambda n=plan.files[pk]: _storage_chunks(n), False)


def cacheable_members(audit: Audit, plan: _Plan | None = None
                      ) -> dict[str, Callable[[], Iterable[bytes]]]:
    """The large members that :mod:`worker.export_cache` deflates once when the audit
    finishes (zip path -> chunk producer)."""
    plan = plan or _plan(audit)
    return {"manifest.csv": lambda: manifest_csv_chunks(audit, plan),
            "manifest.parquet": lambda: manifest_parquet_chunks(audit, plan),
            "pairs_mated.csv": lambda: pairs_csv_chunks(audit, plan, True),
            "pairs_nonmated.csv": lambda: pairs_csv_chunks(audit, plan, False),
            "comparisons.csv": lambda: comparisons_csv_chunks(audit, plan),
            # renumbered (export numbers, not database ids), so written once here as well
            "comparisons.parquet": lambda: comparisons_parquet_chunks(audit, plan)}


def _storage_chunks(name: str) -> Iterator[bytes]:
    with default_storage.open(name, "rb") as f:
        yield from file_chunks(f)


def export_to_dir(audit: Audit, out: Path) -> None:
    """Write the export into folder ``out`` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    root = out.resolve()
    for item in export_files(audit):
        target = (root / check_relpath(item.path)).resolve()
        if not target.is_relative_to(root):
            raise ValueError(f"unsafe path in export: {item.path!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as f:
            for chunk in item.chunks():
                f.write(chunk)


def stream_zip(audit: Audit) -> Iterator[bytes]:
    """The export as a zip, produced piece by piece (never whole in memory)."""
    return stream_files_zip(export_files(audit))
