"""Batches of cells, per-cell initial latents, and the denoising-step callback.

Why a cell's image does not depend on its batch: every cell's initial latents are drawn from its
own seed with a CPU ``torch.Generator`` (:func:`seeded_latents`), the same on every device, and
that generator then feeds any noise the scheduler draws during sampling (ancestral and SDE
samplers), one generator per row. Identity embeddings and prompts are per row too. What is left
is floating-point rounding: matrix kernels may sum in a different order for another batch shape
or another row position (seen on an Intel CPU: two equal rows of one batch of three differed by
5.5e-6 in latent units, one pixel by one grey level). So on the CPU the generators run **one
pipeline call per row** (:func:`call_pipeline_rows` with ``one_row_per_call``, the default off
CUDA): a row is rendered by exactly the call that renders it alone, and its bytes do not depend
on the batch, its position or the batch size. It costs time: on 2 AMD EPYC cores one SD 1.5 UNet
step at 512 px took 31 s for one image under guidance and 21 s per image in a batch of four, so
diffusion on a CPU, slow anyway, is about 1.5 times slower still. On a GPU, where batching is
most of the throughput, the rows of a batch share one call by default; a row then matches its
rendering alone to within rounding (about 1e-6 in latent units on a CPU, at most a grey level
now and then in pixels; ``bench/bench_diffusion.py`` measures it on the GPU), and
``one_row_per_call`` can be set to trade throughput for byte-identity. :func:`plan_batches` is a
pure function of the full cell list.

The step callback (:class:`StepReporter`) is passed to diffusers as ``callback_on_step_end``
(``pipeline_stable_diffusion.py``, ``StableDiffusionPipeline.__call__``: it is called after every
scheduler step as ``callback(pipe, i, t, callback_kwargs)`` and must return a dict). It reports
``(steps done, total steps)`` over all the pipeline calls of one render (one call per row: the
total is rows x steps) and raises :class:`GenerationCancelled` as soon as ``should_stop()`` is
true, which unwinds out of ``pipe(...)`` before the remaining steps and the VAE decode run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import torch

ProgressFn = Callable[[int, int], None]
StopFn = Callable[[], bool]


class GenerationCancelled(RuntimeError):
    """``should_stop()`` returned true; generation stopped after ``step`` of ``total`` steps."""

    def __init__(self, step: int, total: int):
        self.step = step
        self.total = total
        super().__init__(f"generation cancelled after step {step} of {total}")


class StepReporter:
    """A ``callback_on_step_end`` for diffusers pipelines, over the ``calls`` pipeline calls of
    one render (one call per row, or one for the whole batch).

    After each denoising step it calls ``on_progress(done, total)`` with ``done`` counting steps
    from 1 over all calls and ``total = calls * pipe.num_timesteps`` (the length of the
    scheduler's timestep list, set before the loop), then raises :class:`GenerationCancelled` if
    ``should_stop()`` is true. :meth:`next_call` moves on to the next call.
    """

    def __init__(self, on_progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                 calls: int = 1):
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.calls = max(1, int(calls))
        self.call = 0
        self.steps_done = 0
        self.steps_per_call = 0

    def check_stop(self, total: int) -> None:
        """Raise :class:`GenerationCancelled` now if ``should_stop()`` is true."""
        if self.should_stop is not None and self.should_stop():
            raise GenerationCancelled(self.steps_done, total)

    def next_call(self) -> None:
        self.call += 1

    def __call__(self, pipe: Any, step_index: int, timestep: Any,
                 callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        self.steps_per_call = int(getattr(pipe, "num_timesteps", 0) or 0)
        total = self.calls * self.steps_per_call
        self.steps_done = self.call * self.steps_per_call + step_index + 1
        if self.on_progress is not None:
            self.on_progress(self.steps_done, total)
        self.check_stop(total)
        return callback_kwargs


def seeded_latents(seeds: Sequence[int], latent_shape: tuple[int, int, int]
                   ) -> tuple[torch.Tensor, list[torch.Generator]]:
    """Initial latents ``(N, C, h, w) float32`` on the CPU, row ``i`` drawn from ``seeds[i]``.

    Each row is ``torch.randn((1, C, h, w), generator=torch.Generator("cpu").manual_seed(seed))``,
    which is what diffusers' ``randn_tensor`` draws for one image from a CPU generator, so plain
    ``pipe(generator=[torch.Generator().manual_seed(s) for s in seeds])`` starts from the same
    noise (in float32). The generators are returned after the draw, to feed the scheduler's own
    noise (the pipelines pass ``generator`` on to ``scheduler.step``).
    """
    import torch

    rows, generators = [], []
    for seed in seeds:
        if not 0 <= int(seed) < 2**64:
            raise ValueError(f"seeds must be whole numbers from 0 to 2**64 - 1, got {seed}")
        g = torch.Generator("cpu").manual_seed(int(seed))
        rows.append(torch.randn((1, *latent_shape), generator=g, dtype=torch.float32))
        generators.append(g)
    if not rows:
        return torch.zeros((0, *latent_shape)), []
    return torch.cat(rows), generators


def images_to_uint8(images: np.ndarray) -> np.ndarray:
    """Pipeline output (``output_type="np"``: ``(N, H, W, 3)`` float in [0, 1]) to uint8 RGB,
    rounded as diffusers' ``numpy_to_pil`` does: ``round(x * 255)``."""
    out = np.clip(np.asarray(images, dtype=np.float32) * 255.0, 0.0, 255.0).round()
    return np.ascontiguousarray(out.astype(np.uint8))


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (as InsightFace's ``normed_embedding``); zero rows stay 0."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def check_identity_batch(identity_embeddings: Any, prompts: Sequence[str],
                         seeds: Sequence[int] | None, id_dim: int) -> np.ndarray:
    """Validate one render batch and return the embeddings as ``(N, id_dim) float32``
    (``seeds=None``: no seeds to check)."""
    ids = np.asarray(identity_embeddings, dtype=np.float32)
    if ids.ndim != 2 or ids.shape[1] != id_dim:
        raise ValueError(f"identity_embeddings must be (N, {id_dim}), got {ids.shape}")
    if not np.isfinite(ids).all():
        raise ValueError("identity_embeddings contain NaN or infinite values")
    n_seeds = len(ids) if seeds is None else len(seeds)
    if not len(ids) == len(prompts) == n_seeds:
        raise ValueError(f"one prompt and one seed per identity row: got {len(ids)} rows, "
                         f"{len(prompts)} prompts, {n_seeds} seeds")
    if not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must be strings")
    return ids


def call_pipeline(pipe: Any, seeds: Sequence[int], *, steps: int, guidance_scale: float,
                  height: int, width: int, callback: ProgressFn | None = None,
                  should_stop: StopFn | None = None, output_type: str = "np",
                  reporter: StepReporter | None = None, **pipe_kwargs: Any) -> Any:
    """One ``pipe(...)`` call for a batch with per-row seeds; the shared core of both backends.

    Passes ``latents`` from :func:`seeded_latents` (cast to the UNet's dtype and device; diffusers'
    ``prepare_latents`` only moves them and multiplies by ``scheduler.init_noise_sigma``), the
    per-row generators as ``generator``, and a :class:`StepReporter` as ``callback_on_step_end``
    (``reporter``, else a new one from ``callback`` and ``should_stop``). ``pipe_kwargs`` carry
    the prompt side (``prompt``/``prompt_embeds``, ``negative_prompt``,
    ``ip_adapter_image_embeds``). Returns ``(N, H, W, 3) uint8`` for ``output_type="np"``, or the
    final latents ``(N, C, h, w)`` as float32 on the CPU for ``output_type="latent"``.
    """
    import torch

    check_size(pipe, steps, height, width)
    if reporter is None:
        reporter = StepReporter(callback, should_stop)
    reporter.check_stop(steps * reporter.calls)
    scale = int(pipe.vae_scale_factor)
    shape = (int(pipe.unet.config.in_channels), height // scale, width // scale)
    latents, generators = seeded_latents(seeds, shape)
    latents = latents.to(device=pipe.unet.device, dtype=pipe.unet.dtype)
    with torch.inference_mode():
        out = pipe(num_inference_steps=steps, guidance_scale=guidance_scale, height=height,
                   width=width, latents=latents, generator=generators,
                   callback_on_step_end=reporter, callback_on_step_end_tensor_inputs=[],
                   output_type=output_type, return_dict=True, **pipe_kwargs)
    if output_type == "latent":
        return out.images.float().cpu()
    return images_to_uint8(out.images)


def check_size(pipe: Any, steps: int, height: int, width: int) -> None:
    """``ValueError`` unless ``steps >= 1`` and the size is a multiple of the latent grid's
    smallest unit (``vae_scale_factor * 8``: the UNet halves the latents three times)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    scale = int(pipe.vae_scale_factor)
    if height % (scale * 8) or width % (scale * 8):
        raise ValueError(f"height and width must be multiples of {scale * 8} for this model, "
                         f"got {height}x{width}")


def call_pipeline_rows(pipe: Any, seeds: Sequence[int],
                       kwargs_of: Callable[[list[int]], dict[str, Any]], *,
                       one_row_per_call: bool, steps: int, guidance_scale: float, height: int,
                       width: int, callback: ProgressFn | None = None,
                       should_stop: StopFn | None = None, output_type: str = "np") -> Any:
    """Render all rows of ``seeds`` through :func:`call_pipeline`: one call per row when
    ``one_row_per_call`` (each row's bytes then do not depend on its batch), else one call for
    all. ``kwargs_of(rows)`` gives the prompt-side keyword arguments for the rows (indices into
    ``seeds``) of one call. Progress and cancellation span the calls (:class:`StepReporter`);
    the output is the rows' images or latents in order, as one call would give them."""
    import torch

    n = len(seeds)
    check_size(pipe, steps, height, width)
    calls = [[i] for i in range(n)] if one_row_per_call else [list(range(n))]
    reporter = StepReporter(callback, should_stop, calls=len(calls))
    out = []
    for rows in calls:
        out.append(call_pipeline(pipe, [seeds[i] for i in rows], steps=steps,
                                 guidance_scale=guidance_scale, height=height, width=width,
                                 output_type=output_type, reporter=reporter, **kwargs_of(rows)))
        reporter.next_call()
    if len(out) == 1:
        return out[0]
    return torch.cat(out) if output_type == "latent" else np.concatenate(out)


@dataclass(frozen=True)
class RenderSettings:
    """Settings that must be equal for cells to share one pipeline call."""

    steps: int = 25
    guidance_scale: float = 7.5
    height: int = 512
    width: int = 512


@dataclass(frozen=True)
class DiffusionCell:
    """One image to render.

    ``key`` names the cell uniquely and stably (e.g. ``"female-darker/007/expression=smiling"``);
    ``identity`` is the row of the identity-embedding matrix; ``seed`` fixes its initial latents
    (a baseline and its variants share the seed); ``settings`` decides which cells may batch.
    """

    key: str
    identity: int
    prompt: str
    seed: int
    settings: RenderSettings = RenderSettings()


class IdentityRenderer(Protocol):
    """What both diffusion backends offer (:class:`~generator.diffusion.faceid.FaceIDGenerator`,
    :class:`~generator.diffusion.arc2face.Arc2FaceGenerator`)."""

    model_id: str
    weights_sha256: str
    licence: str
    id_dim: int

    def render(self, identity_embeddings: np.ndarray, prompts: list[str], seeds: list[int], *,
               steps: int, guidance_scale: float, height: int, width: int,
               callback: ProgressFn | None = None,
               should_stop: StopFn | None = None) -> np.ndarray: ...


def plan_batches(cells: Sequence[DiffusionCell], max_batch_size: int) -> list[list[DiffusionCell]]:
    """Group cells with equal :class:`RenderSettings` and cut each group into batches of at most
    ``max_batch_size``, keeping the input order inside a group; groups come in order of first
    appearance. Prompts need not match: CLIP pads every prompt to the same 77 tokens, so any
    prompts share a call. The plan is a pure function of its inputs."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
    keys = [c.key for c in cells]
    if len(set(keys)) != len(keys):
        raise ValueError("cell keys must be unique")
    groups: dict[RenderSettings, list[DiffusionCell]] = {}
    for cell in cells:
        groups.setdefault(cell.settings, []).append(cell)
    return [group[i:i + max_batch_size] for group in groups.values()
            for i in range(0, len(group), max_batch_size)]


def render_cells(renderer: IdentityRenderer, cells: Sequence[DiffusionCell],
                 identity_embeddings: np.ndarray, *, max_batch_size: int = 8,
                 on_progress: ProgressFn | None = None, should_stop: StopFn | None = None,
                 ) -> Iterator[tuple[DiffusionCell, np.ndarray]]:
    """Render ``cells`` batch by batch, yielding ``(cell, image (H, W, 3) uint8)`` after each
    batch so the caller can store results as they come (nothing finished is lost on a stop).

    ``identity_embeddings`` is ``(n_identities, D) float32``; ``cell.identity`` indexes its rows.
    ``on_progress(done, total)`` counts denoising work in image-steps over all batches
    (``total`` = the sum over cells of their steps), whether the renderer runs a batch as one
    call or one call per row. ``should_stop()`` is checked before each batch and after every
    step; when true, :class:`GenerationCancelled` propagates after the batches already yielded.
    """
    identity_embeddings = np.asarray(identity_embeddings, dtype=np.float32)
    batches = plan_batches(cells, max_batch_size)
    grand_total = sum(len(b) * b[0].settings.steps for b in batches)
    offset = 0
    for batch in batches:
        s = batch[0].settings
        work = len(batch) * s.steps
        ids = [c.identity for c in batch]
        if min(ids) < 0 or max(ids) >= len(identity_embeddings):
            raise ValueError(f"cell identity index out of range 0..{len(identity_embeddings) - 1}")
        if should_stop is not None and should_stop():
            raise GenerationCancelled(offset, grand_total)
        progress = None
        if on_progress is not None:
            progress = functools.partial(_report_shifted, on_progress, offset, work, grand_total)
        try:
            images = renderer.render(
                identity_embeddings[ids], [c.prompt for c in batch], [c.seed for c in batch],
                steps=s.steps, guidance_scale=s.guidance_scale, height=s.height, width=s.width,
                callback=progress, should_stop=should_stop)
        except GenerationCancelled as exc:
            raise GenerationCancelled(offset + _share(exc.step, exc.total, work),
                                      grand_total) from exc
        offset += work
        yield from zip(batch, images, strict=True)


def _share(done: int, total: int, work: int) -> int:
    """``done`` of ``total`` renderer steps as image-steps of a batch worth ``work``."""
    return work * done // total if total > 0 else 0


def _report_shifted(on_progress: ProgressFn, offset: int, work: int, grand_total: int,
                    step: int, total: int) -> None:
    on_progress(offset + _share(step, total, work), grand_total)
