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
        return shifts

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
