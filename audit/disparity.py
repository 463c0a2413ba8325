"""Summary disparity measures across demographic groups at one decision threshold.

Each measure turns the per-group rates (FMR_d, FNMR_d for groups d = 1..n, all read at the same
global threshold) into one number:

- Max/min ratio (:func:`max_min_ratio`): ``max_d r_d / min_d r_d`` for r = FNMR or FMR. Undefined
  when a group has no observed error, so zero rates are replaced by a stated floor (by default
  that group's rule-of-three bound ``3 / n``) and the floored groups are reported.
- Fairness Discrepancy Rate (:func:`fairness_discrepancy_rate`; de Freitas Pereira & Marcel,
  "Fairness in biometrics: a figure of merit to assess biometric verification systems", IEEE
  T-BIOM 4(1), 2022; arXiv:2011.02395): ``1 - (alpha * A + (1 - alpha) * B)`` with A, B the
  largest pairwise absolute FMR and FNMR gaps. 1 is perfectly fair.
- GARBE (:func:`garbe`; Howard et al., "Evaluating proposed fairness models for face
  recognition algorithms", 2022): a weighted sum of
  Gini coefficients of the per-group FMR and FNMR with the ``n / (n - 1)`` small-sample
  correction. 0 is perfectly fair.

``alpha`` in [0, 1] weights false matches against false non-matches; it has no default in the
single-measure functions so that every report states it.

:func:`summarize_disparity` computes all of them at once from a
:class:`audit.uncertainty.BootstrapResult` (percentile intervals from the same identity-bootstrap
replicates as the per-group intervals, so the across-group correlation of the replicates is kept)
or from a :class:`audit.rates.GroupRates` (point values only). :func:`rankable_groups` says which
groups have enough identities and comparisons to be ranked at all, and why not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from audit.rates import GroupRates, rule_of_three
from audit.uncertainty import BootstrapResult, percentile_interval

from .jsonable import plain as _plain

__all__ = [
    "DEFINITIONS",
    "MEASURES",
    "DisparitySummary",
    "MaxMinRatio",
    "fairness_discrepancy_rate",
    "garbe",
    "gini",
    "max_min_ratio",
    "rankable_groups",
    "summarize_disparity",
]

#: Measures of :attr:`DisparitySummary.table`, in order.
MEASURES: tuple[str, ...] = (
    "fnmr_max_min_ratio",
    "fmr_max_min_ratio",
    "fmr_max_gap",
    "fnmr_max_gap",
    "fdr",
    "fmr_gini",
    "fnmr_gini",
    "garbe",
)

#: One-line definition of each measure, for reports.
DEFINITIONS: dict[str, str] = {
    "fnmr_max_min_ratio": "max_d FNMR_d / min_d FNMR_d; zero rates replaced by the stated floor",
    "fmr_max_min_ratio": "max_d FMR_d / min_d FMR_d; zero rates replaced by the stated floor",
    "fmr_max_gap": "A = max over pairs of groups |FMR_i - FMR_j|",
    "fnmr_max_gap": "B = max over pairs of groups |FNMR_i - FNMR_j|",
    "fdr": "Fairness Discrepancy Rate = 1 - (alpha * A + (1 - alpha) * B) "
    "(de Freitas Pereira & Marcel 2021); 1 is perfectly fair",
    "fmr_gini": "G(FMR) = n/(n-1) * sum_i sum_j |x_i - x_j| / (2 n^2 mean(x))",
    "fnmr_gini": "G(FNMR) = n/(n-1) * sum_i sum_j |x_i - x_j| / (2 n^2 mean(x))",
    "garbe": "GARBE = alpha * G(FMR) + (1 - alpha) * G(FNMR) (Howard et al. 2022); "
    "0 is perfectly fair",
}

#: Default minimum cell sizes of :func:`rankable_groups`.
MIN_IDENTITIES = 20
MIN_MATED = 100
MIN_NONMATED = 1000


# --- input helpers ----------------------------------------------------------------------------


def _as_series(values: Any, name: str) -> pd.Series:
    """Series of float rates indexed by group label, from a Series, mapping or 1-D array."""
    if isinstance(values, pd.Series):
        series = values.astype(np.float64)
    elif isinstance(values, Mapping):
        series = pd.Series({k: float(v) for k, v in values.items()}, dtype=np.float64)
    else:
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 1:
            raise ValueError(f"{name} must be 1-D (one rate per group), got shape {array.shape}")
        series = pd.Series(array)
    if series.index.has_duplicates:
        raise ValueError(f"{name} has repeated group labels")
    return series


def _check_rates(series: pd.Series, name: str) -> None:
    if len(series) < 2:
        raise ValueError(f"{name} needs at least 2 groups, got {len(series)}")
    if series.isna().any():
        bad = [str(g) for g in series.index[series.isna()]]
        raise ValueError(
            f"{name} is undefined (NaN) for group(s) {bad}: drop groups without comparisons "
            "before summarising"
        )
    if (series < 0).any() or (series > 1).any():
        raise ValueError(f"{name} must hold rates in [0, 1]")


def _pair(fmr_by_group: Any, fnmr_by_group: Any) -> tuple[pd.Series, pd.Series]:
    fmr = _as_series(fmr_by_group, "fmr_by_group")
    fnmr = _as_series(fnmr_by_group, "fnmr_by_group")
    if set(fmr.index) != set(fnmr.index):
        raise ValueError(
            "fmr_by_group and fnmr_by_group must cover the same groups; got "
            f"{sorted(map(str, fmr.index))} and {sorted(map(str, fnmr.index))}"
        )
    fnmr = fnmr.loc[fmr.index]
    _check_rates(fmr, "fmr_by_group")
    _check_rates(fnmr, "fnmr_by_group")
    return fmr, fnmr


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    if not (0.0 <= float(alpha) <= 1.0):
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    return float(alpha)


# --- vectorised kernels: rows = replicates, columns = groups ------------------------------------


def _max_gap(x: np.ndarray) -> np.ndarray:
    # max over pairs |x_i - x_j| = max - min. NaN in a row -> NaN.
    return np.max(x, axis=1) - np.min(x, axis=1)


def _gini(x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    mean = np.mean(x, axis=1)
    # sum_i sum_j |x_i - x_j| via sorted values: 2 * sum_k (2k - n - 1) x_(k), k = 1..n.
    xs = np.sort(x, axis=1)  # NaN sorts last and propagates through the sum
    weights = 2.0 * np.arange(1, n + 1) - n - 1.0
    abs_diff_sum = 2.0 * (xs @ weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = (n / (n - 1.0)) * abs_diff_sum / (2.0 * n * n * mean)
    # All rates equal (including all zero): no inequality, G = 0.
    g = np.where(np.isfinite(mean) & (abs_diff_sum == 0.0), 0.0, g)
    return np.where(np.isnan(mean), np.nan, g)


def _floored(x: np.ndarray, floors: np.ndarray, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Apply the floor; returns (values, which cells were floored)."""
    if rule == "rule_of_three":
        hit = x == 0.0
    else:
        hit = x < floors
    return np.where(hit, floors, x), hit


def _ratio_rows(x: np.ndarray, floors: np.ndarray, rule: str) -> np.ndarray:
    values, _ = _floored(x, floors, rule)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.max(values, axis=1) / np.min(values, axis=1)
    # No error observed in any group: nothing to compare, the ratio is undefined.
    return np.where(np.all(x == 0.0, axis=1), np.nan, ratio)


# --- public single measures -------------------------------------------------------------------


def gini(rates: Any) -> float:
    """Gini coefficient with the small-sample correction, as used by GARBE.

    ``G(x) = n / (n - 1) * sum_i sum_j |x_i - x_j| / (2 * n**2 * mean(x))`` over the n >= 2
    group rates (Howard et al. 2022). 0 when all rates are equal (also when all are 0, where the
    formula is 0/0); 1 when one group carries all errors.
    """
    series = _as_series(rates, "rates")
    _check_rates(series, "rates")
    return float(_gini(series.to_numpy()[None, :])[0])


def fairness_discrepancy_rate(fmr_by_group: Any, fnmr_by_group: Any, alpha: float) -> float:
    """Fairness Discrepancy Rate (de Freitas Pereira & Marcel 2021) at one threshold.

    ``A = max_{i,j} |FMR_i - FMR_j|``, ``B = max_{i,j} |FNMR_i - FNMR_j|``,
    ``FDR = 1 - (alpha * A + (1 - alpha) * B)``. In [0, 1]; 1 is perfectly fair. Absolute gaps
    between small FMRs barely move it (1e-3 vs 1e-4 is a 10x ratio but A = 9e-4), which is why
    :func:`max_min_ratio` is reported too.

    Parameters
    ----------
    fmr_by_group, fnmr_by_group:
        Per-group rates, pandas Series or mappings keyed by group (matched by label) or 1-D
        arrays in the same group order; at least 2 groups, no NaN.
    alpha:
        Weight of the FMR gap, in [0, 1] (no default: state it).
    """
    fmr, fnmr = _pair(fmr_by_group, fnmr_by_group)
    a = _check_alpha(alpha)
    gap_fm = float(_max_gap(fmr.to_numpy()[None, :])[0])
    gap_fnm = float(_max_gap(fnmr.to_numpy()[None, :])[0])
    return 1.0 - (a * gap_fm + (1.0 - a) * gap_fnm)


def garbe(fmr_by_group: Any, fnmr_by_group: Any, alpha: float) -> float:
    """GARBE, the Gini aggregation rate for biometric equitability (Howard et al. 2022).

    ``GARBE = alpha * G(FMR) + (1 - alpha) * G(FNMR)`` with ``G`` of :func:`gini`:
    ``G(x) = n / (n - 1) * sum_i sum_j |x_i - x_j| / (2 * n**2 * mean(x))``. In [0, 1]; 0 is
    perfectly fair. Inputs as for :func:`fairness_discrepancy_rate`; ``alpha`` has no default.
    """
    fmr, fnmr = _pair(fmr_by_group, fnmr_by_group)
    a = _check_alpha(alpha)
    g_fm = float(_gini(fmr.to_numpy()[None, :])[0])
    g_fnm = float(_gini(fnmr.to_numpy()[None, :])[0])
    return a * g_fm + (1.0 - a) * g_fnm


@dataclass(frozen=True)
class MaxMinRatio:
    """Result of :func:`max_min_ratio`.

    Attributes
    ----------
    value:
        ``max_d r'_d / min_d r'_d`` over the floored rates ``r'``; NaN when no group has an
        observed error (every rate 0).
    max_group, min_group:
        Groups attaining the maximum and minimum floored rate (first in order on ties); None
        when ``value`` is NaN.
    floored:
        Groups whose rate was replaced by the floor.
    floor_rule:
        ``"rule_of_three"`` (zero rates -> that group's ``3 / n``) or ``"fixed"`` (rates below
        ``floor`` -> ``floor``).
    floors:
        The floor value used for each floored group.
    rates:
        The rates after flooring, by group.
    """

    value: float
    max_group: str | None
    min_group: str | None
    floored: tuple[str, ...]
    floor_rule: str
    floors: dict[str, float] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)

    @property
    def note(self) -> str:
        """Plain-words statement of the floor, for reports."""
        if not self.floored:
            return "no rate was floored"
        names = ", ".join(self.floored)
        if self.floor_rule == "rule_of_three":
            return f"no error observed in {names}: rate floored at the rule-of-three bound 3/n"
        floor = next(iter(self.floors.values()))
        return f"rate of {names} below the floor {floor:.3g}: floored at it"


def _floor_vector(
    rates: pd.Series, floor: float | None, trials: Any
) -> tuple[np.ndarray, str]:
    if floor is None:
        if trials is None:
            if (rates == 0).any():
                raise ValueError(
                    "a group has rate 0: pass `trials` (comparisons per group) for the "
                    "rule-of-three floor, or a numeric `floor`"
                )
            return np.full(len(rates), np.nan), "rule_of_three"
        t = _as_series(trials, "trials")
        if set(t.index) != set(rates.index):
            raise ValueError("trials must cover the same groups as rates")
        t = t.loc[rates.index]
        floors = np.array(
            [rule_of_three(int(n)) if n >= 1 else np.nan for n in t.to_numpy()], dtype=np.float64
        )
        return floors, "rule_of_three"
    if isinstance(floor, bool) or not isinstance(floor, (int, float, np.number)):
        raise ValueError(f"floor must be a positive number or None, got {floor!r}")
    if not (0.0 < float(floor) <= 1.0):
        raise ValueError(f"floor must be in (0, 1], got {floor!r}")
    return np.full(len(rates), float(floor)), "fixed"


def max_min_ratio(
    rates: Any, floor: float | None = None, *, trials: Any = None
) -> MaxMinRatio:
    """Ratio of the largest to the smallest per-group rate, with a stated floor.

    ``ratio = max_d r'_d / min_d r'_d`` where ``r'`` is the rate after flooring:

    - ``floor=None`` (default): a group with rate 0 (no error observed in ``n_d`` trials) gets
      its rule-of-three 95% upper bound ``3 / n_d`` (:func:`audit.rates.rule_of_three`); needs
      ``trials``. Non-zero rates are kept, even when below another group's bound.
    - ``floor=f`` (a number in (0, 1]): every rate below ``f`` is raised to ``f``.

    When no group has any error the ratio is undefined and ``value`` is NaN. A floored group can
    end up as the maximum (its bound exceeds the others' rates); ``max_group`` shows it.

    Parameters
    ----------
    rates:
        Per-group rates (Series or mapping keyed by group, or a 1-D array), >= 2 groups, no NaN.
    floor:
        See above.
    trials:
        Per-group number of comparisons behind each rate (same keys/order), for the
        rule-of-three floor.
    """
    series = _as_series(rates, "rates")
    _check_rates(series, "rates")
    floors, rule = _floor_vector(series, floor, trials)
    x = series.to_numpy()[None, :]
    values, hit = _floored(x, floors[None, :], rule)
    value = float(_ratio_rows(x, floors[None, :], rule)[0])
    labels = [str(g) for g in series.index]
    floored = tuple(g for g, h in zip(labels, hit[0], strict=True) if h)
    if math.isnan(value):
        max_group = min_group = None
    else:
        max_group = labels[int(np.argmax(values[0]))]
        min_group = labels[int(np.argmin(values[0]))]
    return MaxMinRatio(
        value=value,
        max_group=max_group,
        min_group=min_group,
        floored=floored,
        floor_rule=rule,
        floors={g: float(floors[i]) for i, g in enumerate(labels) if g in floored},
        rates={g: float(values[0, i]) for i, g in enumerate(labels)},
    )


# --- rankability ------------------------------------------------------------------------------


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


# --- summary ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DisparitySummary:
    """All disparity measures at one threshold, with bootstrap intervals when available.

    Built by :func:`summarize_disparity`; immutable, accessors return copies.

    Attributes / accessors
    ----------------------
    threshold, alpha, confidence, n_boot:
        The threshold of the rates, the FMR weight used by FDR and GARBE, the interval level
        and the number of replicates (0: point values only, intervals NaN).
    groups:
        Groups the measures were computed over.
    excluded:
        dict group -> reason for groups left out (a rate undefined, or not in ``groups``).
    table:
        DataFrame indexed by ``measure`` (:data:`MEASURES`) with columns ``estimate``,
        ``lower``, ``upper`` (percentile interval over the replicates), ``n_valid`` (replicates
        where the measure is defined) and ``definition``.
    fnmr_ratio, fmr_ratio:
        The :class:`MaxMinRatio` point results (max/min groups, floored groups, floor rule).
    notes:
        Plain-words caveats for the report (floors, exclusions, undefined values).
    """

    threshold: float
    alpha: float
    confidence: float
    n_boot: int
    fnmr_ratio: MaxMinRatio
    fmr_ratio: MaxMinRatio
    _groups: tuple[str, ...] = field(repr=True)
    _excluded: dict[str, str] = field(repr=False)
    _table: pd.DataFrame = field(repr=False)
    _notes: tuple[str, ...] = field(repr=False)

    @property
    def groups(self) -> tuple[str, ...]:
        return self._groups

    @property
    def excluded(self) -> dict[str, str]:
        return dict(self._excluded)

    @property
    def table(self) -> pd.DataFrame:
        return self._table.copy(deep=True)

    @property
    def notes(self) -> tuple[str, ...]:
        return self._notes

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable values (NaN -> None)."""
        return {
            "threshold": _plain(self.threshold),
            "alpha": self.alpha,
            "confidence": self.confidence,
            "n_boot": self.n_boot,
            "groups": list(self._groups),
            "excluded": dict(self._excluded),
            "measures": {
                m: {c: _plain(self._table.at[m, c]) for c in self._table.columns}
                for m in self._table.index
            },
            "fnmr_ratio": _ratio_dict(self.fnmr_ratio),
            "fmr_ratio": _ratio_dict(self.fmr_ratio),
            "notes": list(self._notes),
        }


def summarize_disparity(
    result: BootstrapResult | GroupRates,
    *,
    alpha: float = 0.5,
    floor: float | None = None,
    groups: Sequence[str] | None = None,
) -> DisparitySummary:
    """Max/min ratios, FDR, Gini coefficients and GARBE with percentile intervals.

    Parameters
    ----------
    result:
        A :class:`BootstrapResult` (intervals from its replicates: each measure is computed on
        each replicate's per-group rates, with the floors fixed at their point values) or a
        :class:`GroupRates` (point values, intervals NaN).
    alpha:
        FMR weight of FDR and GARBE, in [0, 1]; recorded in the result.
    floor:
        Floor of the max/min ratios (see :func:`max_min_ratio`); None: rule of three per group.
    groups:
        Groups to compare (e.g. the rankable ones from :func:`rankable_groups`); default all.
        Groups whose FMR or FNMR is undefined (no comparisons) are always left out, and listed
        in :attr:`DisparitySummary.excluded`.

    Returns
    -------
    DisparitySummary
    """
    a = _check_alpha(alpha)
    if isinstance(result, BootstrapResult):
        by_group = result.by_group
        fnmr_reps = result.fnmr_replicates
        fmr_reps = result.fmr_replicates
        confidence, n_boot = result.confidence, result.n_boot
    elif isinstance(result, GroupRates):
        by_group = result.by_group
        fnmr_reps = fmr_reps = None
        confidence, n_boot = math.nan, 0
    else:
        raise ValueError(
            f"result must be a BootstrapResult or GroupRates, got {type(result).__name__}"
        )

    all_groups = [str(g) for g in by_group.index]
    if groups is None:
        chosen = all_groups
    else:
        chosen = list(dict.fromkeys(str(g) for g in groups))
        unknown = sorted(set(chosen) - set(all_groups))
        if unknown:
            raise ValueError(f"groups not in the result: {unknown}")
    excluded = {g: "not selected" for g in all_groups if g not in chosen}
    kept = []
    for g in chosen:
        row = by_group.loc[g]
        if row["n_mated"] == 0 and row["n_nonmated"] == 0:
            excluded[g] = "no mated and no within-group non-mated comparisons"
        elif row["n_mated"] == 0:
            excluded[g] = "no mated comparisons (FNMR undefined)"
        elif row["n_nonmated"] == 0:
            excluded[g] = "no within-group non-mated comparisons (FMR undefined)"
        else:
            kept.append(g)

    notes: list[str] = []
    if excluded:
        notes.append(
            "left out: " + "; ".join(f"{g} ({why})" for g, why in excluded.items())
        )
    fnmr = by_group.loc[kept, "fnmr"].astype(np.float64)
    fmr = by_group.loc[kept, "fmr"].astype(np.float64)
    n_mated = by_group.loc[kept, "n_mated"]
    n_nonmated = by_group.loc[kept, "n_nonmated"]

    table = pd.DataFrame(
        index=pd.Index(MEASURES, name="measure"),
        columns=["estimate", "lower", "upper", "n_valid"],
        dtype=np.float64,
    )
    if len(kept) < 2:
        notes.append(f"{len(kept)} group(s) with defined rates: nothing to compare")
        empty = MaxMinRatio(math.nan, None, None, (), "rule_of_three" if floor is None else "fixed")
        table["n_valid"] = 0
        table["definition"] = [DEFINITIONS[m] for m in MEASURES]
        table["n_valid"] = table["n_valid"].astype(np.int64)
        return DisparitySummary(
            threshold=float(result.threshold),
            alpha=a, confidence=confidence, n_boot=n_boot, fnmr_ratio=empty, fmr_ratio=empty,
            _groups=tuple(kept), _excluded=excluded, _table=table, _notes=tuple(notes),
        )

    fnmr_ratio = max_min_ratio(fnmr, floor, trials=n_mated)
    fmr_ratio = max_min_ratio(fmr, floor, trials=n_nonmated)
    for label, r in (("FNMR", fnmr_ratio), ("FMR", fmr_ratio)):
        if r.floored:
            notes.append(f"{label} max/min ratio: {r.note}")
        if math.isnan(r.value):
            notes.append(f"{label} max/min ratio undefined: no error observed in any group")
        elif r.max_group in r.floored:
            notes.append(
                f"{label} max/min ratio: the largest rate is a floor ({r.max_group}), so the "
                "ratio mostly reflects small counts"
            )

    def measures(fm: np.ndarray, fnm: np.ndarray) -> np.ndarray:
        """(rows, 8) values of MEASURES for rate matrices (rows, groups)."""
        fn_floor, rule_fn = _floor_vector(fnmr, floor, n_mated)
        fm_floor, rule_fm = _floor_vector(fmr, floor, n_nonmated)
        gap_fm, gap_fnm = _max_gap(fm), _max_gap(fnm)
        g_fm, g_fnm = _gini(fm), _gini(fnm)
        return np.column_stack(
            (
                _ratio_rows(fnm, fn_floor[None, :], rule_fn),
                _ratio_rows(fm, fm_floor[None, :], rule_fm),
                gap_fm,
                gap_fnm,
                1.0 - (a * gap_fm + (1.0 - a) * gap_fnm),
                g_fm,
                g_fnm,
                a * g_fm + (1.0 - a) * g_fnm,
            )
        )

    point = measures(fmr.to_numpy()[None, :], fnmr.to_numpy()[None, :])[0]
    table["estimate"] = point
    if fnmr_reps is not None and fmr_reps is not None:
        reps = measures(fmr_reps[kept].to_numpy(), fnmr_reps[kept].to_numpy())
        lower, upper, _, n_valid = percentile_interval(reps, confidence)
        table["lower"], table["upper"], table["n_valid"] = lower, upper, n_valid
        for m, n in zip(MEASURES, n_valid, strict=True):
            if n < n_boot:
                notes.append(
                    f"{m}: undefined in {n_boot - int(n)} of {n_boot} replicates (a group "
                    "without comparisons in the draw, or for a ratio no error in any group); "
                    "left out of its interval"
                )
    else:
        table["n_valid"] = 0
    table["n_valid"] = table["n_valid"].astype(np.int64)
    table["definition"] = [DEFINITIONS[m] for m in MEASURES]

    return DisparitySummary(
        threshold=float(result.threshold),
        alpha=a,
        confidence=confidence,
        n_boot=n_boot,
        fnmr_ratio=fnmr_ratio,
        fmr_ratio=fmr_ratio,
        _groups=tuple(kept),
        _excluded=excluded,
        _table=table,
        _notes=tuple(notes),
    )


# --- helpers ----------------------------------------------------------------------------------


def _ratio_dict(r: MaxMinRatio) -> dict[str, Any]:
    return {
        "value": _plain(r.value),
        "max_group": r.max_group,
        "min_group": r.min_group,
        "floored": list(r.floored),
        "floor_rule": r.floor_rule,
        "floors": {k: _plain(v) for k, v in r.floors.items()},
        "note": r.note,
    }


