"""The IP-Adapter FaceID route on a tiny random SDXL pipeline (two text encoders, text_time
conditioning), built like diffusers' SDXL ``get_dummy_components`` and loaded back through
``StableDiffusionXLPipeline.from_pretrained`` + ``load_ip_adapter``."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import (  # noqa: E402
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection  # noqa: E402

from generator.diffusion import prompts as P  # noqa: E402
from generator.diffusion.faceid import load_faceid_generator  # noqa: E402
from tests.generator.test_diffusion import (  # noqa: E402
    ID_DIM,
    faceid_state_dict,
    identities,
    save_adapter,
    tiny_tokenizer,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:peft is not installed", "ignore::FutureWarning", "ignore::DeprecationWarning")


def tiny_sdxl_pipeline() -> StableDiffusionXLPipeline:
    tokenizer = tiny_tokenizer()
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = CLIPTextConfig(
        bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"), eos_token_id=eos,
        pad_token_id=eos, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-5,
        num_attention_heads=4, num_hidden_layers=5, vocab_size=len(tokenizer.get_vocab()),
        hidden_act="gelu", projection_dim=32)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64)  # 80 = 6 size/crop ids x 8 + pooled 32; 64 = 32 + 32
    torch.manual_seed(1)
    vae = AutoencoderKL(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4)
    torch.manual_seed(2)
    text_encoder = CLIPTextModel(config)
    torch.manual_seed(3)
    text_encoder_2 = CLIPTextModelWithProjection(config)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                       beta_schedule="scaled_linear", timestep_spacing="leading")
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=unet, scheduler=scheduler, image_encoder=None,
        feature_extractor=None)


@pytest.fixture(scope="module")
def sdxl_faceid(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdxl")
    pipe = tiny_sdxl_pipeline()
    pipe.save_pretrained(root / "sdxl")
    save_adapter(faceid_state_dict(pipe.unet, ID_DIM), root / "adapter",
                 "ip-adapter-faceid_sdxl_tiny.bin")
    return load_faceid_generator(root / "sdxl", root / "adapter", device="cpu",
                                 weight_name="ip-adapter-faceid_sdxl_tiny.bin")


def test_sdxl_faceid_renders_one_identity_per_row(sdxl_faceid):
    gen = sdxl_faceid
    assert gen.architecture == "sdxl" and gen.id_dim == ID_DIM
    ids = identities(3, seed=1)
    prompt = P.anchor_prompt({"perceived_gender": "female"})
    kw = {"steps": 2, "guidance_scale": 5.0, "height": 32, "width": 32}
    images = gen.render(ids, [prompt] * 3, [7, 7, 8], **kw)
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8
    lat = gen.final_latents(ids, [prompt] * 3, [7, 7, 8], **kw)
    assert float((lat[0] - lat[1]).abs().mean()) > 1e-3  # identity changes the result
    alone = gen.final_latents(ids[1:2], [prompt], [7], **kw)
    assert gen.one_row_per_call  # on the CPU: each row its own call, the same bytes alone
    assert torch.equal(alone[0], lat[1])
    assert np.array_equal(gen.render(ids[1:2], [prompt], [7], **kw)[0], images[1])
    again = gen.render(ids, [prompt] * 3, [7, 7, 8], **kw)
    assert np.array_equal(images, again)
