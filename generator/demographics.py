"""The demographic axes an audit's groups are made of, and what decides each level.

Each level is decided by an attribute sensor on the generated face (perceived attributes, never
"true" ones). The config schema (:mod:`generator.config`), the web form and the diffusion
prompts' group anchors (:mod:`generator.diffusion.prompts`) all read :data:`GROUP_AXES`; a new
axis or level is added here (and to the sensors that decide it, ``worker.labels``). Nothing here
imports anything beyond the standard library.
"""

from __future__ import annotations

# Skin-tone bands follow the ITA scale of Chardon et al. (1991) as used by Del Bino et al.
# (2013); "lighter"/"darker" split it at 28 degrees.
#: Axis -> its levels, in the order the form and error messages list them.
GROUP_AXES: dict[str, tuple[str, ...]] = {
    "perceived_gender": ("female", "male"),
    "skin_tone": ("lighter", "darker", "very_light", "light", "intermediate", "tan", "brown", "dark"),
    "age_band": ("under_30", "30_to_49", "50_plus"),
}
#: Axis -> how its level is decided (the web form's help text).
AXIS_HELP: dict[str, str] = {
    "perceived_gender": "perceived gender from the gender-age model (probability of male >= 0.5)",
    "skin_tone": "cheek skin of the baseline face: lighter or darker by the skin tone index (a "
                 "skin colour angle that a change of lighting leaves in place; split at 73.5 "
                 "deg), or one of the six ITA bands (which follow the lighting)",
    "age_band": "perceived age from the gender-age model",
}
