"""Directions and edits on a toy generator whose attributes are known linear functions of the
latent, so the right directions and steps are known independently of the code under test."""

import numpy as np
import pytest

from generator.design import Variant
from generator.directions import DirectionSet, learn_directions
from generator.editing import CheckPolicy, check_image, render_and_check

DIM = 12
RNG = np.random.default_rng(0)
AGE_W = RNG.standard_normal(DIM)
LIGHT_W = 0.6 * AGE_W / np.linalg.norm(AGE_W) * 3 + RNG.standard_normal(DIM)  # correlated


class ToyGenerator:
    """'Images' whose pixels encode age = 40 + 4 * (age_w . z) and
    brightness = 120 + 8 * (light_w . z) (the sensor reads them back)."""

    model_id, weights_sha256, licence, latent_dim, image_size = "toy", "1" * 64, "none", DIM, 4

    def sample_latents(self, seeds):
        return np.stack([np.random.Generator(np.random.PCG64(s)).standard_normal(DIM)
                         for s in seeds]).astype(np.float32)

    def generate(self, latents):
        z = np.asarray(latents, dtype=np.float64)
        img = np.zeros((len(z), 4, 4, 3), dtype=np.float64)
        img[:, 0, 0, 0] = (40 + 4 * z @ AGE_W) / 100 * 255 / 2
        img[:, 0, 1, 0] = 120 + 8 * z @ LIGHT_W / 4
        return img  # floats: the toy skips uint8 quantisation


def sense(images, embed=True):
    n = len(images)
    return {"face_found": np.ones(n, dtype=bool),
            "age": images[:, 0, 0, 0] * 2 * 100 / 255,
            "brightness": 120 + (images[:, 0, 1, 0] - 120) * 4,
            "embedding": np.tile([1.0, 0.0], (n, 1))}


@pytest.fixture(scope="module")
def directions():
    return learn_directions(ToyGenerator(), sense, ["age", "brightness"], sensor_version="toy",
                            n_samples=400, seed=1, batch_size=64, ridge=1e-3)


def test_learned_directions_are_the_true_ones(directions):
    for name, w, gain in (("age", AGE_W, 4), ("brightness", LIGHT_W, 8)):
        d = directions.directions[name]
        assert abs(d.vector @ (w / np.linalg.norm(w))) > 0.999
        assert d.slope == pytest.approx(gain * np.linalg.norm(w), rel=1e-3)
        assert d.r2 > 0.999


def test_conditional_direction_leaves_the_held_attribute_unchanged(directions):
    d = directions.conditional("age", ["brightness"])
    assert abs(d @ directions.directions["brightness"].vector) < 1e-9
    # the true age gain along d, computed from the toy's own definition
    assert directions.conditional_slope("age", ["brightness"]) == pytest.approx(
        4 * AGE_W @ d, rel=1e-3)


def test_directions_survive_a_save_and_load(directions, tmp_path):
    path = tmp_path / "d.npz"
    directions.save(path)
    again = DirectionSet.load(path)
    assert again.model_id == "toy" and again.sensor_version == "toy"
    assert np.array_equal(again.directions["age"].vector, directions.directions["age"].vector)


def test_an_age_edit_reaches_its_target_and_holds_brightness(directions):
    rows = render_and_check(ToyGenerator(), [5, 6, 7], [Variant("baseline", None),
                                                     Variant("age", 20.0)], 9, sense, directions)
    for row in rows:
        base, edit = row
        c = edit.checks
        assert c["passed"] and c["on_target"] and c["others_held"]
        assert c["achieved"] == pytest.approx(20.0, abs=0.5)
        assert abs(c["deltas"]["brightness"]) < 0.5
        assert edit.recipe["edit"]["latent_step"] == pytest.approx(
            20.0 / directions.conditional_slope("age", ["brightness"]), rel=1e-3)
        assert edit.recipe["edit"]["attempts"] == 1


def test_a_relative_lighting_edit_is_in_percent_of_the_baseline(directions):
    rows = render_and_check(ToyGenerator(), [11], [Variant("baseline", None),
                                                   Variant("lighting", -25.0)], 9, sense,
                            directions)
    base_b = rows[0][0].recipe["sensors"]["brightness"]
    c = rows[0][1].checks
    assert c["requested"] == pytest.approx(-0.25 * base_b, rel=1e-6)
    assert c["on_target"]


def test_a_failed_edit_is_retried_and_reported(directions):
    # a policy whose target tolerance cannot be met on the first guess forces retries
    strict = CheckPolicy(target_abs_tol={"age": 0.0}, target_rel_tol=0.0, max_attempts=3)
    rows = render_and_check(ToyGenerator(), [21], [Variant("age", 30.0)], 9, sense, directions,
                            strict)
    c = rows[0][0].checks
    assert c["attempts"] == 3 and c["passed"] is False and c["on_target"] is False
    assert c["achieved"] == pytest.approx(30.0, abs=1.0)  # the best attempt is kept


def test_image_factors_pass_on_face_found_and_record_deltas():
    base = {"face_found": np.array([True]), "age": np.array([30.0]),
            "male_probability": np.array([0.9])}
    var = {"face_found": np.array([True]), "age": np.array([70.0]),
           "male_probability": np.array([0.1])}
    c = check_image(base, 0, var, 0, "blur", None, CheckPolicy())
    assert c["passed"] and c["broken"] == ["age", "male_probability"]
    assert c["others_held"] is False and c["deltas"]["age"] == 40.0
    lost = check_image(base, 0, {**var, "face_found": np.array([False])}, 0, "blur", None,
                       CheckPolicy())
    assert lost["passed"] is False


def test_latent_edits_need_directions():
    with pytest.raises(ValueError, match="learn_directions"):
        render_and_check(ToyGenerator(), [1], [Variant("age", 10.0)], 9, sense, None)


def test_identity_cutoff_is_the_impostor_p99_over_all_baselines():
    rng = np.random.default_rng(3)
    emb = rng.standard_normal((30, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    pairs = [emb[i] @ emb[j] for i in range(30) for j in range(i + 1, 30)]  # naive
    from generator.editing import identity_cutoff

    cutoff, n_pairs = identity_cutoff(emb)
    assert cutoff == pytest.approx(np.percentile(pairs, 99))
    assert n_pairs == 435
    with_missing = np.vstack([emb, np.full((1, 16), np.nan)])  # a baseline without a face
    assert identity_cutoff(with_missing)[0] == pytest.approx(cutoff)
    assert identity_cutoff(emb[:1]) == (None, 0)


def test_the_identity_check_uses_the_policy_cut_off_whatever_the_batch(directions):
    """The cut-off comes with the policy (fixed once per audit), so an identity's checks are the
    same whether it is rendered alone or with eleven others (a per-batch impostor percentile
    would differ between the two)."""

    def sense_with_identity(images, embed=True):
        out = sense(images, embed)
        v = np.stack([images[:, 0, 0, 0], images[:, 0, 1, 0] - 100.0], axis=1)
        out["embedding"] = v / np.linalg.norm(v, axis=1, keepdims=True)
        return out

    policy = CheckPolicy(identity_min_similarity=0.9, identity_judge="judge")
    variants = [Variant("baseline", None), Variant("age", 20.0)]
    alone = render_and_check(ToyGenerator(), [4], variants, 9, sense_with_identity, directions,
                             policy)
    together = render_and_check(ToyGenerator(), list(range(1, 13)), variants, 9,
                                sense_with_identity, directions, policy)
    assert alone[0][1].checks == together[3][1].checks
    assert alone[0][1].checks["identity_threshold"] == 0.9
    assert (alone[0][1].pixels == together[3][1].pixels).all()


def test_identity_kept_is_judged_against_the_cut_off_and_does_not_decide_edit_ok():
    base = {"face_found": np.array([True]), "yaw": np.array([0.0]), "embedding": np.array([[1.0, 0.0]])}
    var = {"face_found": np.array([True]), "yaw": np.array([15.0]),
           "embedding": np.array([[0.6, 0.8]])}  # cosine 0.6
    strict = CheckPolicy(identity_min_similarity=0.7, identity_judge="dlib_resnet")
    c = check_image(base, 0, var, 0, "yaw", 15.0, strict)
    assert c["identity_similarity"] == pytest.approx(0.6)
    assert c["identity_kept"] is False and c["identity_judge"] == "dlib_resnet"
    assert c["edit_ok"] is True and c["passed"] is False  # usable for FR, not judged the same
    lenient = CheckPolicy(identity_min_similarity=0.5, identity_judge="dlib_resnet")
    c = check_image(base, 0, var, 0, "yaw", 15.0, lenient)
    assert c["identity_kept"] is True and c["passed"] is True
    none = CheckPolicy(identity_min_similarity=None)
    c = check_image(base, 0, var, 0, "yaw", 15.0, none)
    assert c["identity_kept"] is None and c["passed"] is True


def test_baselines_already_rendered_are_used_and_not_rendered_again(directions):
    class Counting(ToyGenerator):
        """Renders each latent on its own, as the real generators do (so a subset renders the
        same values as the whole batch), and counts the renders."""

        rendered = 0

        def generate(self, latents):
            Counting.rendered += len(latents)
            return np.concatenate([super(Counting, self).generate(latents[i:i + 1])
                                   for i in range(len(latents))])

    seeds, variants = [5, 6, 7], [Variant("baseline", None), Variant("age", 20.0)]
    plain = render_and_check(Counting(), seeds, variants, 9, sense, directions)
    given = Counting().generate(ToyGenerator().sample_latents(seeds))
    Counting.rendered = 0
    gen = Counting()
    reused = render_and_check(gen, seeds, variants, 9, sense, directions,
                              baselines=[given[0], None, given[2]])
    # the edit's first attempt renders 3, the baselines only the one not given
    assert Counting.rendered == 1 + 3
    for a, b in zip(plain, reused, strict=True):
        for x, y in zip(a, b, strict=True):
            assert np.array_equal(x.pixels, y.pixels) and x.checks == y.checks
