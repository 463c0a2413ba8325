"""Guided sampling: the minimum-norm shift into the bands, checked against a direct solve, and
identities that keep their shift so they render again exactly as sampled."""

import numpy as np
import pytest

from generator.directions import Direction, DirectionSet
from generator.guidance import Band, ShiftedLatents, predict, shift_into_bands


def directions(dim=8, r2=0.9):
    rng = np.random.default_rng(1)
    vecs = np.linalg.qr(rng.standard_normal((dim, 3)))[0].T  # 3 orthonormal rows
    vecs[1] = (vecs[1] + vecs[0]) / np.linalg.norm(vecs[1] + vecs[0])  # correlated pair
    dirs = {name: Direction(name, vecs[k], slope, intercept, r2, 500)
            for k, (name, slope, intercept) in enumerate(
                [("yaw", 10.0, 2.0), ("smile", 0.2, 0.7), ("age", 8.0, 35.0)])}
    return DirectionSet("tiny", "0" * 64, "x", 500, 0, dirs)


def test_the_shift_lands_on_the_band_edge_and_holds_the_rest():
    ds = directions()
    u = np.random.default_rng(5).standard_normal((1, 8))
    pred = {s: predict(ds, s, u)[0] for s in ("yaw", "smile", "age")}
    band = Band("yaw", -1.0, 1.0)
    want_yaw = float(np.clip(pred["yaw"], -1, 1))
    shift = shift_into_bands(u, ds, [[band]], hold=["age", "smile"], max_shift=100)[0]
    after = {s: predict(ds, s, u + shift)[0] for s in ("yaw", "smile", "age")}
    assert after["yaw"] == pytest.approx(want_yaw, abs=1e-6)
    assert after["age"] == pytest.approx(pred["age"], abs=1e-6)
    assert after["smile"] == pytest.approx(pred["smile"], abs=1e-6)
    # minimum norm: the independent least-squares solution of the same constraints
    w = np.stack([ds.directions[s].slope * ds.directions[s].vector for s in ("yaw", "age", "smile")])
    delta = np.array([want_yaw - pred["yaw"], 0.0, 0.0])
    expected = np.linalg.lstsq(w, delta, rcond=None)[0]
    np.testing.assert_allclose(shift, expected, atol=1e-8)


def test_inside_the_band_nothing_moves_and_long_shifts_are_capped():
    ds = directions()
    u = np.zeros((2, 8))  # yaw prediction 2.0, age 35
    inside = shift_into_bands(u, ds, [[Band("yaw", 0, 5)], [Band("age", low=80.0)]],
                              max_shift=0.5)
    assert not inside[0].any()
    assert np.linalg.norm(inside[1]) == pytest.approx(0.5)


def test_unreliable_directions_are_not_aimed_with():
    ds = directions(r2=0.1)
    u = np.zeros((1, 8))
    assert not shift_into_bands(u, ds, [[Band("yaw", high=-5.0)]]).any()


def test_shifted_latents_add_the_stored_shift_per_seed():
    class G:
        model_id = "g"

        def sample_latents(self, seeds):
            return np.array([[float(s), 0.0] for s in seeds], dtype=np.float32)

        def generate(self, latents):
            return latents

    view = ShiftedLatents(G(), {7: [0.5, -1.0]})
    np.testing.assert_allclose(view.sample_latents([3, 7]), [[3, 0], [7.5, -1.0]])
    assert view.model_id == "g"


def test_guided_sampling_fills_a_rare_group_faster_and_keeps_the_shift():
    from generator.config import parse_config
    from generator.design import plan_design
    from generator.identities import sample_identities
    from tests.generator.test_identities import TinyGenerator

    def rare_labeller(images):  # "male" only when the first latent value exceeds 1.5
        return [{"perceived_gender": "male" if float(im[0, 0, 0]) > 1.5 else "female",
                 "sensors": {}} for im in images]

    design = plan_design(parse_config({"name": "x", "seed": 3,
                                       "groups": {"perceived_gender": ["female", "male"]},
                                       "identities_per_group": 6, "factors": {"blur": [1]}}))

    def guide(latents, groups):
        shifts = np.zeros(latents.shape)
        for i, g in enumerate(groups):
            if g.as_dict["perceived_gender"] == "male":
                shifts[i, 0] = max(0.0, 2.0 - float(latents[i, 0]))
        return shifts, np.ones(len(latents), dtype=bool)

    plain, guided = {}, {}
    sample_identities(design, TinyGenerator(), rare_labeller, 3, batch_size=4, report=plain)
    draws = sample_identities(design, TinyGenerator(), rare_labeller, 3, batch_size=4,
                              report=guided, guide=guide)
    assert guided["candidates"] < plain["candidates"]
    rows = guided["groups"].values()
    assert sum(r["aimed"] for r in rows) == guided["candidates"]  # every candidate had a target
    assert all(0 <= r["aimed_matched"] <= r["aimed"] for r in rows)
    assert "aimed" not in next(iter(plain["groups"].values()))
    male = [d for d in draws if d.group.as_dict["perceived_gender"] == "male"]
    shifted_draws = [d for d in male if "latent_shift" in d.sensors]
    assert shifted_draws
    for d in shifted_draws:  # the stored shift reproduces the latent the labeller saw
        view = ShiftedLatents(TinyGenerator(), {d.latent_seed: d.sensors["latent_shift"]})
        assert view.sample_latents([d.latent_seed])[0, 0] > 1.5


def test_bands_on_one_sensor_are_intersected():
    from generator.guidance import merge

    assert merge([Band("age", low=24.0), Band("yaw", -4, 4), Band("age", None, 26.0)]) == [
        Band("age", 24.0, 26.0), Band("yaw", -4, 4)]


def test_screening_renders_only_candidates_the_prediction_places_in_their_group():
    from generator.config import parse_config
    from generator.design import derive_seed, plan_design
    from generator.identities import sample_identities
    from tests.generator.test_identities import TinyGenerator

    rendered = []

    def rare_labeller(images):  # "male" only when the first latent value exceeds 1.5
        rendered.extend(float(im[0, 0, 0]) for im in images)
        return [{"perceived_gender": "male" if float(im[0, 0, 0]) > 1.5 else "female",
                 "sensors": {}} for im in images]

    design = plan_design(parse_config({"name": "x", "seed": 3,
                                       "groups": {"perceived_gender": ["female", "male"]},
                                       "identities_per_group": 6, "factors": {"blur": [1]}}))

    def guide(latents, groups):  # no shift; a latent "reaches" its group when it already is in it
        male = np.array([g.as_dict["perceived_gender"] == "male" for g in groups])
        return np.zeros(latents.shape), np.where(male, latents[:, 0] > 1.5, latents[:, 0] <= 1.5)

    plain, screened = {}, {}
    sample_identities(design, TinyGenerator(), rare_labeller, 3, batch_size=4, report=plain,
                      guide=guide)
    rendered.clear()
    draws = sample_identities(design, TinyGenerator(), rare_labeller, 3, batch_size=4,
                              report=screened, guide=guide, screen=32)
    # P(N(0,1) > 1.5) = 0.067: unscreened, the male slots need about 15 renders per identity;
    # screened, a pool of 4 x 32 latents holds about 8.6 for at most 4 male slots, so (almost)
    # every render is a match: 12 identities in 12 to 16 renders
    assert screened["candidates"] == len(rendered) <= 16 < plain["candidates"]
    assert screened["screened"] == 32 * screened["candidates"]
    assert screened["groups"]["male"]["aimed_rate"] == 1.0
    for d in draws:  # candidate numbers still name the seed of the latent rendered
        assert d.latent_seed == derive_seed(3, "candidate", d.candidate)
        v = float(TinyGenerator().sample_latents([d.latent_seed])[0, 0])
        assert (v > 1.5) == (d.group.as_dict["perceived_gender"] == "male")
    again = sample_identities(design, TinyGenerator(), rare_labeller, 3, batch_size=4,
                              guide=guide, screen=32)
    assert [(d.candidate, d.group) for d in again] == [(d.candidate, d.group) for d in draws]


def test_aim_says_which_shifts_were_capped():
    from generator.guidance import aim

    ds = directions()
    u = np.zeros((2, 8))
    shifts, reached = aim(u, ds, [[Band("yaw", low=1.0)], [Band("yaw", low=1000.0)]], max_shift=3.0)
    assert reached.tolist() == [True, False]
    assert np.linalg.norm(shifts[1]) == pytest.approx(3.0)


def test_kept_sampling_images_are_the_baselines_rendered_again():
    from generator.config import parse_config
    from generator.design import plan_design
    from generator.identities import sample_identities
    from tests.generator.test_identities import TinyGenerator

    def labeller(images):
        return [{"perceived_gender": "male" if float(im[0, 0, 0]) > 0.5 else "female",
                 "sensors": {}} for im in images]

    def guide(latents, groups):  # push "male" slots up by 0.7 in the first latent value
        male = np.array([g.as_dict["perceived_gender"] == "male" for g in groups])
        shifts = np.zeros(latents.shape)
        shifts[male, 0] = 0.7123456789
        return shifts, np.ones(len(latents), dtype=bool)

    design = plan_design(parse_config({"name": "x", "seed": 3,
                                       "groups": {"perceived_gender": ["female", "male"]},
                                       "identities_per_group": 4, "factors": {"blur": [1]}}))
    draws = sample_identities(design, TinyGenerator(), labeller, 3, batch_size=3, guide=guide,
                              screen=2, keep_images=True)
    assert any("latent_shift" in d.sensors for d in draws)
    for d in draws:
        view = ShiftedLatents(TinyGenerator(), {d.latent_seed: d.sensors["latent_shift"]}
                              if "latent_shift" in d.sensors else {})
        again = view.generate(view.sample_latents([d.latent_seed]))[0]
        assert again.dtype == d.image.dtype and np.array_equal(again, d.image)
    assert all(d.image is None for d in sample_identities(design, TinyGenerator(), labeller, 3))
