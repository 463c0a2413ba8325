"""The create-audit form. It builds a config mapping and validates it with the same
:func:`generator.config.parse_config` that config files and ``run_audit`` use, then maps each
error back onto the field the researcher typed it in."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings

from audit.planner import (
    DEFAULT_FNMR,
    DEFAULT_ICC,
    Assumptions,
    Plan,
    PlanningError,
    parse_assumptions,
    plan_for_config,
)
from generator.config import (
    AXIS_HELP,
    DEFAULT_FR_MODELS,
    DEFAULT_GENERATOR,
    FACTORS,
    GENERATORS,
    GROUP_AXES,
    PROMPT_GENERATORS,
    AuditConfig,
    ConfigError,
    parse_config,
    prompt_factors,
)


def _unavailable_fr_models() -> dict[str, str]:
    from webapp.audits.model_status import unavailable_fr_models

    try:
        return unavailable_fr_models()
    except OSError:
        return {}


def _scoring_problem() -> str | None:
    from webapp.audits.model_status import scoring_problem

    return scoring_problem()


def available_fr_models() -> list[str]:
    from webapp.audits.availability import available_fr_models as found

    try:
        return found() or list(DEFAULT_FR_MODELS)
    except Exception:  # a broken model folder must not break the form; validation reports it
        return list(DEFAULT_FR_MODELS)


def identity_judge_problem(config: AuditConfig) -> str | None:
    """Why no FR model can judge identity for this design (every one is under test or
    conditions the generator), naming the fix; None when one can or none is needed. Launch is
    refused with this reason instead of the audit failing later."""
    from webapp.audits.availability import NoIdentityJudge, identity_judge_for

    try:
        identity_judge_for(config)
    except NoIdentityJudge as exc:
        return str(exc)
    return None


def available_generators() -> list[str]:
    from webapp.audits.availability import available_generators as configured

    return configured()


#: Shown under the generator when a diffusion generator is offered.
DIFFUSION_IDENTITY_HELP = (
    "diffusion generators take each identity from the embedding of the face-recognition model "
    "they were trained on, computed as their authors computed it: IP-Adapter FaceID (SD 1.5, "
    "SDXL) only from insightface buffalo_l's ArcFace, Arc2Face only from its own arcface.onnx "
    "(the operator's configuration may name no other). That model never judges identity "
    "drift, and an identity is kept only when the sensors place both its anchor face and its "
    "baseline in its group")


def prompt_field(factor: str) -> str:
    return f"prompt_{factor}"


def axis_field(axis: str) -> str:
    return f"axis_{axis}"


def factor_field(factor: str) -> str:
    return f"factor_{factor}"


class AuditForm(forms.Form):
    name = forms.CharField(max_length=200, required=False,
                           widget=forms.TextInput(attrs={"placeholder": "e.g. Blur vs skin tone"}))
    identities_per_group = forms.CharField(
        required=False, initial="30", label="Identities per group",
        help_text="synthetic people in every group (2 to 500); groups are ranked against each "
                  "other only with 20 or more",
        widget=forms.NumberInput(attrs={"min": 2, "max": 500}))
    generator = forms.ChoiceField(initial=DEFAULT_GENERATOR)
    fr_models = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                          label="FR models under test")
    target_fmr = forms.CharField(required=False, initial="0.001", label="Target FMR",
                                 help_text="false-match rate(s) for the global threshold, "
                                           "comma-separated, e.g. 0.01, 0.001")
    seed = forms.CharField(required=False, initial="0",
                           help_text="same config + seed = same images and numbers",
                           widget=forms.NumberInput(attrs={"min": 0}))
    planning_fnmr = forms.CharField(
        required=False, initial=str(DEFAULT_FNMR), label="Expected FNMR (for planning)",
        help_text=f"the false non-match rate you expect at your strictest target FMR; Check uses "
                  f"it to say how precise the audit will be. Default {DEFAULT_FNMR:g}: a good "
                  f"FR model at FMR 0.001 on mildly degraded faces. MobileFaceNet runs at about "
                  f"0.01-0.03 on the photoreal default with pose and lighting edits, and at "
                  f"about 0.3 on the 64-px DCGAN with blur and downscale levels",
        widget=forms.TextInput(attrs={"inputmode": "decimal"}))
    planning_icc = forms.CharField(
        required=False, initial=str(DEFAULT_ICC), label="Intra-identity correlation (for planning)",
        help_text=f"how strongly one identity's comparisons fail together (0 to 1); intervals "
                  f"widen by the design effect 1 + (m - 1) x correlation for m mated comparisons "
                  f"per identity. Default {DEFAULT_ICC:g} (measured 0.04 to 0.07 on the default "
                  f"generator, rounded up)",
        widget=forms.TextInput(attrs={"inputmode": "decimal"}))

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.config: AuditConfig | None = None
        self.assumptions: Assumptions | None = None
        self.fr_choices = available_fr_models()
        self.unavailable_fr_models = _unavailable_fr_models()
        self.generator_choices = available_generators()
        self.fields["generator"].choices = [(k, f"{k}: {GENERATORS[k]}")
                                            for k in self.generator_choices]
        if DEFAULT_GENERATOR not in self.generator_choices and self.generator_choices:
            self.fields["generator"].initial = self.generator_choices[0]
        if any(g in PROMPT_GENERATORS for g in self.generator_choices):
            self.fields["generator"].help_text = DIFFUSION_IDENTITY_HELP
        for name, levels in prompt_factors().items():
            self.fields[prompt_field(name)] = forms.MultipleChoiceField(
                required=False, choices=[(lv, lv.replace("_", " ")) for lv in levels],
                widget=forms.CheckboxSelectMultiple, label=f"{name} (prompt)",
                help_text="diffusion generators only: each ticked level changes one phrase of "
                          "the prompt, same seed and identity")
        self.fields["fr_models"].choices = [(m, m) for m in self.fr_choices]
        self.fields["fr_models"].initial = self.fr_choices[:1]
        defaults = {"perceived_gender": ["female", "male"], "skin_tone": ["lighter", "darker"]}
        for axis, levels in GROUP_AXES.items():
            self.fields[axis_field(axis)] = forms.MultipleChoiceField(
                required=False, choices=[(lv, lv) for lv in levels],
                widget=forms.CheckboxSelectMultiple, label=axis.replace("_", " "),
                help_text=AXIS_HELP[axis], initial=defaults.get(axis, []))
        factor_defaults = {"blur": "1.5, 3", "downscale": "24, 16"}
        for name, spec in FACTORS.items():
            self.fields[factor_field(name)] = forms.CharField(
                required=False, label=name, initial=factor_defaults.get(name, ""),
                help_text=f"{spec.help}; levels in {spec.unit}, {spec.minimum:g} to "
                          f"{spec.maximum:g}; leave empty to not vary it",
                widget=forms.TextInput(attrs={"data-factor": name}))

    @property
    def axis_fields(self):
        return [self[axis_field(a)] for a in GROUP_AXES]

    @property
    def factor_fields(self):
        return [self[factor_field(f)] for f in FACTORS]

    @property
    def prompt_fields(self):
        return [self[prompt_field(f)] for f in prompt_factors()]

    @property
    def prompt_generators(self) -> list[str]:
        """The offered generators driven by prompts (their factors are shown only then)."""
        return [g for g in self.generator_choices if g in PROMPT_GENERATORS]

    @property
    def prompt_driven(self) -> bool:
        return self.data.get("generator") in PROMPT_GENERATORS

    def to_config_mapping(self) -> dict[str, Any]:
        d = self.cleaned_data
        return {
            "name": d.get("name", ""),
            "seed": (d.get("seed") or "0").strip(),
            "groups": {a: d[axis_field(a)] for a in GROUP_AXES if d.get(axis_field(a))},
            "identities_per_group": (d.get("identities_per_group") or "").strip(),
            "factors": self._factors(d),
            "generator": d.get("generator"),
            "fr_models": d.get("fr_models") or [],
            "target_fmr": d.get("target_fmr", ""),
        }

    def _factors(self, d: dict[str, Any]) -> dict[str, Any]:
        """Numeric factors typed in; with a prompt-driven generator, its ticked prompt levels
        (latent edits do not apply there and are left for the validator to name)."""
        out = {f: d[factor_field(f)] for f in FACTORS if d.get(factor_field(f), "").strip()}
        if d.get("generator") in PROMPT_GENERATORS:
            out.update({f: d[prompt_field(f)] for f in prompt_factors()
                        if d.get(prompt_field(f))})
        return out

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        self.assumptions = self._assumptions(cleaned)
        if self.errors:
            return cleaned
        try:
            self.config = parse_config(self.to_config_mapping(),
                                       fr_models_available=self.fr_choices,
                                       generators_available=self.generator_choices)
        except ConfigError as exc:
            for key, message in exc.errors.items():
                field, _, sub = key.partition(".")
                if field == "groups":
                    target = axis_field(sub) if sub in GROUP_AXES else None
                    msg = message if target else f"Demographic groups: {message}"
                elif field == "factors":
                    if self.prompt_driven and sub in prompt_factors():
                        target = prompt_field(sub)
                    else:
                        target = factor_field(sub) if sub in FACTORS else None
                    msg = message if target else f"Factors: {message}"
                elif field in self.fields:
                    target, msg = field, message
                else:
                    target, msg = None, f"{key}: {message}"
                self.add_error(target, msg)
            return cleaned
        problem = identity_judge_problem(self.config)
        if problem:
            self.add_error("fr_models", problem)
        problem = _scoring_problem()
        if problem:
            self.add_error(None, problem)
        return cleaned

    def _assumptions(self, cleaned: dict[str, Any]) -> Assumptions | None:
        """The planning values, or None after putting their errors on their fields."""
        try:
            return parse_assumptions(cleaned.get("planning_fnmr"), cleaned.get("planning_icc"))
        except PlanningError as exc:
            for field, message in exc.errors.items():
                self.add_error(field, message)
            return None

    def plan(self) -> Plan | None:
        """What the validated design can show (:mod:`audit.planner`), or None."""
        if self.config is None or self.assumptions is None:
            return None
        return plan_for_config(self.config, self.assumptions,
                               seconds_per_image=settings.FACEAUDIT_SECONDS_PER_IMAGE)

    def estimate(self) -> dict[str, Any] | None:
        """Image count and run time of the validated design, with its ``plan``."""
        if self.config is None:
            return None
        seconds = self.config.n_images * settings.FACEAUDIT_SECONDS_PER_IMAGE
        return {"groups": self.config.n_groups, "variants": self.config.n_variants,
                "identities": self.config.n_groups * self.config.identities_per_group,
                "images": self.config.n_images, "minutes": max(1, round(seconds / 60)),
                "plan": self.plan()}
