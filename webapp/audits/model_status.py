"""Which face models are missing, for the pages: the banner on every page, the form's list of
unavailable FR models, and the refusal to launch an audit that could not be scored.

Reads the model directory through :mod:`audit.registry` and :mod:`audit.fetch` (file checks and
SHA-256, hashed once per process and file; nothing is imported that loads a model).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

FIX = ("Run `python manage.py fetch_models` (or `./faceaudit up`) on a machine with internet, "
       "or copy the files there by hand; see README, \"Models\".")


def _registry():
    from audit.registry import ModelRegistry

    return ModelRegistry(settings.FACEAUDIT_MODEL_DIR)


def missing_for_default_audit() -> list[str]:
    """One line per model a default audit needs that is missing or damaged."""
    from audit.fetch import describe_missing

    return describe_missing(_registry())


def scoring_problem() -> str | None:
    """Why no audit can be scored now (detector or gender-age model missing), or None."""
    from audit.fetch import SCORING, describe_missing

    lines = describe_missing(_registry(), SCORING)
    if not lines:
        return None
    return ("Launch is refused: no image could be scored without these face models: "
            + " | ".join(lines) + ". " + FIX)


def unavailable_fr_models() -> dict[str, str]:
    """Known FR models of the model directory that cannot be offered, with the reason."""
    from audit.fetch import SOURCES
    from audit.registry import KNOWN_MODELS

    registry = _registry()
    damaged = registry.damaged()
    available = set(registry.available())
    out = {}
    for spec in KNOWN_MODELS:
        if spec.role != "recognition" or spec.name in available:
            continue
        src = SOURCES.get(spec.name)
        where = src.url if src else spec.source
        out[spec.name] = ("its file differs from the pinned one (damaged or another version): "
                          f"replace {registry.model_dir / spec.filename}"
                          if spec.name in damaged else
                          f"{spec.filename} is not in {registry.model_dir} (it comes from "
                          f"{where})")
    return out


def banner(request: HttpRequest) -> dict:
    """Template context: ``model_problems``, the lines of the missing-models banner (signed-in
    pages only)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    try:
        return {"model_problems": missing_for_default_audit(), "model_fix": FIX}
    except OSError:  # an unreadable model folder: say so rather than fail the page
        return {"model_problems": [f"the model folder {settings.FACEAUDIT_MODEL_DIR} cannot be "
                                   "read"], "model_fix": FIX}
