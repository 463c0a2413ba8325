"""Diffusion backends on tiny random models saved in the real folder layout.

Components are built in code the way diffusers' own tests do (``get_dummy_components``: a UNet
with block_out_channels (32, 64), a 5-layer CLIP text encoder of width 32, a 2-block VAE), saved
with ``save_pretrained``, and loaded back only through ``from_pretrained`` and
``load_ip_adapter(..., image_encoder_folder=None)``. The IP-Adapter FaceID checkpoint is written
in the layout of the real ``ip-adapter-faceid_sd15.bin`` (``image_proj`` + ``ip_adapter`` dicts).
The tokenizer is a small CLIP BPE built in code: whole-word merges for the words the prompts use,
single characters for the rest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from diffusers import (  # noqa: E402
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

from generator.backends import GeneratorLoadError  # noqa: E402
from generator.diffusion import prompts as P  # noqa: E402
from generator.diffusion.arc2face import load_arc2face_generator  # noqa: E402
from generator.diffusion.batching import (  # noqa: E402
    DiffusionCell,
    GenerationCancelled,
    RenderSettings,
    plan_batches,
    render_cells,
    seeded_latents,
)
from generator.diffusion.faceid import load_faceid_generator  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ID_DIM = 16  # identity width of the tiny adapter (ArcFace: 512)
SIZE = 32  # pixels; latents are 16x16 with the 2-block VAE
STEPS = 2

pytestmark = pytest.mark.filterwarnings(
    "ignore:peft is not installed", "ignore::FutureWarning", "ignore::DeprecationWarning")


# --- tiny components ---------------------------------------------------------------------------

def tiny_tokenizer() -> CLIPTokenizer:
    words = set(" ".join([
        P.FRAMING, P.ARC2FACE_PROMPT, "a photo of an person woman man with skin monochrome lowres "
        "bad anatomy worst quality low", *P.GENDER_NOUNS.values(), *P.AGE_PHRASES.values(),
        *P.SKIN_PHRASES.values(),
        *(p for levels in P.PROMPT_FACTORS.values() for p in levels.values())]).replace(",", " ")
        .split())
    chars = [chr(i) for i in range(33, 127)]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges: list[tuple[str, str]] = []
    for word in sorted(words):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            if pair not in merges:
                merges.append(pair)
            vocab.setdefault(pair[0] + pair[1], len(vocab))
            pieces = [pair[0] + pair[1]] + pieces[2:]
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def tiny_text_encoder(tokenizer: CLIPTokenizer, seed: int) -> CLIPTextModel:
    torch.manual_seed(seed)
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"), eos_token_id=eos,
        pad_token_id=eos, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-5,
        num_attention_heads=4, num_hidden_layers=5, vocab_size=len(tokenizer.get_vocab())))


def tiny_unet(seed: int) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=16, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32)


def tiny_sd_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    vae = AutoencoderKL(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(
        vae=vae, text_encoder=tiny_text_encoder(tokenizer, seed + 1), tokenizer=tokenizer,
        unet=tiny_unet(seed + 2), scheduler=scheduler, safety_checker=None,
        feature_extractor=None, image_encoder=None, requires_safety_checker=False)


def faceid_state_dict(unet: torch.nn.Module, id_dim: int, *, mult: int = 2, num_tokens: int = 4,
                      lora_rank: int | None = None, seed: int = 0) -> dict[str, dict]:
    """A random IP-Adapter FaceID checkpoint in the layout of ip-adapter-faceid_sd15.bin.

    ``image_proj``: the MLPProjModel of the FaceID code (``proj.0`` Linear(D, D*mult), GELU,
    ``proj.2`` Linear(D*mult, cross*num_tokens), ``norm`` LayerNorm(cross)). ``ip_adapter``:
    for the k-th attention processor of ``unet.attn_processors`` (attn1, attn2, attn1, ...),
    cross-attention (attn2) layers get ``{k}.to_k_ip.weight``/``{k}.to_v_ip.weight`` shaped like
    that layer's ``to_k``; with ``lora_rank`` every layer also gets the FaceID LoRA keys.
    Shapes come from the modules themselves, not from diffusers' converter.
    """
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(shape, generator=g) * scale

    cross = unet.config.cross_attention_dim
    image_proj = {
        "proj.0.weight": rand(id_dim * mult, id_dim), "proj.0.bias": rand(id_dim * mult),
        "proj.2.weight": rand(cross * num_tokens, id_dim * mult),
        "proj.2.bias": rand(cross * num_tokens),
        "norm.weight": 1 + rand(cross, scale=0.05), "norm.bias": rand(cross, scale=0.05)}
    ip_adapter: dict[str, torch.Tensor] = {}
    for k, name in enumerate(unet.attn_processors):
        attn = unet.get_submodule(name.removesuffix(".processor"))
        hidden, kv_in = attn.to_k.weight.shape[0], attn.to_k.weight.shape[1]
        if name.endswith("attn2.processor"):
            ip_adapter[f"{k}.to_k_ip.weight"] = rand(hidden, kv_in)
            ip_adapter[f"{k}.to_v_ip.weight"] = rand(hidden, kv_in)
        if lora_rank:
            for proj, fan_in in (("to_q", hidden), ("to_k", kv_in), ("to_v", kv_in),
                                 ("to_out", hidden)):
                ip_adapter[f"{k}.{proj}_lora.down.weight"] = rand(lora_rank, fan_in)
                ip_adapter[f"{k}.{proj}_lora.up.weight"] = rand(hidden, lora_rank)
    return {"image_proj": image_proj, "ip_adapter": ip_adapter}


def save_adapter(state: dict[str, dict], folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if name.endswith(".safetensors"):
        from safetensors.torch import save_file

        flat = {f"{part}.{k}": v.contiguous() for part, d in state.items() for k, v in d.items()}
        save_file(flat, str(folder / name))
    else:
        torch.save(state, folder / name)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("diffusion-models")
    pipe = tiny_sd_pipeline()
    pipe.save_pretrained(root / "sd")
    state = faceid_state_dict(pipe.unet, ID_DIM)
    save_adapter(state, root / "faceid", "ip-adapter-faceid_tiny.bin")
    save_adapter(state, root / "faceid", "ip-adapter-faceid_tiny.safetensors")
    save_adapter(faceid_state_dict(pipe.unet, ID_DIM, seed=1), root / "faceid",
                 "other-adapter.bin")
    save_adapter(faceid_state_dict(pipe.unet, ID_DIM, lora_rank=4), root / "faceid",
                 "with-lora.bin")
    # An adapter for a UNet with another cross-attention width (as an SDXL file on SD 1.5).
    wide = UNet2DConditionModel(**{**dict(pipe.unet.config), "cross_attention_dim": 48})
    save_adapter(faceid_state_dict(wide, ID_DIM), root / "faceid", "wrong-width.bin")
    # Arc2Face hub layout: the fine-tuned UNet and text encoder in their own subfolders.
    tokenizer = tiny_tokenizer()
    tiny_unet(seed=10).save_pretrained(root / "arc2face" / "arc2face")
    tiny_text_encoder(tokenizer, seed=11).save_pretrained(root / "arc2face" / "encoder")
    return {"root": root, "sd": root / "sd", "faceid": root / "faceid",
            "arc2face": root / "arc2face"}


@pytest.fixture(scope="module")
def faceid(models):
    return load_faceid_generator(models["sd"], models["faceid"],
                                 weight_name="ip-adapter-faceid_tiny.bin", device="cpu")


@pytest.fixture(scope="module")
def arc2face(models):
    return load_arc2face_generator(models["sd"], models["arc2face"], device="cpu", id_dim=ID_DIM)


def identities(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, ID_DIM)).astype(np.float32)


def render(gen, ids, prompts, seeds, **kw):
    kw = {"steps": STEPS, "guidance_scale": 5.0, "height": SIZE, "width": SIZE, **kw}
    return gen.render(ids, prompts, seeds, **kw)


WOMAN = {"perceived_gender": "female", "age_band": "50_plus", "skin_tone": "darker"}
MAN = {"perceived_gender": "male", "age_band": "under_30", "skin_tone": "lighter"}


# --- prompts (no torch needed) ------------------------------------------------------------------

def test_an_edit_changes_exactly_one_slot_of_the_prompt():
    base = P.prompt_slots(WOMAN)
    for factor, levels in P.PROMPT_FACTORS.items():
        for level in levels:
            slots = P.prompt_slots(WOMAN, (factor, level))
            changed = [s for s in P.SLOTS if slots[s] != base[s]]
            assert changed == ([] if level == P.BASELINE_LEVELS[factor] else [factor])
    assert P.variant_prompt(WOMAN, ("expression", "smiling")) == P.anchor_prompt(WOMAN).replace(
        "neutral expression", "smiling")
    assert P.variant_prompt(WOMAN, ("accessories", "glasses")).endswith(
        "soft even lighting, wearing glasses, " + P.FRAMING)
    assert "glasses" not in P.anchor_prompt(WOMAN)


def test_group_anchor_names_every_axis_and_every_level_has_a_phrase():
    assert P.anchor_prompt(WOMAN).startswith("a photo of a 65-year-old woman with dark skin, ")
    assert P.subject_phrase({"perceived_gender": "male"}) == "a photo of a man"
    assert P.subject_phrase({}) == "a photo of a person"
    from generator.config import GROUP_AXES

    tables = {"perceived_gender": P.GENDER_NOUNS, "age_band": P.AGE_PHRASES,
              "skin_tone": P.SKIN_PHRASES}
    for axis, levels in GROUP_AXES.items():
        assert set(levels) == set(tables[axis]), axis


def test_prompts_reject_unknown_axes_levels_and_factors():
    with pytest.raises(ValueError, match="unknown group axis 'hair'"):
        P.anchor_prompt({"hair": "red"})
    with pytest.raises(ValueError, match="unknown level 'teen' for axis 'age_band'"):
        P.anchor_prompt({"age_band": "teen"})
    with pytest.raises(ValueError, match="unknown prompt factor 'blur'"):
        P.variant_prompt(WOMAN, ("blur", "3"))
    with pytest.raises(ValueError, match="unknown level 'grin' for prompt factor 'expression'"):
        P.variant_prompt(WOMAN, ("expression", "grin"))


def test_arc2face_prompt_keeps_the_training_prompt_as_baseline():
    assert P.arc2face_prompt() == "photo of a id person"
    assert P.arc2face_prompt(("pose", "frontal")) == "photo of a id person"
    assert P.arc2face_prompt(("expression", "smiling")) == "photo of a id person, smiling"


def test_importing_the_package_and_prompts_does_not_import_torch():
    code = ("import sys, generator.diffusion as d; d.variant_prompt({}, ('pose', 'left'));"
            "d.plan_batches([d.DiffusionCell('a', 0, 'p', 1)], 4);"
            "print('torch' in sys.modules, 'diffusers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


# --- batching -----------------------------------------------------------------------------------

def test_plan_batches_groups_by_settings_and_keeps_order():
    fast = RenderSettings(steps=2, height=32, width=32)
    cells = [DiffusionCell(f"c{i}", i % 2, "p", i, fast if i % 3 else RenderSettings())
             for i in range(7)]
    plan = plan_batches(cells, 2)
    assert [[c.key for c in b] for b in plan] == [["c0", "c3"], ["c6"], ["c1", "c2"],
                                                  ["c4", "c5"]]
    assert plan == plan_batches(cells, 2)
    with pytest.raises(ValueError, match="unique"):
        plan_batches(cells + cells[:1], 2)


def test_seeded_latents_match_what_diffusers_draws_for_a_cpu_generator():
    from diffusers.utils.torch_utils import randn_tensor

    latents, _ = seeded_latents([7, 8], (4, 16, 16))
    expected = randn_tensor((2, 4, 16, 16), generator=[torch.Generator().manual_seed(s)
                                                       for s in (7, 8)], dtype=torch.float32)
    assert torch.equal(latents, expected)
    assert torch.equal(seeded_latents([8], (4, 16, 16))[0][0], latents[1])


# --- IP-Adapter FaceID --------------------------------------------------------------------------

def test_faceid_loads_through_load_ip_adapter_and_renders_uint8_images(faceid):
    proj = faceid.pipe.unet.encoder_hid_proj.image_projection_layers[0]
    assert type(proj).__name__ == "IPAdapterFaceIDImageProjection"
    assert faceid.id_dim == ID_DIM and faceid.pipe.image_encoder is None
    images = render(faceid, identities(2), [P.anchor_prompt(WOMAN), P.anchor_prompt(MAN)], [1, 2])
    assert images.shape == (2, SIZE, SIZE, 3) and images.dtype == np.uint8
    assert images.std() > 0
    default = faceid.render(identities(1), ["a photo of a man"], [3], steps=1)
    assert default.shape == (1, 32, 32, 3)  # sample_size 16 x VAE factor 2
    unguided = render(faceid, identities(2), ["a photo of a man"] * 2, [3, 4], guidance_scale=1.0)
    assert unguided.shape == (2, SIZE, SIZE, 3)  # no negative half without guidance
    recipe = json.loads(json.dumps(faceid.recipe()))  # serialisable, for the image's recipe
    assert recipe["backend"] == "diffusion-ip-adapter-faceid"
    assert recipe["scheduler"] == "DDIMScheduler" and recipe["lora_applied"] is False


def test_weights_hash_is_stable_and_tracks_the_adapter(models, faceid):
    again = load_faceid_generator(models["sd"], models["faceid"], device="cpu",
                                  weight_name="ip-adapter-faceid_tiny.safetensors")
    other = load_faceid_generator(models["sd"], models["faceid"], device="cpu",
                                  weight_name="other-adapter.bin")
    assert len(faceid.weights_sha256) == 64
    assert again.weights_sha256 == faceid.weights_sha256  # same tensors, other file format
    assert other.weights_sha256 != faceid.weights_sha256


def test_same_seeds_give_byte_identical_images(faceid):
    ids, prompts = identities(2), [P.anchor_prompt(WOMAN), P.anchor_prompt(MAN)]
    a = render(faceid, ids, prompts, [11, 12])
    b = render(faceid, ids, prompts, [11, 12])
    assert np.array_equal(a, b)
    c = render(faceid, ids, prompts, [11, 13])
    assert np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])


@contextlib.contextmanager
def batch_dependent_rounding(gen, size: float = 1e-3):
    """Make the UNet's output depend on the row's position in its call, as a matrix kernel's
    rounding may (seen on an Intel CPU: two equal rows of one batch 5.5e-6 apart): row j of
    every UNet call gets ``size * j`` added. A row rendered in its own call always sits at the
    same positions (negative branch 0, conditional branch 1); in a shared call it does not."""

    def hook(module, args, output):
        sample = output[0] if isinstance(output, tuple) else output.sample
        bump = size * torch.arange(sample.shape[0], dtype=sample.dtype).reshape(-1, 1, 1, 1)
        return (sample + bump, *output[1:]) if isinstance(output, tuple) else type(output)(
            sample=sample + bump)

    handle = gen.pipe.unet.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def test_a_cell_renders_the_same_bytes_alone_or_in_any_batch(faceid):
    """On the CPU each row has its own pipeline call: its latents and pixels are those of the
    row rendered alone, bit for bit, at any position of any batch, even when the kernels'
    rounding depends on the batch (simulated)."""
    assert faceid.one_row_per_call and faceid.recipe()["one_row_per_call"] is True
    ids = identities(3, seed=5)
    prompts = [P.anchor_prompt(WOMAN), P.variant_prompt(MAN, ("pose", "left")),
               P.variant_prompt(WOMAN, ("expression", "smiling"))]
    seeds = [21, 22, 23]
    with batch_dependent_rounding(faceid):
        batch = latents(faceid, ids, prompts, seeds)
        batch_images = render(faceid, ids, prompts, seeds)
        reverse = render(faceid, ids[::-1], prompts[::-1], seeds[::-1])[::-1]
        for i in range(3):
            alone = latents(faceid, ids[i:i + 1], prompts[i:i + 1], seeds[i:i + 1])
            assert torch.equal(alone[0], batch[i])
            image = render(faceid, ids[i:i + 1], prompts[i:i + 1], seeds[i:i + 1])[0]
            assert np.array_equal(image, batch_images[i])
            assert np.array_equal(reverse[i], batch_images[i])


def test_batched_calls_match_rows_alone_within_rounding(faceid):
    """With one call per batch (the GPU default) a row matches its rendering alone to within
    rounding: final latents to 1e-4 (measured about 1e-6 on CPUs), pixels to one grey level.
    The simulated position-dependent rounding shows that rows do share the call there."""
    shared = dataclasses.replace(faceid, one_row_per_call=False)
    ids = identities(3, seed=5)
    prompts = [P.anchor_prompt(WOMAN), P.variant_prompt(MAN, ("pose", "left")),
               P.variant_prompt(WOMAN, ("expression", "smiling"))]
    seeds = [21, 22, 23]
    batch = latents(shared, ids, prompts, seeds)
    batch_images = render(shared, ids, prompts, seeds)
    for i in range(3):
        alone = latents(shared, ids[i:i + 1], prompts[i:i + 1], seeds[i:i + 1])
        torch.testing.assert_close(alone[0], batch[i], rtol=0, atol=1e-4)
        image = render(shared, ids[i:i + 1], prompts[i:i + 1], seeds[i:i + 1])[0]
        assert np.abs(image.astype(int) - batch_images[i]).max() <= 1
    with batch_dependent_rounding(shared):
        moved = latents(shared, ids, prompts, seeds)
        alone = latents(shared, ids[2:], prompts[2:], seeds[2:])
    assert not torch.equal(moved[2], alone[0])  # row 2 sat at positions 2 and 5 of one call


def test_arc2face_rows_do_not_depend_on_the_batch(arc2face):
    assert arc2face.one_row_per_call
    ids = identities(3, seed=7)
    prompts = [P.arc2face_prompt(), P.arc2face_prompt(("pose", "left")), P.arc2face_prompt()]
    with batch_dependent_rounding(arc2face):
        batch = render(arc2face, ids, prompts, [1, 2, 3], guidance_scale=3.0)
        for i in range(3):
            alone = render(arc2face, ids[i:i + 1], prompts[i:i + 1], [i + 1], guidance_scale=3.0)
            assert np.array_equal(alone[0], batch[i])


def latents(gen, ids, prompts, seeds, guidance_scale=5.0):
    return gen.final_latents(ids, prompts, seeds, steps=STEPS, guidance_scale=guidance_scale,
                             height=SIZE, width=SIZE)


def changed(a, b) -> bool:
    """A real change: mean |difference| of final latents far above batch rounding (~1e-6)."""
    return float((a - b).abs().mean()) > 1e-3


def test_changing_the_prompt_phrase_changes_the_image_and_the_same_prompt_reproduces_it(faceid):
    ids = np.repeat(identities(1, seed=3), 3, axis=0)
    base, smiling = P.anchor_prompt(WOMAN), P.variant_prompt(WOMAN, ("expression", "smiling"))
    images = render(faceid, ids, [base, smiling, base], [5, 5, 5])
    assert np.array_equal(images[0], images[2])  # one call per row: equal rows, equal bytes
    assert not np.array_equal(images[0], images[1])
    lat = latents(faceid, ids, [base, smiling, base], [5, 5, 5])
    assert changed(lat[0], lat[1])
    assert torch.equal(lat[0], lat[2])


def test_the_identity_embedding_reaches_the_unet(faceid):
    prompt = [P.anchor_prompt(MAN)] * 3
    ids = np.concatenate([identities(2, seed=9), np.zeros((1, ID_DIM), np.float32)])
    images = render(faceid, ids, prompt, [4, 4, 4])
    lat = latents(faceid, ids, prompt, [4, 4, 4])
    assert changed(lat[0], lat[1]) and not np.array_equal(images[0], images[1])  # other identity
    assert changed(lat[0], lat[2]) and not np.array_equal(images[0], images[2])  # no identity
    # Rows are L2-normalised like InsightFace's normed_embedding: scale does not matter.
    scaled = render(faceid, ids[:1] * 25.0, prompt[:1], [4])
    assert np.array_equal(scaled[0], images[0])
    # With the adapter's scale at 0 the identity has no effect: the change came through it.
    faceid.pipe.set_ip_adapter_scale(0.0)
    try:
        off = render(faceid, ids, prompt, [4, 4, 4])
    finally:
        faceid.pipe.set_ip_adapter_scale(faceid.ip_adapter_scale)
    assert np.array_equal(off[0], off[1]) and np.array_equal(off[0], off[2])


def test_step_callback_reports_every_step_and_cancellation_stops_early(faceid):
    seen: list[tuple[int, int]] = []
    render(faceid, identities(1), ["a photo of a man"], [1], steps=3, callback=lambda s, t:
           seen.append((s, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]

    seen.clear()
    with pytest.raises(GenerationCancelled) as info:
        render(faceid, identities(1), ["a photo of a man"], [1], steps=3,
               callback=lambda s, t: seen.append((s, t)), should_stop=lambda: len(seen) >= 1)
    assert (info.value.step, info.value.total) == (1, 3)
    assert seen == [(1, 3)]
    with pytest.raises(GenerationCancelled):
        render(faceid, identities(1), ["a photo of a man"], [1], should_stop=lambda: True)
    # The pipeline is left usable.
    assert render(faceid, identities(1), ["a photo of a man"], [1]).shape == (1, SIZE, SIZE, 3)


def test_render_cells_yields_each_batch_as_it_finishes(faceid):
    ids = identities(2, seed=2)
    settings = RenderSettings(steps=STEPS, guidance_scale=5.0, height=SIZE, width=SIZE)
    cells = [DiffusionCell(f"id{i}/{e}", i, P.variant_prompt(WOMAN, ("expression", e)), 100 + i,
                           settings) for i in range(2) for e in ("neutral", "smiling")]
    # Progress counts image-steps (4 cells x 2 steps): one call per row reports every step of
    # every row; one call for a batch of 3 reports 3 image-steps per step.
    progress: list[tuple[int, int]] = []
    out = dict((c.key, img) for c, img in render_cells(
        faceid, cells, ids, max_batch_size=3, on_progress=lambda s, t: progress.append((s, t))))
    assert list(out) == [c.key for c in cells]
    assert progress == [(k, 8) for k in range(1, 9)]
    direct = render(faceid, ids[[1]], [cells[3].prompt], [101])
    assert np.array_equal(direct[0], out["id1/smiling"])
    progress.clear()
    shared = dataclasses.replace(faceid, one_row_per_call=False)
    list(render_cells(shared, cells, ids, max_batch_size=3,
                      on_progress=lambda s, t: progress.append((s, t))))
    assert progress == [(3, 8), (6, 8), (7, 8), (8, 8)]

    done: list[str] = []
    with pytest.raises(GenerationCancelled) as info:
        for cell, _ in render_cells(faceid, cells, ids, max_batch_size=3,
                                    should_stop=lambda: len(done) >= 3):
            done.append(cell.key)
    assert done == [c.key for c in cells[:3]] and (info.value.step, info.value.total) == (6, 8)
    seen: list[tuple[int, int]] = []
    with pytest.raises(GenerationCancelled) as info:  # stopped inside the second row's call
        list(render_cells(faceid, cells[:3], ids, max_batch_size=3,
                          on_progress=lambda s, t: seen.append((s, t)),
                          should_stop=lambda: len(seen) >= 3))
    assert seen == [(1, 6), (2, 6), (3, 6)] and (info.value.step, info.value.total) == (3, 6)


def test_the_tiny_adapter_layout_is_the_sd15_faceid_layout():
    """On the real SD 1.5 UNet architecture (built on the meta device, no weights), the helper
    yields the keys of ip-adapter-faceid_sd15.bin: to_k_ip/to_v_ip for processors 1, 3, ..., 31,
    shaped (320|640|1280, 768), and an MLP 512 -> 1024 -> 4 x 768."""
    config = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                  cross_attention_dim=768, attention_head_dim=8,
                  down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                  up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, sample_size=64)
    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
        state = faceid_state_dict(unet, 512, lora_rank=128)
    ip = state["ip_adapter"]
    assert sorted({int(k.split(".")[0]) for k in ip if "_ip." in k}) == list(range(1, 32, 2))
    assert tuple(ip["1.to_k_ip.weight"].shape) == (320, 768)
    assert tuple(ip["15.to_k_ip.weight"].shape) == (1280, 768)  # up_blocks.1, first attn2
    assert tuple(ip["31.to_k_ip.weight"].shape) == (1280, 768)  # mid block comes last
    assert tuple(ip["0.to_q_lora.down.weight"].shape) == (128, 320)
    proj = state["image_proj"]
    assert tuple(proj["proj.0.weight"].shape) == (1024, 512)
    assert tuple(proj["proj.2.weight"].shape) == (3072, 1024)
    assert tuple(proj["norm.weight"].shape) == (768,)


def test_loading_errors_name_the_problem(models):
    with pytest.raises(GeneratorLoadError, match="cannot load IP-Adapter FaceID 'missing.bin'"):
        load_faceid_generator(models["sd"], models["faceid"], weight_name="missing.bin",
                              device="cpu", hash_weights=False)
    with pytest.raises(GeneratorLoadError, match="cross_attention_dim 32"):
        load_faceid_generator(models["sd"], models["faceid"], weight_name="wrong-width.bin",
                              device="cpu", hash_weights=False)
    with pytest.raises(GeneratorLoadError, match="model_index.json"):
        load_faceid_generator(models["root"] / "nowhere", models["faceid"], device="cpu",
                              weight_name="ip-adapter-faceid_tiny.bin", local_files_only=True)
    with pytest.raises(GeneratorLoadError, match="peft is not installed|no LoRA keys"):
        load_faceid_generator(models["sd"], models["faceid"], device="cpu", require_lora=True,
                              weight_name="ip-adapter-faceid_tiny.bin", hash_weights=False)


def test_the_faceid_lora_in_the_checkpoint_is_applied_when_peft_is_installed(models, faceid):
    pytest.importorskip("peft", reason="peft not installed: diffusers skips the FaceID LoRA")
    gen = load_faceid_generator(models["sd"], models["faceid"], weight_name="with-lora.bin",
                                device="cpu", require_lora=True)
    assert gen.lora_applied and gen.recipe()["lora_applied"]
    assert gen.weights_sha256 != faceid.weights_sha256
    ids, prompt = identities(1, seed=12), ["a photo of a woman"]
    # Same image projection and to_k_ip/to_v_ip weights; only the LoRA differs.
    assert changed(latents(gen, ids, prompt, [2]), latents(faceid, ids, prompt, [2]))


def test_render_rejects_mismatched_inputs(faceid):
    with pytest.raises(ValueError, match=r"must be \(N, 16\)"):
        render(faceid, np.zeros((1, 8), np.float32), ["x"], [1])
    with pytest.raises(ValueError, match="one prompt and one seed per identity row"):
        render(faceid, identities(2), ["x"], [1, 2])
    with pytest.raises(ValueError, match="multiples of 16"):
        render(faceid, identities(1), ["x"], [1], height=40)


# --- Arc2Face -----------------------------------------------------------------------------------

def test_arc2face_uses_the_unet_and_encoder_from_its_own_folders(models, arc2face):
    own = UNet2DConditionModel.from_pretrained(models["arc2face"], subfolder="arc2face")
    base = UNet2DConditionModel.from_pretrained(models["sd"], subfolder="unet")
    w = "conv_in.weight"
    assert torch.equal(arc2face.pipe.unet.state_dict()[w], own.state_dict()[w])
    assert not torch.equal(arc2face.pipe.unet.state_dict()[w], base.state_dict()[w])
    assert type(arc2face.pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert len(arc2face.weights_sha256) == 64


def test_arc2face_projection_puts_the_identity_into_the_prompt_embedding(arc2face):
    ids = identities(3, seed=4)
    ids[2] = ids[0] * 7.0  # same direction, other length
    prompts = [P.arc2face_prompt()] * 3
    emb = arc2face.project(ids, prompts)
    assert emb.shape == (3, 77, 32)
    assert not torch.allclose(emb[0], emb[1])  # different identities
    torch.testing.assert_close(emb[0], emb[2])  # normalised: same identity
    torch.testing.assert_close(emb[0], arc2face.project(ids[:1], prompts[:1])[0])
    # CLIP's text encoder is causal: tokens before "id" cannot see it, tokens from it on do.
    tok = arc2face.pipe.tokenizer(prompts[0], padding="max_length", max_length=77).input_ids
    pos = tok.index(arc2face.placeholder_token_id())
    torch.testing.assert_close(emb[0, :pos], emb[1, :pos])
    assert not torch.allclose(emb[0, pos], emb[1, pos])
    # The stock encoder is left as it was.
    assert type(arc2face.pipe.text_encoder.get_input_embeddings()).__name__ == "Embedding"


def test_arc2face_projection_matches_token_embeddings_fed_by_hand(arc2face):
    """The Arc2Face repo feeds modified token embeddings as ``inputs_embeds``; do the same by
    hand with the encoder's submodules and compare."""
    te, tok = arc2face.pipe.text_encoder, arc2face.pipe.tokenizer
    ids = identities(1, seed=8)
    input_ids = tok([P.arc2face_prompt()], padding="max_length", max_length=77,
                    return_tensors="pt").input_ids
    with torch.no_grad():
        token_embs = te.get_input_embeddings()(input_ids)
        vec = torch.from_numpy(ids[0] / np.linalg.norm(ids[0]))
        token_embs[input_ids == arc2face.placeholder_token_id()] = torch.nn.functional.pad(
            vec, (0, 32 - ID_DIM))
        hidden = te.embeddings(inputs_embeds=token_embs)
        causal = torch.full((77, 77), float("-inf")).triu(1)[None, None]
        hidden = te.encoder(inputs_embeds=hidden, attention_mask=causal)[0]
        expected = te.final_layer_norm(hidden)
    torch.testing.assert_close(arc2face.project(ids, [P.arc2face_prompt()]), expected)


def test_arc2face_renders_identities_and_prompt_edits(arc2face):
    ids = identities(2, seed=6)
    base, smiling = P.arc2face_prompt(), P.arc2face_prompt(("expression", "smiling"))
    images = render(arc2face, ids[[0, 1, 0, 0]], [base, base, smiling, base], [3, 3, 3, 3],
                    guidance_scale=3.0)
    assert images.shape == (4, SIZE, SIZE, 3) and images.dtype == np.uint8
    assert np.array_equal(images[0], images[3])
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[0], images[2])
    lat = latents(arc2face, ids[[0, 1, 0]], [base, base, smiling], [3, 3, 3], guidance_scale=3.0)
    assert changed(lat[0], lat[1])  # identity
    assert changed(lat[0], lat[2])  # prompt phrase
    alone = render(arc2face, ids[[1]], [base], [3], guidance_scale=3.0)
    assert np.array_equal(alone[0], images[1])
    assert json.loads(json.dumps(arc2face.recipe()))["backend"] == "diffusion-arc2face"


def test_arc2face_refuses_prompts_without_exactly_one_placeholder(arc2face):
    with pytest.raises(ValueError, match="exactly once"):
        arc2face.project(identities(1), ["photo of a person"])
    with pytest.raises(ValueError, match="exactly once"):
        arc2face.project(identities(1), ["photo of a id id person"])
    with pytest.raises(ValueError, match="all zeros"):
        arc2face.project(np.zeros((1, ID_DIM), np.float32))
