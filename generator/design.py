"""The audit design: groups x identities x (baseline + control + one variant per factor level).

Every cell of the design gets a seed derived from the audit seed and the cell's coordinates
(:func:`derive_seed`), so a cell can be regenerated alone, on any worker, in any order, and
come out the same.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass

from generator.config import AuditConfig

BASELINE = "baseline"
#: A null re-capture of the baseline (1-pixel shift + JPEG quality 95): its mated score against
#: the baseline is the reference condition that every factor's effect is measured against
#: (a baseline compared with itself would score exactly 1).
CONTROL = "control"


def derive_seed(audit_seed: int, *parts: object) -> int:
    """A 63-bit seed from the audit seed and any cell coordinates.

    Uses BLAKE2b over the ``repr`` of the parts, so it is stable across processes, platforms and
    Python versions (unlike ``hash()``), and independent cells get unrelated streams.
    """
    text = "\x1f".join([str(int(audit_seed)), *(repr(p) for p in parts)])
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


@dataclass(frozen=True)
class Variant:
    """One image per identity: the baseline (``factor == "baseline"``, ``level is None``) or a
    factor at one level."""

    factor: str
    level: float | str | None  # a number in the factor's unit, or a named prompt level

    @property
    def is_baseline(self) -> bool:
        return self.factor == BASELINE

    @property
    def key(self) -> str:
        """Stable short name, used in file names: ``baseline`` or ``blur_1.5``."""
        if self.is_baseline:
            return BASELINE
        if self.level is None:
            return self.factor
        level = self.level if isinstance(self.level, str) else f"{self.level:g}"
        return f"{self.factor}_{level}"


@dataclass(frozen=True)
class Group:
    """One demographic cell, e.g. ``{"perceived_gender": "female", "skin_tone": "darker"}``."""

    labels: tuple[tuple[str, str], ...]

    @property
    def as_dict(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def name(self) -> str:
        """Human-readable and stable: ``female / darker`` (levels in axis order)."""
        return " / ".join(level for _, level in self.labels)


@dataclass(frozen=True)
class Design:
    """The planned experiment; sizes follow from the config alone."""

    groups: tuple[Group, ...]
    identities_per_group: int
    variants: tuple[Variant, ...]

    @property
    def n_identities(self) -> int:
        return len(self.groups) * self.identities_per_group

    @property
    def n_images(self) -> int:
        return self.n_identities * len(self.variants)


def plan_design(config: AuditConfig) -> Design:
    """Cross the group axes and list the variants in config order, baseline first."""
    axes = list(config.groups.items())
    groups = tuple(
        Group(labels=tuple(zip([a for a, _ in axes], combo, strict=True)))
        for combo in itertools.product(*[levels for _, levels in axes])
    )
    variants = [Variant(BASELINE, None), Variant(CONTROL, None)]
    for factor, levels in config.factors.items():
        variants.extend(Variant(factor, level if isinstance(level, str) else float(level))
                        for level in levels)
    return Design(groups=groups, identities_per_group=config.identities_per_group,
                  variants=tuple(variants))
