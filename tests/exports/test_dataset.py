"""The balanced dataset export (zip and folder) of a real small audit, checked file by file."""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from django.test import override_settings

from exports.comparison_store import read_comparisons
from exports.dataset import export_to_dir, stream_zip
from exports.files import group_slugs, safe_slug
from exports.zip_stream import check_relpath
from generator.config import AuditConfig, parse_config
from tests.conftest import model_dir
from tests.webapp.factories import make_done_audit
from webapp.audits.models import Audit, SyntheticIdentity

CONFIG = {"name": "Export audit", "seed": 3, "groups": {"perceived_gender": ["female", "male"]},
          "generator": "dcgan-digiface", "identities_per_group": 3, "factors": {"blur": [1.5], "jpeg": [20]},
          "fr_models": ["mobilefacenet"], "target_fmr": [0.05]}


@pytest.fixture(scope="module")
def exported(django_db_setup, django_db_blocker, tmp_path_factory):
    """One real audit (generator, detector, FR model) run once for the module, with its zip
    bytes and its folder export; removed afterwards."""
    if not (model_dir() / "scrfd_500m_bnkps.onnx").exists():
        pytest.skip(f"face models not found in {model_dir()}; set FACEAUDIT_MODEL_DIR")
    from django.contrib.auth import get_user_model

    from worker.pipeline import InlineRunner

    media = tmp_path_factory.mktemp("media")
    with override_settings(MEDIA_ROOT=media), django_db_blocker.unblock():
        user = get_user_model().objects.create_user("exporter")
        cfg = parse_config(CONFIG, fr_models_available=["mobilefacenet"])
        audit = Audit.objects.create(owner=user, name=cfg.name, config=cfg.to_dict(),
                                     seed=cfg.seed, n_images_planned=cfg.n_images)
        audit = InlineRunner().run(audit.pk)
        assert audit.state == Audit.State.DONE, audit.error
        data = b"".join(stream_zip(audit))
        out = tmp_path_factory.mktemp("export")
        export_to_dir(audit, out)
        comparisons = read_comparisons(audit.result.comparisons_file)
        # the export numbers images 1, 2, ... in design order (group, identity, the design's
        # variant order) instead of database ids; renumber the stored table the same way here
        from generator.design import plan_design
        from webapp.audits.models import GeneratedImage

        order = [v.key for v in plan_design(cfg).variants]
        images = sorted(GeneratedImage.objects.filter(audit=audit).select_related("identity"),
                        key=lambda i: (i.identity.group_name, i.identity.index_in_group,
                                       order.index(i.variant)))
        number = {img.pk: n for n, img in enumerate(images, start=1)}
        identity_number: dict[int, int] = {}
        for img in images:
            identity_number.setdefault(img.identity_id, len(identity_number) + 1)
        for col in ("image_a", "image_b"):
            comparisons[col] = comparisons[col].map(number)
        for col in ("identity_a", "identity_b"):
            comparisons[col] = comparisons[col].map(identity_number)
        yield {"audit": audit, "zip": zipfile.ZipFile(io.BytesIO(data)), "dir": out,
               "comparisons": comparisons, "media": media}
        user.delete()


def read_csv(zf: zipfile.ZipFile, name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(zf.read(name).decode("utf-8"))))


def test_every_group_has_the_same_number_of_images_as_the_design(exported):
    zf, audit = exported["zip"], exported["audit"]
    assert zf.testzip() is None
    cfg = AuditConfig(**audit.config)
    per_group: dict[str, int] = {}
    for name in zf.namelist():
        if name.startswith("images/"):
            group = name.split("/")[1]
            per_group[group] = per_group.get(group, 0) + 1
    assert len(per_group) == cfg.n_groups == 2
    assert set(per_group.values()) == {cfg.identities_per_group * cfg.n_variants} == {3 * 4}
    rows = read_csv(zf, "manifest.csv")
    by_group = {g: sum(r["group"] == g for r in rows) for g in ("female", "male")}
    assert by_group == {"female": 12, "male": 12}


def test_the_manifest_lists_exactly_the_images_in_the_zip_and_their_hashes(exported):
    import hashlib

    zf = exported["zip"]
    rows = read_csv(zf, "manifest.csv")
    images = {n for n in zf.namelist() if n.startswith("images/")}
    assert [r["image_path"] for r in rows] and {r["image_path"] for r in rows} == images
    assert len(rows) == len(images)
    for r in rows:
        assert hashlib.sha256(zf.read(r["image_path"])).hexdigest() == r["sha256"]
        assert r["image_path"].endswith(f"/{r['variant']}.png")


def _norm(value):
    """A manifest value compared across CSV (text) and Parquet (typed)."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "true" if value else "false"
    try:
        return round(float(value), 9)
    except (TypeError, ValueError):
        return str(value)


def test_the_parquet_manifest_equals_the_csv_manifest(exported):
    zf = exported["zip"]
    text = pd.read_csv(io.BytesIO(zf.read("manifest.csv")), dtype=str, keep_default_na=False)
    typed = pd.read_parquet(io.BytesIO(zf.read("manifest.parquet")))
    assert list(typed.columns) == list(text.columns) and len(typed) == len(text) == 24
    assert typed["image_id"].dtype == "int64" and typed["level"].dtype == "float64"
    for column in text.columns:
        assert [_norm(v) for v in text[column]] == [_norm(v) for v in typed[column]], column


def test_pair_lists_are_the_compared_pairs_with_the_manifest_paths(exported):
    zf, comparisons = exported["zip"], exported["comparisons"]
    path_of = {int(r["image_id"]): r["image_path"] for r in read_csv(zf, "manifest.csv")}
    for fname, mated in (("pairs_mated.csv", True), ("pairs_nonmated.csv", False)):
        pairs = read_csv(zf, fname)
        listed = {(int(p["image_a"]), int(p["image_b"])) for p in pairs}
        assert len(listed) == len(pairs) > 0
        for model, comp in comparisons.groupby("fr_model"):
            rows = comp[comp["mated"] == mated]
            assert listed == set(zip(rows["image_a"], rows["image_b"], strict=True)), model
        for p in pairs:
            assert p["path_a"] == path_of[int(p["image_a"])]
            assert p["path_b"] == path_of[int(p["image_b"])]
            assert p["path_a"] in zf.namelist() and p["path_b"] in zf.namelist()
            assert (p["identity_a"] == p["identity_b"]) == mated
        if mated:
            assert {p["variant_a"] for p in pairs} == {"baseline"}


def test_scores_and_tables_come_straight_from_storage(exported):
    zf, audit, comparisons = exported["zip"], exported["audit"], exported["comparisons"]
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(zf.read("comparisons.parquet"))),
                                  comparisons)
    as_csv = pd.read_csv(io.BytesIO(zf.read("comparisons.csv")))
    assert len(as_csv) == len(comparisons)
    assert as_csv["score"].tolist() == pytest.approx(comparisons["score"].tolist(), abs=1e-12)
    names = {Path(n).stem for n in audit.result.tables}
    assert names == {"factor_effects", "interaction", "quality", "edc_curves", "det_curves",
                     "score_histograms"}
    for name in names:
        csv_rows = read_csv(zf, f"tables/{name}.csv")
        records = json.loads(zf.read(f"tables/{name}.json"))
        assert len(records) == len(csv_rows), name
        if records:
            assert list(records[0]) == list(csv_rows[0]), name
    stored = dict(audit.result.summary)
    stored["audit"] = {k: v for k, v in stored["audit"].items() if k != "id"}  # a database id
    assert json.loads(zf.read("summary.json")) == stored


def test_the_dataset_card_gives_composition_recipe_and_every_licence(exported):
    zf, audit = exported["zip"], exported["audit"]
    card = zf.read("DATASET_CARD.md").decode()
    summary = audit.result.summary
    for group in ("female", "male"):
        assert f"| {group} | images/{group}/ | 3 | 12 |" in card
    assert "| blur_1.5 | blur | 1.5 | 3 | 3 |" in card
    for info in summary["models"].values():
        assert info["licence"] in card and info["weights_sha256"] in card
    assert summary["models"]["generator"]["name"] in card
    # the generator's own licence and the stored image size (64-px DCGAN faces here)
    assert "non-commercial" in summary["models"]["generator"]["licence"]
    assert f"licence: {summary['models']['generator']['licence']}" in card
    assert "Image size: 64 x 64 pixels" in card
    # how the groups filled: each group's acceptance rate, recounted from summary.json
    sampling = summary["identity_sampling"]
    for name, row in sampling["groups"].items():
        assert f"{name} {row['acceptance_rate']:.0%}" in card
    assert f"Audit seed: {audit.seed}" in card
    for section in ("## Intended use", "## Out-of-scope uses", "## Known limitations",
                    "Small cells", "failed the generator checks", "Perceived attributes"):
        assert section in card


def test_the_folder_export_holds_the_same_files_as_the_zip(exported):
    zf, out = exported["zip"], exported["dir"]
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == set(zf.namelist())
    for name in ("manifest.csv", "pairs_mated.csv", "DATASET_CARD.md", "tables/quality.json"):
        assert (out / name).read_bytes() == zf.read(name), name
    readme = (out / "README.txt").read_text()
    assert "pairs_nonmated.csv" in readme and "tables/<name>.json" in readme


def test_group_folders_are_safe_and_unique():
    assert safe_slug("../../etc") == "etc"
    assert safe_slug("..") == "group" and safe_slug("/") == "group"
    assert safe_slug("female / darker") == "female___darker"
    slugs = group_slugs(["a/b", "a_b", "A_B", "../x"])
    assert len(set(s.lower() for s in slugs.values())) == 4
    assert all(s.replace("_", "").isalnum() for s in slugs.values())
    for bad in ("../x", "/etc/passwd", "a/../b", "a//b", "a\\b", "", "images/./x"):
        with pytest.raises(ValueError):
            check_relpath(bad)


@pytest.mark.django_db
def test_a_hostile_group_name_cannot_leave_the_export(alice, media_root, tmp_path):
    audit = make_done_audit(alice)
    SyntheticIdentity.objects.filter(audit=audit, group_name="female").update(
        group_name="../../etc")
    SyntheticIdentity.objects.filter(audit=audit, group_name="male").update(
        group_name="..\\..\\etc|<script>")
    zf = zipfile.ZipFile(io.BytesIO(b"".join(stream_zip(audit))))
    for name in zf.namelist():
        assert check_relpath(name) == name
        assert ".." not in name.split("/") and "\\" not in name and not name.startswith("/")
    images = [n for n in zf.namelist() if n.startswith("images/")]
    assert len(images) == 8 and len({n.split("/")[1] for n in images}) == 2
    rows = read_csv(zf, "manifest.csv")
    assert {r["group"] for r in rows} == {"../../etc", "..\\..\\etc|<script>"}
    card = zf.read("DATASET_CARD.md").decode()
    assert "<script>" not in card and "\\|" in card
    base = tmp_path / "exports"
    out = base / "deep" / "out"
    export_to_dir(audit, out)
    written = [p for p in base.rglob("*") if p.is_file()]
    assert len(written) == len(zf.namelist()) and all(out in p.parents for p in written)
    assert {p.name for p in tmp_path.iterdir()} == {"media", "exports"}


def test_the_cached_members_give_the_same_zip_content_as_building_on_the_fly(exported):
    """The aggregation stage deflated the big files once (exports/export_cache.py); a zip built
    from that cache and one built on the fly hold byte-identical files, and every CRC checks."""
    from exports import dataset
    from exports.export_cache import load_export_cache

    audit = exported["audit"]
    with override_settings(MEDIA_ROOT=exported["media"]):
        cache = load_export_cache(audit)
        assert set(cache) == {"manifest.csv", "manifest.parquet", "pairs_mated.csv",
                              "pairs_nonmated.csv", "comparisons.csv", "comparisons.parquet"}
        cached = exported["zip"]
        assert cached.testzip() is None  # every member's CRC-32 verifies
        original = dataset.load_export_cache
        dataset.load_export_cache = lambda a: {}
        try:
            fresh = zipfile.ZipFile(io.BytesIO(b"".join(stream_zip(audit))))
        finally:
            dataset.load_export_cache = original
    assert cached.namelist() == fresh.namelist()
    for name in cached.namelist():
        assert cached.read(name) == fresh.read(name), name
    info = cached.getinfo("comparisons.csv")
    assert info.compress_type == zipfile.ZIP_DEFLATED and info.compress_size < info.file_size


def test_a_cache_older_than_the_result_is_not_used(exported):
    from exports.export_cache import load_export_cache

    audit = exported["audit"]
    with override_settings(MEDIA_ROOT=exported["media"]):
        assert load_export_cache(audit)
        result = audit.result
        result.save()  # the statistics stored again (e.g. recomputed): created_at moves on
        try:
            assert load_export_cache(audit) == {}
        finally:
            from worker.pipeline import _build_export_cache

            _build_export_cache(audit.pk)
        assert load_export_cache(audit)


@pytest.mark.django_db
def test_identities_csv_gives_each_identity_its_seed_and_guidance_shift(tmp_path, media_root):
    from django.contrib.auth import get_user_model

    from tests.webapp.factories import make_done_audit
    from webapp.audits.models import SyntheticIdentity

    audit = make_done_audit(get_user_model().objects.create_user("shifted"))
    male1 = SyntheticIdentity.objects.get(audit=audit, group_name="male", index_in_group=1)
    male1.conditioning = {"latent_shift": [0.25, -1.5, 0.0]}
    male1.sensors = {"skin_tone_index": 61.2}
    male1.save()
    export_to_dir(audit, tmp_path)
    rows = list(csv.DictReader((tmp_path / "identities.csv").open()))
    assert [r["identity_id"] for r in rows] == ["1", "2", "3", "4"]
    assert [r["group"] for r in rows] == ["female", "female", "male", "male"]
    assert [int(r["latent_seed"]) for r in rows] == [1000, 1001, 1002, 1003]
    assert [r["latent_shift"] for r in rows[:3]] == ["", "", ""]
    assert json.loads(rows[3]["latent_shift"]) == [0.25, -1.5, 0.0]
    assert json.loads(rows[3]["sensors"]) == {"skin_tone_index": 61.2}
    # the manifest's identity numbers name the same identities
    manifest = list(csv.DictReader((tmp_path / "manifest.csv").open()))
    seeds = {m["identity_id"]: m["latent_seed"] for m in manifest}
    assert seeds == {r["identity_id"]: r["latent_seed"] for r in rows}
