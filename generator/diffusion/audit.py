"""Identities for the diffusion backends: anchors confirmed by the sensors, and their embeddings.

The diffusion counterpart of :func:`generator.identities.sample_identities` (and, with
:mod:`generator.diffusion.variants`, of :func:`generator.editing.render_and_check`): the same :class:`~generator.identities.IdentityDraw`,
:class:`~generator.render.RenderedImage`, labeller and ``sense`` contracts, so the worker stores
both kinds alike. Nothing here imports torch or Django; torch runs inside the backends
(:class:`~generator.diffusion.faceid.FaceIDGenerator`,
:class:`~generator.diffusion.arc2face.Arc2FaceGenerator`, or anything with their ``render``).

**Identities** (:func:`sample_prompt_identities`). An identity is the FR embedding of an anchor
face that the sensors placed in its group:

- IP-Adapter FaceID: for every group, candidate ``k = 0, 1, ...`` is rendered from the group's
  anchor prompt (:func:`~generator.diffusion.prompts.anchor_prompt`) with seed
  ``derive_seed(audit_seed, "anchor", group.name, k)`` and a *zero* identity row. The backend
  allows a zero row (``normalise_rows`` leaves it zero) and it means "no identity": it is exactly
  the identity input of the negative branch of classifier-free guidance (FaceID's negative rows
  are zeros, as in the diffusers FaceID example), so the identity adds no guidance direction and
  the words alone steer the face. It is not the same as adapter scale 0: the adapter still adds
  the tokens its MLP makes from a zero vector (its bias terms), the same tokens in every anchor.
- Arc2Face has no text-only mode: its text encoder was fine-tuned on the single prompt
  ``"photo of a id person"`` whose ``id`` token *is* the identity, it refuses zero rows (no
  direction), and words cannot ask for a group. Its anchors come from seeded random unit vectors
  instead: candidate ``k`` of one stream shared by all groups has identity vector
  ``PCG64(derive_seed(audit_seed, "anchor-identity", k))`` standard normal, L2-normalised,
  prompt :func:`~generator.diffusion.prompts.arc2face_prompt` and seed
  ``derive_seed(audit_seed, "anchor", "arc2face", k)``; it joins the first group of the design
  whose labels it matches and which is still short (as ``sample_identities`` does). The vector's
  seed is recorded in ``sensors["anchor_identity"]``.

Either way the caller's ``labeller`` must confirm every axis level of the group (the words are
never trusted), and the identity is then the caller's ``encoder`` applied to the anchor image:
the FR embedding of the face the generator really made (for Arc2Face close to, but not the same
as, the random vector). That ``encoder`` is the *conditioning* FR model, the embedding the
backend was trained on, computed the way its authors computed it
(:class:`audit.conditioning.IdentityEncoder`: InsightFace's ``buffalo_l`` for IP-Adapter FaceID,
Arc2Face's own ``arcface.onnx`` for Arc2Face). The identity's images are then rendered from that
embedding, not from the anchor's inputs, so the first of them, the baseline, is rendered during
sampling too and the ``labeller`` must confirm the group on it as well; a baseline the sensors
place elsewhere refuses the candidate like any failed one (counted in the sampling report).

**Variants** of these identities (baseline, prompt edits, image factors, each checked) are
rendered by :mod:`generator.diffusion.variants`.

Tested on tiny random pipelines (``tests/generator/test_diffusion_audit.py``): they draw noise,
not faces, so real face sensors cannot see them, and the tests' labeller, encoder and ``sense``
are deterministic stand-ins computed from the pixels. The tests establish the control flow
(seeds, prompts, embeddings, batching, recipes, checks); whether real sensors confirm real groups
and edits on real weights is for a run on real models to show.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np

from generator.design import Design, Group, derive_seed
from generator.diffusion.batching import IdentityRenderer
from generator.diffusion.prompts import anchor_prompt, arc2face_prompt, variant_prompt
from generator.identities import (
    GroupFillError,
    IdentityDraw,
    Labeller,
    Progress,
    acceptance,
)

# images (N, H, W, 3) uint8 -> (N, id_dim) float identity embeddings of the conditioning FR
# model; a row of NaN where no face was found.
Encoder = Callable[[np.ndarray], np.ndarray]
#: One identity to render: (group labels, identity embedding (id_dim,), seed).
IdentitySpec = tuple[Mapping[str, str], np.ndarray, int]

#: Default candidate budget: anchors tried per identity needed.
ANCHORS_PER_IDENTITY = 20
RENDER_SETTINGS = ("steps", "guidance_scale", "height", "width")


def is_arc2face(backend: Any) -> bool:
    """Whether ``backend`` is an Arc2Face generator (identity in the prompt embedding, no
    text-only mode). Imports nothing: if the Arc2Face module was never imported, no object can
    be one."""
    module = sys.modules.get("generator.diffusion.arc2face")
    return module is not None and isinstance(backend, module.Arc2FaceGenerator)


def embedding_sha256(embedding: np.ndarray) -> str:
    """sha256 of an identity embedding as little-endian float32 bytes (what the recipe names)."""
    return hashlib.sha256(np.ascontiguousarray(embedding, dtype="<f4").tobytes()).hexdigest()


def render_settings(backend: IdentityRenderer, render_kwargs: Mapping[str, Any] | None
                    ) -> dict[str, Any]:
    """The backend's ``render`` defaults for steps, guidance scale and size, overridden by
    ``render_kwargs`` (only those four keys; ``height``/``width`` None = the model's size)."""
    extra = set(render_kwargs or {}) - set(RENDER_SETTINGS)
    if extra:
        raise ValueError(f"render_kwargs accepts {', '.join(RENDER_SETTINGS)}; got "
                         f"{', '.join(sorted(extra))}")
    params = inspect.signature(backend.render).parameters
    out = {k: params[k].default for k in RENDER_SETTINGS
           if k in params and params[k].default is not inspect.Parameter.empty}
    out.update(render_kwargs or {})
    return out


def random_unit_identity(seed: int, dim: int) -> np.ndarray:
    """A seeded random direction ``(dim,) float32`` of unit length (Arc2Face anchors)."""
    v = np.random.Generator(np.random.PCG64(int(seed))).standard_normal(dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def _encode(encoder: Encoder, images: np.ndarray, id_dim: int) -> np.ndarray:
    emb = np.asarray(encoder(images), dtype=np.float64)
    if emb.shape != (len(images), id_dim):
        raise ValueError(f"encoder returned embeddings of shape {emb.shape} for {len(images)} "
                         f"images; the backend is conditioned on {id_dim}-d identities")
    return emb


def _matches(lab: Mapping[str, Any] | None, want: Mapping[str, str]) -> bool:
    return lab is not None and all(lab.get(a) == v for a, v in want.items())


def sample_prompt_identities(
    design: Design,
    backend: IdentityRenderer,
    labeller: Labeller,
    encoder: Encoder,
    audit_seed: int,
    *,
    render_kwargs: Mapping[str, Any] | None = None,
    batch_size: int = 4,
    max_candidates: int | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    report: dict[str, Any] | None = None,
    keep_images: bool = False,
) -> list[IdentityDraw]:
    """Fill ``design.groups`` with ``design.identities_per_group`` identities each, from anchors
    rendered by ``backend`` (see the module docstring for the FaceID and Arc2Face routes).

    A candidate is accepted when ``labeller`` confirms every axis level of the group on its
    anchor, ``encoder`` gives a finite embedding of the anchor's face, and ``labeller`` confirms
    the group again on the identity's *baseline*: the image that
    :func:`~generator.diffusion.variants.render_prompt_and_check` makes first for it
    (:func:`baseline_prompt` with the embedding and the anchor's seed). The
    baseline is another image than the anchor (FaceID: another prompt and the identity instead
    of a zero row; Arc2Face: the encoder's vector instead of the random one), so it may show
    another group; such a candidate is refused as a failed one (the next candidate is tried)
    and counted. ``batch_size`` anchors are rendered per ``backend.render`` call, then the
    baselines of those the anchor check passed. ``max_candidates`` is the budget of anchors
    *per group* (default :data:`ANCHORS_PER_IDENTITY` x identities per group; Arc2Face's shared
    stream gets the budget of all groups together). Candidates are judged in order, so the
    identities do not depend on ``batch_size`` (beyond pixel rounding, see
    :mod:`generator.diffusion.batching`).

    Accepted identities carry in ``sensors`` the labeller's readings of the baseline, the
    anchor's under ``anchor_sensors``, plus ``identity_embedding`` (list of floats),
    ``identity_embedding_sha256``, ``anchor_prompt``, ``anchor_seed``, ``anchor_identity``
    (``"zero"`` or the random unit vector's seed) and ``anchor_render`` (the render settings);
    ``latent_seed`` is the anchor seed and ``candidate`` its index in its stream. With
    ``keep_images`` each draw's ``image`` is its baseline as rendered here. The result is
    deterministic for a given backend, labeller, encoder and seed.

    ``report``, when given, is filled as :func:`generator.identities.acceptance` fills it
    (``candidates``: anchors rendered; ``faces_found``: anchors the labeller read; per group
    ``tried_while_open``, ``matched_while_open``: candidates whose anchor *and* baseline the
    sensors placed in the group, ``acceptance_rate``), plus ``baselines_rendered``,
    ``baseline_rejected`` (baselines the sensors placed outside their anchor's group) and
    ``no_identity_embedding`` (anchors in a group whose face the encoder did not find), in all
    and per group.

    ``progress(found, needed, tried)`` runs after each batch; ``should_stop`` is polled before
    each batch and, when true, the identities found so far are returned. Raises
    :class:`~generator.identities.GroupFillError` naming the short groups when the budget runs
    out.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    run = _AnchorRun(backend, labeller, encoder, render_settings(backend, render_kwargs),
                     int(backend.id_dim), is_arc2face(backend), batch_size, keep_images)
    need = design.identities_per_group
    per_group = max_candidates if max_candidates is not None else ANCHORS_PER_IDENTITY * need
    state = _PromptSampling(design)
    stopped = _sample_streams(run, state, _anchor_streams(
        design, audit_seed, per_group, run.id_dim, run.arc2face), progress, should_stop)
    found = {g.name: len(v) for g, v in state.filled.items()}
    if report is not None:
        _fill_prompt_report(report, state)
    if not stopped and any(n < need for n in found.values()):
        raise GroupFillError(found, need, state.tried)
    return [d for g in design.groups for d in state.filled[g]]


def _sample_streams(run: _AnchorRun, state: _PromptSampling, streams: list[_AnchorStream],
                    progress: Progress | None, should_stop: Callable[[], bool] | None) -> bool:
    """Judge each stream's candidates in batches until its groups are full or its budget is
    spent; whether ``should_stop`` stopped the search."""
    for stream in streams:
        k = 0
        while k < stream.budget and any(state.is_open(g) for g in stream.groups):
            if should_stop is not None and should_stop():
                return True
            ks = list(range(k, min(k + run.batch_size, stream.budget)))
            _sample_anchor_batch(run, state, stream, ks)
            k = ks[-1] + 1
            state.tried += len(ks)
            if progress is not None:
                progress(state.n_found(), state.total, state.tried)
    return False


class _AnchorRun(NamedTuple):
    """What every batch of :func:`sample_prompt_identities` renders and reads with."""

    backend: IdentityRenderer
    labeller: Labeller
    encoder: Encoder
    settings: dict[str, Any]
    id_dim: int
    arc2face: bool
    batch_size: int
    keep_images: bool


class _AnchorStream(NamedTuple):
    """One stream of anchor candidates: the groups it may fill, its prompt, the seed and the
    identity row (with its description) of candidate ``k``, and its budget."""

    groups: tuple[Group, ...]
    prompt: str
    seed_of: Callable[[int], int]
    identity_of: Callable[[int], tuple[np.ndarray, Any]]
    budget: int


class _PromptSampling:
    """The running state of :func:`sample_prompt_identities`: the identities accepted per group
    and the counts its report is made of."""

    def __init__(self, design: Design):
        self.groups = design.groups
        self.need = design.identities_per_group
        self.total = design.n_identities
        self.filled: dict[Group, list[IdentityDraw]] = {g: [] for g in design.groups}
        self.counts = {key: {g: 0 for g in design.groups} for key in
                       ("tried", "matched", "rejected", "no_embedding")}
        self.tried = self.faces = self.baselines_rendered = 0

    def is_open(self, g: Group) -> bool:
        return len(self.filled[g]) < self.need

    def n_found(self) -> int:
        return sum(len(v) for v in self.filled.values())


def _anchor_streams(design: Design, audit_seed: int, per_group: int, id_dim: int,
                    arc2face: bool) -> list[_AnchorStream]:
    """Arc2Face: one stream of seeded random unit vectors shared by all groups; FaceID: one
    stream per group, from its anchor prompt and a zero identity row."""
    if arc2face:
        return [_AnchorStream(design.groups, arc2face_prompt(),
                              lambda k: derive_seed(audit_seed, "anchor", "arc2face", k),
                              lambda k: _random_anchor(audit_seed, k, id_dim),
                              per_group * len(design.groups))]
    zero = np.zeros(id_dim, dtype=np.float32)
    return [_AnchorStream((g,), anchor_prompt(g.as_dict),
                          lambda k, g=g: derive_seed(audit_seed, "anchor", g.name, k),
                          lambda k: (zero, "zero"), per_group) for g in design.groups]


def _read_labels(labeller: Labeller, images: np.ndarray, n: int) -> list[Any]:
    labels = list(labeller(images))
    if len(labels) != n:
        raise ValueError(f"labeller returned {len(labels)} results for {n} images")
    return labels


def _sample_anchor_batch(run: _AnchorRun, state: _PromptSampling, stream: _AnchorStream,
                         ks: list[int]) -> None:
    """Render and read the anchors of candidates ``ks``, embed those in an open group, render
    and read their baselines, then judge the candidates in order."""
    seeds = [stream.seed_of(j) for j in ks]
    rows = [stream.identity_of(j) for j in ks]
    images = run.backend.render(np.stack([r[0] for r in rows]), [stream.prompt] * len(ks), seeds,
                                **run.settings)
    labels = _read_labels(run.labeller, images, len(ks))
    state.faces += sum(lab is not None for lab in labels)
    # The group each anchor reads as, among those open now (a label names one level per
    # axis, so at most one group of a design matches it).
    group_of = {i: g for i, lab in enumerate(labels)
                for g in [next((g for g in stream.groups if state.is_open(g)
                                and _matches(lab, g.as_dict)), None)] if g is not None}
    wanted = sorted(group_of)
    embeddings = _encode(run.encoder, images[wanted], run.id_dim) if wanted else None
    emb_of = {i: embeddings[row] for row, i in enumerate(wanted)
              if np.isfinite(embeddings[row]).all()}
    baselines = _render_candidate_baselines(run, state, group_of, emb_of, seeds)
    for i in range(len(ks)):  # in candidate order, as if one at a time
        group = _judge_candidate(state, stream.groups, labels[i], i in emb_of,
                                 baselines[1].get(i))
        if group is None:
            continue
        emb = emb_of[i]
        sensors = {**dict((baselines[1][i] or {}).get("sensors", {})),
                   "anchor_sensors": dict(labels[i].get("sensors", {})),
                   "identity_embedding": [float(x) for x in emb.astype(np.float32)],
                   "identity_embedding_sha256": embedding_sha256(emb),
                   "anchor_prompt": stream.prompt, "anchor_seed": int(seeds[i]),
                   "anchor_identity": rows[i][1], "anchor_render": dict(run.settings)}
        state.filled[group].append(IdentityDraw(group, len(state.filled[group]), ks[i],
                                                int(seeds[i]), sensors,
                                                baselines[0][i] if run.keep_images else None))


def _render_candidate_baselines(run: _AnchorRun, state: _PromptSampling,
                                group_of: Mapping[int, Group], emb_of: Mapping[int, np.ndarray],
                                seeds: list[int]) -> tuple[dict[int, np.ndarray], dict[int, Any]]:
    """Baselines of the candidates with an identity: rendered as render_prompt_and_check
    renders them, in chunks of batch_size, and read by the same labeller. Returns the images
    and the labels by candidate index."""
    todo = sorted(emb_of)
    base_images: dict[int, np.ndarray] = {}
    base_labels: dict[int, Any] = {}
    for s in range(0, len(todo), run.batch_size):
        part = todo[s:s + run.batch_size]
        pix = run.backend.render(
            np.stack([emb_of[i].astype(np.float32) for i in part]),
            [baseline_prompt(group_of[i].as_dict, run.arc2face) for i in part],
            [seeds[i] for i in part], **run.settings)
        labs = _read_labels(run.labeller, pix, len(part))
        for i, img, lab in zip(part, pix, labs, strict=True):
            base_images[i], base_labels[i] = img, lab
        state.baselines_rendered += len(part)
    return base_images, base_labels


def _judge_candidate(state: _PromptSampling, groups: tuple[Group, ...], label: Any,
                     has_embedding: bool, base_label: Any) -> Group | None:
    """The open group a candidate joins (None: it joins none), with the report's counts."""
    open_now = [g for g in groups if state.is_open(g)]
    for g in open_now:
        state.counts["tried"][g] += 1
    group = next((g for g in open_now if _matches(label, g.as_dict)), None)
    if group is None:
        return None
    if not has_embedding:
        state.counts["no_embedding"][group] += 1  # no face for the FR model: no identity
        return None
    if not _matches(base_label, group.as_dict):
        state.counts["rejected"][group] += 1  # the identity's own face is another group's
        return None
    state.counts["matched"][group] += 1
    return group


def _fill_prompt_report(report: dict[str, Any], state: _PromptSampling) -> None:
    """Fill ``report`` as :func:`sample_prompt_identities` documents it."""
    counts = state.counts
    report.update(acceptance(state.tried, state.faces, {
        g.name: (len(state.filled[g]), counts["tried"][g], counts["matched"][g])
        for g in state.groups}))
    report["baselines_rendered"] = state.baselines_rendered
    report["baseline_rejected"] = sum(counts["rejected"].values())
    report["no_identity_embedding"] = sum(counts["no_embedding"].values())
    report["rule"] = ("a candidate joins a group when the sensors place its anchor in it, "
                      "the identity model finds its face, and the sensors place the "
                      "identity's baseline (rendered from that embedding) in the same group")
    for g in state.groups:
        report["groups"][g.name].update(baseline_rejected=counts["rejected"][g],
                                        no_identity_embedding=counts["no_embedding"][g])


def baseline_prompt(labels: Mapping[str, str], arc2face: bool) -> str:
    """The prompt of an identity's baseline: :func:`variant_prompt` of its group labels
    (FaceID), or :func:`arc2face_prompt` (Arc2Face)."""
    return arc2face_prompt(None) if arc2face else variant_prompt(dict(labels), None)


def _random_anchor(audit_seed: int, k: int, id_dim: int) -> tuple[np.ndarray, dict[str, Any]]:
    seed = derive_seed(audit_seed, "anchor-identity", k)
    return random_unit_identity(seed, id_dim), {"kind": "random_unit_vector", "seed": seed,
                                                "sampler": "numpy PCG64 standard normal, "
                                                           "L2-normalised"}


def identity_spec(draw: IdentityDraw) -> IdentitySpec:
    """The ``(group labels, identity embedding, seed)`` of an accepted identity for
    :func:`~generator.diffusion.variants.render_prompt_and_check`; the seed is the anchor's, so the baseline starts from the
    anchor's initial latents."""
    return (draw.group.as_dict, np.asarray(draw.sensors["identity_embedding"], dtype=np.float32),
            int(draw.latent_seed))
