"""Which generators this installation can run: the offline ones whose weights are installed and
the diffusion generators the operator configured (framework-free: the caller passes the
configured routes)."""

from __future__ import annotations

from collections.abc import Container

from generator.registry import BACKENDS


def available_generators(diffusion_configured: Container[str]) -> list[str]:
    """The offline generators that are installed plus the diffusion generators named in
    ``diffusion_configured`` (FACEAUDIT_DIFFUSION), in registry order (the default first)."""
    return [name for name, spec in BACKENDS.items()
            if (spec.offline and spec.is_installed())
            or (not spec.offline and name in diffusion_configured)]
