"""Every factor an audit can vary, each specified once.

A *factor* makes one variant of every identity per level. There are three kinds:

- **image factors** (``kind == IMAGE``): a deterministic pixel operation on the identity's
  baseline image, any backend. ``apply`` names the operation, a function of
  :mod:`generator.factors` with the signature ``(image (H, W, 3) uint8, level, seed) -> image``.
- **latent edits** (``kind == LATENT``): a move along a learned attribute direction of a latent
  GAN backend (:mod:`generator.editing`). The level is the change the ``sensor`` must show, in
  its unit, or in percent of the baseline's value when ``relative``.
- **prompt factors** (:class:`PromptFactorSpec`, :data:`PROMPT_FACTOR_SPECS`): a named phrase in
  one slot of a diffusion backend's prompt (:mod:`generator.diffusion.prompts`). Their names may
  repeat a GAN factor's name with another meaning ("lighting" is a latent edit of the GAN
  backends and a named phrase of the diffusion ones), so they are listed apart.

For every factor the entry also says which sensors it legitimately moves (``affects``): those
are not held by the checks of :mod:`generator.editing`, and a latent edit does not project their
directions out. Everything else (the config schema and its error messages, the web form's fields
and help texts, the pixel operations, the checks, the prompts) reads these entries.

**Adding a factor** is one entry here: in :data:`FACTORS` for an image factor (plus its pixel
function in :mod:`generator.factors`) or a latent edit (its sensor needs a learned direction,
:mod:`generator.directions`); in :data:`PROMPT_FACTOR_SPECS` for a prompt factor (which is also a slot of every diffusion
prompt, in this order, :data:`generator.diffusion.prompts.SLOTS`).

Nothing here imports numpy, torch or Django: the web form reads this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

IMAGE = "image"
LATENT = "latent"


@dataclass(frozen=True)
class FactorSpec:
    """A factor of the GAN backends: what a level means, which levels are allowed, how the
    variant is made and what it may change.

    ``unit`` and ``help`` are shown to the user (form, errors); levels are numbers from
    ``minimum`` to ``maximum`` (whole numbers when ``integer``). ``kind`` is :data:`IMAGE` (a
    pixel operation, ``apply``: its function name in :mod:`generator.factors`) or :data:`LATENT`
    (a move along the ``sensor``'s learned direction; the level is the change the sensor must
    show, in percent of the baseline's value when ``relative``). ``affects``: sensors the factor
    legitimately moves (not held by the checks; for a latent edit, directions not projected out).
    """

    name: str
    unit: str
    minimum: float
    maximum: float
    help: str
    integer: bool = False
    kind: str = IMAGE
    sensor: str | None = None
    relative: bool = False
    affects: frozenset[str] = frozenset()
    apply: str | None = None

    def held(self, candidates: tuple[str, ...]) -> list[str]:
        """The ``candidates`` (sensor or direction names) this factor must leave unchanged: all
        but those it affects and its own target sensor, in the order given."""
        return [c for c in candidates if c not in self.affects and c != self.sensor]


def _image(name: str, unit: str, minimum: float, maximum: float, help: str, *,
           affects: frozenset[str], integer: bool = False) -> FactorSpec:
    """An image factor whose pixel operation is the function ``name`` of generator.factors."""
    return FactorSpec(name, unit, minimum, maximum, help, integer=integer, kind=IMAGE,
                      affects=affects, apply=name)


def _latent(name: str, unit: str, minimum: float, maximum: float, help: str, *, sensor: str,
            affects: frozenset[str], relative: bool = False) -> FactorSpec:
    """A latent edit towards a change of ``sensor``."""
    return FactorSpec(name, unit, minimum, maximum, help, kind=LATENT, sensor=sensor,
                      relative=relative, affects=affects)


#: Sensors that an occluder over the eyes (a grey band, sunglasses, a mask or a hat) changes:
#: the gender-age model, ITA and the crop's brightness all see something else than the face.
COVERING = frozenset({"age", "male_probability", "ita", "brightness"})

#: The factors of the GAN backends, by config name, in the order the form and errors list them.
FACTORS: dict[str, FactorSpec] = {f.name: f for f in (
    _image("blur", "Gaussian sigma in pixels", 0.3, 10.0, "defocus / motion-free blur",
           affects=frozenset({"sharpness"})),
    _image("downscale", "short side in pixels before scaling back up", 4, 63,
           "low resolution (down-scale, then up-scale to the original size)", integer=True,
           affects=frozenset({"sharpness"})),
    _image("jpeg", "JPEG quality", 1, 95, "compression artefacts", integer=True,
           affects=frozenset({"sharpness"})),
    _image("noise", "Gaussian noise sigma in 0-255 grey levels", 1.0, 100.0, "sensor noise",
           affects=frozenset({"sharpness"})),
    _image("brightness", "multiplier on pixel values", 0.1, 3.0,
           "under- (< 1) or over-exposure (> 1)",
           affects=frozenset({"brightness", "ita"})),  # ITA is measured on lit skin
    _image("occlusion", "height of a grey band over the eyes, as a share of the image", 0.05,
           0.6, "occlusion such as sunglasses or a visor", affects=COVERING),
    _latent("yaw", "change of head yaw in degrees (+ = towards the image's right)", -40, 40,
            "head pose, turned left or right (latent edit)", sensor="yaw",
            affects=frozenset({"yaw"})),
    _latent("pitch", "change of head pitch in degrees (+ = chin up)", -30, 30,
            "head pose, up or down (latent edit)", sensor="pitch",
            affects=frozenset({"pitch"})),
    _latent("age", "change of perceived age in years", -40, 40,
            "ageing or rejuvenation (latent edit)", sensor="age", affects=frozenset({"age"})),
    _latent("lighting", "change of mean face brightness in percent", -70, 150,
            "scene lighting on the face (latent edit)", sensor="brightness", relative=True,
            affects=frozenset({"brightness", "ita"})),
    _latent("smile", "change of the smile score (mouth width + 2 x mouth-corner lift, in "
            "inter-ocular distances; neutral faces about 0.6, broad smiles 0.9)", -0.6, 0.6,
            "expression, neutral to smiling (latent edit)", sensor="smile",
            # smiles add wrinkles that read as age
            affects=frozenset({"smile", "mouth_open", "age"})),
)}
#: Image factors and latent edits, by name (subsets of :data:`FACTORS`, same order).
IMAGE_FACTORS: dict[str, FactorSpec] = {n: f for n, f in FACTORS.items() if f.kind == IMAGE}
LATENT_FACTORS: tuple[str, ...] = tuple(n for n, f in FACTORS.items() if f.kind == LATENT)


@dataclass(frozen=True)
class PromptTarget:
    """What a prompt edit must show on a sensor to count as on target: a change of at least
    ``min_change`` in direction ``sign`` (+1 up, -1 down, 0 either way), in the sensor's unit,
    or in percent of the baseline's value when ``relative``."""

    sensor: str
    sign: int
    min_change: float
    relative: bool = False
    meaning: str = ""

    @property
    def requested(self) -> float:
        """The smallest change that counts, signed (unsigned when either way counts)."""
        return float(self.sign * self.min_change if self.sign else self.min_change)

    def rule(self) -> str:
        """E.g. ``"yaw change >= +10 (turned to the subject's left)"``; units: degrees, or percent
        of the baseline when relative."""
        size = f"{self.min_change:g}{'% of the baseline' if self.relative else ''}"
        if self.sign == 0:
            text = f"|{self.sensor} change| >= {size}"
        elif self.sign > 0:
            text = f"{self.sensor} change >= +{size}"
        else:
            text = f"{self.sensor} change <= -{size}"
        return f"{text} ({self.meaning})" if self.meaning else text


@dataclass(frozen=True)
class PromptFactorSpec:
    """A prompt factor of the diffusion backends: one slot of the prompt and its named levels.

    ``levels`` maps each level to its phrase; the first level is the baseline (every identity's
    baseline image uses it; an empty phrase leaves the slot out of the prompt). ``affects``:
    sensors any level may move (not held by the checks); ``level_affects``: levels that move
    another set instead. ``targets``: levels whose effect a sensor can confirm (the others have
    ``on_target`` None: not measurable).
    """

    name: str
    levels: Mapping[str, str]
    affects: frozenset[str] = frozenset()
    level_affects: Mapping[str, frozenset[str]] = field(default_factory=dict)
    targets: Mapping[str, PromptTarget] = field(default_factory=dict)

    @property
    def baseline(self) -> str:
        """The baseline level (the first one)."""
        return next(iter(self.levels))

    def affected(self, level: str) -> frozenset[str]:
        """The sensors this factor at ``level`` may move."""
        return self.level_affects.get(level, self.affects)


# The phrases are starting points chosen to be short, concrete and common in captions; they are
# data, not truth. Pose targets (audit/pose.py: yaw > 0 = face turned to the subject's left, nose
# towards the image's right; pitch > 0 = chin up): "head turned to the left" is read as the
# subject's left, the usual reading of a caption about a person; the minimum change equals the
# hold tolerance of the sensor (10 degrees), so an edit counts as on target exactly when the same
# change would count as broken had it been unintended. Sensors outside generator.editing.HELD
# (roll, illumination_uniformity) are listed for the record; they are not held anyway.
#: The prompt factors of the diffusion backends, by config name, in slot order.
PROMPT_FACTOR_SPECS: dict[str, PromptFactorSpec] = {f.name: f for f in (
    PromptFactorSpec(
        "expression",
        {"neutral": "neutral expression",
         "smiling": "smiling",
         "laughing": "laughing with open mouth",
         "frowning": "frowning",
         "surprised": "surprised expression with raised eyebrows",
         "eyes_closed": "eyes closed"},
        affects=frozenset({"age"})),  # smiles and frowns add wrinkles that read as age
    PromptFactorSpec(
        "pose",
        {"frontal": "looking straight at the camera",
         "left": "head turned to the left",
         "right": "head turned to the right",
         "up": "head tilted up",
         "down": "head tilted down",
         "profile": "side profile view"},
        affects=frozenset({"yaw", "pitch", "roll"}),
        targets={"left": PromptTarget("yaw", +1, 10.0, meaning="turned to the subject's left"),
                 "right": PromptTarget("yaw", -1, 10.0, meaning="turned to the subject's right"),
                 "up": PromptTarget("pitch", +1, 10.0, meaning="chin up"),
                 "down": PromptTarget("pitch", -1, 10.0, meaning="chin down"),
                 "profile": PromptTarget("yaw", 0, 30.0, meaning="side view, either side")}),
    PromptFactorSpec(
        "lighting",
        {"even": "soft even lighting",
         "dim": "dim low-key lighting",
         "side": "harsh light from one side",
         "backlit": "strong backlight",
         "bright": "bright overexposed lighting"},
        affects=frozenset({"brightness", "ita", "illumination_uniformity"}),
        targets={"dim": PromptTarget("brightness", -1, 10.0, relative=True,
                                     meaning="face darker than the baseline"),
                 "bright": PromptTarget("brightness", +1, 10.0, relative=True,
                                        meaning="face brighter than the baseline")}),
    PromptFactorSpec(
        # The baseline is the empty phrase: "no glasses" would put the word "glasses" in the
        # prompt, and CLIP text encoders do not handle negation.
        "accessories",
        {"none": "",
         "glasses": "wearing glasses",
         "sunglasses": "wearing sunglasses",
         "hat": "wearing a baseball cap",
         "face_mask": "wearing a surgical face mask",
         "headscarf": "wearing a headscarf"},
        affects=frozenset({"age"}),  # glasses read as older
        level_affects={"sunglasses": COVERING, "face_mask": COVERING, "hat": COVERING,
                       "headscarf": COVERING}),
)}


def prompt_factors() -> dict[str, tuple[str, ...]]:
    """Prompt factors and their named levels a config may choose (the baseline level excluded)."""
    return {name: tuple(lv for lv in spec.levels if lv != spec.baseline)
            for name, spec in PROMPT_FACTOR_SPECS.items()}
