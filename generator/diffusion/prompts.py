"""Prompts for the diffusion backends: one template, one phrase per slot, one slot per edit.

A prompt is built from ordered *slots*::

    subject, expression, pose, lighting[, accessories], framing

    "a photo of a 40-year-old woman with dark skin, neutral expression, looking straight at the
     camera, soft even lighting, head and shoulders portrait, plain grey background, sharp focus"

- ``subject`` comes from the group labels (the axes of :data:`generator.demographics.GROUP_AXES`):
  perceived gender picks the noun, the age band an age, the skin-tone band a skin phrase. It is the
  *group anchor*: the words only ask for the group; the caller confirms each image with the
  attribute sensors (perceived gender and age, ITA skin tone), never trusts the words.
- ``expression``, ``pose``, ``lighting`` and ``accessories`` hold their *baseline* phrase
  (:data:`BASELINE_LEVELS`) unless an edit names them. An edit (``PromptEdit(factor, level)``)
  replaces exactly one slot's phrase; every other word stays, so with the same seed, initial
  latents and identity embedding the image differs only by that phrase. The baseline of
  ``accessories`` is the empty phrase (the slot is left out): writing "no glasses" would put the
  word "glasses" in the prompt, and CLIP text encoders do not handle negation.
- ``framing`` never changes.

Arc2Face (:func:`arc2face_prompt`) is different: its text encoder was fine-tuned on the single
prompt "photo of a id person", whose token "id" is replaced by the identity vector, so its baseline
is exactly that prompt and an edit appends one phrase. Its group comes from the anchor face's
embedding, not from words. Arc2Face was trained without attribute text, so prompt edits are weak
there; check them with the sensors.

The subject phrases below and the factors' phrases (each prompt factor's entry in
:data:`generator.factor_spec.PROMPT_FACTOR_SPECS`, where a new factor or level is added) are
starting points chosen to be short, concrete and common in captions; they are data, not truth.
Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from generator.demographics import GROUP_AXES
from generator.factor_spec import PROMPT_FACTOR_SPECS

#: Noun per perceived gender; "person" when the axis is not part of the design.
GENDER_NOUNS: dict[str, str] = {"female": "woman", "male": "man"}
#: An age inside each band (a number is followed more reliably than "middle-aged").
AGE_PHRASES: dict[str, str] = {
    "under_30": "25-year-old",
    "30_to_49": "40-year-old",
    "50_plus": "65-year-old",
}
#: Skin phrase per skin-tone level: the coarse lighter/darker split at ITA 28 degrees and the six
#: ITA bands of Chardon et al. (1991) / Del Bino et al. (2013), lightest to darkest.
SKIN_PHRASES: dict[str, str] = {
    "lighter": "light skin",
    "darker": "dark skin",
    "very_light": "very fair skin",
    "light": "fair skin",
    "intermediate": "light olive skin",
    "tan": "tan skin",
    "brown": "brown skin",
    "dark": "dark brown skin",
}

#: The order of the slots in every prompt: the subject, one slot per prompt factor (in the order
#: of :data:`generator.factor_spec.PROMPT_FACTOR_SPECS`), the framing.
SLOTS: tuple[str, ...] = ("subject", *PROMPT_FACTOR_SPECS, "framing")
#: Fixed framing, the same in every prompt of every group.
FRAMING = "head and shoulders portrait, plain grey background, sharp focus"

#: Prompt factors: factor -> level -> phrase, from :data:`generator.factor_spec.PROMPT_FACTOR_SPECS`.
#: The first level of each factor is its baseline.
PROMPT_FACTORS: dict[str, dict[str, str]] = {
    name: dict(spec.levels) for name, spec in PROMPT_FACTOR_SPECS.items()}
#: The baseline level of each prompt factor (the level every identity's baseline image uses).
BASELINE_LEVELS: dict[str, str] = {name: spec.baseline for name, spec in PROMPT_FACTOR_SPECS.items()}

#: Arc2Face's training prompt; the word "id" is the placeholder token replaced by the identity.
ARC2FACE_PLACEHOLDER = "id"
ARC2FACE_PROMPT = f"photo of a {ARC2FACE_PLACEHOLDER} person"


class PromptEdit(NamedTuple):
    """One attribute edit: set prompt factor ``factor`` to ``level`` (see :data:`PROMPT_FACTORS`)."""

    factor: str
    level: str


def _check_edit(edit: PromptEdit | tuple[str, str] | None) -> PromptEdit | None:
    if edit is None:
        return None
    if not isinstance(edit, tuple) or len(edit) != 2:
        raise ValueError(f"an edit is a (factor, level) pair, got {edit!r}")
    factor, level = edit
    if factor not in PROMPT_FACTORS:
        raise ValueError(f"unknown prompt factor {factor!r}; choose from {', '.join(PROMPT_FACTORS)}")
    if level not in PROMPT_FACTORS[factor]:
        raise ValueError(f"unknown level {level!r} for prompt factor {factor!r}; choose from "
                         f"{', '.join(PROMPT_FACTORS[factor])}")
    return PromptEdit(factor, level)


def subject_phrase(labels: Mapping[str, str]) -> str:
    """The group anchor, e.g. ``"a photo of a 65-year-old woman with dark skin"``.

    ``labels`` maps group axes (``perceived_gender``, ``age_band``, ``skin_tone``) to levels;
    axes that are absent are left out of the phrase. Unknown axes or levels raise ``ValueError``.
    """
    for axis, level in labels.items():
        if axis not in GROUP_AXES:
            raise ValueError(f"unknown group axis {axis!r}; choose from {', '.join(GROUP_AXES)}")
        if level not in GROUP_AXES[axis]:
            raise ValueError(f"unknown level {level!r} for axis {axis!r}; choose from "
                             f"{', '.join(GROUP_AXES[axis])}")
    noun = GENDER_NOUNS.get(labels.get("perceived_gender", ""), "person")
    age = AGE_PHRASES.get(labels.get("age_band", ""))
    skin = SKIN_PHRASES.get(labels.get("skin_tone", ""))
    words = f"{age} {noun}" if age else noun
    article = "an" if words[0] in "aeiou" else "a"
    phrase = f"a photo of {article} {words}"
    return f"{phrase} with {skin}" if skin else phrase


def prompt_slots(labels: Mapping[str, str],
                 edit: PromptEdit | tuple[str, str] | None = None) -> dict[str, str]:
    """The phrase in each slot (in :data:`SLOTS` order) for a group and an optional edit.

    Empty phrases are kept here (as ``""``) so that two slot maps can be compared slot by slot;
    :func:`variant_prompt` leaves them out of the text.
    """
    checked = _check_edit(edit)
    slots = {"subject": subject_phrase(labels)}
    for factor, level in BASELINE_LEVELS.items():
        slots[factor] = PROMPT_FACTORS[factor][level]
    if checked is not None:
        slots[checked.factor] = PROMPT_FACTORS[checked.factor][checked.level]
    slots["framing"] = FRAMING
    return {name: slots[name] for name in SLOTS}


def variant_prompt(base_labels: Mapping[str, str],
                   edit: PromptEdit | tuple[str, str] | None = None) -> str:
    """The prompt for a group (``base_labels``) with one edit applied (``None``: the baseline).

    Exactly one slot differs from the baseline prompt of the same group when ``edit`` names a
    non-baseline level; an edit to the baseline level gives the baseline prompt itself.
    """
    return ", ".join(p for p in prompt_slots(base_labels, edit).values() if p)


def anchor_prompt(labels: Mapping[str, str]) -> str:
    """The baseline prompt of a group: its anchor plus every factor at its baseline level."""
    return variant_prompt(labels, None)


def arc2face_prompt(edit: PromptEdit | tuple[str, str] | None = None) -> str:
    """Arc2Face's prompt: ``"photo of a id person"``, plus ``", <phrase>"`` for a non-baseline
    edit (a baseline level gives the prompt unchanged). The word ``id`` is the placeholder whose token embedding becomes the identity vector."""
    checked = _check_edit(edit)
    if checked is None or checked.level == BASELINE_LEVELS[checked.factor]:
        return ARC2FACE_PROMPT
    phrase = PROMPT_FACTORS[checked.factor][checked.level]
    return f"{ARC2FACE_PROMPT}, {phrase}" if phrase else ARC2FACE_PROMPT
