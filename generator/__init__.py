"""Turn an audit design into identity-controlled synthetic face images.

The experiment: every demographic group gets the same number of synthetic identities; each
identity has one *baseline* image and one *variant* per factor level, made from that baseline
with everything else (identity latent, seed) held fixed. Comparing a variant with its own
baseline isolates the factor's effect on face recognition.

Public names (all framework-free; nothing here imports Django, and only the backend modules
import torch, lazily):

- :mod:`generator.config`: :class:`AuditConfig`, :func:`parse_config`, :class:`ConfigError`,
  the schema shared by the web form, config files and ``run_audit``.
- :mod:`generator.design`: :func:`plan_design` (groups x identities x variants) and
  :func:`derive_seed` (deterministic per-cell seeds).
- :mod:`generator.factors`: image-space factors (blur, down-scaling, JPEG, noise, brightness,
  occlusion) applied deterministically.
- :mod:`generator.backends`: the latent-generator interface and the offline DCGAN default.
- :mod:`generator.identities`: sampling identities until every group is filled, as judged by
  attribute sensors the caller supplies.
- :mod:`generator.render`: baseline and variant images for a batch of identities, with recipes.
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
