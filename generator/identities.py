"""Sample synthetic identities until every demographic group has its quota.

Candidate ``k`` has latent seed ``derive_seed(audit_seed, "candidate", k)``. Candidates are
generated in batches and labelled by a *labeller* the caller supplies (attribute sensors on the
generated face: perceived gender, skin tone, ...). A candidate joins the first group whose labels
it matches, while that group still has room. The search is deterministic: the same config and
labeller give the same identities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from generator.backends import LatentGenerator
from generator.design import Design, Group, derive_seed

# images (N, H, W, 3) uint8 -> one mapping per image of axis -> level plus sensor readings under
# the key "sensors", or None where no face was found.
Labeller = Callable[[np.ndarray], Sequence[dict[str, Any] | None]]
Progress = Callable[[int, int, int], None]  # (identities found, identities needed, candidates tried)
# (latents (N, D), the group each is aimed at) -> (shifts (N, D), reached (N,) bool): the shift
# that aims each latent at its group, and whether it gets there uncapped (generator.guidance.aim)
Guide = Callable[[np.ndarray, Sequence[Group]], tuple[np.ndarray, np.ndarray]]


class GroupFillError(RuntimeError):
    """Some groups could not be filled within the candidate budget."""

    def __init__(self, found: dict[str, int], needed: int, tried: int):
        self.found, self.needed, self.tried = found, needed, tried
        short = ", ".join(f"{g} ({n} of {needed})" for g, n in found.items() if n < needed)
        super().__init__(
            f"after {tried:,} generated candidates these groups are still short: {short}. The "
            "generator rarely makes faces the sensors place in them; ask for fewer identities per "
            "group, or drop or merge those levels (e.g. skin_tone lighter/darker instead of bands)")


@dataclass(frozen=True)
class IdentityDraw:
    """One accepted identity: its group, where it came from, and what the sensors read."""

    group: Group
    index_in_group: int
    candidate: int
    latent_seed: int
    sensors: dict[str, Any] = field(default_factory=dict)
    #: the rendered face (H, W, 3) uint8 the sensors read, when sampling was asked to keep it
    image: np.ndarray | None = field(default=None, compare=False, repr=False)


def sample_identities(
    design: Design,
    generator: LatentGenerator,
    labeller: Labeller,
    audit_seed: int,
    *,
    batch_size: int = 64,
    max_candidates: int | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    report: dict[str, Any] | None = None,
    guide: Guide | None = None,
    accept: Callable[[dict[str, Any]], bool] | None = None,
    screen: int = 1,
    keep_images: bool = False,
) -> list[IdentityDraw]:
    """Fill ``design.groups`` with ``design.identities_per_group`` identities each.

    ``max_candidates`` defaults to 50 candidates per identity needed. Raises
    :class:`GroupFillError` when the budget runs out. ``should_stop`` is polled once per batch
    (cancellation); when it returns True the identities found so far are returned.

    ``report``, when given, is filled with how the groups filled (see :func:`acceptance`):
    ``candidates`` tried, ``faces_found`` among them, and per group name ``accepted``,
    ``tried_while_open`` (candidates rendered while the group still needed identities),
    ``matched_while_open`` (those the sensors placed in the group) and ``acceptance_rate``
    (matched / tried while open: how rare the group is among the generator's faces).

    ``guide(latents (N, D), groups) -> shifts (N, D)`` aims each candidate at a group before it
    is rendered (:mod:`generator.guidance`): candidate ``j`` of a batch is aimed at the
    ``j mod n``-th of the ``n`` groups still open when the batch starts. An accepted candidate's
    non-zero shift is kept in its sensors as ``latent_shift`` (the latent is the seed's plus the
    shift). ``accept(labels)`` is the generator's baseline rule (e.g. near-frontal, neutral
    expression): a face it refuses joins no group and counts as not matched. A guided report
    adds per group ``aimed`` (candidates aimed at it), ``aimed_matched`` (those whose face the
    sensors placed in it and the baseline rule accepted) and ``aimed_rate``, their ratio.

    ``screen`` (guided sampling only): each rendered slot takes the first of ``screen`` drawn
    latents per slot whose aim its shift reaches uncapped (``reached``), so that rendering, the
    costly step, is spent on candidates the prediction places in the group; the mapping from
    seed to latent is cheap. Skipped latents are never rendered and keep their candidate
    numbers (the search stays deterministic); ``report["screened"]`` counts the latents drawn.

    ``keep_images``: each draw carries the face it was accepted on (``IdentityDraw.image``), the
    same pixels its baseline renders again (generators render each latent on its own), so the
    caller need not render the baselines again right away.
    """
    total = design.n_identities
    budget = max_candidates if max_candidates is not None else 50 * total
    state = _Sampling(design)
    while state.tried < budget and state.n_found() < total:
        if should_stop is not None and should_stop():
            break
        slots = min(batch_size, budget - state.tried)
        ks, seeds, latents, shifts, targets = _draw_candidates(
            state, generator, audit_seed, slots, guide, screen)
        pixels = generator.generate(latents)
        labels = _read_candidates(state, labeller, accept, pixels)
        _place_candidates(state, ks, seeds, labels, shifts, targets,
                          pixels if keep_images else None)
        state.tried += slots
        if progress is not None:
            progress(state.n_found(), total, state.tried)
    found = {g.name: len(v) for g, v in state.filled.items()}
    if report is not None:
        _fill_report(report, state, guided=guide is not None)
    stopped = should_stop is not None and should_stop()
    if not stopped and any(n < state.need for n in found.values()):
        raise GroupFillError(found, state.need, state.tried)
    return [d for g in design.groups for d in state.filled[g]]


class _Sampling:
    """The running state of :func:`sample_identities`: the identities accepted per group and
    the counts its report is made of."""

    def __init__(self, design: Design):
        self.groups = design.groups
        self.need = design.identities_per_group
        self.filled: dict[Group, list[IdentityDraw]] = {g: [] for g in design.groups}
        self.wanted = [(g, g.as_dict) for g in design.groups]
        self.tried = self.faces = self.refused = self.drawn = 0
        self.open_tried = {g: 0 for g in design.groups}
        self.open_matched = {g: 0 for g in design.groups}
        self.aimed = {g: 0 for g in design.groups}  # guided: candidates aimed at the group ...
        self.aimed_matched = {g: 0 for g in design.groups}  # ... and those that read as it

    def open_groups(self) -> list[Group]:
        return [g for g in self.groups if len(self.filled[g]) < self.need]

    def n_found(self) -> int:
        return sum(len(v) for v in self.filled.values())


def _draw_candidates(state: _Sampling, generator: LatentGenerator, audit_seed: int, slots: int,
                     guide: Guide | None, screen: int):
    """The next ``slots`` candidates to render: ``(candidate numbers, seeds, latents, shifts,
    target groups)``. Guided, each slot is aimed at an open group (round robin), chosen from
    ``screen`` drawn latents per slot, and its latent carries its rounded shift."""
    pool = slots * (screen if guide is not None else 1)
    ks = list(range(state.drawn, state.drawn + pool))
    seeds = [derive_seed(audit_seed, "candidate", k) for k in ks]
    latents = generator.sample_latents(seeds)
    state.drawn += pool
    shifts = np.zeros_like(latents, dtype=np.float64)
    targets: list[Group | None] = [None] * slots
    if guide is None:
        return ks, seeds, latents, shifts, targets
    open_groups = state.open_groups()
    targets = [open_groups[j % len(open_groups)] for j in range(slots)]
    chosen = list(range(slots))
    if pool == slots:
        shifts = guide(latents, targets)[0]
    else:
        chosen, shifts = _screen(latents, targets, guide)
    shifts = np.round(shifts, 6)
    latents = (latents[chosen] + shifts).astype(np.float32)
    return [ks[i] for i in chosen], [seeds[i] for i in chosen], latents, shifts, targets


def _read_candidates(state: _Sampling, labeller: Labeller,
                     accept: Callable[[dict[str, Any]], bool] | None,
                     pixels: np.ndarray) -> list[dict[str, Any] | None]:
    """The labeller's reading of each rendered candidate; None where no face was found or the
    baseline rule ``accept`` refuses the face (counted as refused)."""
    labels = list(labeller(pixels))
    state.faces += sum(lab is not None for lab in labels)
    for j, lab in enumerate(labels):
        if lab is not None and accept is not None and not accept(lab):
            labels[j] = None
            state.refused += 1
    return labels


def _place_candidates(state: _Sampling, ks, seeds, labels, shifts, targets,
                      pixels: np.ndarray | None) -> None:
    """Judge the candidates in order: each joins the first open group its labels match (with
    its non-zero shift kept as ``latent_shift``), and the report's counts are kept."""
    for j, (k, seed, lab, shift, target) in enumerate(
            zip(ks, seeds, labels, shifts, targets, strict=True)):
        matches = set() if lab is None else {
            g for g, want in state.wanted if all(lab.get(a) == v for a, v in want.items())}
        if target is not None:
            state.aimed[target] += 1
            state.aimed_matched[target] += target in matches
        open_now = state.open_groups()
        for group in open_now:
            state.open_tried[group] += 1
            state.open_matched[group] += group in matches
        group = next((g for g in open_now if g in matches), None)
        if group is not None:
            sensors = dict(lab.get("sensors", {}))
            if np.any(shift):
                sensors["latent_shift"] = [round(float(x), 6) for x in shift]
            state.filled[group].append(IdentityDraw(group, len(state.filled[group]), k, seed,
                                                    sensors,
                                                    pixels[j] if pixels is not None else None))


def _fill_report(report: dict[str, Any], state: _Sampling, *, guided: bool) -> None:
    """Fill ``report`` as :func:`sample_identities` documents it."""
    report.update(acceptance(state.tried, state.faces, {
        g.name: (len(state.filled[g]), state.open_tried[g], state.open_matched[g])
        for g in state.groups}))
    report["refused_by_baseline_rule"] = state.refused
    report["screened"] = state.drawn
    report["guided"] = guided
    if guided:
        for g in state.groups:
            aimed, matched = state.aimed[g], state.aimed_matched[g]
            report["groups"][g.name].update(
                aimed=aimed, aimed_matched=matched,
                aimed_rate=round(matched / aimed, 4) if aimed else None)


def _screen(latents: np.ndarray, targets: Sequence[Group], guide: Guide
            ) -> tuple[list[int], np.ndarray]:
    """For slot ``j`` aimed at ``targets[j]``, the first unused latent of the pool ``(P, D)``
    whose shift reaches that group uncapped (else the first unused one): the chosen pool
    indices and their shifts ``(slots, D)``."""
    aims = {g: guide(latents, [g] * len(latents)) for g in dict.fromkeys(targets)}
    used: set[int] = set()
    chosen = []
    for g in targets:
        reached = aims[g][1]
        free = [i for i in range(len(latents)) if i not in used]
        i = next((i for i in free if reached[i]), free[0])
        used.add(i)
        chosen.append(i)
    return chosen, np.stack([aims[g][0][i] for g, i in zip(targets, chosen, strict=True)])


def acceptance(tried: int, faces: int,
               groups: dict[str, tuple[int, int, int]]) -> dict[str, Any]:
    """The sampling report: ``groups`` maps a group name to ``(accepted, tried while open,
    matched while open)``; the acceptance rate is matched / tried while open (None when the
    group never needed a candidate)."""
    return {"candidates": int(tried), "faces_found": int(faces),
            "groups": {name: {"accepted": a, "tried_while_open": t, "matched_while_open": m,
                              "acceptance_rate": round(m / t, 4) if t else None}
                       for name, (a, t, m) in groups.items()}}
