"""Why an image of a factor-effect cell took part in no comparison, and notes on those that did.

Pure functions of an image's generation checks (``GeneratedImage.checks``, written by
``generator.editing.check_image``) and of the scoring detector's verdict
(``FaceAnalysis.face_found``); no Django, so they are tested on plain dicts.

An image takes part in the audit's headline FR comparisons when a face was found in it and in
its baseline, and, for an edit with a target (latent or prompt edits), when the edit reached its
target with the other attributes held. The identity judge's verdict (``identity_kept``) does not
remove an image from the headline comparisons; it only removes it from the "judged same person"
results reported beside them, so on a compared image it is a note, not a reason.

Checks keys read here: ``face_found``, ``target_sensor``, ``requested``, ``achieved``,
``target_rule`` (prompt edits), ``on_target``, ``others_held``, ``broken``, ``deltas``,
``identity_kept``, ``identity_similarity``, ``identity_threshold``, ``identity_judge``,
``edit_ok`` (face found and edit usable: the headline rule), ``passed`` (every check, the
judge's included). Any of them may be missing (older results, image factors); in results made
before ``edit_ok`` existed the judge's verdict did remove images, and is then given as the
reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from audit.counts import finite_number

__all__ = ["PairReasons", "Reason", "pair_reasons"]


@dataclass(frozen=True)
class Reason:
    """One reason or note: ``kind`` is a stable key (``no_face``, ``baseline_no_face``,
    ``off_target``, ``others_moved``, ``identity``, ``failed_checks``, ``no_score``), ``text``
    plain words for the page."""

    kind: str
    text: str


@dataclass(frozen=True)
class PairReasons:
    """``excluded``: why the image took no part in the comparison (empty when it did);
    ``notes``: remarks on a compared image (the identity judge's verdict)."""

    excluded: tuple[Reason, ...] = field(default_factory=tuple)
    notes: tuple[Reason, ...] = field(default_factory=tuple)


def _signed(value: Any) -> str:
    x = finite_number(value)
    return "?" if x is None else f"{x:+.3g}"


def _no_face(checks: Mapping[str, Any], face_found: bool | None, what: str) -> Reason | None:
    by = []
    if checks.get("face_found") is False:
        by.append("when it was made (generation check)")
    if face_found is False:
        by.append("by the scoring detector")
    if not by:
        return None
    return Reason("no_face" if what == "image" else "baseline_no_face",
                  f"no face found in the {what} {' and '.join(by)}")


def _off_target(checks: Mapping[str, Any]) -> Reason | None:
    if checks.get("on_target") is not False:
        return None
    sensor = checks.get("target_sensor") or "the targeted attribute"
    achieved = finite_number(checks.get("achieved"))
    if checks.get("target_rule"):
        wanted = f"target: {checks['target_rule']}"
    elif finite_number(checks.get("requested")) is not None:
        wanted = f"{_signed(checks.get('requested'))} requested"
    else:
        wanted = "target not recorded"
    if achieved is None:
        return Reason("off_target", f"edit missed its target: the change in {sensor} could not "
                                    f"be measured ({wanted})")
    return Reason("off_target", f"edit missed its target: {sensor} changed by "
                                f"{_signed(achieved)} ({wanted})")


def _others_moved(checks: Mapping[str, Any]) -> Reason | None:
    if checks.get("others_held") is not False:
        return None
    deltas = checks.get("deltas") or {}
    broken = [str(s) for s in (checks.get("broken") or [])]
    moved = ", ".join(f"{s} {_signed(deltas.get(s))}" if s in deltas else s for s in broken)
    return Reason("others_moved", "another attribute moved beyond its tolerance: "
                                  + (moved or "which one was not recorded"))


def _identity(checks: Mapping[str, Any]) -> str | None:
    """'judged a different person by dlib (0.41 < cut-off 0.52)', or None when the judge kept
    the identity or gave no verdict."""
    if checks.get("identity_kept") is not False:
        return None
    judge = checks.get("identity_judge") or "the identity judge"
    sim, cut = finite_number(checks.get("identity_similarity")), finite_number(checks.get("identity_threshold"))
    if sim is not None and cut is not None:
        detail = f" ({sim:.2f} < cut-off {cut:.2f})"
    elif sim is not None:
        detail = f" (similarity {sim:.2f})"
    else:
        detail = ""
    return f"judged a different person by {judge}{detail}"


def pair_reasons(checks: Mapping[str, Any] | None, face_found: bool | None, *, scored: bool,
                 baseline_checks: Mapping[str, Any] | None = None,
                 baseline_face_found: bool | None = None) -> PairReasons:
    """Why the comparison of an image with its identity's baseline has no score, or notes on
    it when it has one.

    Parameters
    ----------
    checks, face_found:
        The image's generation checks and the scoring detector's verdict on it (None when
        unknown).
    scored:
        Whether the comparison has a stored score (it took part in the headline comparisons).
    baseline_checks, baseline_face_found:
        The same for the identity's baseline image: without a face there, no image of the
        identity is compared.

    Returns
    -------
    PairReasons
        For an image without a score, every reason that applies, in this order: no face in the
        baseline, no face in the image (by the generation check and/or the scoring detector),
        edit missed its target (sensor, achieved and requested change), another attribute moved
        (each moved sensor with its change); when none applies, the identity judge's verdict
        (results without ``edit_ok`` only), a failed check, or "no score stored". For a scored image, the identity judge's verdict
        as a note (it leaves the image out of the judged-same results only).
    """
    checks = checks or {}
    identity = _identity(checks)
    if scored:
        notes = ()
        if identity:
            notes = (Reason("identity", f"{identity}: left out of the judged-same results, "
                                        "still in the headline comparisons"),)
        return PairReasons((), notes)
    baseline = _no_face(baseline_checks or {}, baseline_face_found, "baseline image")
    # The generation check of an image fails whenever its baseline had no face: then only the
    # scoring detector's verdict says something about the image itself.
    own = {k: v for k, v in checks.items() if k != "face_found"} if baseline else checks
    reasons = [r for r in (
        baseline,
        _no_face(own, face_found, "image"),
        _off_target(checks),
        _others_moved(checks) if checks.get("target_sensor") or checks.get("prompt_factor")
        else None,
    ) if r is not None]
    notes = (Reason("identity", identity),) if identity else ()
    if reasons:
        return PairReasons(tuple(reasons), notes)
    if identity and "edit_ok" not in checks:
        # Results made before the judge's verdict stopped removing images from the headline
        # comparisons (no ``edit_ok`` key): the verdict is the reason.
        return PairReasons((Reason("identity", identity),))
    if checks.get("edit_ok") is False or (checks.get("passed") is False
                                          and "edit_ok" not in checks):
        return PairReasons((Reason("failed_checks", "failed the generator's checks"),), notes)
    return PairReasons((Reason("no_score", "no score stored for this comparison"),), notes)
