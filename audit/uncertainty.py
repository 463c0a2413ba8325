"""Confidence intervals for per-group FNMR and FMR by an identity-level bootstrap.

Comparisons that share an identity are correlated, so the independent sampling units are the
identities: the bootstrap resamples identities with replacement within each demographic group
and rebuilds the comparison set from the drawn identities (the "subsets bootstrap" of Bolle,
Ratha & Pankanti, "Error analysis of pattern recognition systems: the subsets bootstrap",
Computer Vision and Image Understanding 93 (2004) 1-33, in line with ISO/IEC 19795-1). Why
identities and not comparisons, what one replicate is (``FNMR*_g = sum_i k_i fnm_i / sum_i k_i
m_i``, ``FMR*_g = k_g' E_g k_g / k_g' N_g k_g``), how it is computed exactly without rebuilding
the table, and the documented, reproducible draw order (``numpy.random.default_rng(seed)``, one
``rng.integers(0, n_g, size=(n_boot, n_g))`` per group in the order of
:attr:`BootstrapResult.groups`) are described in :mod:`audit.resampling`, the engine this
module, :mod:`audit.cross_group` and :mod:`audit.compare` share.

Intervals are percentile intervals over the replicates (Efron & Tibshirani, "An Introduction to
the Bootstrap", 1993, ch. 13). A replicate whose denominator is zero for a rate (e.g. a group
whose draws all hit one identity has no non-mated pairs) leaves that rate undefined (NaN); such
replicates are dropped from that rate's interval and counted in ``*_n_valid``. When no error was
observed in a group, every replicate is 0 and the percentile interval collapses to ``[0, 0]``;
the interval reported is then ``[0, rule-of-three bound]`` (:func:`audit.rates.rule_of_three`)
and ``*_interval`` says ``"rule_of_three"`` (a one-sided 95% bound whatever ``confidence`` is).
With only a handful of errors in a group the percentile interval is coarse (its lower end is
often 0); read it together with the error counts.

Cross-group FMR matrix
----------------------
:func:`bootstrap_cross_group_fmr` (defined in :mod:`audit.cross_group`, importable from here)
gives every cell ``(i, j)`` of the cross-group FMR matrix an interval from the same draws:
``FMR*_ij = k_i' E_ij k_j / k_i' N_ij k_j``. The diagonal is the within-group FMR above,
replicate for replicate. :func:`percentile_interval` is :func:`audit.resampling.percentile_interval`.

Cost
----
The time of :func:`bootstrap_group_rates` is ``O(comparisons)`` for the aggregation plus
``O(n_boot * (N + nnz))`` for the replicates, where N is the number of identities and nnz the
number of identity pairs with a non-mated comparison (dense BLAS products when the pair matrix is
dense enough). Memory is ``n_boot * N`` int32 draw counts plus chunked float64 work arrays of
about ``_CHUNK_CELLS`` cells, plus the pair matrices (at most ``N**2`` float64 cells when dense).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from audit.rates import GroupRates

from .cross_group import CrossGroupBootstrap, bootstrap_cross_group_fmr
from .frozen import Copied, readonly_array
from .jsonable import plain as _plain
from .resampling import (
    Aggregates,
    aggregate,
    check_settings,
    draw_counts,
    interval_columns,
    percentile_interval,
    point_rates,
    ratio,
    replicate_counts,
)

__all__ = [
    "BOOTSTRAP_COLUMNS",
    "BootstrapResult",
    "CrossGroupBootstrap",
    "bootstrap_cross_group_fmr",
    "bootstrap_group_rates",
    "percentile_interval",
]

#: Columns of :attr:`BootstrapResult.by_group`, in order.
BOOTSTRAP_COLUMNS: tuple[str, ...] = (
    "n_identities",
    "n_mated",
    "false_non_matches",
    "fnmr",
    "fnmr_lower",
    "fnmr_upper",
    "fnmr_se",
    "fnmr_n_valid",
    "fnmr_interval",
    "n_nonmated",
    "false_matches",
    "fmr",
    "fmr_lower",
    "fmr_upper",
    "fmr_se",
    "fmr_n_valid",
    "fmr_interval",
)


# --- result -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """Per-group FNMR and FMR with identity-level bootstrap percentile intervals.

    Built by :func:`bootstrap_group_rates`; computed once and immutable. Every accessor returns
    a fresh copy.

    Attributes / accessors
    ----------------------
    threshold:
        Decision threshold (match when ``score >= threshold``).
    n_boot, seed, confidence:
        Number of replicates, seed of ``numpy.random.default_rng``, and the two-sided level of
        the percentile intervals (e.g. 0.95 -> 2.5th and 97.5th percentiles).
    rates:
        The point estimates as a :class:`audit.rates.GroupRates` (counts, rule-of-three bounds,
        cross-group matrices), exactly :func:`audit.rates.error_rates` on the same input.
    groups:
        Group labels; the index of :attr:`by_group` and the columns of the replicate frames.
    by_group:
        DataFrame indexed by ``group`` with columns :data:`BOOTSTRAP_COLUMNS`: the point counts
        and rates of :attr:`rates`; for ``fnmr`` and ``fmr`` the interval ``*_lower``,
        ``*_upper``, the bootstrap standard error ``*_se`` (standard deviation of the
        replicates), ``*_n_valid`` (replicates where the rate is defined) and ``*_interval``:
        ``"bootstrap"`` (percentile interval), ``"rule_of_three"`` (no error observed: ``[0,
        3/n]``) or ``"undefined"`` (no comparisons: NaN).
    overall:
        dict with the same keys for all comparisons together (``n_mated``,
        ``false_non_matches``, ``fnmr``, ``fnmr_lower``, ``fnmr_upper``, ``fnmr_se``,
        ``fnmr_n_valid``, ``fnmr_interval``, and the ``fmr`` counterparts); as in
        :attr:`GroupRates.overall`, the overall FMR uses every non-mated pair, within- and
        cross-group.
    fnmr_replicates, fmr_replicates:
        DataFrames of shape (n_boot, number of groups), index ``replicate`` (0..n_boot-1),
        columns the groups: the replicate rates (NaN where undefined). Replicate ``b`` of every
        group comes from the same draw, so statistics across groups (disparity measures) get
        intervals from these rows (:func:`audit.disparity.summarize_disparity`).
    overall_replicates:
        DataFrame (n_boot, 2) with columns ``fnmr`` and ``fmr``.
    """

    threshold: float
    n_boot: int
    seed: int
    confidence: float
    rates: GroupRates = field(repr=False)
    _groups: tuple[str, ...] = field(repr=True)
    _by_group: pd.DataFrame = field(repr=False)
    _overall: dict[str, Any] = field(repr=False)
    _fnmr: np.ndarray = field(repr=False)
    _fmr: np.ndarray = field(repr=False)
    _overall_reps: np.ndarray = field(repr=False)

    groups = Copied()
    by_group = Copied()
    overall = Copied()
    fnmr_replicates = Copied("_fnmr", via="_group_frame")
    fmr_replicates = Copied("_fmr", via="_group_frame")
    overall_replicates = Copied("_overall_reps", via="_rate_frame")

    @property
    def method(self) -> str:
        """One paragraph describing how the intervals were made, for reports."""
        level = f"{100 * self.confidence:g}%"
        return (
            f"{level} percentile intervals from {self.n_boot} bootstrap replicates (seed "
            f"{self.seed}) that resample identities with replacement within each group and "
            "rebuild the comparison set from the drawn identities (subsets bootstrap, Bolle, "
            "Ratha & Pankanti 2004; ISO/IEC 19795-1), at threshold "
            f"{self.threshold:.6g}. Where no error was observed the interval is [0, 3/n] "
            "(rule of three)."
        )

    def to_dict(self, *, include_replicates: bool = False) -> dict[str, Any]:
        """Plain JSON-serialisable values (NaN -> None)::

            {"threshold", "n_boot", "seed", "confidence", "method",
             "overall": {...}, "by_group": {group: {<BOOTSTRAP_COLUMNS>}},
             ["replicates": {"fnmr": [[...]], "fmr": [[...]], "overall": [[...]]}]}

        Replicate matrices are row-major (n_boot rows, columns in the order of ``groups``).
        """
        out: dict[str, Any] = {
            "threshold": _plain(self.threshold),
            "n_boot": int(self.n_boot),
            "seed": int(self.seed),
            "confidence": float(self.confidence),
            "method": self.method,
            "groups": [str(g) for g in self._groups],
            "overall": {k: _plain(v) for k, v in self._overall.items()},
            "by_group": {
                str(g): {c: _plain(self._by_group.at[g, c]) for c in BOOTSTRAP_COLUMNS}
                for g in self._groups
            },
        }
        if include_replicates:
            out["replicates"] = {
                "fnmr": [[_plain(v) for v in row] for row in self._fnmr],
                "fmr": [[_plain(v) for v in row] for row in self._fmr],
                "overall": [[_plain(v) for v in row] for row in self._overall_reps],
            }
        return out

    def _group_frame(self, values: np.ndarray) -> pd.DataFrame:
        return self._replicate_frame(values, self._groups, "group")

    def _rate_frame(self, values: np.ndarray) -> pd.DataFrame:
        return self._replicate_frame(values, ("fnmr", "fmr"), None)

    @staticmethod
    def _replicate_frame(
        values: np.ndarray, columns: Sequence[str], name: str | None
    ) -> pd.DataFrame:
        frame = pd.DataFrame(
            np.array(values, copy=True),
            index=pd.RangeIndex(values.shape[0], name="replicate"),
            columns=pd.Index(list(columns), name=name),
        )
        return frame


def bootstrap_group_rates(
    comparisons: pd.DataFrame,
    threshold: float,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    groups: Sequence[str] | None = None,
    rates: GroupRates | None = None,
) -> BootstrapResult:
    """Per-group and overall FNMR/FMR at a threshold with identity-bootstrap intervals.

    Parameters
    ----------
    comparisons:
        One row per comparison with columns ``score`` (float, finite), ``mated`` (bool),
        ``group_a``, ``group_b`` (str), ``identity_a``, ``identity_b`` (int), as for
        :func:`audit.rates.error_rates`. Mated rows compare an identity with itself
        (``identity_a == identity_b``); non-mated rows two different identities. Each identity
        belongs to one group.
    threshold:
        Decision threshold; a comparison matches when ``score >= threshold``.
    n_boot:
        Number of bootstrap replicates (>= 1; 1000 or more for 95% intervals).
    seed:
        Seed of ``numpy.random.default_rng``; the same input and seed give identical results.
        The exact draw order is documented in the module docstring.
    confidence:
        Two-sided level of the percentile intervals, in (0, 1).
    groups:
        Optional full list of group labels (as in :func:`audit.rates.error_rates`); groups
        with no comparisons get zero counts and NaN rates.
    rates:
        Optional point estimates already computed by :func:`audit.rates.error_rates` on the
        same ``comparisons``, ``threshold`` and ``groups``, to skip computing them again (the
        slowest step on large inputs). They are checked against the counts aggregated here,
        and a mismatch raises ``ValueError``.

    Returns
    -------
    BootstrapResult
        Its time and memory cost is given under "Cost" in the module docstring.

    Raises
    ------
    ValueError
        On the input errors of :func:`audit.rates.error_rates`, mated rows between two
        identities, non-mated rows of one identity with itself, an identity in two groups, or
        out-of-range ``n_boot`` / ``confidence``.
    """
    check_settings(n_boot, confidence, seed)
    # Point estimates (and all input validation of the shared contract).
    rates, given = point_rates(comparisons, threshold, groups, rates)
    threshold = float(threshold)
    labels = rates.groups
    n_boot = int(n_boot)
    agg = aggregate(comparisons, threshold, labels)
    if given:
        _check_point_counts(agg, rates)
    fnmr, fmr, overall_fnmr, overall_fmr = _replicate_rates(agg, int(seed), n_boot)
    level = float(confidence)
    return BootstrapResult(
        threshold=threshold, n_boot=n_boot, seed=int(seed), confidence=level, rates=rates,
        _groups=labels,
        _by_group=_by_group_table(rates, fnmr, fmr, level),
        _overall=_overall_intervals(rates, overall_fnmr, overall_fmr, level),
        _fnmr=readonly_array(fnmr),
        _fmr=readonly_array(fmr),
        _overall_reps=readonly_array(np.column_stack((overall_fnmr, overall_fmr))),
    )

def _replicate_rates(
    agg: Aggregates, seed: int, n_boot: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw the replicates -> (per-group FNMR, per-group FMR, overall FNMR, overall FMR)."""
    draws = draw_counts(np.random.default_rng(seed), agg.starts, n_boot)
    reps = replicate_counts(agg, draws)
    del draws
    fnmr = ratio(reps["fnm"], reps["n_mated"])
    fmr = ratio(reps["fm"], reps["n_nonmated"])
    overall_fnmr = ratio(reps["fnm"].sum(axis=1), reps["n_mated"].sum(axis=1))
    overall_fmr = ratio(reps["all_fm"], reps["all_nonmated"])
    return fnmr, fmr, overall_fnmr, overall_fmr


def _by_group_table(
    rates: GroupRates, fnmr: np.ndarray, fmr: np.ndarray, level: float
) -> pd.DataFrame:
    """:attr:`BootstrapResult.by_group`: the point counts and rates of ``rates`` with the
    intervals of the replicate rates ``fnmr``/``fmr`` (n_boot, G) at ``level``."""
    point = rates.by_group
    columns: dict[str, Any] = {}
    for name, errors_col, trials_col, reps_rate in (
        ("fnmr", "false_non_matches", "n_mated", fnmr),
        ("fmr", "false_matches", "n_nonmated", fmr),
    ):
        columns[trials_col] = point[trials_col].to_numpy()
        columns[errors_col] = point[errors_col].to_numpy()
        columns[name] = point[name].to_numpy()
        columns.update(
            interval_columns(
                name, reps_rate, columns[errors_col], columns[trials_col], level
            )
        )
    columns["n_identities"] = point["n_identities"].to_numpy()
    return pd.DataFrame(
        {c: columns[c] for c in BOOTSTRAP_COLUMNS}, index=point.index.copy()
    )


def _overall_intervals(
    rates: GroupRates, overall_fnmr: np.ndarray, overall_fmr: np.ndarray, level: float
) -> dict[str, Any]:
    """:attr:`BootstrapResult.overall`: the overall point counts and rates of ``rates`` with
    the intervals of the replicate rates (n_boot,) at ``level``."""
    ov = rates.overall
    overall: dict[str, Any] = {}
    for name, errors_key, trials_key, reps_rate in (
        ("fnmr", "false_non_matches", "n_mated", overall_fnmr),
        ("fmr", "false_matches", "n_nonmated", overall_fmr),
    ):
        overall[trials_key] = ov[trials_key]
        overall[errors_key] = ov[errors_key]
        overall[name] = ov[name]
        extra = interval_columns(
            name, reps_rate[:, None], np.array([ov[errors_key]]), np.array([ov[trials_key]]),
            level,
        )
        overall.update({k: _scalar(v[0]) for k, v in extra.items()})
    return overall


# --- helpers ----------------------------------------------------------------------------------


def _check_point_counts(agg: Aggregates, rates: GroupRates) -> None:
    """The aggregates at k = 1 (every identity once) must give the point counts of ``rates``."""
    ones = np.ones((1, agg.identity_ids.size), dtype=np.int32)
    counts = replicate_counts(agg, ones)
    point = rates.by_group
    pairs = (
        ("n_mated", counts["n_mated"][0]),
        ("false_non_matches", counts["fnm"][0]),
        ("n_nonmated", counts["n_nonmated"][0]),
        ("false_matches", counts["fm"][0]),
        ("n_identities", np.diff(agg.starts)),
    )
    for column, value in pairs:
        if not np.array_equal(point[column].to_numpy(dtype=np.float64), value):
            raise ValueError(
                f"`rates` do not match these comparisons ({column} differs): pass the "
                "GroupRates of error_rates on the same comparisons, threshold and groups"
            )



def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
