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

The files are built by :mod:`exports.manifest` (manifest, identities), :mod:`exports.tables`
(comparisons, pair lists, summary, result tables) and :mod:`exports.dataset_card`, all from one
:class:`~exports.plan.ExportPlan`; the large ones come deflated from :mod:`exports.export_cache`
when the aggregation stage built it. This module lists the files and writes them as a folder or
a zip (:mod:`exports.zip_stream`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from exports.dataset_card import dataset_card
from exports.export_cache import load_export_cache
from exports.files import open_stream
from exports.manifest import identities_csv, manifest_csv_chunks, manifest_parquet_chunks
from exports.plan import ExportPlan, plan_export
from exports.tables import (
    NUMBERED_TABLES,
    comparisons_csv_chunks,
    comparisons_parquet_chunks,
    numbered_table_chunks,
    pairs_csv_chunks,
    result_tables,
    summary_json,
    table_csv_chunks,
    table_json_chunks,
)
from exports.zip_stream import ExportFile, check_relpath, file_chunks, stream_files_zip
from webapp.audits.models import Audit

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


# --- the export as a list of files ---------------------------------------------------------------

def export_files(audit: Audit) -> Iterator[ExportFile]:
    """Every file of the export in order; each file's content is produced only when its
    ``chunks()`` is called."""
    plan = plan_export(audit)
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


def cacheable_members(audit: Audit, plan: ExportPlan | None = None
                      ) -> dict[str, Callable[[], Iterable[bytes]]]:
    """The large members that :mod:`exports.export_cache` deflates once when the audit
    finishes (zip path -> chunk producer)."""
    plan = plan or plan_export(audit)
    return {"manifest.csv": lambda: manifest_csv_chunks(audit, plan),
            "manifest.parquet": lambda: manifest_parquet_chunks(audit, plan),
            "pairs_mated.csv": lambda: pairs_csv_chunks(audit, plan, True),
            "pairs_nonmated.csv": lambda: pairs_csv_chunks(audit, plan, False),
            "comparisons.csv": lambda: comparisons_csv_chunks(audit, plan),
            # renumbered (export numbers, not database ids), so written once here as well
            "comparisons.parquet": lambda: comparisons_parquet_chunks(audit, plan)}


def _storage_chunks(name: str) -> Iterator[bytes]:
    with open_stream(name) as f:
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
