"""The audit config schema, shared by the web form, config files and ``run_audit``.

A config is a plain mapping (YAML or JSON on disk)::

    name: Blur and resolution, gender x skin tone
    seed: 1234
    groups:                       # demographic axes and their levels; groups = all combinations
      perceived_gender: [female, male]
      skin_tone: [lighter, darker]
    identities_per_group: 30
    factors:                      # each level becomes one variant of every identity
      blur: [1.5, 3.0]            # Gaussian sigma, pixels
      downscale: [24, 16]         # pixels on the short side before scaling back up
    generator: mobilestylegan-ffhq  # photoreal default; dcgan-digiface for quick smoke runs
    fr_models: [mobilefacenet]
    target_fmr: [0.001]           # one global threshold per FR model at each target

:func:`parse_config` checks everything and raises :class:`ConfigError` whose ``errors`` map each
offending field to a message that says what to change; messages repeat at most ``MAX_ECHO``
characters of a value, and lists are limited to what a report can show (``MAX_*`` below). An
axis may hold one level (every group then shares it); the groups must be at least two in all.
YAML anchors and aliases are refused. Nothing here imports Django or torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from generator.registry import BACKENDS

# Demographic axes: each level is decided by an attribute sensor on the generated face
# (perceived attributes, never "true" ones). Skin-tone bands follow the ITA scale of Chardon et
# al. (1991) as used by Del Bino et al. (2013); "lighter"/"darker" split it at 28 degrees.
GROUP_AXES: dict[str, tuple[str, ...]] = {
    "perceived_gender": ("female", "male"),
    "skin_tone": ("lighter", "darker", "very_light", "light", "intermediate", "tan", "brown", "dark"),
    "age_band": ("under_30", "30_to_49", "50_plus"),
}
AXIS_HELP: dict[str, str] = {
    "perceived_gender": "perceived gender from the gender-age model (probability of male >= 0.5)",
    "skin_tone": "cheek skin of the baseline face: lighter or darker by the skin tone index (a "
                 "skin colour angle that a change of lighting leaves in place; split at 73.5 "
                 "deg), or one of the six ITA bands (which follow the lighting)",
    "age_band": "perceived age from the gender-age model",
}


@dataclass(frozen=True)
class FactorSpec:
    """A factor: what a level means and which levels are allowed.

    ``kind`` is ``"image"`` (a pixel operation on the baseline, any backend) or ``"latent"`` (a
    move along a learned attribute direction, latent GAN backends; the level is the change the
    ``sensor`` must show, in its unit, or in percent of the baseline's value when ``relative``).
    """

    name: str
    unit: str
    minimum: float
    maximum: float
    help: str
    integer: bool = False
    kind: str = "image"
    sensor: str | None = None
    relative: bool = False


FACTORS: dict[str, FactorSpec] = {
    f.name: f
    for f in (
        FactorSpec("blur", "Gaussian sigma in pixels", 0.3, 10.0, "defocus / motion-free blur"),
        FactorSpec("downscale", "short side in pixels before scaling back up", 4, 63,
                   "low resolution (down-scale, then up-scale to the original size)", integer=True),
        FactorSpec("jpeg", "JPEG quality", 1, 95, "compression artefacts", integer=True),
        FactorSpec("noise", "Gaussian noise sigma in 0-255 grey levels", 1.0, 100.0, "sensor noise"),
        FactorSpec("brightness", "multiplier on pixel values", 0.1, 3.0,
                   "under- (< 1) or over-exposure (> 1)"),
        FactorSpec("occlusion", "height of a grey band over the eyes, as a share of the image",
                   0.05, 0.6, "occlusion such as sunglasses or a visor"),
        FactorSpec("yaw", "change of head yaw in degrees (+ = towards the image's right)", -40, 40,
                   "head pose, turned left or right (latent edit)", kind="latent", sensor="yaw"),
        FactorSpec("pitch", "change of head pitch in degrees (+ = chin up)", -30, 30,
                   "head pose, up or down (latent edit)", kind="latent", sensor="pitch"),
        FactorSpec("age", "change of perceived age in years", -40, 40,
                   "ageing or rejuvenation (latent edit)", kind="latent", sensor="age"),
        FactorSpec("lighting", "change of mean face brightness in percent", -70, 150,
                   "scene lighting on the face (latent edit)", kind="latent",
                   sensor="brightness", relative=True),
        FactorSpec("smile", "change of the smile score (mouth width + 2 x mouth-corner lift, in "
                   "inter-ocular distances; neutral faces about 0.6, broad smiles 0.9)", -0.6,
                   0.6, "expression, neutral to smiling (latent edit)", kind="latent",
                   sensor="smile"),
    )
}
LATENT_FACTORS = tuple(name for name, f in FACTORS.items() if f.kind == "latent")

#: Generator names and one-line descriptions, from the backend registry (generator.registry).
GENERATORS: dict[str, str] = {name: spec.description for name, spec in BACKENDS.items()}
#: Generators driven by prompts: attribute edits change one phrase of the prompt.
PROMPT_GENERATORS = frozenset(name for name, spec in BACKENDS.items() if spec.prompt_driven)
#: Offline generators that the set-up installs from PyPI (no weights to configure).
DEFAULT_GENERATORS: tuple[str, ...] = tuple(name for name, spec in BACKENDS.items()
                                            if spec.offline)
#: The generator of a config that names none: photoreal MobileStyleGAN.
DEFAULT_GENERATOR = DEFAULT_GENERATORS[0]


def prompt_factors() -> dict[str, tuple[str, ...]]:
    """Prompt factors and their named levels (the baseline level excluded), from
    :mod:`generator.diffusion.prompts` (which imports no torch)."""
    from generator.diffusion.prompts import BASELINE_LEVELS, PROMPT_FACTORS

    return {f: tuple(lv for lv in levels if lv != BASELINE_LEVELS[f])
            for f, levels in PROMPT_FACTORS.items()}
DEFAULT_FR_MODELS: tuple[str, ...] = ("mobilefacenet",)

# Size limits keep one audit within what a lab machine can do in hours, not weeks, and every
# list within what the report can show (each target FMR and threshold is one operating point
# with its own tables and charts; each factor level one column of every factor table).
MAX_IDENTITIES_PER_GROUP = 500
MAX_IMAGES = 100_000
MAX_LEVELS_PER_FACTOR = 10
#: Levels on one demographic axis: the six ITA bands are the most an axis can use.
MAX_LEVELS_PER_AXIS = 6
MAX_TARGET_FMRS = 10
MAX_THRESHOLDS = 10
MAX_FR_MODELS = 5
#: At least this many groups in all: an audit compares groups (disparities, the group x
#: condition interaction need two); one axis may hold a single level, which is then constant.
MIN_GROUPS = 2
MAX_NAME_LENGTH = 200
MAX_CONFIG_BYTES = 64 * 1024
#: Characters of a user's value that an error message repeats (then "...").
MAX_ECHO = 80
#: Unknown fields named one by one; more are counted in one message.
MAX_UNKNOWN_FIELDS_NAMED = 5
FIELDS = ("name", "description", "seed", "groups", "identities_per_group", "factors", "generator",
          "fr_models", "target_fmr", "thresholds")


class ConfigError(ValueError):
    """The config is invalid. ``errors`` maps a field name to a message naming the fix."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


@dataclass(frozen=True)
class AuditConfig:
    """A validated audit config. Build it with :func:`parse_config`, not directly."""

    name: str
    seed: int
    groups: dict[str, list[str]]
    identities_per_group: int
    factors: dict[str, list[float | str]]
    generator: str = DEFAULT_GENERATOR
    fr_models: list[str] = field(default_factory=lambda: list(DEFAULT_FR_MODELS))
    target_fmr: list[float] = field(default_factory=lambda: [1e-3])
    description: str = ""
    thresholds: list[float] = field(default_factory=list)  # user-given, on the cosine scale

    @property
    def n_groups(self) -> int:
        return math.prod(len(v) for v in self.groups.values())

    @property
    def n_variants(self) -> int:
        """Images per identity: baseline, control (a null re-capture) and one per factor level."""
        return 2 + sum(len(v) for v in self.factors.values())

    @property
    def n_images(self) -> int:
        """Images the audit will make: groups x identities x (baseline + control + levels)."""
        return self.n_groups * self.identities_per_group * self.n_variants

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form; ``parse_config(cfg.to_dict()) == cfg``."""
        return asdict(self)


def _clip(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut to ``limit`` characters plus "..." (an error repeats only so much input)."""
    return text if len(text) <= limit else text[:limit] + "..."


def _show(value: Any, depth: int = 0) -> str:
    """A user's value for an error message, as a person would write it: lists joined by
    commas (``15, abc``, never ``['15', 'abc']``), nested ones in brackets, at most MAX_ECHO
    characters (then "..."). Items are rendered only up to the limit and nesting only three
    deep, so a huge or deep value costs no more than a short one."""
    if isinstance(value, (list, tuple, Mapping)):
        if depth >= 3:
            return "..."
        pairs = value.items() if isinstance(value, Mapping) else ((None, v) for v in value)
        parts: list[str] = []
        size = 0
        for key, item in pairs:
            if size > MAX_ECHO:
                parts.append("...")
                break
            part = _show(item, depth + 1)
            if isinstance(item, (list, tuple)):
                part = f"[{part}]"
            if key is not None:
                part = f"{_show(key, depth + 1)}: {part}"
            parts.append(part)
            size += len(part) + 2
        text = ", ".join(parts)
        return _clip("{" + text + "}" if isinstance(value, Mapping) else text)
    if isinstance(value, float):
        return f"{value:g}"
    try:
        return _clip(str(value))
    except ValueError:  # an int beyond Python's 4,300-digit limit on int -> str
        return "(a number too long to show)"


def _too_many(what: str, n: int, limit: int, fix: str) -> str:
    return f"{n:,} {what}; at most {limit} (what a report can show): {fix}"


def _as_list(value: Any) -> list[Any] | None:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        return [p for p in parts if p]
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    return None


def _seed(value: Any) -> int | None:
    """A seed from 0 to 2**32 - 1 given as an int or a string of ASCII digits, else None
    (``"²".isdigit()`` is true in Python, so the ASCII check matters)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 10:
            return None
        value = int(text)
    if not isinstance(value, int) or not 0 <= value < 2**32:
        return None
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond float range
        return None
    return x if math.isfinite(x) else None


def _parse_groups(raw: Any, errors: dict[str, str]) -> dict[str, list[str]]:
    if not isinstance(raw, Mapping) or not raw:
        errors["groups"] = ("give at least one demographic axis with its levels, e.g. "
                            "perceived_gender: [female, male]; axes: " + ", ".join(GROUP_AXES))
        return {}
    if len(raw) > len(GROUP_AXES):
        errors["groups"] = (f"{len(raw):,} axes; there are {len(GROUP_AXES)}: "
                            + ", ".join(GROUP_AXES))
        return {}
    groups: dict[str, list[str]] = {}
    for axis, levels in raw.items():
        key = f"groups.{_show(axis)}"
        if axis not in GROUP_AXES:
            errors[key] = f"unknown axis {_show(axis)!r}; choose from {', '.join(GROUP_AXES)}"
            continue
        items = _as_list(levels)
        if not items:
            errors[key] = f"list one or more levels, from {', '.join(GROUP_AXES[axis])}"
            continue
        limit = min(MAX_LEVELS_PER_AXIS, len(GROUP_AXES[axis]))
        if len(items) > limit:
            errors[key] = (f"{len(items):,} levels; at most {limit} on this axis: list each "
                           f"level once, from {', '.join(GROUP_AXES[axis])}")
            continue
        bad = [x for x in items if str(x) not in GROUP_AXES[axis]]
        if bad:
            errors[key] = (f"unknown level(s) {_show(bad)}; choose from "
                           f"{', '.join(GROUP_AXES[axis])}")
            continue
        names = [str(x) for x in items]
        if len(set(names)) != len(names):
            errors[key] = "each level may appear only once"
            continue
        if axis == "skin_tone" and {"lighter", "darker"} & set(names) and len(
                set(names) - {"lighter", "darker"}):
            errors[key] = ("mix of coarse (lighter/darker) and fine ITA bands overlaps; use "
                           "either lighter, darker or the six bands")
            continue
        groups[str(axis)] = names
    n_groups = math.prod(len(v) for v in groups.values())
    if groups and len(groups) == len(raw) and n_groups < MIN_GROUPS:
        errors["groups"] = (f"these levels make {n_groups} group; an audit compares at least "
                            f"{MIN_GROUPS}: list two or more levels on at least one axis (an "
                            "axis with one level only restricts every group to it)")
    return groups


def _parse_factors(raw: Any, errors: dict[str, str],
                   prompt_driven: bool = False) -> dict[str, list[float | str]]:
    prompts = prompt_factors() if prompt_driven else {}
    allowed = [*prompts, *(f for f, s in FACTORS.items() if s.kind == "image")] if prompt_driven \
        else list(FACTORS)
    if not isinstance(raw, Mapping) or not raw:
        errors["factors"] = ("vary at least one factor, e.g. blur: [1.5, 3]; factors: "
                             + ", ".join(allowed))
        return {}
    if len(raw) > len(FACTORS) + len(prompts):
        errors["factors"] = (f"{len(raw):,} factors; choose each at most once from "
                             + ", ".join(allowed))
        return {}
    factors: dict[str, list[float | str]] = {}
    for name, levels in raw.items():
        key = f"factors.{_show(name)}"
        if str(name) in prompts:
            items = _as_list(levels)
            names = [str(x) for x in items or []]
            bad = [x for x in names if x not in prompts[str(name)]]
            if len(names) > MAX_LEVELS_PER_FACTOR:
                errors[key] = _too_many("levels", len(names), MAX_LEVELS_PER_FACTOR,
                                        "keep the levels you want to compare")
            elif not names or bad:
                errors[key] = (f"choose named levels from {', '.join(prompts[str(name)])}"
                               + (f" (not {_show(bad)})" if bad else ""))
            elif len(set(names)) != len(names):
                errors[key] = "each level may appear only once"
            else:
                factors[str(name)] = names
            continue
        spec = FACTORS.get(str(name))
        if spec is not None and prompt_driven and spec.kind == "latent":
            errors[key] = (f"{name} is a latent edit of GAN generators; with a prompt-driven "
                           f"generator use the prompt factors {', '.join(prompts)}")
            continue
        if spec is None:
            errors[key] = f"unknown factor {_show(name)!r}; choose from {', '.join(FACTORS)}"
            continue
        items = _as_list(levels)
        if not items:
            errors[key] = f"give one or more levels ({spec.unit}), separated by commas"
            continue
        if len(items) > MAX_LEVELS_PER_FACTOR:
            errors[key] = _too_many("levels", len(items), MAX_LEVELS_PER_FACTOR,
                                    "keep the levels you want to compare, or split the "
                                    "factor over two audits")
            continue
        values = [_number(x) for x in items]
        if any(v is None for v in values):
            errors[key] = f"levels must be numbers ({spec.unit}); got {_show(items)}"
            continue
        out = [float(v) for v in values if v is not None]
        if spec.integer and any(v != int(v) for v in out):
            errors[key] = f"levels must be whole numbers ({spec.unit})"
            continue
        if any(not spec.minimum <= v <= spec.maximum for v in out):
            errors[key] = (f"levels must lie between {spec.minimum:g} and {spec.maximum:g} "
                           f"({spec.unit})")
            continue
        if len(set(out)) != len(out):
            errors[key] = "each level may appear only once"
            continue
        if spec.kind == "latent" and 0.0 in out:
            errors[key] = "a change of 0 is the baseline itself; give non-zero changes"
            continue
        factors[str(name)] = out
    return factors


def parse_config(
    data: Any, *, fr_models_available: Iterable[str] = DEFAULT_FR_MODELS,
    generators_available: Iterable[str] = DEFAULT_GENERATORS,
) -> AuditConfig:
    """Validate a config mapping and return an :class:`AuditConfig`.

    Raises :class:`ConfigError` listing every problem at once, keyed by field (nested fields as
    ``groups.skin_tone`` or ``factors.blur``).
    """
    if not isinstance(data, Mapping):
        raise ConfigError({"config": "the config must be a mapping of fields to values "
                                     f"(fields: {', '.join(FIELDS)})"})
    errors: dict[str, str] = {}
    unknown = [key for key in data if key not in FIELDS]
    for key in unknown[:MAX_UNKNOWN_FIELDS_NAMED]:
        errors[_show(key)] = f"unknown field; known fields: {', '.join(FIELDS)}"
    if len(unknown) > MAX_UNKNOWN_FIELDS_NAMED:
        errors["config"] = (f"{len(unknown):,} unknown fields (the first "
                            f"{MAX_UNKNOWN_FIELDS_NAMED} are named); known fields: "
                            + ", ".join(FIELDS))

    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        errors["name"] = "give the audit a name"
    elif len(name) > MAX_NAME_LENGTH:
        errors["name"] = f"use at most {MAX_NAME_LENGTH} characters"
    description = data.get("description", "") or ""
    if not isinstance(description, str) or len(description) > 5000:
        errors["description"] = "a text of at most 5000 characters"
        description = ""

    seed = _seed(data.get("seed", 0))
    if seed is None:
        errors["seed"] = "a whole number from 0 to 4294967295"
        seed = 0

    groups = _parse_groups(data.get("groups"), errors)

    ipg = data.get("identities_per_group")
    ipg_num = _number(ipg)
    if ipg_num is None or ipg_num != int(ipg_num) or not 2 <= ipg_num <= MAX_IDENTITIES_PER_GROUP:
        errors["identities_per_group"] = (
            f"a whole number from 2 to {MAX_IDENTITIES_PER_GROUP} (two identities are the least "
            "that give non-mated comparisons)")
        ipg_num = 2
    ipg_int = int(ipg_num)

    generator = data.get("generator", DEFAULT_GENERATOR)
    generators = list(generators_available)
    if not isinstance(generator, str):
        errors["generator"] = f"a generator name; choose from {', '.join(generators)}"
        generator = DEFAULT_GENERATOR
    elif generator not in GENERATORS:
        errors["generator"] = (f"unknown generator {_show(generator)!r}; choose from "
                               f"{', '.join(generators)}")
    elif generator not in generators:
        errors["generator"] = (f"{generator} is not set up on this installation (its weights are "
                               f"configured with FACEAUDIT_DIFFUSION); choose from "
                               f"{', '.join(generators)}")
    factors = _parse_factors(data.get("factors"), errors,
                             prompt_driven=generator in PROMPT_GENERATORS)

    available = list(fr_models_available)
    fr_models = _as_list(data.get("fr_models", list(DEFAULT_FR_MODELS)))
    if not fr_models:
        errors["fr_models"] = f"choose at least one FR model from {', '.join(available)}"
        fr_models = []
    elif len(fr_models) > MAX_FR_MODELS:
        errors["fr_models"] = _too_many("FR models", len(fr_models), MAX_FR_MODELS,
                                        "compare the others in a second audit")
        fr_models = []
    else:
        unknown = [m for m in fr_models if str(m) not in available]
        if unknown:
            errors["fr_models"] = (f"unknown or unavailable model(s) {_show(unknown)}; "
                                   f"choose from {', '.join(available)}")
        elif len(set(map(str, fr_models))) != len(fr_models):
            errors["fr_models"] = "each model may appear only once"
    fr_models = [str(m) for m in fr_models]

    fmr_items = _as_list(data.get("target_fmr", [1e-3]))
    fmrs = [_number(x) for x in fmr_items or []]
    if len(fmrs) > MAX_TARGET_FMRS:
        errors["target_fmr"] = _too_many("target FMRs", len(fmrs), MAX_TARGET_FMRS,
                                         "keep the false-match rates you will report")
        fmrs = []
    elif not fmrs or any(f is None or not 0 < f < 0.5 for f in fmrs):
        errors["target_fmr"] = "one or more false-match rates between 0 and 0.5, e.g. 0.001"
        fmrs = []
    target_fmr = sorted({float(f) for f in fmrs if f is not None}, reverse=True)

    raw_thresholds = data.get("thresholds", []) or []
    items = _as_list(raw_thresholds)
    values = [_number(x) for x in items or []]
    if len(values) > MAX_THRESHOLDS:
        errors["thresholds"] = _too_many("thresholds", len(values), MAX_THRESHOLDS,
                                         "keep the decision thresholds you will report")
        values = []
    elif items is None or any(v is None or not -1.0 <= v <= 1.0 for v in values):
        errors["thresholds"] = ("optional fixed decision thresholds on the cosine scale, numbers "
                                "from -1 to 1, e.g. 0.4")
        values = []
    thresholds = sorted({float(v) for v in values if v is not None})

    if not errors:
        n_groups = math.prod(len(v) for v in groups.values())
        n_images = n_groups * ipg_int * (2 + sum(len(v) for v in factors.values()))
        if n_images > MAX_IMAGES:
            errors["identities_per_group"] = (
                f"this design makes {n_images:,} images, more than the limit of {MAX_IMAGES:,}; "
                "use fewer identities per group, groups or factor levels")
    if errors:
        raise ConfigError(errors)
    return AuditConfig(name=name.strip(), seed=seed, groups=groups,
                       identities_per_group=ipg_int, factors=factors, generator=generator,
                       fr_models=fr_models, target_fmr=target_fmr, description=description,
                       thresholds=thresholds)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or JSON config file into a mapping (not yet validated).

    Raises :class:`ConfigError` for unreadable, oversized or malformed files.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ConfigError({"config": f"cannot read {p}: {exc.strerror}"}) from None
    if size > MAX_CONFIG_BYTES:
        raise ConfigError({"config": f"{p} is {size:,} bytes; the limit is {MAX_CONFIG_BYTES:,}"})
    text = p.read_text(encoding="utf-8", errors="replace")
    return parse_config_text(text, yaml_syntax=p.suffix.lower() in (".yaml", ".yml"))


class _AliasRefused(Exception):
    def __init__(self, mark: Any):
        super().__init__()
        self.line = mark.line + 1 if mark is not None else None


def _no_alias_loader():
    """A safe YAML loader that refuses anchors (``&name``) and aliases (``*name``): an alias
    repeats a whole subtree, so a few hundred bytes of nested aliases (the "billion laughs")
    expand to gigabytes. A config never needs them."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):  # type: ignore[override]
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise _AliasRefused(event.start_mark)
            return super().compose_node(parent, index)

    return NoAliasLoader


def parse_config_text(text: str, *, yaml_syntax: bool = True) -> dict[str, Any]:
    """Parse config text (YAML, a superset of JSON, or strict JSON) into a mapping.

    YAML anchors and aliases are refused (see :func:`_no_alias_loader`), as is text over
    MAX_CONFIG_BYTES; error messages quote at most a short part of the input.
    """
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_CONFIG_BYTES:
        raise ConfigError({"config": f"the config is {size:,} bytes; the limit is "
                                     f"{MAX_CONFIG_BYTES:,}"})
    try:
        if yaml_syntax:
            import yaml

            data = yaml.load(text, Loader=_no_alias_loader())  # noqa: S506 (a SafeLoader)
        else:
            data = json.loads(text)
    except _AliasRefused as exc:
        where = f" (line {exc.line})" if exc.line else ""
        raise ConfigError({"config": f"YAML anchors and aliases (&name, *name) are not accepted "
                                     f"in audit configs{where}: write the list out in full"}
                          ) from None
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError carry the line number
        raise ConfigError({"config": f"not valid {'YAML' if yaml_syntax else 'JSON'}: "
                                     f"{_clip(str(exc), 4 * MAX_ECHO)}"}) from None
    if not isinstance(data, dict):
        raise ConfigError({"config": "the file must hold a mapping of fields to values"})
    return data
