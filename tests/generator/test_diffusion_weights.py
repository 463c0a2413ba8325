"""The diffusion routes against the layouts of the real weights: which adapter files are refused
(and before the base model is loaded), the published file sizes from the state-dict shapes, and
one revision per repository, through a Hugging Face cache laid out as the hub client writes it.

Tiny models come from ``tests/generator/test_diffusion.py``; real-size layouts are built on the
meta device (shapes only, no memory)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402

import generator.diffusion.faceid as faceid_module  # noqa: E402
from generator.backends import GeneratorLoadError  # noqa: E402
from generator.diffusion.adapter_files import adapter_layout, flat_shapes, read_adapter  # noqa: E402
from generator.diffusion.arc2face import load_arc2face_generator  # noqa: E402
from generator.diffusion.check import expected_ip_shapes  # noqa: E402
from generator.diffusion.faceid import load_faceid_generator  # noqa: E402
from tests.generator.test_diffusion import (  # noqa: E402
    ID_DIM,
    faceid_state_dict,
    save_adapter,
    tiny_sd_pipeline,
    tiny_text_encoder,
    tiny_tokenizer,
    tiny_unet,
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning",
                                        "ignore:The `local_dir_use_symlinks` argument")

SD15_UNET = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                 cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, sample_size=64)
# stabilityai/stable-diffusion-xl-base-1.0, unet/config.json
SDXL_UNET = dict(block_out_channels=(320, 640, 1280), layers_per_block=2,
                 cross_attention_dim=2048, attention_head_dim=(5, 10, 20),
                 transformer_layers_per_block=(1, 2, 10), use_linear_projection=True,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816, sample_size=128)


def kohya_lora(unet: torch.nn.Module, rank: int = 4) -> dict[str, torch.Tensor]:
    """The FaceID LoRA as the separate ``*_lora.safetensors`` files hold it: kohya's names
    (``lora_unet_<module path with _>_<projection>.lora_down.weight`` / ``.lora_up.weight`` /
    ``.alpha``) for to_q, to_k, to_v and to_out.0 of every attention layer."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for name in unet.attn_processors:
        attn = unet.get_submodule(name.removesuffix(".processor"))
        for proj in ("to_q", "to_k", "to_v", "to_out.0"):
            layer = attn.get_submodule(proj)
            key = f"lora_unet_{attn_path(name)}_{proj.replace('.', '_')}"
            out[f"{key}.lora_down.weight"] = torch.randn(rank, layer.in_features, generator=g)
            out[f"{key}.lora_up.weight"] = torch.randn(layer.out_features, rank, generator=g)
            out[f"{key}.alpha"] = torch.tensor(float(rank))
    return out


def attn_path(processor: str) -> str:
    return processor.removesuffix(".processor").replace(".", "_")


def plus_image_proj(id_dim: int = 16, cross: int = 32) -> dict[str, torch.Tensor]:
    """``image_proj`` of FaceID Plus v1/v2 in the upstream names (ProjPlusModel: the FaceID MLP
    and norm, then a perceiver resampler over CLIP image features)."""
    z = torch.zeros
    return {"proj.0.weight": z(id_dim * 2, id_dim), "proj.0.bias": z(id_dim * 2),
            "proj.2.weight": z(cross * 4, id_dim * 2), "proj.2.bias": z(cross * 4),
            "norm.weight": z(cross), "norm.bias": z(cross),
            "perceiver_resampler.proj_in.weight": z(cross, 64),
            "perceiver_resampler.proj_out.weight": z(cross, cross),
            "perceiver_resampler.norm_out.weight": z(cross),
            "perceiver_resampler.layers.0.0.norm1.weight": z(cross),
            "perceiver_resampler.layers.0.0.to_q.weight": z(64, cross),
            "perceiver_resampler.layers.0.0.to_kv.weight": z(128, cross),
            "perceiver_resampler.layers.0.0.to_out.weight": z(cross, 64),
            "perceiver_resampler.layers.0.1.0.weight": z(cross)}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    pipe = tiny_sd_pipeline()
    pipe.save_pretrained(root / "sd")
    folder = root / "IP-Adapter-FaceID"
    state = faceid_state_dict(pipe.unet, ID_DIM, lora_rank=4)
    save_adapter(state, folder, "ip-adapter-faceid_tiny.bin")
    from safetensors.torch import save_file

    save_file(kohya_lora(pipe.unet), str(folder / "ip-adapter-faceid_tiny_lora.safetensors"))
    save_adapter({"image_proj": plus_image_proj(), "ip_adapter": state["ip_adapter"]}, folder,
                 "ip-adapter-faceid-plusv2_tiny.bin")
    save_adapter({"image_proj": {"proj.weight": torch.zeros(128, 16),
                                 "proj.bias": torch.zeros(128),
                                 "norm.weight": torch.ones(32), "norm.bias": torch.zeros(32)},
                  "ip_adapter": state["ip_adapter"]}, folder, "ip-adapter_tiny.bin")
    return {"root": root, "sd": root / "sd", "adapter": folder}


class NotLoaded(AssertionError):
    pass


@pytest.fixture
def no_base_loading(monkeypatch):
    """Fail the test if the loader reaches the base model's weights."""

    def refuse(*args, **kwargs):
        raise NotLoaded("the base model was loaded")

    monkeypatch.setattr(faceid_module, "load_pipeline", refuse)


# --- refusals before the base model is loaded ---------------------------------------------------

def test_the_kohya_lora_copy_is_refused_with_use_the_bin(weights, no_base_loading):
    name = "ip-adapter-faceid_tiny_lora.safetensors"
    # What diffusers itself says about that file: the bare KeyError of the issue.
    pipe = StableDiffusionPipeline.from_pretrained(weights["sd"], safety_checker=None)
    with pytest.raises(KeyError, match="latents"):
        pipe.load_ip_adapter(str(weights["adapter"]), subfolder=None, weight_name=name,
                             image_encoder_folder=None)
    for base in (weights["sd"], weights["root"] / "no-such-base"):
        with pytest.raises(GeneratorLoadError) as info:
            load_faceid_generator(base, weights["adapter"], weight_name=name, device="cpu")
        text = str(info.value)
        assert "Use the .bin, it already contains the LoRA" in text
        assert 'weight_name "ip-adapter-faceid_tiny.bin"' in text
        first = min(kohya_lora(pipe.unet))
        assert first.startswith("lora_unet_down_blocks_1_attentions_0_") and repr(first) in text


def test_faceid_plus_and_image_adapters_are_refused_before_the_base_loads(weights,
                                                                          no_base_loading):
    with pytest.raises(GeneratorLoadError, match=r"FaceID Plus \(v1/v2.*perceiver_resampler"):
        load_faceid_generator(weights["sd"], weights["adapter"], device="cpu",
                              weight_name="ip-adapter-faceid-plusv2_tiny.bin")
    with pytest.raises(GeneratorLoadError, match="image-prompt IP-Adapter.*not FaceID"):
        load_faceid_generator(weights["sd"], weights["adapter"], device="cpu",
                              weight_name="ip-adapter_tiny.bin")
    with pytest.raises(GeneratorLoadError, match="no file 'ip-adapter-faceid_sd15.bin'.*holds "
                       "ip-adapter-faceid-plusv2_tiny.bin, ip-adapter-faceid_tiny.bin, "
                       "ip-adapter-faceid_tiny_lora.safetensors, ip-adapter_tiny.bin"):
        load_faceid_generator(weights["sd"], weights["adapter"], device="cpu")


def test_the_faceid_bin_still_loads_with_its_lora(weights):
    pytest.importorskip("peft")
    gen = load_faceid_generator(weights["sd"], weights["adapter"], device="cpu",
                                weight_name="ip-adapter-faceid_tiny.bin", require_lora=True,
                                hash_weights=False)
    assert gen.lora_applied


def test_an_adapter_for_another_base_is_refused_before_the_base_loads(weights, tmp_path,
                                                                      no_base_loading):
    wide = UNet2DConditionModel(**{**dict(tiny_unet(0).config), "cross_attention_dim": 48})
    save_adapter(faceid_state_dict(wide, ID_DIM), tmp_path, "sdxl-like.bin")
    with pytest.raises(GeneratorLoadError, match="cross_attention_dim 48.*cross_attention_dim 32"):
        load_faceid_generator(weights["sd"], tmp_path, weight_name="sdxl-like.bin", device="cpu")


# --- layouts and sizes of the published files ---------------------------------------------------

def published_layout(config: dict, rank: int = 128):
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
        state = faceid_state_dict(unet, 512, lora_rank=rank)
    return state, adapter_layout(flat_shapes(state))


def hidden_sizes(config: dict) -> list[int]:
    """Channel width of every transformer block of the UNet, from its config: per cross-attention
    down block ``layers_per_block`` x its transformer depth, per up block one more, the mid
    block the last width's depth."""
    widths = config["block_out_channels"]
    depth = config.get("transformer_layers_per_block", 1)
    depth = [depth] * len(widths) if isinstance(depth, int) else list(depth)
    out = []
    for i, kind in enumerate(config["down_block_types"]):
        if kind.startswith("CrossAttn"):
            out += [widths[i]] * config["layers_per_block"] * depth[i]
    for i, kind in enumerate(config["up_block_types"]):
        j = len(widths) - 1 - i
        if kind.startswith("CrossAttn"):
            out += [widths[j]] * (config["layers_per_block"] + 1) * depth[j]
    return out + [widths[-1]] * depth[-1]


@pytest.mark.parametrize("config, published_bytes", [(SD15_UNET, 96.7e6), (SDXL_UNET, 1.07e9)],
                         ids=["sd15", "sdxl"])
def test_the_faceid_layout_has_the_size_of_the_published_file(config, published_bytes):
    """Counted by hand from the widths: per transformer block of width h, the self-attention
    LoRA (q, k, v, out: down (128, h) + up (h, 128)), the cross-attention LoRA (q and out as
    before, k and v down (128, cross) + up (h, 128)), to_k_ip/to_v_ip (h, cross); plus the MLP
    512 -> 1024 -> 4 x cross and its LayerNorm. In float16 that is the published file's size
    (ip-adapter-faceid_sd15.bin 96.7 MB, ip-adapter-faceid_sdxl.bin 1.07 GB)."""
    cross, r = config["cross_attention_dim"], 128
    per_block = [4 * 2 * r * h + 2 * 2 * r * h + 2 * (r * cross + h * r) + 2 * h * cross
                 for h in hidden_sizes(config)]
    mlp = 512 * 1024 + 1024 + 1024 * 4 * cross + 4 * cross + 2 * cross
    expected = sum(per_block) + mlp
    state, layout = published_layout(config)
    numbers = sum(int(np.prod(s)) for s in flat_shapes(state).values())
    assert numbers == expected
    assert abs(2 * numbers - published_bytes) / published_bytes < 0.005
    blocks = len(hidden_sizes(config))
    assert (layout.kind, layout.id_dim, layout.cross_attention_dim, layout.num_tokens) == (
        "faceid", 512, cross, 4)
    assert layout.lora_rank == 128 and layout.lora_layers == 2 * blocks
    assert layout.ip_layers == tuple(range(1, 2 * blocks, 2))
    assert dict(layout.ip_shapes) == expected_ip_shapes(config)


def test_layouts_are_classified_in_the_order_diffusers_chooses_projections():
    faceid = {"image_proj.proj.0.weight": (1024, 512), "image_proj.proj.2.weight": (3072, 1024),
              "image_proj.norm.weight": (768,), "ip_adapter.1.to_k_ip.weight": (320, 768)}
    assert adapter_layout(faceid).kind == "faceid"
    assert adapter_layout(faceid).lora_rank is None
    plus = {**faceid, **{f"image_proj.{k}": tuple(v.shape) for k, v in plus_image_proj().items()}}
    assert adapter_layout(plus).kind == "faceid-plus"  # it has norm.weight too
    assert adapter_layout({"image_proj.proj.weight": (3072, 1024),
                           "image_proj.norm.weight": (768,)}).kind == "ip-adapter"
    assert adapter_layout({"image_proj.proj.3.weight": (768,),
                           "image_proj.proj.0.weight": (1024, 1024)}).kind == "ip-adapter-full"
    assert adapter_layout({"image_proj.latents": (1, 16, 768)}).kind == "ip-adapter-plus"
    assert adapter_layout({"lora_unet_x_to_q.lora_down.weight": (4, 8)}).kind == "kohya-lora"
    assert adapter_layout({"unet.x.lora_A.weight": (4, 8)}).kind == "lora"
    assert adapter_layout({"something": (1,)}).kind == "unknown"


def test_read_adapter_reads_bin_and_safetensors_alike(tmp_path):
    state = faceid_state_dict(tiny_unet(0), ID_DIM, lora_rank=4)
    save_adapter(state, tmp_path, "a.bin")
    save_adapter(state, tmp_path, "a.safetensors")
    loaded, bin_shapes = read_adapter(tmp_path / "a.bin")
    none, st_shapes = read_adapter(tmp_path / "a.safetensors")
    assert none is None and bin_shapes == st_shapes
    assert torch.equal(loaded["image_proj"]["norm.weight"], state["image_proj"]["norm.weight"])
    assert st_shapes["image_proj.proj.0.weight"] == (2 * ID_DIM, ID_DIM)


# --- one revision per repository ----------------------------------------------------------------

def commit(n: int) -> str:
    return f"{n:040x}"


def cache_repo(cache: Path, repo: str, sha: str, source: Path) -> None:
    """Put ``source``'s files into a Hugging Face hub cache as commit ``sha`` of ``repo``
    (``models--org--name/snapshots/<sha>/...``, the layout hf_hub_download writes)."""
    snapshot = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / sha
    shutil.copytree(source, snapshot, dirs_exist_ok=True)


@pytest.fixture
def hub_cache(weights, tmp_path, monkeypatch):
    """Base, adapter and Arc2Face repositories, each at its own commit, in a private cache."""
    import huggingface_hub.constants as hub_constants

    cache = tmp_path / "hub"
    cache_repo(cache, "example/sd-base", commit(1), weights["sd"])
    adapter = tmp_path / "adapter-files"
    adapter.mkdir()
    shutil.copy(weights["adapter"] / "ip-adapter-faceid_tiny.bin", adapter)
    cache_repo(cache, "example/faceid", commit(2), adapter)
    arc = tmp_path / "arc2face-files"
    tiny_unet(seed=10).save_pretrained(arc / "arc2face")
    tiny_text_encoder(tiny_tokenizer(), seed=11).save_pretrained(arc / "encoder")
    cache_repo(cache, "example/arc2face", commit(3), arc)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_base_and_adapter_each_load_at_their_own_revision(hub_cache):
    kw = {"weight_name": "ip-adapter-faceid_tiny.bin", "device": "cpu", "hash_weights": False,
          "local_files_only": True}
    gen = load_faceid_generator("example/sd-base", "example/faceid", base_revision=commit(1),
                                adapter_revision=commit(2), **kw)
    assert gen.id_dim == ID_DIM
    # Each revision goes to its own repository only: swapped, each is missing where it is sent.
    with pytest.raises(GeneratorLoadError, match="example/faceid"):
        load_faceid_generator("example/sd-base", "example/faceid", base_revision=commit(2),
                              adapter_revision=commit(1), **kw)
    with pytest.raises(GeneratorLoadError, match="model_index.json of example/sd-base"):
        load_faceid_generator("example/sd-base", "example/faceid", base_revision=commit(2),
                              adapter_revision=commit(2), **kw)
    with pytest.raises(GeneratorLoadError, match="'revision'.*'base_revision'.*'adapter_revision'"):
        load_faceid_generator("example/sd-base", "example/faceid", revision=commit(1), **kw)


def test_arc2face_and_its_base_each_load_at_their_own_revision(hub_cache):
    kw = {"device": "cpu", "hash_weights": False, "local_files_only": True, "id_dim": ID_DIM}
    gen = load_arc2face_generator("example/sd-base", "example/arc2face",
                                  base_revision=commit(1), arc2face_revision=commit(3), **kw)
    own = UNet2DConditionModel.from_pretrained(
        hub_cache / "models--example--arc2face" / "snapshots" / commit(3) / "arc2face")
    assert torch.equal(gen.pipe.unet.conv_in.weight, own.conv_in.weight)
    with pytest.raises(GeneratorLoadError, match="Arc2Face UNet/encoder from example/arc2face"):
        load_arc2face_generator("example/sd-base", "example/arc2face",
                                base_revision=commit(1), arc2face_revision=commit(1), **kw)
    with pytest.raises(GeneratorLoadError, match="'base_revision'.*'arc2face_revision'"):
        load_arc2face_generator("example/sd-base", "example/arc2face", revision=commit(3), **kw)
