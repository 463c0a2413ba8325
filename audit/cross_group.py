"""Identity-bootstrap intervals for every cell of the cross-group FMR matrix.

Cell ``(i, j)`` of the matrix is the FMR of the non-mated comparisons with one image of group
``i`` and the other of group ``j`` (NIST FRVT demographic heat maps;
:attr:`audit.rates.GroupRates.cross_group_fmr`). :func:`bootstrap_cross_group_fmr` gives every
cell an interval from the same identity draws as :func:`audit.uncertainty.bootstrap_group_rates`
(the subsets bootstrap of Bolle, Ratha & Pankanti 2004; ISO/IEC 19795-1; the engine and its
documented draw order are in :mod:`audit.resampling`): ``FMR*_ij = k_i' E_ij k_j / k_i' N_ij
k_j`` with ``N_ij``/``E_ij`` the identity-by-identity blocks (identities of group i by identities
of group j) of the non-mated comparisons and false matches, counting each comparison once
whichever side each identity was listed on. The diagonal is the within-group FMR of
:func:`audit.uncertainty.bootstrap_group_rates`, replicate for replicate.

Both names are also importable from :mod:`audit.uncertainty`, where they were first defined.

Replicates
----------
Replicates are drawn exactly as in :func:`audit.uncertainty.bootstrap_group_rates` (same rng
calls, same order; see :mod:`audit.resampling`), so with the same input and seed the diagonal
replicates equal that function's ``fmr_replicates``. In replicate ``b`` with draw counts ``k``,
``N*_ij = sum_{a in i, c in j} k_a k_c n_ac`` and ``E*_ij`` likewise with false matches
(``n_ac``: non-mated comparisons between identities a and c, either orientation), i.e. the
comparison set rebuilt from the drawn identities, where a comparison's weight is the product
of its two identities' draw counts (Bolle, Ratha & Pankanti 2004 subsets bootstrap; ISO/IEC
19795-1). ``FMR*_ij = E*_ij / N*_ij``; a replicate with ``N*_ij = 0`` is undefined for that
cell and left out of its percentile interval (count in ``n_valid``).

Coverage
--------
A cross-group cell is a two-way (crossed) design: every comparison belongs to one identity
of each group. Resampling both sides counts the comparison-level noise more than once, so
when most of the variation is noise of single comparisons rather than identity effects the
intervals are conservative (simulation: 90% intervals covered a known FMR in ~99% of
audits with weak identity effects, ~91% with strong ones); cf. Owen, "The pigeonhole
bootstrap", Annals of Applied Statistics 1 (2007) 386-411.

Cost
----
Time of :func:`bootstrap_cross_group_fmr`: the O(comparisons) aggregation of
:func:`audit.uncertainty.bootstrap_group_rates`, then per chunk of replicates one product of the
symmetrised N x N identity-pair matrix with the (N, B) draw counts, for the comparison counts and
for the false matches (dense BLAS or sparse, as in :func:`audit.uncertainty.bootstrap_group_rates`),
plus O(B * N * G) for the per-cell sums. Memory: the pair matrices twice (M and M + M'),
``n_boot * N`` int32 draws, a few (N, B) float64 chunks and the (n_boot, G, G) replicate matrices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from audit.rates import GroupRates, rule_of_three

from .frozen import Copied, readonly_array
from .jsonable import plain as _plain
from .resampling import (
    Aggregates,
    aggregate,
    check_settings,
    draw_counts,
    interval_columns,
    point_rates,
    ratio,
    replicate_cross_counts,
)

__all__ = ["CrossGroupBootstrap", "bootstrap_cross_group_fmr"]


@dataclass(frozen=True, eq=False)
class CrossGroupBootstrap:
    """Cross-group FMR matrix with identity-bootstrap percentile intervals for every cell.

    Built by :func:`bootstrap_cross_group_fmr`; computed once and immutable. Every accessor
    returns a fresh copy. Cell ``(i, j)`` is the FMR of the non-mated comparisons with one image
    of group ``i`` and the other of group ``j`` (symmetric; the diagonal is each group's
    within-group FMR, the ``fmr`` of :func:`audit.uncertainty.bootstrap_group_rates`).

    Attributes / accessors
    ----------------------
    threshold, n_boot, seed, confidence:
        As in :class:`audit.uncertainty.BootstrapResult`.
    groups:
        Group labels: the row and column order of every matrix.
    fmr, lower, upper, se:
        Square DataFrames (groups x groups, float): point FMR, percentile interval and bootstrap
        standard error. Where a cell has comparisons but no false match the interval is
        ``[0, 3/n]`` (rule of three); where it has no comparisons everything is NaN.
    n_nonmated, false_matches:
        Square DataFrames (int): comparisons and false matches per cell.
    fmr_upper95:
        Square DataFrame: the rule-of-three bound ``3/n`` where a cell has comparisons and no
        false match, NaN elsewhere (as ``fmr_upper95`` of :attr:`GroupRates.by_group`).
    n_valid:
        Square DataFrame (int): replicates in which the cell had at least one comparison (the
        others are left out of its interval).
    interval:
        Square DataFrame (str): ``"bootstrap"``, ``"rule_of_three"`` or ``"undefined"``.
    replicates:
        ndarray of shape (n_boot, G, G): replicate FMR per cell (NaN where undefined).
    """

    threshold: float
    n_boot: int
    seed: int
    confidence: float
    _groups: tuple[str, ...] = field(repr=True)
    _fmr: np.ndarray = field(repr=False)
    _lower: np.ndarray = field(repr=False)
    _upper: np.ndarray = field(repr=False)
    _se: np.ndarray = field(repr=False)
    _n_nonmated: np.ndarray = field(repr=False)
    _false_matches: np.ndarray = field(repr=False)
    _upper95: np.ndarray = field(repr=False)
    _n_valid: np.ndarray = field(repr=False)
    _interval: np.ndarray = field(repr=False)
    _reps: np.ndarray = field(repr=False)

    def _square(self, values: np.ndarray) -> pd.DataFrame:
        frame = pd.DataFrame(
            np.array(values, copy=True),
            index=pd.Index(self._groups, name="group_a"),
            columns=pd.Index(self._groups, name="group_b"),
        )
        return frame

    groups = Copied()
    fmr = Copied(via="_square")
    lower = Copied(via="_square")
    upper = Copied(via="_square")
    se = Copied(via="_square")
    n_nonmated = Copied(via="_square")
    false_matches = Copied(via="_square")
    fmr_upper95 = Copied("_upper95", via="_square")
    n_valid = Copied(via="_square")
    interval = Copied(via="_square")
    replicates = Copied("_reps")

    @property
    def method(self) -> str:
        """One paragraph describing how the intervals were made, for reports."""
        level = f"{100 * self.confidence:g}%"
        return (
            f"{level} percentile intervals for each cell of the cross-group FMR matrix from "
            f"{self.n_boot} bootstrap replicates (seed {self.seed}) that resample identities with "
            "replacement within each group and rebuild the non-mated comparisons between the "
            "drawn identities (subsets bootstrap, Bolle, Ratha & Pankanti 2004; ISO/IEC "
            f"19795-1), at threshold {self.threshold:.6g}. Where a cell has no false match the "
            "interval is [0, 3/n] (rule of three)."
        )

    def to_dict(self, *, include_replicates: bool = False) -> dict[str, Any]:
        """Plain JSON-serialisable values (NaN -> None); matrices row-major in ``groups`` order::

            {"threshold", "n_boot", "seed", "confidence", "method", "groups",
             "fmr", "lower", "upper", "se", "n_nonmated", "false_matches", "fmr_upper95",
             "n_valid", "interval", ["replicates": [[[...]]] (n_boot x G x G)]}
        """

        def matrix(values: np.ndarray) -> list[list[Any]]:
            return [[_plain(v) for v in row] for row in values]

        out: dict[str, Any] = {
            "threshold": _plain(self.threshold),
            "n_boot": int(self.n_boot),
            "seed": int(self.seed),
            "confidence": float(self.confidence),
            "method": self.method,
            "groups": [str(g) for g in self._groups],
            "fmr": matrix(self._fmr),
            "lower": matrix(self._lower),
            "upper": matrix(self._upper),
            "se": matrix(self._se),
            "n_nonmated": matrix(self._n_nonmated),
            "false_matches": matrix(self._false_matches),
            "fmr_upper95": matrix(self._upper95),
            "n_valid": matrix(self._n_valid),
            "interval": [[str(v) for v in row] for row in self._interval],
        }
        if include_replicates:
            out["replicates"] = [matrix(rep) for rep in self._reps]
        return out


def _check_cross_counts(agg: Aggregates, trials: np.ndarray, errors: np.ndarray) -> None:
    """Every identity drawn once must give the point counts (G, G) of the cross-group matrix."""
    ones = np.ones((1, agg.identity_ids.size), dtype=np.int32)
    point_counts, point_fm = replicate_cross_counts(agg, ones)
    if not (np.array_equal(point_counts[0], trials) and np.array_equal(point_fm[0], errors)):
        raise ValueError(
            "`rates` do not match these comparisons (cross-group counts differ): pass the "
            "GroupRates of error_rates on the same comparisons, threshold and groups"
        )


def _replicate_fmr(agg: Aggregates, n_boot: int, seed: int) -> np.ndarray:
    """Replicate FMR per cell, (n_boot, G, G), NaN where a replicate has no comparison."""
    draws = draw_counts(np.random.default_rng(seed), agg.starts, n_boot)
    rep_counts, rep_fm = replicate_cross_counts(agg, draws)
    del draws
    return ratio(rep_fm, rep_counts)


def _cell_intervals(
    reps: np.ndarray, trials: np.ndarray, errors: np.ndarray, level: float
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-cell interval columns (flat, row-major) and the (G, G) rule-of-three bounds of
    cells with comparisons but no false match (NaN elsewhere)."""
    n_boot, n_groups = reps.shape[0], reps.shape[1]
    cells = n_groups * n_groups
    columns = interval_columns(
        "fmr", reps.reshape(n_boot, cells), errors.reshape(cells), trials.reshape(cells), level
    )
    upper95 = np.full(cells, np.nan)
    zero = (trials.reshape(cells) > 0) & (errors.reshape(cells) == 0)
    upper95[zero] = [rule_of_three(int(n)) for n in trials.reshape(cells)[zero]]
    return columns, upper95.reshape(n_groups, n_groups)


def bootstrap_cross_group_fmr(
    comparisons: pd.DataFrame,
    threshold: float,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    groups: Sequence[str] | None = None,
    rates: GroupRates | None = None,
) -> CrossGroupBootstrap:
    """Cross-group FMR matrix at a threshold with identity-bootstrap intervals for every cell.

    Cell ``(i, j)``: ``FMR_ij = E_ij / N_ij``, the share of non-mated comparisons with one image
    of group ``i`` and one of group ``j`` that match (``score >= threshold``), as
    :attr:`audit.rates.GroupRates.cross_group_fmr` (NIST FRVT demographic heat maps).

    Replicates are drawn as in :func:`audit.uncertainty.bootstrap_group_rates` ("Replicates" in
    the module docstring); a replicate with no comparison in a cell is left out of its interval.
    The intervals are conservative when most variation is comparison-level noise ("Coverage"
    in the module docstring).

    Parameters
    ----------
    comparisons, threshold, n_boot, seed, confidence, groups, rates:
        As for :func:`audit.uncertainty.bootstrap_group_rates`. Mated rows are ignored except for validation.

    Returns
    -------
    CrossGroupBootstrap
        Its time and memory cost is given under "Cost" in the module docstring.

    Raises
    ------
    ValueError
        As :func:`audit.uncertainty.bootstrap_group_rates`.
    """
    check_settings(n_boot, confidence, seed)
    rates, _ = point_rates(comparisons, threshold, groups, rates)
    threshold = float(threshold)
    labels = rates.groups
    n_groups = len(labels)
    n_boot = int(n_boot)
    level = float(confidence)
    agg = aggregate(comparisons, threshold, labels)
    trials = rates.cross_group_counts.to_numpy(dtype=np.int64)
    errors = rates.cross_group_false_matches.to_numpy(dtype=np.int64)
    _check_cross_counts(agg, trials, errors)
    reps = _replicate_fmr(agg, n_boot, int(seed))  # (n_boot, G, G)
    columns, upper95 = _cell_intervals(reps, trials, errors, level)
    shape = (n_groups, n_groups)
    return CrossGroupBootstrap(
        threshold=threshold, n_boot=n_boot, seed=int(seed), confidence=level, _groups=labels,
        _fmr=readonly_array(rates.cross_group_fmr.to_numpy(dtype=np.float64)),
        _lower=readonly_array(columns["fmr_lower"].reshape(shape)),
        _upper=readonly_array(columns["fmr_upper"].reshape(shape)),
        _se=readonly_array(columns["fmr_se"].reshape(shape)),
        _n_nonmated=readonly_array(trials, np.int64),
        _false_matches=readonly_array(errors, np.int64),
        _upper95=readonly_array(upper95),
        _n_valid=readonly_array(columns["fmr_n_valid"].reshape(shape), np.int64),
        _interval=readonly_array(columns["fmr_interval"].reshape(shape), object),
        _reps=readonly_array(reps),
    )
