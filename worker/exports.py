"""Audit exports: ``manifest.csv``, ``comparisons.csv``, ``summary.json`` and the images, as a
folder (``run_audit --out``) or a zip streamed to the browser. Both use the same layout::

    images/<group>/id<NNN>/<variant>.png
    manifest.csv        one row per image
    comparisons.csv     one row per comparison per FR model
    summary.json        thresholds and per-group error rates
    README.txt          what every column means

No torch here: the web process streams downloads with this module.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from django.core.files.storage import default_storage

from webapp.audits.models import Audit, FaceAnalysis, GeneratedImage

MANIFEST_COLUMNS = ["image_path", "image_id", "identity_id", "group", "group_labels", "factor",
                    "level", "variant", "latent_seed", "factor_seed", "sha256", "face_found",
                    "check_passed", "edit_sensor", "edit_requested", "edit_achieved",
                    "latent_step", "identity_similarity"]

README = """\
FaceAudit export: {name} (audit #{id})

images/<group>/id<NNN>/<variant>.png
    RGB PNG images (64x64 for the default generator). <variant> is "baseline" or
    <factor>_<level>.

manifest.csv (one row per image)
    image_path    path of the image inside this export
    image_id      image id (used in comparisons.csv)
    identity_id   synthetic identity id; all images of one identity share it
    group         demographic group, e.g. "female / darker" (levels in axis order)
    group_labels  the same as JSON: axis -> level, as confirmed by the attribute sensors
    factor        "baseline", "control" (a null re-capture of the baseline: 1-pixel shift and
                  JPEG quality 95, the reference condition for factor effects) or the varied
                  factor
    level         the factor's level in its unit (empty for the baseline)
    variant       baseline or <factor>_<level>
    latent_seed   seed of the identity's latent vector (NumPy PCG64 standard normal)
    factor_seed   seed used by the factor (only noise draws random numbers)
    sha256        SHA-256 of the PNG file
    face_found    whether the face detector found a face (images without a face take part in
                  no comparison; see acquisition in summary.json)
    check_passed  whether the image passed the generator's checks (face found; for latent
                  edits also on target, other sensors held, identity kept); failed images take
                  part in no comparison (see generator_checks in summary.json)
    edit_sensor, edit_requested, edit_achieved
                  latent edits: the sensor the edit targets, the change asked for and the change
                  measured, in the sensor's unit (degrees, years, grey levels)
    latent_step   latent edits: the step taken along the conditional direction (latent units)
    identity_similarity
                  cosine similarity to the identity's baseline with the identity-drift FR model

comparisons.csv (one row per comparison and FR model)
    fr_model              face recognition model
    image_a, image_b      image ids (mated: image_a is the identity's baseline)
    identity_a/_b         identity ids
    group_a/_b            groups of the two images
    mated                 true when both images show the same identity
    score                 cosine similarity of the L2-normalised embeddings (-1..1); a pair
                          matches when score >= threshold

factor_effects.csv, interaction.csv
    factor effects against the control condition and group x condition interactions; the
    columns are described in the project README ("factor_effects.csv", "interaction.csv")

summary.json
    per FR model and target false-match rate (FMR): the global threshold set on all non-mated
    comparisons, the FMR it achieved, and overall and per-group FNMR and FMR with their counts
    (group FMR uses non-mated pairs within the group; cross_group_fmr covers every pair of
    groups); rule-of-three 95% upper bounds where no errors were observed.
"""


def _ordered_images(audit: Audit) -> Iterator[GeneratedImage]:
    """The audit's images in export order (group, identity, variant), streamed from the DB."""
    qs = (GeneratedImage.objects.filter(audit=audit).select_related("identity")
          .order_by("identity__group_name", "identity__index_in_group", "id"))
    return qs.iterator(chunk_size=2000)


def manifest_rows(audit: Audit) -> Iterator[dict[str, Any]]:
    from worker.pipeline import image_relpath

    found = dict(FaceAnalysis.objects.filter(image__audit=audit)
                 .values_list("image_id", "face_found"))
    for img in _ordered_images(audit):
        yield {
            "image_path": image_relpath(img.identity, img.variant),
            "image_id": img.pk, "identity_id": img.identity_id,
            "group": img.identity.group_name,
            "group_labels": json.dumps(img.identity.group_labels, sort_keys=True),
            "factor": img.factor, "level": "" if img.level is None else f"{img.level:g}",
            "variant": img.variant, "latent_seed": img.identity.latent_seed,
            "factor_seed": "" if img.recipe.get("factor_seed") is None
            else img.recipe["factor_seed"],
            "sha256": img.sha256,
            "face_found": str(found.get(img.pk, "")).lower(),
            "check_passed": str(img.checks.get("passed", "")).lower() if img.checks else "",
            "edit_sensor": (img.checks or {}).get("target_sensor") or "",
            "edit_requested": _blank((img.checks or {}).get("requested")),
            "edit_achieved": _blank((img.checks or {}).get("achieved")),
            "latent_step": _blank((img.recipe.get("edit") or {}).get("latent_step")),
            "identity_similarity": _blank((img.checks or {}).get("identity_similarity")),
        }


def _blank(value: Any) -> Any:
    return "" if value is None else value


def manifest_csv(audit: Audit) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(manifest_rows(audit))
    return buf.getvalue().encode("utf-8")


def comparisons_csv_chunks(audit: Audit) -> Iterator[bytes]:
    """The stored comparisons table as CSV, in chunks (it can be large)."""
    from worker.comparison_store import comparisons_csv_chunks as chunks

    result = getattr(audit, "result", None)
    if result is not None:
        yield from chunks(result.comparisons_file)


def summary_json(audit: Audit) -> bytes:
    result = getattr(audit, "result", None)
    return json.dumps(result.summary if result else {}, indent=2, allow_nan=False).encode()


def _tables(audit: Audit) -> list[tuple[str, str]]:
    """Extra result tables (export name, storage name), names checked to be plain file names."""
    result = getattr(audit, "result", None)
    tables = (result.tables or {}) if result is not None else {}
    return [(name, stored) for name, stored in sorted(tables.items())
            if name == Path(name).name and name.endswith(".csv")]


def _image_files(audit: Audit) -> Iterator[tuple[str, str]]:
    from worker.pipeline import image_relpath

    for img in _ordered_images(audit):
        yield image_relpath(img.identity, img.variant), img.file


def export_to_dir(audit: Audit, out: Path) -> None:
    """Write the export layout into folder ``out`` (created if needed)."""
    out.mkdir(parents=True, exist_ok=True)
    for rel, name in _image_files(audit):
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with default_storage.open(name, "rb") as f:
            target.write_bytes(f.read())
    (out / "manifest.csv").write_bytes(manifest_csv(audit))
    with (out / "comparisons.csv").open("wb") as f:
        for chunk in comparisons_csv_chunks(audit):
            f.write(chunk)
    (out / "summary.json").write_bytes(summary_json(audit))
    for fname, stored in _tables(audit):
        with default_storage.open(stored, "rb") as f:
            (out / fname).write_bytes(f.read())
    (out / "README.txt").write_text(README.format(name=audit.name, id=audit.pk))


class _Sink(io.RawIOBase):
    """A write-only, non-seekable stream that hands out what was written since the last drain;
    zipfile then writes data descriptors instead of seeking back."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.offset = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        data = bytes(b)
        self.parts.append(data)
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def drain(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def stream_zip(audit: Audit) -> Iterator[bytes]:
    """The export as a zip, produced piece by piece (never whole in memory). PNGs are stored
    as they are (already compressed); text files are deflated."""
    sink = _Sink()
    with zipfile.ZipFile(sink, mode="w", allowZip64=True) as zf:
        def add(arcname: str, chunks: Iterable[bytes], compress: bool) -> Iterator[bytes]:
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            with zf.open(info, mode="w", force_zip64=True) as dest:
                for chunk in chunks:
                    dest.write(chunk)
                    yield sink.drain()
            yield sink.drain()

        yield from add("README.txt", [README.format(name=audit.name, id=audit.pk).encode()], True)
        yield from add("manifest.csv", [manifest_csv(audit)], True)
        yield from add("summary.json", [summary_json(audit)], True)
        yield from add("comparisons.csv", comparisons_csv_chunks(audit), True)
        for fname, stored in _tables(audit):
            with default_storage.open(stored, "rb") as f:
                yield from add(fname, [f.read()], True)
        for rel, name in _image_files(audit):
            with default_storage.open(name, "rb") as f:
                data = f.read()
            yield from add(rel, [data], False)
    yield sink.drain()
