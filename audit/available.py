"""What the model directory offers an audit: the FR models that can be put under test, and the
FR model that judges whether an edit kept identity (never one under test, never the one that
conditions a diffusion generator).

Framework-free: the caller passes what its settings say (the model directory, the preferred
judge, the diffusion routes' options). Only file names are read; nothing that loads a model is
imported, so the web process may ask.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any

from audit.registry import ModelRegistry, available_packs
from generator.config import LATENT_FACTORS, AuditConfig
from generator.diffusion.backend import render_options
from generator.registry import backend_spec

#: Identity judges in order of preference when the preferred judge is "auto": an FR family
#: other than the models under test (dlib's ResNet and MobileFaceNet are trained on different
#: data with different architectures), then any insightface pack in the model directory.
JUDGE_PREFERENCE = ("dlib_resnet", "mobilefacenet")


class NoIdentityJudge(ValueError):
    """Every FR model that could judge identity is under test (or conditions the generator)."""


def available_fr_models(model_dir: str | os.PathLike[str]) -> list[str]:
    """FR models whose files are present in ``model_dir``: the registry's recognition models,
    then the insightface packs (no onnxruntime import)."""
    return [*ModelRegistry(model_dir).available_recognizers(), *available_packs(model_dir)]


def choose_identity_judge(fr_models: Collection[str], available: Collection[str],
                          wanted: str | None = "auto",
                          conditioning: str | None = None) -> tuple[str, str]:
    """The FR model that judges whether an edit kept identity, and a sentence saying why.

    Never a model under test (``fr_models``): its own similarity would decide which variants it
    is then scored on, censoring its false non-matches. Never the model that conditions a
    diffusion generator (``conditioning``), which the generator was optimised to please.
    ``wanted`` (FACEAUDIT_DRIFT_MODEL) names a preferred judge; "auto" picks the first of
    ``available`` in :data:`JUDGE_PREFERENCE` order, then the insightface packs. Raises
    :class:`NoIdentityJudge` naming the fix when no model qualifies.
    """
    excluded = set(fr_models) | ({conditioning} if conditioning else set())
    if wanted and wanted != "auto":
        if wanted not in excluded and wanted in available:
            return wanted, f"{wanted}, set by FACEAUDIT_DRIFT_MODEL"
        role = ("is a model under test in this audit" if wanted in fr_models else
                "conditions the generator" if wanted == conditioning else
                "is not available in the model directory")
        prefix = f"FACEAUDIT_DRIFT_MODEL={wanted} {role}; "
    else:
        prefix = ""
    for name in [*JUDGE_PREFERENCE, *sorted(available)]:
        if name in available and name not in excluded:
            return name, (f"{prefix}{name}, the first available FR model that is not under test"
                          + (" and does not condition the generator" if conditioning else ""))
    under_test = ", ".join(sorted(fr_models))
    raise NoIdentityJudge(
        f"no FR model is left to judge whether edits keep identity: {under_test} "
        f"{'are' if len(fr_models) > 1 else 'is'} under test"
        + (f" and {conditioning} conditions the generator" if conditioning else "")
        + f" (available: {', '.join(sorted(available)) or 'none'}). Take one model out of the "
        "FR models under test, or add another FR model to the model directory (e.g. an "
        "insightface pack such as buffalo_l) so that it can judge identity")


def needs_identity_judge(config: AuditConfig) -> bool:
    """Latent and prompt edits change the face itself, so whether identity survived is judged;
    image factors degrade the same face and are not."""
    return (any(f in LATENT_FACTORS for f in config.factors)
            or backend_spec(config.generator).prompt_driven)


def conditioning_model(config: AuditConfig,
                       diffusion: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The FR model whose embedding conditions the config's diffusion generator (its route's
    options in ``diffusion``, FACEAUDIT_DIFFUSION), else None."""
    if not backend_spec(config.generator).prompt_driven:
        return None
    return render_options(diffusion.get(config.generator) or {}, config.generator)[0]


def identity_judge_for(config: AuditConfig, *, model_dir: str | os.PathLike[str],
                       wanted: str | None, diffusion: Mapping[str, Mapping[str, Any]]
                       ) -> tuple[str, str] | None:
    """``(judge, why)`` for a config whose edits need one, else None; :class:`NoIdentityJudge`
    naming the fix when no FR model in ``model_dir`` qualifies. One rule for the form, the API
    and ``run_audit``."""
    if not needs_identity_judge(config):
        return None
    conditioning = conditioning_model(config, diffusion)
    return choose_identity_judge(config.fr_models, available_fr_models(model_dir), wanted,
                                 conditioning=conditioning)
