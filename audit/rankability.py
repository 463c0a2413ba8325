"""Which demographic groups have cells large enough to be ranked against each other.

A group is rankable when it has at least :data:`MIN_IDENTITIES` identities (the bootstrap's
sampling units, :mod:`audit.resampling`), :data:`MIN_MATED` mated comparisons (FNMR) and
:data:`MIN_NONMATED` within-group non-mated comparisons (FMR; to resolve an FMR of p at all you
need n >= 3 / p by the rule of three, :func:`audit.rates.rule_of_three`). The planner
(:mod:`audit.planner`) predicts the same verdict before an audit runs. Both names are also
importable from :mod:`audit.disparity`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from audit.rates import GroupRates
from audit.uncertainty import BootstrapResult

__all__ = ["MIN_IDENTITIES", "MIN_MATED", "MIN_NONMATED", "rankable_groups"]

#: Default minimum cell sizes of :func:`rankable_groups`.
MIN_IDENTITIES = 20
MIN_MATED = 100
MIN_NONMATED = 1000


def rankable_groups(
    by_group: pd.DataFrame | GroupRates | BootstrapResult,
    *,
    min_identities: int = MIN_IDENTITIES,
    min_mated: int = MIN_MATED,
    min_nonmated: int = MIN_NONMATED,
) -> pd.DataFrame:
    """Which groups have cells large enough to be ranked against each other, and why not.

    A group is rankable when it has at least ``min_identities`` identities (the bootstrap's
    sampling units: with fewer, identity-level variation dominates and percentile intervals are
    unreliable), ``min_mated`` mated comparisons (FNMR) and ``min_nonmated`` within-group
    non-mated comparisons (FMR; to resolve an FMR of p at all you need n >= 3 / p, e.g. 3,000 for
    1e-3, by the rule of three).

    Parameters
    ----------
    by_group:
        A per-group frame with columns ``n_identities``, ``n_mated`` and ``n_nonmated`` (e.g.
        :attr:`GroupRates.by_group`), or a :class:`GroupRates` / :class:`BootstrapResult`.

    Returns
    -------
    pandas.DataFrame
        Indexed by group, columns ``n_identities``, ``n_mated``, ``n_nonmated``, ``rankable``
        (bool) and ``reason`` ("" when rankable, else e.g. ``"12 identities < 20; 40 mated
        comparisons < 100"``).
    """
    frame = by_group.by_group if hasattr(by_group, "by_group") else by_group
    needed = ["n_identities", "n_mated", "n_nonmated"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"by_group is missing column(s) {missing}")
    for name, value in (
        ("min_identities", min_identities),
        ("min_mated", min_mated),
        ("min_nonmated", min_nonmated),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    out = frame[needed].copy()
    reasons = []
    for n_id, n_m, n_nm in out.itertuples(index=False):
        why = []
        if n_id < min_identities:
            why.append(f"{int(n_id)} identities < {min_identities}")
        if n_m < min_mated:
            why.append(f"{int(n_m)} mated comparisons < {min_mated}")
        if n_nm < min_nonmated:
            why.append(f"{int(n_nm)} within-group non-mated comparisons < {min_nonmated}")
        reasons.append("; ".join(why))
    out["rankable"] = [r == "" for r in reasons]
    out["reason"] = reasons
    return out

