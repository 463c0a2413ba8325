"""Same config and seed, same bytes, however the work is split: two generation and scoring batch
sizes and a partial regeneration give identical export files (images, manifest, comparisons,
every table and summary.json), and the same holds with the CPU instruction set limited."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exports.dataset import export_to_dir
from generator.config import parse_config
from webapp.audits.models import Audit, GeneratedImage, SyntheticIdentity
from worker import pipeline
from worker.pipeline import InlineRunner

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"name": "determinism", "seed": 5, "groups": {"perceived_gender": ["female", "male"]},
          "generator": "dcgan-digiface", "identities_per_group": 4, "factors": {"yaw": [15], "blur": [1.0]},
          "fr_models": ["mobilefacenet"], "target_fmr": [0.05]}


def _run(owner, out: Path) -> Audit:
    cfg = parse_config(CONFIG, fr_models_available=["mobilefacenet", "dlib_resnet"])
    audit = Audit.objects.create(owner=owner, name=cfg.name, config=cfg.to_dict(),
                                 seed=cfg.seed, n_images_planned=cfg.n_images)
    audit = InlineRunner().run(audit.pk)
    assert audit.state == Audit.State.DONE, audit.error
    export_to_dir(audit, out)
    return audit


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _assert_same_files(a: Path, b: Path) -> None:
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    differing = [name for name in fa if fa[name] != fb[name]]
    assert not differing, f"files differ: {differing[:10]}"


def test_batch_sizes_and_a_partial_regeneration_give_identical_exports(
        alice, media_root, models_available, settings, tmp_path):
    settings.FACEAUDIT_CACHE_DIR = tmp_path / "cache"
    settings.FACEAUDIT_DIRECTION_SAMPLES = 600
    settings.FACEAUDIT_GENERATE_BATCH, settings.FACEAUDIT_SCORE_BATCH = 8, 128
    first = _run(alice, tmp_path / "a")
    assert first.identity_judge["model"] == "dlib_resnet"

    settings.FACEAUDIT_GENERATE_BATCH, settings.FACEAUDIT_SCORE_BATCH = 3, 5
    _run(alice, tmp_path / "b")
    _assert_same_files(tmp_path / "a", tmp_path / "b")

    # Partial regeneration: lose three identities' images and one baseline, then resume the
    # failed audit (with yet another batch size); the images come back with new database ids.
    settings.FACEAUDIT_GENERATE_BATCH, settings.FACEAUDIT_SCORE_BATCH = 2, 16
    audit = _run(alice, tmp_path / "c0")
    ids = list(SyntheticIdentity.objects.filter(audit=audit).order_by("id")
               .values_list("id", flat=True))
    GeneratedImage.objects.filter(identity_id__in=ids[1:4]).delete()
    GeneratedImage.objects.filter(identity_id=ids[6], variant="baseline").delete()
    Audit.objects.filter(pk=audit.pk).update(state=Audit.State.FAILED, error="worker lost")
    runner = InlineRunner()
    assert "generation sent again for 4 identities" in pipeline.resume(audit.pk,
                                                                        runner.dispatch)
    audit = runner.drain(audit.pk)
    assert audit.state == Audit.State.DONE, audit.error
    export_to_dir(audit, tmp_path / "c")
    _assert_same_files(tmp_path / "a", tmp_path / "c")


PROBE = r"""
import numpy as np
from pathlib import Path
from audit.analysis import FaceAnalyzer
from audit.registry import ModelRegistry
from generator.backends import load_dcgan_digiface

g = load_dcgan_digiface()
z = g.sample_latents(list(range(100, 124)))
together = g.generate(z)
g.batch_size = 7
apart = np.concatenate([g.generate(z[i:i + 5]) for i in range(0, 24, 5)])
assert (together == apart).all(), "generated images depend on the batch"
analyzer = FaceAnalyzer(ModelRegistry(Path({models!r})), recognizers=("mobilefacenet",),
                        quality="lightqnet")

def scored(step):
    rows = []
    for s in range(0, 24, step):
        b = analyzer.analyze(list(together[s:s + step]))
        rows.append(np.column_stack([b.face_found, b.embeddings["mobilefacenet"], b.age,
                                     b.male_probability, b.quality, b.yaw, b.ita]))
    return np.concatenate(rows)

one, five, all24 = scored(1), scored(5), scored(24)
assert np.array_equal(one, five, equal_nan=True), "scores depend on the batch (5)"
assert np.array_equal(one, all24, equal_nan=True), "scores depend on the batch (24)"
print("batch-invariant")
"""


def test_images_and_scores_do_not_depend_on_the_batch_with_the_instruction_set_limited(
        models_available):
    """In a fresh process with oneDNN and ATen limited to AVX2 (what most x86-64 machines
    have), rendering and scoring give the same bytes in batches of 24, 5 and 1."""
    from worker.runtime import model_dir

    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", PROBE.replace("{models!r}",
                                                                repr(str(model_dir())))],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "batch-invariant" in done.stdout
