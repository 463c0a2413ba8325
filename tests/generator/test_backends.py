import hashlib

import numpy as np
import pytest
import torch

from generator.backends import dcgan_weights_path, load_dcgan_digiface
from generator.config import parse_config
from generator.design import plan_design
from generator.render import render_identities


@pytest.fixture(scope="module")
def dcgan():
    return load_dcgan_digiface()


def test_dcgan_matches_the_packages_own_generator(dcgan):
    # Independent reference: the architecture class shipped in gan-face-generate itself.
    from gan_face_generate.models import Generator

    ref = Generator(ngpu=0, nc=3, nz=100, ngf=64)
    ref.load_state_dict(torch.load(dcgan_weights_path(), map_location="cpu",
                                   weights_only=True)["netG_state_dict"])
    ref.eval()
    z = dcgan.sample_latents([1, 2, 3])
    with torch.inference_mode():
        x = ref(torch.from_numpy(z).reshape(3, 100, 1, 1))
    expected = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(dcgan.generate(z), expected)


def test_latents_are_standard_normal_pcg64_draws(dcgan):
    z = dcgan.sample_latents([11])
    assert np.allclose(z[0], np.random.Generator(np.random.PCG64(11)).standard_normal(100))


def test_same_seed_gives_byte_identical_images(dcgan):
    cfg = parse_config({"name": "r", "seed": 3, "groups": {"perceived_gender": ["female", "male"]},
                        "identities_per_group": 2,
                        "factors": {"blur": [2], "noise": [8], "downscale": [16]}})
    variants = plan_design(cfg).variants
    digest = lambda rows: [hashlib.sha256(i.pixels.tobytes()).hexdigest()  # noqa: E731
                           for row in rows for i in row]
    a = render_identities(dcgan, [101, 202], variants, cfg.seed)
    b = render_identities(dcgan, [101, 202], variants, cfg.seed)
    assert digest(a) == digest(b)
    assert len(set(digest(a))) == len(digest(a))  # every variant differs
    # each variant is made from its own identity's baseline
    assert np.array_equal(a[0][0].pixels, dcgan.generate(dcgan.sample_latents([101]))[0])
    assert a[0][1].recipe["factor"] == "control" and a[0][2].recipe["factor"] == "blur"
    assert a[0][2].recipe["weights_sha256"]
