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
from typing import Any

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
    settings = render_settings(backend, render_kwargs)
    need = design.identities_per_group
    total = design.n_identities
    per_group = max_candidates if max_candidates is not None else ANCHORS_PER_IDENTITY * need
    id_dim = int(backend.id_dim)
    filled: dict[Group, list[IdentityDraw]] = {g: [] for g in design.groups}
    arc2face = is_arc2face(backend)
    # streams: (eligible groups, prompt, seed of candidate k, identity row of candidate k, budget)
    streams: list[tuple[tuple[Group, ...], str, Callable[[int], int],
                        Callable[[int], tuple[np.ndarray, Any]], int]]
    if arc2face:
        streams = [(design.groups, arc2face_prompt(),
                    lambda k: derive_seed(audit_seed, "anchor", "arc2face", k),
                    lambda k: _random_anchor(audit_seed, k, id_dim),
                    per_group * len(design.groups))]
    else:
        zero = np.zeros(id_dim, dtype=np.float32)
        streams = [((g,), anchor_prompt(g.as_dict),
                    lambda k, g=g: derive_seed(audit_seed, "anchor", g.name, k),
                    lambda k: (zero, "zero"), per_group) for g in design.groups]
    counts = {key: {g: 0 for g in design.groups} for key in
              ("tried", "matched", "rejected", "no_embedding")}
    tried = faces = baselines_rendered = 0
    stopped = False

    def is_open(g: Group) -> bool:
        return len(filled[g]) < need

    for groups, prompt, seed_of, identity_of, budget in streams:
        k = 0
        while k < budget and any(is_open(g) for g in groups):
            if should_stop is not None and should_stop():
                stopped = True
                break
            ks = list(range(k, min(k + batch_size, budget)))
            seeds = [seed_of(j) for j in ks]
            rows = [identity_of(j) for j in ks]
            images = backend.render(np.stack([r[0] for r in rows]), [prompt] * len(ks), seeds,
                                    **settings)
            labels = list(labeller(images))
            if len(labels) != len(ks):
                raise ValueError(f"labeller returned {len(labels)} results for {len(ks)} images")
            faces += sum(lab is not None for lab in labels)
            # The group each anchor reads as, among those open now (a label names one level per
            # axis, so at most one group of a design matches it).
            group_of = {i: g for i, lab in enumerate(labels)
                        for g in [next((g for g in groups if is_open(g)
                                        and _matches(lab, g.as_dict)), None)] if g is not None}
            wanted = sorted(group_of)
            embeddings = _encode(encoder, images[wanted], id_dim) if wanted else None
            emb_of = {i: embeddings[row] for row, i in enumerate(wanted)
                      if np.isfinite(embeddings[row]).all()}
            # Baselines of the candidates with an identity: rendered as render_prompt_and_check
            # renders them, in chunks of batch_size, and read by the same labeller.
            todo = sorted(emb_of)
            base_images: dict[int, np.ndarray] = {}
            base_labels: dict[int, Any] = {}
            for s in range(0, len(todo), batch_size):
                part = todo[s:s + batch_size]
                pix = backend.render(
                    np.stack([emb_of[i].astype(np.float32) for i in part]),
                    [baseline_prompt(group_of[i].as_dict, arc2face) for i in part],
                    [seeds[i] for i in part], **settings)
                labs = list(labeller(pix))
                if len(labs) != len(part):
                    raise ValueError(f"labeller returned {len(labs)} results for {len(part)} "
                                     "images")
                for i, img, lab in zip(part, pix, labs, strict=True):
                    base_images[i], base_labels[i] = img, lab
                baselines_rendered += len(part)
            for i in range(len(ks)):  # in candidate order, as if one at a time
                open_now = [g for g in groups if is_open(g)]
                for g in open_now:
                    counts["tried"][g] += 1
                group = next((g for g in open_now if _matches(labels[i], g.as_dict)), None)
                if group is None:
                    continue
                if i not in emb_of:
                    counts["no_embedding"][group] += 1  # no face for the FR model: no identity
                    continue
                if not _matches(base_labels[i], group.as_dict):
                    counts["rejected"][group] += 1  # the identity's own face is another group's
                    continue
                counts["matched"][group] += 1
                emb = emb_of[i]
                sensors = {**dict((base_labels[i] or {}).get("sensors", {})),
                           "anchor_sensors": dict(labels[i].get("sensors", {})),
                           "identity_embedding": [float(x) for x in emb.astype(np.float32)],
                           "identity_embedding_sha256": embedding_sha256(emb),
                           "anchor_prompt": prompt, "anchor_seed": int(seeds[i]),
                           "anchor_identity": rows[i][1], "anchor_render": dict(settings)}
                filled[group].append(IdentityDraw(group, len(filled[group]), ks[i],
                                                  int(seeds[i]), sensors,
                                                  base_images[i] if keep_images else None))
            k = ks[-1] + 1
            tried += len(ks)
            if progress is not None:
                progress(sum(len(v) for v in filled.values()), total, tried)
        if stopped:
            break
    found = {g.name: len(v) for g, v in filled.items()}
    if report is not None:
        report.update(acceptance(tried, faces, {
            g.name: (len(filled[g]), counts["tried"][g], counts["matched"][g])
            for g in design.groups}))
        report["baselines_rendered"] = baselines_rendered
        report["baseline_rejected"] = sum(counts["rejected"].values())
        report["no_identity_embedding"] = sum(counts["no_embedding"].values())
        report["rule"] = ("a candidate joins a group when the sensors place its anchor in it, "
                          "the identity model finds its face, and the sensors place the "
                          "identity's baseline (rendered from that embedding) in the same group")
        for g in design.groups:
            report["groups"][g.name].update(baseline_rejected=counts["rejected"][g],
                                            no_identity_embedding=counts["no_embedding"][g])
    if not stopped and any(n < need for n in found.values()):
        raise GroupFillError(found, need, tried)
    return [d for g in design.groups for d in filled[g]]


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
