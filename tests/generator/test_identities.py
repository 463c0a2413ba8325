import numpy as np
import pytest

from generator.config import parse_config
from generator.design import plan_design
from generator.identities import GroupFillError, sample_identities


class TinyGenerator:
    """A stand-in generator whose 'image' encodes the latent's first value, so labels are a
    known function of the seed (the real DCGAN is covered in test_backends)."""

    model_id, weights_sha256, licence, latent_dim, image_size = "tiny", "0" * 64, "none", 4, 2

    def sample_latents(self, seeds):
        return np.stack([np.random.Generator(np.random.PCG64(s)).standard_normal(4)
                         for s in seeds]).astype(np.float32)

    def generate(self, latents):
        return np.repeat(latents[:, :1, None, None], 3, axis=3).repeat(2, 1).repeat(2, 2)


def labeller(images):
    out = []
    for im in images:
        v = float(im[0, 0, 0])
        out.append(None if abs(v) < 0.1 else
                   {"perceived_gender": "male" if v > 0 else "female", "sensors": {"v": v}})
    return out


def design(n):
    return plan_design(parse_config({"name": "x", "seed": 9,
                                     "groups": {"perceived_gender": ["female", "male"]},
                                     "identities_per_group": n, "factors": {"blur": [1]}}))


def test_it_fills_every_group_with_sensor_confirmed_identities():
    d = design(5)
    draws = sample_identities(d, TinyGenerator(), labeller, audit_seed=9, batch_size=7)
    assert len(draws) == 10
    for draw in draws:
        v = TinyGenerator().sample_latents([draw.latent_seed])[0, 0]
        assert abs(v) >= 0.1
        assert draw.group.as_dict["perceived_gender"] == ("male" if v > 0 else "female")
    # deterministic, and independent of the batch size
    again = sample_identities(d, TinyGenerator(), labeller, audit_seed=9, batch_size=3)
    assert [x.latent_seed for x in again] == [x.latent_seed for x in draws]


def test_it_explains_which_group_could_not_be_filled():
    only_male = lambda ims: [{"perceived_gender": "male"} for _ in ims]  # noqa: E731
    with pytest.raises(GroupFillError) as info:
        sample_identities(design(3), TinyGenerator(), only_male, audit_seed=1, max_candidates=40)
    assert "female (0 of 3)" in str(info.value)
    assert "fewer identities" in str(info.value)


def test_the_report_gives_each_groups_acceptance_rate_by_a_naive_recount():
    from generator.design import derive_seed

    d = design(4)
    report: dict = {}
    draws = sample_identities(d, TinyGenerator(), labeller, audit_seed=9, batch_size=1,
                              report=report)
    # naive replay: walk the candidates in order, tracking when each group closes
    tried = report["candidates"]
    seeds = [derive_seed(9, "candidate", k) for k in range(tried)]
    values = TinyGenerator().sample_latents(seeds)[:, 0]
    need, filled = 4, {"female": 0, "male": 0}
    open_tried, open_matched = {"female": 0, "male": 0}, {"female": 0, "male": 0}
    for v in values:
        label = None if abs(v) < 0.1 else ("male" if v > 0 else "female")
        for g in filled:
            if filled[g] < need:
                open_tried[g] += 1
                open_matched[g] += label == g
        if label is not None and filled[label] < need:
            filled[label] += 1
    assert filled == {"female": 4, "male": 4} and len(draws) == 8
    assert report["faces_found"] == int((np.abs(values) >= 0.1).sum())
    for g in ("female", "male"):
        name = next(x.group.name for x in draws if x.group.as_dict["perceived_gender"] == g)
        row = report["groups"][name]
        assert row["accepted"] == 4
        assert (row["tried_while_open"], row["matched_while_open"]) == (open_tried[g],
                                                                        open_matched[g])
        assert row["acceptance_rate"] == round(open_matched[g] / open_tried[g], 4)
