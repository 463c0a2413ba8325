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
YAML anchors and aliases are refused (:mod:`generator.config_files` reads files and text).

The factors and their levels come from :mod:`generator.factor_spec`, the demographic axes from
:mod:`generator.demographics`, the generators from :mod:`generator.registry`; the names
``FACTORS``, ``GROUP_AXES`` etc. are importable from here too. Nothing here imports Django or
torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from generator.config_files import MAX_CONFIG_BYTES, load_config_file, parse_config_text
from generator.config_values import (
    MAX_ECHO,
    ConfigError,
    as_list,
    number,
    parse_seed,
    show,
    too_many,
)
from generator.demographics import AXIS_HELP, GROUP_AXES
from generator.factor_spec import (
    FACTORS,
    IMAGE_FACTORS,
    LATENT,
    LATENT_FACTORS,
    FactorSpec,
    prompt_factors,
)
from generator.registry import BACKENDS

__all__ = [
    "AXIS_HELP", "DEFAULT_FR_MODELS", "DEFAULT_GENERATOR", "DEFAULT_GENERATORS", "FACTORS",
    "FIELDS", "GENERATORS", "GROUP_AXES", "LATENT_FACTORS", "MAX_CONFIG_BYTES", "MAX_ECHO",
    "MAX_FR_MODELS", "MAX_IDENTITIES_PER_GROUP", "MAX_IMAGES", "MAX_LEVELS_PER_AXIS",
    "MAX_LEVELS_PER_FACTOR", "MAX_NAME_LENGTH", "MAX_TARGET_FMRS", "MAX_THRESHOLDS",
    "MAX_UNKNOWN_FIELDS_NAMED", "MIN_GROUPS", "PROMPT_GENERATORS", "AuditConfig", "ConfigError",
    "FactorSpec", "load_config_file", "parse_config", "parse_config_text", "prompt_factors",
]

#: Generator names and one-line descriptions, from the backend registry (generator.registry).
GENERATORS: dict[str, str] = {name: spec.description for name, spec in BACKENDS.items()}
#: Generators driven by prompts: attribute edits change one phrase of the prompt.
PROMPT_GENERATORS = frozenset(name for name, spec in BACKENDS.items() if spec.prompt_driven)
#: Offline generators that the set-up installs from PyPI (no weights to configure).
DEFAULT_GENERATORS: tuple[str, ...] = tuple(name for name, spec in BACKENDS.items()
                                            if spec.offline)
#: The generator of a config that names none: photoreal MobileStyleGAN.
DEFAULT_GENERATOR = DEFAULT_GENERATORS[0]
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
MAX_DESCRIPTION_LENGTH = 5000
#: Unknown fields named one by one; more are counted in one message.
MAX_UNKNOWN_FIELDS_NAMED = 5
FIELDS = ("name", "description", "seed", "groups", "identities_per_group", "factors", "generator",
          "fr_models", "target_fmr", "thresholds")


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


def parse_config(
    data: Any, *, fr_models_available: Iterable[str] = DEFAULT_FR_MODELS,
    generators_available: Iterable[str] = DEFAULT_GENERATORS,
) -> AuditConfig:
    """Validate a config mapping and return an :class:`AuditConfig`.

    Raises :class:`ConfigError` listing every problem at once, keyed by field (nested fields as
    ``groups.skin_tone`` or ``factors.blur``). Each block of the config has its own step below;
    a step records its problems in ``errors`` and returns a stand-in value, so the later steps
    still run and report theirs.
    """
    if not isinstance(data, Mapping):
        raise ConfigError({"config": "the config must be a mapping of fields to values "
                                     f"(fields: {', '.join(FIELDS)})"})
    errors: dict[str, str] = {}
    _check_fields(data, errors)
    name = _parse_name(data.get("name"), errors)
    description = _parse_description(data.get("description", ""), errors)
    seed = _parse_seed(data.get("seed", 0), errors)
    groups = _parse_groups(data.get("groups"), errors)
    identities_per_group = _parse_identities(data.get("identities_per_group"), errors)
    generator = _parse_generator(data.get("generator", DEFAULT_GENERATOR),
                                 list(generators_available), errors)
    factors = _parse_factors(data.get("factors"), errors,
                             prompt_driven=generator in PROMPT_GENERATORS)
    fr_models = _parse_fr_models(data.get("fr_models", list(DEFAULT_FR_MODELS)),
                                 list(fr_models_available), errors)
    target_fmr = _parse_target_fmr(data.get("target_fmr", [1e-3]), errors)
    thresholds = _parse_thresholds(data.get("thresholds", []), errors)
    if not errors:
        _check_size(groups, identities_per_group, factors, errors)
    if errors:
        raise ConfigError(errors)
    return AuditConfig(name=name, seed=seed, groups=groups,
                       identities_per_group=identities_per_group, factors=factors,
                       generator=generator, fr_models=fr_models, target_fmr=target_fmr,
                       description=description, thresholds=thresholds)


def _check_fields(data: Mapping[Any, Any], errors: dict[str, str]) -> None:
    """Unknown fields: the first :data:`MAX_UNKNOWN_FIELDS_NAMED` each under its own name, the
    count of all of them under ``config`` when there are more."""
    unknown = [key for key in data if key not in FIELDS]
    for key in unknown[:MAX_UNKNOWN_FIELDS_NAMED]:
        errors[show(key)] = f"unknown field; known fields: {', '.join(FIELDS)}"
    if len(unknown) > MAX_UNKNOWN_FIELDS_NAMED:
        errors["config"] = (f"{len(unknown):,} unknown fields (the first "
                            f"{MAX_UNKNOWN_FIELDS_NAMED} are named); known fields: "
                            + ", ".join(FIELDS))


def _parse_name(raw: Any, errors: dict[str, str]) -> str:
    """The audit's name, stripped: non-blank text of at most :data:`MAX_NAME_LENGTH`."""
    if not isinstance(raw, str) or not raw.strip():
        errors["name"] = "give the audit a name"
        return ""
    if len(raw) > MAX_NAME_LENGTH:
        errors["name"] = f"use at most {MAX_NAME_LENGTH} characters"
        return ""
    return raw.strip()


def _parse_description(raw: Any, errors: dict[str, str]) -> str:
    """An optional free text (None and empty values give ``""``)."""
    description = raw or ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH:
        errors["description"] = f"a text of at most {MAX_DESCRIPTION_LENGTH} characters"
        return ""
    return description


def _parse_seed(raw: Any, errors: dict[str, str]) -> int:
    """The audit seed, 0 to 2**32 - 1 (see :func:`generator.config_values.parse_seed`)."""
    seed = parse_seed(raw)
    if seed is None:
        errors["seed"] = "a whole number from 0 to 4294967295"
        return 0
    return seed


def _parse_groups(raw: Any, errors: dict[str, str]) -> dict[str, list[str]]:
    """The demographic axes and their levels (:func:`_axis_levels`), making at least
    :data:`MIN_GROUPS` groups in all."""
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
        names = _axis_levels(axis, levels, errors)
        if names is not None:
            groups[str(axis)] = names
    n_groups = math.prod(len(v) for v in groups.values())
    if groups and len(groups) == len(raw) and n_groups < MIN_GROUPS:
        errors["groups"] = (f"these levels make {n_groups} group; an audit compares at least "
                            f"{MIN_GROUPS}: list two or more levels on at least one axis (an "
                            "axis with one level only restricts every group to it)")
    return groups


def _axis_levels(axis: Any, levels: Any, errors: dict[str, str]) -> list[str] | None:
    """One demographic axis' levels, each once, from :data:`GROUP_AXES` (not mixing the coarse
    skin-tone split with the ITA bands); None (and ``errors["groups.<axis>"]``) when invalid."""
    key = f"groups.{show(axis)}"
    if axis not in GROUP_AXES:
        errors[key] = f"unknown axis {show(axis)!r}; choose from {', '.join(GROUP_AXES)}"
        return None
    items = as_list(levels)
    if not items:
        errors[key] = f"list one or more levels, from {', '.join(GROUP_AXES[axis])}"
        return None
    limit = min(MAX_LEVELS_PER_AXIS, len(GROUP_AXES[axis]))
    if len(items) > limit:
        errors[key] = (f"{len(items):,} levels; at most {limit} on this axis: list each "
                       f"level once, from {', '.join(GROUP_AXES[axis])}")
        return None
    # Levels are words: a number never names one (and str() of a huge int would raise).
    bad = [x for x in items if not isinstance(x, str) or x not in GROUP_AXES[axis]]
    if bad:
        errors[key] = (f"unknown level(s) {show(bad)}; choose from "
                       f"{', '.join(GROUP_AXES[axis])}")
        return None
    names = [str(x) for x in items]
    if len(set(names)) != len(names):
        errors[key] = "each level may appear only once"
        return None
    if axis == "skin_tone" and {"lighter", "darker"} & set(names) and len(
            set(names) - {"lighter", "darker"}):
        errors[key] = ("mix of coarse (lighter/darker) and fine ITA bands overlaps; use "
                       "either lighter, darker or the six bands")
        return None
    return names


def _parse_identities(raw: Any, errors: dict[str, str]) -> int:
    """Identities per group: a whole number from 2 (the least that gives non-mated comparisons)
    to :data:`MAX_IDENTITIES_PER_GROUP`."""
    value = number(raw)
    if value is None or value != int(value) or not 2 <= value <= MAX_IDENTITIES_PER_GROUP:
        errors["identities_per_group"] = (
            f"a whole number from 2 to {MAX_IDENTITIES_PER_GROUP} (two identities are the least "
            "that give non-mated comparisons)")
        return 2
    return int(value)


def _parse_generator(raw: Any, available: list[str], errors: dict[str, str]) -> str:
    """A generator of the registry that is set up here (``available``). A name that is not text
    stands in as :data:`DEFAULT_GENERATOR`; an unknown or unavailable one is returned as given
    (it then picks the GAN factors)."""
    if not isinstance(raw, str):
        errors["generator"] = f"a generator name; choose from {', '.join(available)}"
        return DEFAULT_GENERATOR
    if raw not in GENERATORS:
        errors["generator"] = (f"unknown generator {show(raw)!r}; choose from "
                               f"{', '.join(available)}")
    elif raw not in available:
        errors["generator"] = (f"{raw} is not set up on this installation (its weights are "
                               f"configured with FACEAUDIT_DIFFUSION); choose from "
                               f"{', '.join(available)}")
    return raw


def _parse_factors(raw: Any, errors: dict[str, str],
                   prompt_driven: bool = False) -> dict[str, list[float | str]]:
    """The factors and their levels. A prompt-driven generator takes the prompt factors (named
    levels) and the image factors; the others take :data:`FACTORS` (numbers in each unit)."""
    prompts = prompt_factors() if prompt_driven else {}
    allowed = [*prompts, *IMAGE_FACTORS] if prompt_driven else list(FACTORS)
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
        key = f"factors.{show(name)}"
        spec = FACTORS.get(str(name))
        if str(name) in prompts:
            parsed = _prompt_levels(levels, prompts[str(name)], key, errors)
        elif spec is not None and prompt_driven and spec.kind == LATENT:
            errors[key] = (f"{name} is a latent edit of GAN generators; with a prompt-driven "
                           f"generator use the prompt factors {', '.join(prompts)}")
            continue
        elif spec is None:
            errors[key] = f"unknown factor {show(name)!r}; choose from {', '.join(FACTORS)}"
            continue
        else:
            parsed = _factor_levels(levels, spec, key, errors)
        if parsed is not None:
            factors[str(name)] = parsed
    return factors


def _prompt_levels(raw: Any, choices: tuple[str, ...], key: str,
                   errors: dict[str, str]) -> list[float | str] | None:
    """A prompt factor's named levels from ``choices``, each once; None (and ``errors[key]``)
    when invalid."""
    names = [str(x) for x in as_list(raw) or []]
    bad = [x for x in names if x not in choices]
    if len(names) > MAX_LEVELS_PER_FACTOR:
        errors[key] = too_many("levels", len(names), MAX_LEVELS_PER_FACTOR,
                               "keep the levels you want to compare")
    elif not names or bad:
        errors[key] = (f"choose named levels from {', '.join(choices)}"
                       + (f" (not {show(bad)})" if bad else ""))
    elif len(set(names)) != len(names):
        errors[key] = "each level may appear only once"
    else:
        return list(names)
    return None


def _factor_levels(raw: Any, spec: FactorSpec, key: str,
                   errors: dict[str, str]) -> list[float | str] | None:
    """A GAN factor's levels: numbers in ``spec``'s unit and range, each once (whole numbers for
    an integer factor, never 0 for a latent edit); None (and ``errors[key]``) when invalid."""
    items = as_list(raw)
    if not items:
        errors[key] = f"give one or more levels ({spec.unit}), separated by commas"
        return None
    if len(items) > MAX_LEVELS_PER_FACTOR:
        errors[key] = too_many("levels", len(items), MAX_LEVELS_PER_FACTOR,
                               "keep the levels you want to compare, or split the "
                               "factor over two audits")
        return None
    values = [number(x) for x in items]
    if any(v is None for v in values):
        errors[key] = f"levels must be numbers ({spec.unit}); got {show(items)}"
        return None
    out: list[float | str] = [float(v) for v in values if v is not None]
    if spec.integer and any(v != int(v) for v in out):
        errors[key] = f"levels must be whole numbers ({spec.unit})"
    elif any(not spec.minimum <= v <= spec.maximum for v in out):
        errors[key] = (f"levels must lie between {spec.minimum:g} and {spec.maximum:g} "
                       f"({spec.unit})")
    elif len(set(out)) != len(out):
        errors[key] = "each level may appear only once"
    elif spec.kind == LATENT and 0.0 in out:
        errors[key] = "a change of 0 is the baseline itself; give non-zero changes"
    else:
        return out
    return None


def _parse_fr_models(raw: Any, available: list[str], errors: dict[str, str]) -> list[str]:
    """The FR models under test: one to :data:`MAX_FR_MODELS` of ``available``, each once."""
    fr_models = as_list(raw)
    if not fr_models:
        errors["fr_models"] = f"choose at least one FR model from {', '.join(available)}"
        return []
    if len(fr_models) > MAX_FR_MODELS:
        errors["fr_models"] = too_many("FR models", len(fr_models), MAX_FR_MODELS,
                                       "compare the others in a second audit")
        return []
    unknown = [m for m in fr_models if str(m) not in available]
    if unknown:
        errors["fr_models"] = (f"unknown or unavailable model(s) {show(unknown)}; "
                               f"choose from {', '.join(available)}")
    elif len(set(map(str, fr_models))) != len(fr_models):
        errors["fr_models"] = "each model may appear only once"
    return [str(m) for m in fr_models]


def _parse_target_fmr(raw: Any, errors: dict[str, str]) -> list[float]:
    """Target false-match rates in (0, 0.5), at most :data:`MAX_TARGET_FMRS`, distinct and in
    descending order."""
    fmrs = [number(x) for x in as_list(raw) or []]
    if len(fmrs) > MAX_TARGET_FMRS:
        errors["target_fmr"] = too_many("target FMRs", len(fmrs), MAX_TARGET_FMRS,
                                        "keep the false-match rates you will report")
        return []
    if not fmrs or any(f is None or not 0 < f < 0.5 for f in fmrs):
        errors["target_fmr"] = "one or more false-match rates between 0 and 0.5, e.g. 0.001"
        return []
    return sorted({float(f) for f in fmrs if f is not None}, reverse=True)


def _parse_thresholds(raw: Any, errors: dict[str, str]) -> list[float]:
    """Optional fixed decision thresholds on the cosine scale, in [-1, 1], at most
    :data:`MAX_THRESHOLDS`, distinct and in ascending order."""
    items = as_list(raw or [])
    values = [number(x) for x in items or []]
    if len(values) > MAX_THRESHOLDS:
        errors["thresholds"] = too_many("thresholds", len(values), MAX_THRESHOLDS,
                                        "keep the decision thresholds you will report")
        return []
    if items is None or any(v is None or not -1.0 <= v <= 1.0 for v in values):
        errors["thresholds"] = ("optional fixed decision thresholds on the cosine scale, numbers "
                                "from -1 to 1, e.g. 0.4")
        return []
    return sorted({float(v) for v in values if v is not None})


def _check_size(groups: Mapping[str, list[str]], identities_per_group: int,
                factors: Mapping[str, list[float | str]], errors: dict[str, str]) -> None:
    """The whole design's image count against :data:`MAX_IMAGES` (checked once everything else
    is valid)."""
    n_groups = math.prod(len(v) for v in groups.values())
    n_images = n_groups * identities_per_group * (2 + sum(len(v) for v in factors.values()))
    if n_images > MAX_IMAGES:
        errors["identities_per_group"] = (
            f"this design makes {n_images:,} images, more than the limit of {MAX_IMAGES:,}; "
            "use fewer identities per group, groups or factor levels")
