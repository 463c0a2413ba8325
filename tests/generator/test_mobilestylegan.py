"""MobileStyleGAN (PyPI random-face, OpenVINO): photoreal faces that the real detector finds,
reproducible per seed, one identity per seed, with the network files checked by hash."""

import hashlib

import numpy as np
import pytest

from generator import mobilestylegan

pytestmark = pytest.mark.skipif(
    not mobilestylegan.available(),
    reason="MobileStyleGAN not installed (pip install openvino==2026.4.0 and "
           "pip install --no-deps random-face==2021.7.21.1; ./faceaudit does)")


@pytest.fixture(scope="module")
def gan():
    return mobilestylegan.load_mobilestylegan()


@pytest.fixture(scope="module")
def faces(gan):
    return gan.generate(gan.sample_latents([11, 12, 13, 14]))


def test_the_network_files_are_the_pinned_release():
    d = mobilestylegan.data_dir()
    for name, want in (("SynthesisNetwork.bin", mobilestylegan.SYNTHESIS_SHA256),
                       ("MappingNetwork.bin", mobilestylegan.MAPPING_SHA256)):
        assert hashlib.sha256((d / name).read_bytes()).hexdigest() == want


def test_a_damaged_file_is_refused_with_the_fix(monkeypatch):
    from generator.backends import GeneratorLoadError

    monkeypatch.setattr(mobilestylegan, "SYNTHESIS_SHA256", "0" * 64)
    with pytest.raises(GeneratorLoadError, match="reinstall random-face"):
        mobilestylegan.load_mobilestylegan()


def test_latents_are_whitened_truncated_w_and_images_are_512_px_rgb(gan, faces):
    u = gan.sample_latents([11, 12])
    assert u.shape == (2, 512) and u.dtype == np.float32
    # back in W: the truncated w, recomputed here from z with the mapping network
    z = np.random.Generator(np.random.PCG64(11)).standard_normal(512).astype(np.float32)
    raw = np.asarray(gan.mapping(z[None])[0], dtype=np.float64)[0]
    assert np.allclose(gan.to_w(u)[0], gan.w_avg + 0.7 * (raw - gan.w_avg), atol=1e-3)
    # whitened: over many identities the latent has about zero mean and unit variance per
    # coordinate (W itself is far from it)
    many = gan.sample_latents(list(range(1000, 1400))).astype(np.float64)
    assert np.abs(many.mean(axis=0)).mean() < 0.1
    assert 0.8 < many.var(axis=0).mean() < 1.2
    raw_w = gan.truncated_w(list(range(1000, 1400))).astype(np.float64)
    spread = np.linalg.eigvalsh(np.cov(raw_w.T))
    assert spread[-1] / np.median(spread) > 10  # why W is whitened first
    assert faces.shape == (4, 512, 512, 3) and faces.dtype == np.uint8
    assert 40 < faces.mean() < 220 and faces.std() > 20  # an image, not a flat field


def test_whitening_gives_identity_covariance_and_inverts():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 6)) @ np.diag([10.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    x -= x.mean(axis=0)
    colour, whiten = mobilestylegan.whitening(x)
    u = x @ whiten.T
    assert np.allclose(np.cov(u.T), np.eye(6), atol=1e-8)
    assert np.allclose(u @ colour.T, x, atol=1e-9)


def test_the_same_latent_gives_the_same_bytes_alone_or_in_a_batch(gan, faces):
    alone = gan.generate(gan.sample_latents([13]))
    assert np.array_equal(alone[0], faces[2])


def test_the_real_detector_finds_each_face_and_seeds_are_different_people(faces, models_available):
    from audit.analysis import FaceAnalyzer
    from audit.registry import ModelRegistry

    analyzer = FaceAnalyzer(ModelRegistry(models_available), recognizers=("mobilefacenet",))
    batch = analyzer.analyze(list(faces))
    assert batch.face_found.all()
    emb = batch.embeddings["mobilefacenet"]
    sims = emb @ emb.T
    off = sims[~np.eye(4, dtype=bool)]
    assert off.max() < 0.5  # different seeds, different identities (impostor p99 ~0.4-0.5)
    # the gender-age sensor reads them as faces (a probability strictly inside 0..1)
    assert 0.0 < batch.male_probability.min() <= batch.male_probability.max() < 1.0


def test_it_is_offered_when_installed_and_recipes_carry_its_licence(gan):
    from generator.render import latent_recipe
    from worker.runtime import available_generators

    assert "mobilestylegan-ffhq" in available_generators()
    recipe = latent_recipe(gan)
    assert recipe["model_id"] == "mobilestylegan-ffhq" and recipe["image_size"] == 512
    assert recipe["licence"].startswith("research use only")
    assert recipe["truncation"] == 0.7


def test_the_torch_engine_renders_the_same_faces_as_openvino(gan, faces):
    """A GPU worker runs the torch port (here on the CPU): same whitening, same latents, and
    images within one grey level of OpenVINO's, almost every pixel identical."""
    from generator.mobilestylegan import load_mobilestylegan

    torch_gan = load_mobilestylegan(engine="torch")
    assert torch_gan.recipe_extra["render"] == "torch fp32, cpu, 512-px wavelet output"
    # the whitening comes from 4,096 mapped latents, which the engines give to 5e-6: equal to
    # a relative 1e-3 (its smallest eigen-directions amplify the difference)
    assert (np.linalg.norm(torch_gan.whiten - gan.whiten)
            < 1e-3 * np.linalg.norm(gan.whiten))
    np.testing.assert_allclose(torch_gan.truncated_w([13]), gan.truncated_w([13]), atol=1e-4)
    img = torch_gan.generate(gan.sample_latents([13]))[0].astype(int)
    diff = np.abs(img - faces[2].astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99


def test_its_directions_come_with_faceaudit(gan, settings, tmp_path, monkeypatch):
    """A fresh installation edits at once: the directions for these weights and sensors are
    shipped (learning them takes about 30 minutes on 2 cores), and every one an edit or the
    guided sampling uses is reliable enough."""
    import generator.directions as directions_module
    from audit.sensors import SENSOR_VERSION
    from worker.runtime import get_directions

    settings.FACEAUDIT_CACHE_DIR = tmp_path  # an empty cache

    def refuse(*args, **kwargs):
        raise AssertionError("the shipped directions were not found: they would be relearned")

    monkeypatch.setattr(directions_module, "learn_directions", refuse)
    ds = get_directions(gan)
    assert (ds.model_id, ds.weights_sha256, ds.sensor_version) == (
        gan.model_id, gan.weights_sha256, SENSOR_VERSION)
    ds.check_editable(["yaw", "pitch", "age", "brightness", "smile", "skin_tone_index",
                       "male_probability"])
    assert ds.n_samples >= 2000
