"""The audit's identity judge: the FR model (never one under test) that decides whether an edit
kept the person, and its cut-off, fixed once per audit from all of its baselines.

Chosen before any work (so an audit no model can judge is refused at once), fixed after
sampling, read by every generation batch as part of its :class:`generator.editing.CheckPolicy`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from generator.config import AuditConfig
from webapp.audits.models import Audit, SyntheticIdentity
from worker.state import StageError

#: The identity judge's cut-off: this percentile of its similarities between different
#: identities' baselines over the whole audit (generator.editing.identity_cutoff).
IDENTITY_CUTOFF_QUANTILE = 99.0


def identity_cells(identities: list) -> list:
    """The stored identities as the backends' :class:`generator.registry.IdentityCell`."""
    from generator.registry import IdentityCell

    return [IdentityCell(int(i.latent_seed), dict(i.group_labels or {}),
                         dict(i.conditioning or {})) for i in identities]


def choose_identity_judge(config: AuditConfig) -> tuple[str, str] | None:
    """``(judge, why it was chosen)`` for an audit whose edits need one, else None; a
    StageError naming the fix when every available FR model is under test or conditions the
    generator (worker.runtime.identity_judge_for). Cheap: called first thing, before any
    weights are loaded."""
    from worker.runtime import NoIdentityJudge, identity_judge_for

    try:
        return identity_judge_for(config)
    except NoIdentityJudge as exc:
        raise StageError(str(exc)) from None


def identity_policy(audit_id: int, config: AuditConfig, generator=None,
                    baselines: dict[int, np.ndarray] | None = None):
    """The audit's :class:`generator.editing.CheckPolicy`: the generator's own tolerances (a
    backend may carry ``check_policy``, measured on its faces) with the audit's identity judge
    and cut-off, fixing both first if the audit has none yet (idempotent: every caller computes
    the same values from the same baselines). ``baselines``: latent seed -> the baseline's
    pixels as sampling rendered them, used where they cover every stored identity."""
    from generator.editing import CheckPolicy

    judge = Audit.objects.only("identity_judge").get(pk=audit_id).identity_judge
    if not judge:
        judge = fix_identity_judge(audit_id, config, baselines)
    return CheckPolicy(**getattr(generator, "check_policy", {}),
                       identity_min_similarity=judge.get("cutoff"),
                       identity_judge=judge.get("model"))


def fix_identity_judge(audit_id: int, config: AuditConfig,
                       baselines: dict[int, np.ndarray] | None = None) -> dict[str, Any]:
    """Choose the identity judge and fix its cut-off from the whole audit's baselines, before
    any edit is judged; stored on the audit row (and from there in summary.json, the manifest
    and the report). Never a model under test (worker.runtime.choose_identity_judge)."""
    choice = choose_identity_judge(config)
    if choice is None:
        judge: dict[str, Any] = {
            "model": None, "cutoff": None,
            "chosen": "not needed: image factors degrade the same face, identity is not judged"}
    else:
        model, why = choice
        judge = _judge_with_cutoff(model, why, _baseline_pixels(audit_id, config, baselines))
    Audit.objects.filter(pk=audit_id).update(identity_judge=judge)
    return judge


def _baseline_pixels(audit_id: int, config: AuditConfig,
                     baselines: dict[int, np.ndarray] | None) -> np.ndarray:
    """Every stored identity's baseline, ``(N, H, W, 3) uint8`` in group and index order: the
    ones sampling kept when they cover every identity, else rendered again."""
    from worker.runtime import get_backend

    identities = list(SyntheticIdentity.objects.filter(audit_id=audit_id).order_by(
        "group_name", "index_in_group"))
    if baselines is not None and all(int(i.latent_seed) in baselines for i in identities):
        return np.stack([baselines[int(i.latent_seed)] for i in identities])
    return get_backend(config.generator).baselines(identity_cells(identities))


def _judge_with_cutoff(model: str, why: str, pixels: np.ndarray) -> dict[str, Any]:
    """The judge's record: ``model``'s cut-off from its similarities between the baselines
    ``pixels`` of different identities, with the rule in words."""
    from generator.editing import identity_cutoff
    from worker.runtime import get_sense, sense_analyzer

    readings = get_sense(model)(pixels)
    found = np.asarray(readings["face_found"], dtype=bool)
    cutoff, n_pairs = identity_cutoff(np.asarray(readings["embedding"])[found],
                                      IDENTITY_CUTOFF_QUANTILE)
    recognizer = sense_analyzer((model,)).recognizers[model]  # the one sense used
    return {"model": model, "weights_sha256": recognizer.weights_sha256, "chosen": why,
            "cutoff": None if cutoff is None else round(cutoff, 6),
            "quantile": IDENTITY_CUTOFF_QUANTILE, "n_baselines": int(found.sum()),
            "n_impostor_pairs": n_pairs,
            "rule": (f"an edit keeps identity when the {model} cosine similarity to its own "
                     f"baseline is at least the {IDENTITY_CUTOFF_QUANTILE:g}th percentile "
                     "of its similarities between different identities' baselines over "
                     "the whole audit")}
