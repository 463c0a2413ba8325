"""The whole pipeline in-process on real models, checked against independent recomputation."""



import numpy as np
import pytest

from exports.comparison_store import read_comparisons
from generator.config import parse_config
from webapp.audits.models import Audit, Embedding, FaceAnalysis, GeneratedImage, SyntheticIdentity
from worker import pipeline
from worker.pipeline import InlineRunner

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

CONFIG = {"name": "pipeline", "seed": 11, "groups": {"perceived_gender": ["female", "male"]},
          "generator": "dcgan-digiface", "identities_per_group": 4, "factors": {"blur": [1.0], "downscale": [24]},
          "fr_models": ["mobilefacenet"], "target_fmr": [0.05, 0.01]}


def create(owner, config=CONFIG):
    cfg = parse_config(config, fr_models_available=["mobilefacenet", "dlib_resnet"])
    return Audit.objects.create(owner=owner, name=cfg.name, config=cfg.to_dict(), seed=cfg.seed,
                                n_images_planned=cfg.n_images)


@pytest.fixture
def finished(alice, media_root, models_available):
    return InlineRunner().run(create(alice).pk)


def test_a_small_audit_runs_to_done_with_every_designed_image(finished):
    audit = finished
    assert audit.state == Audit.State.DONE, audit.error
    assert SyntheticIdentity.objects.filter(audit=audit).count() == 8
    # baseline, control and two factor levels per identity
    assert GeneratedImage.objects.filter(audit=audit).count() == 8 * 4 == audit.n_images_planned
    assert FaceAnalysis.objects.filter(image__audit=audit).count() == 32
    found = FaceAnalysis.objects.filter(image__audit=audit, face_found=True).count()
    assert Embedding.objects.filter(image__audit=audit).count() == found
    # every identity sits in the group its sensors put it in
    for ident in SyntheticIdentity.objects.filter(audit=audit):
        p_male = ident.sensors["male_probability"]
        assert (p_male >= 0.5) == (ident.group_labels["perceived_gender"] == "male")


def test_summary_rates_equal_a_naive_recount_of_the_comparisons(finished):
    audit = finished

    comp = read_comparisons(audit.result.comparisons_file)
    nonmated = comp[~comp["mated"]]
    for point in audit.result.summary["fr_models"]["mobilefacenet"]["operating_points"]:
        t = point["threshold"]
        assert (nonmated["score"] >= t).mean() <= point["target_fmr"]
        for group, row in point["by_group"].items():
            mated = [s for s, m, g in zip(comp["score"], comp["mated"], comp["group_a"],
                                          strict=True) if m and g == group]
            impostor = [s for s, m, ga, gb in zip(comp["score"], comp["mated"], comp["group_a"],
                                                  comp["group_b"], strict=True)
                        if not m and ga == group and gb == group]
            assert row["n_mated"] == len(mated)
            assert row["false_non_matches"] == sum(s < t for s in mated)
            assert row["n_nonmated"] == len(impostor)
            assert row["false_matches"] == sum(s >= t for s in impostor)


def test_mated_pairs_score_higher_than_non_mated(finished):

    comp = read_comparisons(finished.result.comparisons_file)
    assert comp.loc[comp["mated"], "score"].mean() > comp.loc[~comp["mated"], "score"].mean() + 0.2


def test_same_config_and_seed_give_identical_images(finished, alice):
    again = InlineRunner().run(create(alice).pk)
    key = lambda a: sorted(GeneratedImage.objects.filter(audit=a)  # noqa: E731
                           .values_list("identity__group_name", "identity__index_in_group",
                                        "variant", "sha256"))
    assert key(again) == key(finished)
    s1 = finished.result.summary["fr_models"]["mobilefacenet"]["operating_points"]
    s2 = again.result.summary["fr_models"]["mobilefacenet"]["operating_points"]
    assert s1 == s2


def test_rerunning_a_batch_overwrites_instead_of_duplicating(finished):
    audit = finished
    before = sorted(GeneratedImage.objects.filter(audit=audit).values_list("variant", "sha256",
                                                                           "file"))
    Audit.objects.filter(pk=audit.pk).update(state=Audit.State.GENERATING)
    ids = list(SyntheticIdentity.objects.filter(audit=audit).values_list("id", flat=True))
    sent = []
    pipeline.generate_images(audit.pk, ids[:3], lambda *a: sent.append(a))
    after = sorted(GeneratedImage.objects.filter(audit=audit).values_list("variant", "sha256",
                                                                          "file"))
    assert after == before
    # all images already existed, so the rerun advanced the audit to scoring exactly once
    assert [a[0] for a in sent] == ["score_images"]


def test_batches_sent_again_after_they_were_done_do_no_work(finished, monkeypatch):
    """A batch re-sent after a lost worker (worker.recovery) or a Retry may already be done:
    neither the generator nor the face models are touched, and the audit moves on once."""
    from worker import runtime

    def must_not_run(*_args, **_kwargs):
        raise AssertionError("a finished batch did its work again")

    monkeypatch.setattr(runtime, "get_backend", must_not_run)
    monkeypatch.setattr(runtime, "get_analyzer", must_not_run)
    audit = finished
    before = sorted(FaceAnalysis.objects.filter(image__audit=audit).values_list("pk", "det_score"))
    sent = []
    Audit.objects.filter(pk=audit.pk).update(state=Audit.State.GENERATING)
    ids = list(SyntheticIdentity.objects.filter(audit=audit).values_list("id", flat=True))
    pipeline.generate_images(audit.pk, ids[:3], lambda *a: sent.append(a))
    audit.refresh_from_db()
    assert audit.state == Audit.State.SCORING, audit.error
    images = list(GeneratedImage.objects.filter(audit=audit).values_list("id", flat=True))
    pipeline.score_images(audit.pk, images[:5], lambda *a: sent.append(a))
    audit.refresh_from_db()
    assert audit.state == Audit.State.AGGREGATING, audit.error
    assert [a[0] for a in sent] == ["score_images", "aggregate"]
    after = sorted(FaceAnalysis.objects.filter(image__audit=audit).values_list("pk", "det_score"))
    assert after == before


def test_a_batch_sent_again_renders_only_the_identities_missing_an_image(finished, monkeypatch):
    """A worker that died while storing a batch left an identity with some of its images: the
    batch sent again renders that identity alone, to the same bytes."""
    from worker import runtime

    audit = finished
    ids = list(SyntheticIdentity.objects.filter(audit=audit).order_by("id")
               .values_list("id", flat=True))
    lost = GeneratedImage.objects.filter(identity_id=ids[1]).order_by("id").last()
    lost.delete()
    backend = runtime.get_backend(audit.config["generator"])
    rendered = []
    real_render = backend.render_and_check

    def counting_render(cells, *args, **kwargs):
        rendered.append(len(cells))
        return real_render(cells, *args, **kwargs)

    monkeypatch.setattr(backend, "render_and_check", counting_render)
    Audit.objects.filter(pk=audit.pk).update(state=Audit.State.GENERATING)
    pipeline.generate_images(audit.pk, ids[:3], lambda *a: None)
    assert rendered == [1]
    again = GeneratedImage.objects.get(identity_id=ids[1], variant=lost.variant)
    assert again.sha256 == lost.sha256


def test_a_group_the_generator_cannot_fill_fails_with_a_plain_message(alice, media_root,
                                                                      models_available,
                                                                      monkeypatch):
    config = {**CONFIG, "groups": {"age_band": ["under_30", "50_plus"]},
              "generator": "dcgan-digiface", "identities_per_group": 60}
    audit = create(alice, config)
    # shrink the candidate budget so the test is quick: 60 identities need ~6,000 candidates
    from generator import identities

    original = identities.sample_identities

    def small_budget(*args, **kwargs):
        return original(*args, **{**kwargs, "max_candidates": 64})

    monkeypatch.setattr(identities, "sample_identities", small_budget)
    audit = InlineRunner().run(audit.pk)
    assert audit.state == Audit.State.FAILED
    assert "still short" in audit.error and "fewer identities" in audit.error
    assert "Traceback" not in audit.error


def test_cancelled_audits_stop_at_the_next_stage(alice, media_root, models_available):
    audit = create(alice)
    runner = InlineRunner(on_stage=lambda name, args: name == "generate_images"
                          and Audit.objects.filter(pk=args[0]).update(state="cancelled"))
    audit = runner.run(audit.pk)
    assert audit.state == Audit.State.CANCELLED
    assert GeneratedImage.objects.filter(audit=audit).count() == 0
    assert SyntheticIdentity.objects.filter(audit=audit).count() == 8  # kept


def test_embeddings_are_unit_length(finished):
    for e in Embedding.objects.filter(image__audit=finished)[:10]:
        assert np.isclose(np.linalg.norm(e.as_array()), 1.0, atol=1e-4)


def test_latent_edits_are_judged_by_a_model_not_under_test_and_only_misses_are_left_out(
        alice, media_root, models_available, settings, tmp_path):
    settings.FACEAUDIT_CACHE_DIR = tmp_path / "cache"
    settings.FACEAUDIT_DIRECTION_SAMPLES = 600  # enough for the strong directions, and quick
    settings.FACEAUDIT_DRIFT_MODEL = "mobilefacenet"  # asks for the model under test...
    config = {**CONFIG, "factors": {"lighting": [35], "yaw": [15], "blur": [1.0]},
              "fr_models": ["mobilefacenet"]}
    audit = InlineRunner().run(create(alice, config).pk)
    assert audit.state == Audit.State.DONE, audit.error
    judge = audit.identity_judge
    assert judge["model"] == "dlib_resnet"  # ...and gets another family, saying so
    assert "FACEAUDIT_DRIFT_MODEL=mobilefacenet is a model under test" in judge["chosen"]
    # the cut-off is the judge's impostor p99 over every baseline of the audit, recomputed here
    # from dlib's own embeddings of the stored baseline images
    from worker.pipeline import read_image
    from worker.runtime import get_analyzer

    baselines = GeneratedImage.objects.filter(audit=audit, factor="baseline")
    emb = get_analyzer(("dlib_resnet",)).analyze(
        [read_image(b.file) for b in baselines]).embeddings["dlib_resnet"]
    emb = emb[np.isfinite(emb).all(axis=1)]
    sims = [emb[i] @ emb[j] for i in range(len(emb)) for j in range(i + 1, len(emb))]
    assert judge["cutoff"] == pytest.approx(np.percentile(sims, 99), abs=1e-5)
    edits = GeneratedImage.objects.filter(audit=audit, factor__in=["lighting", "yaw"])
    assert edits.count() == 2 * 8
    for img in edits:
        c = img.checks
        assert c["target_sensor"] in ("brightness", "yaw") and 1 <= c["attempts"] <= 4
        assert c["identity_judge"] == "dlib_resnet"
        assert c["identity_threshold"] == pytest.approx(judge["cutoff"], abs=1e-4)
        if c["edit_ok"]:  # an edit on target is within the documented tolerance of its request
            tol = max({"brightness": 4.0, "yaw": 5.0}[c["target_sensor"]],
                      0.3 * abs(c["requested"]))
            assert abs(c["achieved"] - c["requested"]) <= tol
    summary = audit.result.summary
    assert summary["identity_judge"]["cutoff"] == judge["cutoff"]
    assert summary["models"]["dlib_resnet"]["licence"].startswith("CC0")
    checks = summary["generator_checks"]
    assert set(checks["by_group"]) == {"female", "male"}
    assert checks["overall"]["latent_edits"] == 16
    # lighting must not move a face's skin tone label: recounted from the scoring readings of
    # the stored images (the summary counts the readings taken at generation)
    split = 73.5  # the skin tone index's lighter/darker split, audit.sensors
    reading = {(i.identity_id, i.factor): i.analysis.sensors.get("skin_tone_index")
               for i in GeneratedImage.objects.filter(audit=audit).select_related("analysis")
               if i.factor in ("baseline", "lighting")}
    flips = [(reading[(ident, "baseline")] > split) != (value > split)
             for (ident, factor), value in reading.items() if factor == "lighting"
             and value is not None and reading.get((ident, "baseline")) is not None]
    moves = checks["skin_tone_label_moves"]["by_factor"]["lighting"]
    assert (moves["images"], moves["moved"]) == (len(flips), sum(flips))
    assert moves["moved_usable"] <= moves["moved"]
    # faceless images and edits that missed take part in no comparison; the judge's verdict
    # does not remove an image from the headline comparisons
    usable = {i.pk for i in GeneratedImage.objects.filter(audit=audit)
              if i.checks.get("edit_ok", True) and i.analysis.face_found}
    comp = read_comparisons(audit.result.comparisons_file)
    assert set(comp["image_a"]) | set(comp["image_b"]) == usable
    # the judged-same view, recounted from the comparisons
    different = {i.pk for i in edits if i.checks.get("identity_kept") is False}
    point = summary["fr_models"]["mobilefacenet"]["operating_points"][0]
    view = point["identity_judge_view"]
    mated = comp[(comp["fr_model"] == "mobilefacenet") & comp["mated"]]
    for group, row in view["by_group"].items():
        kept = mated[(mated["group_a"] == group) & ~mated["image_b"].isin(different)]
        assert row["n_mated_judged_same"] == len(kept)
        assert row["fnmr_judged_same"] == pytest.approx(
            (kept["score"] < point["threshold"]).mean())
        assert row["fnmr"] == point["by_group"][group]["fnmr"]
    # the dashboard and the report name the judge and its cut-off, say which results are shown
    # and give the judged-same FNMR beside them
    from django.test import Client

    client = Client()
    client.force_login(alice)
    fnmr_judged = f"{view['by_group']['female']['fnmr_judged_same']:.3f}"
    for url in (f"/audits/{audit.pk}/", f"/audits/{audit.pk}/report.html"):
        page = b"".join(client.get(url)).decode() if url.endswith(".html") else \
            client.get(url).content.decode()
        assert "Identity judge: dlib_resnet" in page, url
        assert f"{judge['cutoff']:.4f}" in page, url
        assert "every variant whose edit reached its target" in page, url
        assert fnmr_judged in page, url


def test_an_audit_whose_every_fr_model_is_under_test_is_refused_naming_the_fix(
        alice, media_root, models_available):
    config = {**CONFIG, "factors": {"yaw": [15]}, "fr_models": ["mobilefacenet", "dlib_resnet"]}
    audit = InlineRunner().run(create(alice, config).pk)
    assert audit.state == Audit.State.FAILED
    assert "no FR model is left to judge" in audit.error
    assert "Take one model out of the FR models under test" in audit.error
    assert not SyntheticIdentity.objects.filter(audit=audit).exists()  # refused before work


def test_the_summary_names_the_generator_that_made_the_images(finished):
    """Provenance comes from the images' own recipes, never a fixed default: the DCGAN's weights
    hash (recomputed from its file here) for this audit, and whatever another backend recorded
    for its images."""
    import hashlib

    from generator.backends import dcgan_weights_path
    from worker.results import generator_provenance

    generator = finished.result.summary["models"]["generator"]
    assert generator["weights_sha256"] == hashlib.sha256(
        dcgan_weights_path().read_bytes()).hexdigest()
    assert generator["model_id"] == "dcgan-digiface" and generator["image_size"] == 64
    assert "non-commercial" in generator["licence"]
    baselines = GeneratedImage.objects.filter(audit=finished, factor="baseline")
    for img in baselines:
        img.recipe = {**img.recipe, "model_id": "sd15-faceid", "weights_sha256": "ab" * 32,
                      "licence": "CreativeML OpenRAIL-M"}
        img.save(update_fields=["recipe"])
    other = generator_provenance(finished, "sd15-faceid")
    assert (other["model_id"], other["weights_sha256"], other["licence"]) == (
        "sd15-faceid", "ab" * 32, "CreativeML OpenRAIL-M")
    assert "mixed" not in other


def test_a_generator_brings_its_own_check_tolerances(finished):
    """A backend's check_policy (tolerances measured on its own faces) reaches the checks,
    with the audit's identity judge fields on top."""
    from types import SimpleNamespace

    from generator.mobilestylegan import CHECK_POLICY
    from worker.identity_judge import identity_policy
    from worker.state import audit_config

    config = audit_config(finished)
    policy = identity_policy(finished.pk, config, SimpleNamespace(check_policy=CHECK_POLICY))
    assert policy.target_abs_tol["age"] == 4.0 and policy.hold_tol["ita"] == 6.0
    assert policy.identity_judge == finished.identity_judge.get("model")
    default = identity_policy(finished.pk, config, SimpleNamespace())
    assert default.target_abs_tol["age"] == 10.0  # the 64-px DCGAN's, unchanged


def test_the_summary_reports_each_groups_acceptance_rate(finished):
    sampling = finished.result.summary["identity_sampling"]
    groups = sampling["groups"]
    assert set(groups) == {"perceived_gender=female", "perceived_gender=male"} or len(groups) == 2
    for row in groups.values():
        assert row["accepted"] == 4
        assert row["matched_while_open"] >= 4
        assert row["acceptance_rate"] == round(row["matched_while_open"]
                                               / row["tried_while_open"], 4)
    assert sampling["candidates"] >= max(r["tried_while_open"] for r in groups.values())
