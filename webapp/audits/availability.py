"""What this installation can offer an audit, for the form, the API and ``run_audit``: the
generators and FR models available and the identity judge, from the settings
(FACEAUDIT_MODEL_DIR, FACEAUDIT_DIFFUSION, FACEAUDIT_DRIFT_MODEL) through the framework-free
:mod:`generator.available` and :mod:`audit.available`. Loads no model."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from audit import available as models
from audit.available import NoIdentityJudge
from generator import available as generators
from generator.config import AuditConfig

__all__ = ["NoIdentityJudge", "available_fr_models", "available_generators",
           "choose_identity_judge", "conditioning_model", "identity_judge_for"]


def available_generators() -> list[str]:
    """The installed offline generators plus the configured diffusion generators."""
    return generators.available_generators(settings.FACEAUDIT_DIFFUSION)


def available_fr_models() -> list[str]:
    """FR models whose files are present in the model directory."""
    return models.available_fr_models(Path(settings.FACEAUDIT_MODEL_DIR))


def identity_judge_for(config: AuditConfig) -> tuple[str, str] | None:
    """``(judge, why)`` for a config whose edits need one, else None; :class:`NoIdentityJudge`
    naming the fix when no FR model qualifies."""
    return models.identity_judge_for(config, model_dir=Path(settings.FACEAUDIT_MODEL_DIR),
                                     wanted=settings.FACEAUDIT_DRIFT_MODEL,
                                     diffusion=settings.FACEAUDIT_DIFFUSION)


def conditioning_model(config: AuditConfig) -> str | None:
    """The FR model whose embedding conditions the config's diffusion generator, else None."""
    return models.conditioning_model(config, settings.FACEAUDIT_DIFFUSION)


def choose_identity_judge(fr_models, conditioning: str | None = None) -> tuple[str, str]:
    """The identity judge for these FR models under test (and the model conditioning the
    generator, if any) among the FR models available, honouring FACEAUDIT_DRIFT_MODEL."""
    return models.choose_identity_judge(fr_models, available_fr_models(),
                                        settings.FACEAUDIT_DRIFT_MODEL, conditioning=conditioning)
