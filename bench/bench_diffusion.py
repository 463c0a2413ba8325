"""Diffusion benchmark: SD 1.5 + IP-Adapter FaceID, plain diffusers ``pipe(...)`` against the
project's generation path (``FaceIDGenerator.render``), on a GPU.

What it builds: Stable Diffusion 1.5 at full size with RANDOM weights of the real architecture
(UNet2DConditionModel with block_out_channels (320, 640, 1280, 1280) and cross_attention_dim 768,
the CLIP ViT-L/14 text encoder, the SD VAE, SD 1.5's PNDM scheduler config) and a random
IP-Adapter FaceID checkpoint in the upstream ``ip-adapter-faceid_sd15.bin`` save format: the
``image_proj`` MLP (512 -> 1024 -> 4 x 768 tokens, LayerNorm), ``to_k_ip``/``to_v_ip`` for the 16
cross-attention layers, and the FaceID LoRA at rank 128 on to_q, to_k, to_v and to_out of all 32
attention layers (``{k}.to_q_lora.down.weight`` ...), in float16 as the published file
(48.4 million numbers, 96.7 MB). diffusers applies that LoRA through PEFT (adapter
``faceid_0``), so the timed UNet carries the PEFT LoRA layers that real weights bring; the script
stops if the LoRA was not applied (``--lora-rank 0`` times the adapter without it). Everything
is saved with ``save_pretrained`` / ``torch.save`` into a temporary folder and loaded back through
``load_faceid_generator`` (``from_pretrained`` + ``load_ip_adapter``), so the timed path is the
one a worker runs. Random weights cost the same FLOPs as real ones; the images are noise. Real
weights can be timed instead with ``--base-model`` and ``--adapter`` (ids or folders).

What it times, at 512x512, 25 steps, guidance 7.5, the same scheduler (DPM-Solver++ by default,
``--scheduler pndm`` for the one SD 1.5 ships) and batch sizes 1 and 32:

- ``diffusers``: ``pipe(prompt=[...], negative_prompt=[...], ip_adapter_image_embeds=[(2, 1, 512)],
  generator=[one CPU generator per image], output_type="np")``; diffusers repeats the one
  identity over the batch, so every row uses the same identity.
- ``project``: ``FaceIDGenerator.render(ids (B, 512), prompts, seeds, ...)`` with the same
  identity in every row (its per-row path), per-cell CPU latents, the step callback and the
  uint8 conversion; one pipeline call per batch as a GPU worker runs it (``--one-row-per-call``
  times one call per row, the CPU default, instead).

After the timings it renders the first cell alone and in the largest batch through the project's
path and prints how far apart the two are (final latents, and pixels in grey levels): zero with
one call per row; with one call per batch, the rounding that batching brings on this device.
``--json PATH`` writes the figures.

Each configuration runs once untimed (warm-up; with ``--compile`` that run compiles, and the
compiled UNet is reused for every later run of that batch size), then ``--repeats`` timed runs
between ``torch.cuda.synchronize()`` calls; it prints the median seconds per batch, seconds per
image and images per second. The final latents of both paths are compared (fp16 tolerance).

Options tried, each a flag so runs can be compared: fp16 (default) or bf16; ``--channels-last``
(UNet memory format); SDPA attention (diffusers' default ``AttnProcessor2_0`` and
``IPAdapterAttnProcessor2_0`` call ``F.scaled_dot_product_attention``; the script prints the SDPA
backends enabled); ``--compile`` (``unet.compile(mode="max-autotune")``, which also captures
CUDA graphs; autotuning takes minutes per batch size); VAE tiling and slicing are switched off
(they save memory, not time, at 512 px).

    .venv/bin/python bench/bench_diffusion.py                    # on a GPU worker
    .venv/bin/python bench/bench_diffusion.py --compile --channels-last
    .venv/bin/python bench/bench_diffusion.py --smoke --allow-cpu   # tiny models, CPU, seconds
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = ("a photo of a 40-year-old woman with dark skin, neutral expression, looking straight at "
          "the camera, soft even lighting, head and shoulders portrait, plain grey background, "
          "sharp focus")

# Stable Diffusion 1.5 component configs (the published unet/, vae/ and text_encoder/ configs).
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, norm_num_groups=32,
    norm_eps=1e-5, act_fn="silu", downsample_padding=1, flip_sin_to_cos=True, freq_shift=0,
    mid_block_scale_factor=1, center_input_sample=False)
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32,
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512, scaling_factor=0.18215,
    act_fn="silu")
CLIP_VIT_L14_TEXT = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
    layer_norm_eps=1e-5, projection_dim=768)
SD15_SCHEDULER = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
    set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1)
# Tiny components in the style of diffusers' get_dummy_components, for --smoke.
TINY_UNET = dict(
    sample_size=32, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 64),
    cross_attention_dim=32, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
TINY_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
TINY_TEXT = dict(
    hidden_size=32, intermediate_size=37, num_hidden_layers=5, num_attention_heads=4,
    max_position_embeddings=77, layer_norm_eps=1e-5)


def synthetic_tokenizer(words: str) -> Any:
    """A CLIP BPE tokenizer built in code (no download): whole-word merges for ``words``,
    single characters for anything else; ``<|endoftext|>`` is the highest id, as in CLIP."""
    from transformers import CLIPTokenizer

    chars = [chr(i) for i in range(33, 127)]
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    merges: list[tuple[str, str]] = []
    for word in sorted(set(words.replace(",", " ").split())):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            pair = (pieces[0], pieces[1])
            if pair not in merges:
                merges.append(pair)
            vocab.setdefault(pair[0] + pair[1], len(vocab))
            pieces = [pair[0] + pair[1]] + pieces[2:]
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def faceid_checkpoint(unet: Any, id_dim: int, seed: int = 0, lora_rank: int = 128,
                      dtype: Any = None) -> dict[str, dict]:
    """A random FaceID checkpoint in the upstream ``ip-adapter-faceid_sd15.bin`` save format for
    ``unet``: ``image_proj`` (the FaceID MLP) and ``ip_adapter``, which holds, for the k-th
    attention processor of ``unet.attn_processors`` (attn1, attn2, attn1, ...), the FaceID LoRA
    ``{k}.{to_q,to_k,to_v,to_out}_lora.{down,up}.weight`` (down ``(rank, in)``, up
    ``(out, rank)``, shaped from that layer's projections) when ``lora_rank`` > 0, and for
    cross-attention processors ``{k}.to_k_ip.weight``/``{k}.to_v_ip.weight`` shaped like ``to_k``.
    Tensors in ``dtype`` (float16, as the published file, by default)."""
    import torch

    dtype = dtype or torch.float16
    g = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim

    def rand(*shape: int) -> torch.Tensor:
        return (torch.randn(shape, generator=g) * 0.02).to(dtype)

    image_proj = {"proj.0.weight": rand(2 * id_dim, id_dim), "proj.0.bias": rand(2 * id_dim),
                  "proj.2.weight": rand(4 * cross, 2 * id_dim), "proj.2.bias": rand(4 * cross),
                  "norm.weight": torch.ones(cross, dtype=dtype),
                  "norm.bias": torch.zeros(cross, dtype=dtype)}
    ip_adapter = {}
    for k, name in enumerate(unet.attn_processors):
        attn = unet.get_submodule(name.removesuffix(".processor"))
        if lora_rank:
            for proj, layer in (("to_q", attn.to_q), ("to_k", attn.to_k), ("to_v", attn.to_v),
                                ("to_out", attn.to_out[0])):
                out_features, in_features = layer.weight.shape
                ip_adapter[f"{k}.{proj}_lora.down.weight"] = rand(lora_rank, in_features)
                ip_adapter[f"{k}.{proj}_lora.up.weight"] = rand(out_features, lora_rank)
        if name.endswith("attn2.processor"):
            shape = attn.to_k.weight.shape
            ip_adapter[f"{k}.to_k_ip.weight"] = rand(*shape)
            ip_adapter[f"{k}.to_v_ip.weight"] = rand(*shape)
    return {"image_proj": image_proj, "ip_adapter": ip_adapter}


def lora_layer_count(unet: Any) -> int:
    """Linear layers of ``unet`` that PEFT has wrapped with a LoRA (``lora_A`` present)."""
    return sum(1 for m in unet.modules() if hasattr(m, "lora_A") and len(m.lora_A) > 0)


def build_random_models(folder: Path, smoke: bool, device: str, id_dim: int,
                        lora_rank: int = 128) -> tuple[Path, Path]:
    """Save a random SD 1.5 (or tiny) pipeline and FaceID checkpoint under ``folder``."""
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    t = time.perf_counter()
    tokenizer = synthetic_tokenizer(PROMPT + " monochrome lowres bad anatomy worst quality low")
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text = dict(TINY_TEXT, vocab_size=len(tokenizer.get_vocab())) if smoke else CLIP_VIT_L14_TEXT
    torch.manual_seed(0)
    # Initialise on the GPU when there is one (860M parameters initialise slowly on a CPU).
    with torch.device(device):
        unet = UNet2DConditionModel(**(TINY_UNET if smoke else SD15_UNET))
        vae = AutoencoderKL(**(TINY_VAE if smoke else SD15_VAE))
        text_encoder = CLIPTextModel(CLIPTextConfig(
            **text, bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"),
            eos_token_id=eos, pad_token_id=eos))
    dtype = torch.float32 if smoke else torch.float16
    pipe = StableDiffusionPipeline(
        unet=unet.to(dtype), vae=vae.to(dtype), text_encoder=text_encoder.to(dtype),
        tokenizer=tokenizer, scheduler=PNDMScheduler(**SD15_SCHEDULER), safety_checker=None,
        feature_extractor=None, image_encoder=None, requires_safety_checker=False)
    pipe.save_pretrained(folder / "sd15-random")
    (folder / "faceid").mkdir()
    checkpoint = folder / "faceid" / "ip-adapter-faceid.bin"
    torch.save(faceid_checkpoint(pipe.unet, id_dim, lora_rank=lora_rank), checkpoint)
    n = sum(p.numel() for p in unet.parameters()) / 1e6
    print(f"built random {'tiny' if smoke else 'SD 1.5'} pipeline (UNet {n:.0f}M parameters) "
          f"and FaceID checkpoint ({checkpoint.stat().st_size / 1e6:.1f} MB, LoRA rank "
          f"{lora_rank or 'none'}) in {time.perf_counter() - t:.1f} s")
    del pipe, unet, vae, text_encoder
    return folder / "sd15-random", folder / "faceid"


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Any, repeats: int, device: str) -> list[float]:
    fn()  # warm-up (and compilation with --compile)
    synchronize(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny random components, 64 px, 2 steps, batches 1 and 4")
    parser.add_argument("--allow-cpu", action="store_true",
                        help="let --smoke run without a GPU (timings then mean nothing)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--scheduler", default="dpm++2m", choices=["dpm++2m", "pndm", "ddim"])
    parser.add_argument("--precision", default="fp16", choices=["fp16", "bf16"])
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true",
                        help='unet.compile(mode="max-autotune") (includes CUDA graphs)')
    parser.add_argument("--base-model", help="time real weights: SD 1.5 hub id or folder")
    parser.add_argument("--adapter", help="with --base-model: FaceID repo or folder")
    parser.add_argument("--weight-name", default="ip-adapter-faceid_sd15.bin")
    parser.add_argument("--workdir", help="where to save the random models (default: a temp dir)")
    parser.add_argument("--lora-rank", type=int, default=128,
                        help="rank of the FaceID LoRA in the random adapter (the published "
                             "files: 128; 0: no LoRA)")
    parser.add_argument("--one-row-per-call", action="store_true",
                        help="time the project's path with one pipeline call per row (the CPU "
                             "default) instead of one call per batch (the GPU default)")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()

    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not (args.smoke and args.allow_cpu):
        print("bench_diffusion: no CUDA GPU found. This benchmark measures GPU throughput of "
              "SD 1.5 at 512x512; run it on a GPU worker. To check that the script works on "
              "this machine, run a smoke test: --smoke --allow-cpu", file=sys.stderr)
        return 2
    device = "cuda" if cuda else "cpu"
    batch_sizes = args.batch_sizes or ([1, 4] if args.smoke else [1, 32])
    steps = args.steps or (2 if args.smoke else 25)
    size = args.size or (64 if args.smoke else 512)
    precision = "fp32" if device == "cpu" else args.precision

    import warnings

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for lib in (diffusers_logging, transformers_logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    warnings.filterwarnings("ignore", message="peft is not installed")
    from generator.diffusion.faceid import load_faceid_generator

    print(f"torch {torch.__version__}; device {torch.cuda.get_device_name() if cuda else 'cpu'}; "
          f"precision {precision}; {size}x{size}, {steps} steps, guidance {args.guidance}, "
          f"scheduler {args.scheduler}; batches {batch_sizes}; {args.repeats} timed runs each")
    if cuda:
        b = torch.backends.cuda
        print(f"SDPA backends enabled: flash {b.flash_sdp_enabled()}, memory-efficient "
              f"{b.mem_efficient_sdp_enabled()}, cuDNN {b.cudnn_sdp_enabled()}, math "
              f"{b.math_sdp_enabled()}")

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        if args.base_model:
            base, adapter, weight_name, id_dim = args.base_model, args.adapter, args.weight_name, 512
            if not adapter:
                parser.error("--base-model needs --adapter")
        else:
            id_dim = 16 if args.smoke else 512
            base, adapter = build_random_models(Path(tmp), args.smoke, device, id_dim,
                                                args.lora_rank)
            weight_name = "ip-adapter-faceid.bin"
        t = time.perf_counter()
        gen = load_faceid_generator(base, adapter, weight_name=weight_name, device=device,
                                    precision=precision, scheduler=args.scheduler,
                                    local_files_only=not args.base_model,
                                    one_row_per_call=args.one_row_per_call)
        pipe = gen.pipe
        processors = sorted({type(p).__name__ for p in pipe.unet.attn_processors.values()})
        lora_layers = lora_layer_count(pipe.unet)
        print(f"loaded through from_pretrained + load_ip_adapter in "
              f"{time.perf_counter() - t:.1f} s; weights sha256 {gen.weights_sha256[:16]}...; "
              f"FaceID LoRA applied: {gen.lora_applied} ({lora_layers} PEFT LoRA layers); "
              f"attention processors: {', '.join(processors)}; one pipeline call per "
              f"{'row' if gen.one_row_per_call else 'batch'}")
        if not args.base_model and args.lora_rank and not gen.lora_applied:
            print("bench_diffusion: the FaceID LoRA in the adapter was not applied (is peft "
                  "installed?); the timings would leave out the LoRA layers real weights bring",
                  file=sys.stderr)
            return 3
        pipe.vae.disable_tiling()
        pipe.vae.disable_slicing()
        if args.channels_last:
            pipe.unet.to(memory_format=torch.channels_last)
        if args.compile:
            pipe.unet.compile(mode="max-autotune", fullgraph=False)

        identity = torch.randn(1, id_dim, generator=torch.Generator().manual_seed(0))
        identity = identity / identity.norm()
        shared = torch.cat([torch.zeros_like(identity), identity])[:, None, :]  # (2, 1, D)
        shared = shared.to(pipe.unet.device, pipe.unet.dtype)
        negative = gen.negative_prompt

        def plain(batch: int, output_type: str = "np") -> Any:
            seeds = range(1000, 1000 + batch)
            return pipe(prompt=[PROMPT] * batch, negative_prompt=[negative] * batch,
                        ip_adapter_image_embeds=[shared], num_inference_steps=steps,
                        guidance_scale=args.guidance, height=size, width=size,
                        generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
                        output_type=output_type).images

        def project(batch: int) -> Any:
            return gen.render(identity.repeat(batch, 1).numpy(), [PROMPT] * batch,
                              list(range(1000, 1000 + batch)), steps=steps,
                              guidance_scale=args.guidance, height=size, width=size)

        rows = []
        checks = []
        for batch in batch_sizes:
            for name, fn in (("diffusers", lambda b=batch: plain(b)),
                             ("project", lambda b=batch: project(b))):
                times = timed(fn, args.repeats, device)
                median = statistics.median(times)
                rows.append((name, batch, median, times))
                print(f"  {name:<9} batch {batch:>3}: median {median:8.3f} s/batch  "
                      f"{median / batch:8.4f} s/image  {batch / median:8.2f} images/s  "
                      f"runs {', '.join(f'{x:.3f}' for x in times)}")
            a = plain(batch, output_type="latent").float().cpu()
            b = gen.final_latents(identity.repeat(batch, 1).numpy(), [PROMPT] * batch,
                                  list(range(1000, 1000 + batch)), steps=steps,
                                  guidance_scale=args.guidance, height=size, width=size)
            diff = (a - b).abs().max().item()
            scale = max(a.abs().max().item(), 1.0)
            tol = 2e-2 if precision != "fp32" else 1e-4
            finite = bool(torch.isfinite(a).all() and torch.isfinite(b).all())
            verdict = "OK" if finite and diff <= tol * scale else "MISMATCH"
            print(f"  latents batch {batch}: max |diffusers - project| = {diff:.2e} "
                  f"(max |latent| {a.abs().max().item():.2f}, tolerance {tol:g} x max(1, that), "
                  f"finite {finite}): {verdict}")
            checks.append({"batch": batch, "max_latent_diff": diff, "finite": finite,
                           "verdict": verdict})

        # The first cell alone and in the largest batch, through the project's path.
        largest = max(batch_sizes)
        ids = identity.repeat(largest, 1).numpy()
        seeds = list(range(1000, 1000 + largest))
        kw = {"steps": steps, "guidance_scale": args.guidance, "height": size, "width": size}
        alone_latent = gen.final_latents(ids[:1], [PROMPT], seeds[:1], **kw)
        batch_latent = gen.final_latents(ids, [PROMPT] * largest, seeds, **kw)
        alone_image = gen.render(ids[:1], [PROMPT], seeds[:1], **kw)[0].astype(int)
        batch_image = gen.render(ids, [PROMPT] * largest, seeds, **kw)[0].astype(int)
        alone = {"batch": largest,
                 "max_latent_diff": (alone_latent[0] - batch_latent[0]).abs().max().item(),
                 "max_grey_levels": int(abs(alone_image - batch_image).max()),
                 "pixel_values_differing": int((alone_image != batch_image).sum()),
                 "pixel_values": int(alone_image.size)}
        print(f"  first cell alone vs in a batch of {largest} (one call per "
              f"{'row' if gen.one_row_per_call else 'batch'}): max |latent difference| "
              f"{alone['max_latent_diff']:.2e}; {alone['pixel_values_differing']} of "
              f"{alone['pixel_values']} pixel values differ, by at most "
              f"{alone['max_grey_levels']} grey levels")

        print("\nsummary (median of timed runs)")
        print(f"{'path':<10}{'batch':>6}{'s/batch':>10}{'s/image':>10}{'images/s':>10}")
        for name, batch, median, _ in rows:
            print(f"{name:<10}{batch:>6}{median:>10.3f}{median / batch:>10.4f}"
                  f"{batch / median:>10.2f}")
        print(f"\nsettings tried in this run: precision {precision}, channels_last "
              f"{args.channels_last}, torch.compile max-autotune (CUDA graphs) {args.compile}, "
              "SDPA attention (diffusers default), VAE tiling/slicing off")
        if device == "cpu":
            print("CPU smoke run: the numbers only show that the script works.")
        if args.json:
            import json

            Path(args.json).write_text(json.dumps({
                "device": torch.cuda.get_device_name() if cuda else "cpu",
                "smoke": args.smoke, "precision": precision, "size": size, "steps": steps,
                "guidance": args.guidance, "scheduler": args.scheduler,
                "lora_rank": 0 if args.base_model else args.lora_rank,
                "lora_applied": gen.lora_applied, "lora_layers": lora_layers,
                "one_row_per_call": gen.one_row_per_call,
                "timings": [{"path": name, "batch": batch, "median_s_per_batch": median,
                             "s_per_image": median / batch, "runs": times}
                            for name, batch, median, times in rows],
                "latent_checks": checks, "alone_vs_batch": alone}, indent=2))
    return 0 if all(c["verdict"] == "OK" for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
