"""Turn an audit design into identity-controlled synthetic face images.

The experiment: every demographic group gets the same number of synthetic identities; each
identity has one *baseline* image and one *variant* per factor level, made from that baseline
with everything else (identity latent, seed) held fixed. Comparing a variant with its own
baseline isolates the factor's effect on face recognition.

Where things go:

- **A new factor** is one entry in :mod:`generator.factor_spec`: in ``FACTORS`` for an image
  factor (plus its pixel function in :mod:`generator.factors`, named by the entry's ``apply``) or
  a latent edit (its ``sensor`` needs a learned direction), in ``PROMPT_FACTOR_SPECS`` for a
  prompt phrase of the diffusion backends. The entry gives the unit, the allowed levels, the help
  text, how the variant is made and which sensors it may move; the config schema, the web form,
  the checks and the prompts all read it.
- **A new generator** is one module with a loader plus one :class:`~generator.registry.BackendSpec`
  line in ``BACKENDS`` of :mod:`generator.registry` (a latent GAN's loader returns a
  :class:`generator.latent_backend.LatentBackend` over its
  :class:`~generator.backends.LatentGenerator`; diffusion routes live in
  :mod:`generator.diffusion`). The config's ``generator`` choices come from the registry.
- **A new demographic axis or level** goes in :mod:`generator.demographics`.

The modules (all framework-free; nothing here imports Django, and only the backend modules
import torch, lazily):

- :mod:`generator.config`: :class:`AuditConfig`, :func:`parse_config`, :class:`ConfigError`,
  the schema shared by the web form, config files and ``run_audit``;
  :mod:`generator.config_values` reads and echoes a user's values, :mod:`generator.config_files`
  reads YAML/JSON files safely.
- :mod:`generator.factor_spec`, :mod:`generator.demographics`: what can vary, and the groups.
- :mod:`generator.design`: :func:`plan_design` (groups x identities x variants) and
  :func:`derive_seed` (deterministic per-cell seeds).
- :mod:`generator.factors`: the image factors' pixel operations, applied deterministically.
- :mod:`generator.registry`: the backend interface and the registry of generators;
  :mod:`generator.backends` (latent-generator interface, the offline DCGAN),
  :mod:`generator.mobilestylegan` (photoreal default; files in
  :mod:`generator.mobilestylegan_files`, torch port in :mod:`generator.mobilestylegan_torch` over
  the OpenVINO IR interpreter :mod:`generator.openvino_ir` and its ops
  :mod:`generator.openvino_ir_ops`), :mod:`generator.diffusion` (weights the operator supplies).
- :mod:`generator.identities`, :mod:`generator.guidance`: sampling identities until every group
  is filled, as judged by attribute sensors the caller supplies, aimed by learned directions.
- :mod:`generator.directions`, :mod:`generator.editing`: latent directions, latent edits and the
  checks on every image; :mod:`generator.render`: baseline and image-factor variants with recipes.

Import order is one-way (no module imports one that imports it back, even inside a function):
the specifications (factor_spec, demographics, registry) import no other generator module.
"""

from generator.config import AuditConfig, ConfigError, load_config_file, parse_config
from generator.design import Design, Variant, derive_seed, plan_design

__all__ = [
    "AuditConfig",
    "ConfigError",
    "Design",
    "Variant",
    "derive_seed",
    "load_config_file",
    "parse_config",
    "plan_design",
]
