"""``manage.py run_audit`` as a script user runs it: its own process, SQLite, a fresh folder."""

import csv
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, fresh_dir

pytestmark = pytest.mark.slow

CONFIG = """\
name: headless
seed: 21
groups:
  perceived_gender: [female, male]
identities_per_group: 3
generator: dcgan-digiface
factors:
  blur: [1.0]
  jpeg: [20]
target_fmr: [0.05]
thresholds: [0.3]
"""


def run_audit(tmp_path, config_text, suffix=".yaml"):
    var_dir = fresh_dir(tmp_path / "var")
    config = tmp_path / f"config{suffix}"
    config.write_text(config_text)
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "FACEAUDIT_MEDIA_ROOT")}
    env["FACEAUDIT_VAR_DIR"] = str(var_dir)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "manage.py", "run_audit", str(config), "--out",
                           str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    return proc, out


def test_run_audit_writes_images_manifest_comparisons_and_summary(tmp_path, models_available):
    proc, out = run_audit(tmp_path, CONFIG)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = list(csv.DictReader((out / "manifest.csv").open()))
    assert len(manifest) == 2 * 3 * 4  # baseline, control, blur, jpeg
    assert all((out / row["image_path"]).is_file() for row in manifest)
    assert {row["group"] for row in manifest} == {"female", "male"}
    comparisons = list(csv.DictReader((out / "comparisons.csv").open()))
    summary = json.loads((out / "summary.json").read_text())
    point = summary["fr_models"]["mobilefacenet"]["operating_points"][0]
    found = {row["image_id"] for row in manifest if row["face_found"] == "true"}
    baselines = {row["identity_id"]: row["image_id"] for row in manifest
                 if row["factor"] == "baseline" and row["image_id"] in found}
    # mated: each found variant whose identity's baseline was found, against that baseline
    expected_mated = sum(1 for row in manifest if row["factor"] != "baseline"
                         and row["image_id"] in found and row["identity_id"] in baselines)
    mated = [c for c in comparisons if c["mated"] == "True"]
    assert len(mated) == expected_mated == point["overall"]["n_mated"]
    assert all(baselines[c["identity_a"]] == c["image_a"] for c in mated)
    # FNMR recomputed from the CSV at the reported threshold
    t = point["threshold"]
    assert point["overall"]["false_non_matches"] == sum(float(c["score"]) < t for c in mated)
    assert "threshold" in proc.stdout and "done in" in proc.stdout
    # the planner's verdict comes first: 3 identities per group cannot be ranked
    assert proc.stdout.index("Plan: With 3 identities per group no group can be ranked") \
        < proc.stdout.index("threshold")
    # the user-given threshold: rates read at 0.3, recounted from the CSV
    fixed = summary["fr_models"]["mobilefacenet"]["operating_points"][1]
    assert fixed["target_fmr"] is None and fixed["threshold"] == 0.3
    assert fixed["overall"]["false_non_matches"] == sum(float(c["score"]) < 0.3 for c in mated)
    impostors = [float(c["score"]) for c in comparisons if c["mated"] == "False"]
    assert fixed["achieved_fmr"] == pytest.approx(sum(s >= 0.3 for s in impostors) / len(impostors))
    # factor effects: one cell recomputed from comparisons.csv and the manifest
    effects = list(csv.DictReader((out / "tables" / "factor_effects.csv").open()))
    cell = next(e for e in effects if e["group"] == "female" and e["factor"] == "blur")
    factor_of = {row["image_id"]: row["factor"] for row in manifest}
    per_identity = {}
    for c in mated:
        if c["group_a"] == "female":
            per_identity.setdefault(c["identity_a"], {})[factor_of[c["image_b"]]] = float(c["score"])
    diffs = [v["blur"] - v["control"] for v in per_identity.values() if {"blur", "control"} <= set(v)]
    assert int(cell["n_pairs"]) == len(diffs)
    if diffs:
        assert float(cell["mean_change"]) == pytest.approx(sum(diffs) / len(diffs), abs=1e-6)
    assert (out / "tables" / "interaction.csv").exists()
    assert (out / "DATASET_CARD.md").is_file() and (out / "manifest.parquet").is_file()
    # every model that made or scored an image is named with its hash and licence
    models = summary["models"]
    assert {"generator", "scrfd_500m", "genderage", "mobilefacenet"} <= set(models)
    assert all(m["licence"] and len(m["weights_sha256"]) == 64 for m in models.values())


def test_run_audit_names_every_bad_field_without_a_traceback(tmp_path):
    proc, _ = run_audit(tmp_path, '{"name": "x", "identities_per_group": 1, "factors": {"warp": [1]}}',
                        suffix=".json")
    assert proc.returncode != 0
    assert "identities_per_group: a whole number from 2 to 500" in proc.stderr
    assert "factors.warp: unknown factor" in proc.stderr
    assert "groups:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_audit_refuses_yaml_aliases_and_never_prints_the_expansion(tmp_path):
    # 729 levels once the aliases are expanded; the refusal names the fix instead
    bomb = ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n" + CONFIG.replace(
                "  blur: [1.0]", "  blur: *c"))
    proc, out = run_audit(tmp_path, bomb)
    assert proc.returncode != 0
    assert "anchors and aliases" in proc.stderr and "write the list out" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr) < 1_000
    assert not out.exists()
