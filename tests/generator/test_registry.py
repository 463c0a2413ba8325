"""One interface for every generator: the registry's entries resolve, the config's generator
lists come from it, provenance is the backend's own, and the pipeline runs a backend it has
never heard of when the backend is one registry line."""

import hashlib
import importlib

import numpy as np
import pytest

from generator import config as config_module
from generator import registry
from generator.latent_backend import LatentBackend
from generator.registry import BACKENDS, BackendSpec, IdentityCell


def test_every_registry_entry_names_an_importable_loader():
    for spec in BACKENDS.values():
        module, _, attr = spec.loader.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), spec.loader
        if spec.installed:
            module, _, attr = spec.installed.partition(":")
            assert callable(getattr(importlib.import_module(module), attr)), spec.installed


def test_the_config_lists_come_from_the_registry():
    assert set(config_module.GENERATORS) == set(BACKENDS)
    assert config_module.PROMPT_GENERATORS == {"sd15-faceid", "sdxl-faceid", "arc2face"}
    assert config_module.DEFAULT_GENERATORS == ("mobilestylegan-ffhq", "dcgan-digiface")
    # a config that names no generator gets the photoreal default
    cfg = config_module.parse_config({"name": "x", "groups": {"perceived_gender": ["female", "male"]},
                                      "identities_per_group": 2, "factors": {"blur": [1.0]}})
    assert cfg.generator == "mobilestylegan-ffhq"


def test_unknown_generators_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown generator 'stylegan9'.*dcgan-digiface"):
        registry.load_backend("stylegan9")


def test_dcgan_provenance_is_its_own_weights_file():
    from generator.backends import dcgan_weights_path

    backend = registry.load_backend("dcgan-digiface")
    digest = hashlib.sha256(dcgan_weights_path().read_bytes()).hexdigest()
    prov = backend.provenance()
    assert prov == {"model_id": "dcgan-digiface", "weights_sha256": digest,
                    "licence": prov["licence"], "image_size": 64}
    assert "non-commercial" in prov["licence"]
    cells = [IdentityCell(5), IdentityCell(9)]
    pixels = backend.baselines(cells)
    g = backend.latent
    assert np.array_equal(pixels, g.generate(g.sample_latents([5, 9])))


def test_mobilestylegan_provenance_says_research_use_only():
    from generator import mobilestylegan

    if not mobilestylegan.available():
        pytest.skip("random-face or openvino is not installed")
    spec = BACKENDS["mobilestylegan-ffhq"]
    assert spec.offline and spec.is_installed() and not spec.prompt_driven
    backend = spec.load()
    prov = backend.provenance()
    got = hashlib.sha256((mobilestylegan.data_dir() / "SynthesisNetwork.bin").read_bytes())
    assert prov["weights_sha256"] == got.hexdigest()
    assert "research use only" in prov["licence"] and prov["image_size"] == 512
    assert backend.check_policy["target_abs_tol"]["yaw"] > 0


def test_an_unconfigured_diffusion_route_names_the_setting():
    from generator.backends import GeneratorLoadError

    with pytest.raises(GeneratorLoadError, match="FACEAUDIT_DIFFUSION"):
        registry.load_backend("sd15-faceid")
    with pytest.raises(GeneratorLoadError, match='needs "adapter"'):
        registry.load_backend("sdxl-faceid", base_model="somewhere")


def load_copy(device="cpu", name="dcgan-copy", **options):
    """A new backend in one function: the DCGAN under another name and licence."""
    from generator.backends import load_dcgan_digiface

    latent = load_dcgan_digiface(device=device)
    latent.model_id, latent.licence = "dcgan-copy", "test licence"
    return LatentBackend(name, latent)


@pytest.mark.django_db
@pytest.mark.slow
def test_a_new_backend_is_one_registry_line(alice, media_root, models_available, monkeypatch):
    from webapp.audits.models import Audit, GeneratedImage
    from worker import runtime
    from worker.pipeline import InlineRunner

    spec = BackendSpec("dcgan-copy", "a copy", loader=f"{__name__}:load_copy", offline=True)
    monkeypatch.setitem(BACKENDS, "dcgan-copy", spec)
    monkeypatch.setitem(config_module.GENERATORS, "dcgan-copy", "a copy")
    runtime._backend.cache_clear()
    assert "dcgan-copy" in runtime.available_generators()
    cfg = config_module.parse_config(
        {"name": "copy", "seed": 3, "groups": {"perceived_gender": ["female", "male"]},
         "identities_per_group": 2, "factors": {"blur": [1.0]}, "generator": "dcgan-copy"},
        generators_available=runtime.available_generators())
    audit = Audit.objects.create(owner=alice, name=cfg.name, config=cfg.to_dict(),
                                 seed=cfg.seed, n_images_planned=cfg.n_images)
    audit = InlineRunner().run(audit.pk)
    runtime._backend.cache_clear()
    assert audit.state == Audit.State.DONE, audit.error
    gen = audit.result.summary["models"]["generator"]
    assert (gen["name"], gen["model_id"], gen["licence"]) == ("dcgan-copy", "dcgan-copy",
                                                              "test licence")
    recipes = GeneratedImage.objects.filter(audit=audit).values_list("recipe", flat=True)
    assert {r["model_id"] for r in recipes} == {"dcgan-copy"}
