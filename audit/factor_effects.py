"""Factor effects in the controlled design: paired tests per cell and a group x condition model.

The design (see docs/design.md, "The science"): every synthetic identity ``i`` of a demographic
group ``g`` has a baseline image, a CONTROL image (a null re-capture of the baseline: 1-px shift
and JPEG quality 95) and one image per factor level (blur 1.5, yaw +15, ...). For one FR model,
the *mated score* of a condition is the cosine similarity of that image with the identity's
baseline. The control's mated score is the reference: it carries the same nuisance (re-capture)
as every edited image, so ``level - control`` isolates what the edit itself does.

Input: a tidy frame ``mated`` with one row per fr_model x identity x condition and columns

====================  ================================================================
``fr_model``          FR model name (str); a key of ``thresholds``.
``identity_id``       identity (int or str); belongs to exactly one group.
``group``             demographic group label.
``factor``            ``"control"`` for the control image, else the factor name.
``level``             factor level (float or str); ignored for the control rows.
``score``             mated cosine similarity with the baseline (finite; NaN = missing).
====================  ================================================================

Cells may be missing (failed generation checks, no face found). A level is paired with the
control of the same identity only where both exist; the counts of what was dropped are reported
per cell (``n_missing_control``, ``n_missing_level``).

Two analyses:

- :func:`factor_effects`: one row per fr_model x group x factor x level, with the paired change in
  mated score (mean with a t-interval, median with a distribution-free interval), the Wilcoxon
  signed-rank test on the paired scores, the match rates and FNMR at the model's threshold in the
  control and at the level, McNemar's test on the paired match decisions, and Holm or
  Benjamini-Hochberg adjusted p-values (:func:`adjust_pvalues`).
- :func:`interaction_model`: OLS of the mated score on group, condition and group x condition with
  identity-clustered standard errors; the interaction terms say how much more a condition lowers
  the mated score in one group than in the reference group.

Where things live: the input table's checks in :mod:`audit.mated_scores`, the per-cell tests and
the corrections in :mod:`audit.paired_tests`, the interaction model in :mod:`audit.interactions`
(its names, :func:`adjust_pvalues` and :data:`MCNEMAR_EXACT_BELOW` are importable from here).

Per-cell statistics of :func:`factor_effects`
---------------------------------------------

For one fr_model, group ``g``, factor ``f`` and level ``l``, let ``P`` be the identities of
``g`` that have both a control score ``c_i`` and a level score ``x_i`` (the pairs; n_pairs =
``|P|``), ``d_i = x_i - c_i`` and ``t`` the model's threshold (match when score >= t):

- ``mean_change = mean_i d_i`` with the 95% Student t-interval over identities
  ``mean -/+ t_{0.975, n-1} s_d / sqrt(n)`` (NaN for n < 2); identities are independent
  units, so this is the paired t-interval. ``median_change = median_i d_i`` with the
  distribution-free order-statistic interval (coverage >= 95%, NaN for n < 6; Conover 1999).
  No resampling, so no seed is needed and the numbers are exactly repeatable.
- Wilcoxon signed-rank test (Wilcoxon 1945) of H0 "the d_i are symmetric about 0", two-sided,
  via ``scipy.stats.wilcoxon(x, c)``; zero differences dropped; no non-zero difference gives
  p = 1. Exact for small n, so valid for tiny n, but with fewer than 6 non-zero differences
  p cannot fall below 0.05 (see :func:`_wilcoxon`).
- ``match_rate_control = #{c_i >= t} / n``, ``match_rate_level = #{x_i >= t} / n``,
  ``fnmr_* = 1 - match_rate_*``, ``fnmr_change = fnmr_level - fnmr_control = (b - c) / n``
  with ``b = mcnemar_lost = #{c_i >= t, x_i < t}`` and ``c = mcnemar_gained = #{c_i < t,
  x_i >= t}``. Rates are on the paired identities only, so control and level are comparable.
- McNemar's test (McNemar 1947) of equal match rates on the paired decisions: exact binomial
  on the discordant pairs when ``b + c < 25``, chi-square with continuity correction
  otherwise, p = 1 when ``b + c = 0`` (see :func:`_mcnemar`).
- Multiple comparisons: a *family* is one FR model and one test type (Wilcoxon or McNemar):
  all of that model's group x factor x level cells with a p-value. Cells without any pair
  have no p-value (NaN) and are not in a family. Within a family, p-values are adjusted by
  Holm (family-wise error rate) or Benjamini-Hochberg (false discovery rate), see
  :func:`adjust_pvalues`; ``*_significant = p_adjusted <= alpha``, and ``significant`` is
  true when either test of the cell is.

References
----------
- F. Wilcoxon (1945), "Individual comparisons by ranking methods", Biometrics Bulletin 1:80-83.
- Q. McNemar (1947), "Note on the sampling error of the difference between correlated proportions
  or percentages", Psychometrika 12:153-157.
- S. Holm (1979), "A simple sequentially rejective multiple test procedure", Scandinavian Journal
  of Statistics 6:65-70.
- Y. Benjamini and Y. Hochberg (1995), "Controlling the false discovery rate: a practical and
  powerful approach to multiple testing", JRSS B 57:289-300.
- A. C. Cameron and D. L. Miller (2015), "A practitioner's guide to cluster-robust inference",
  Journal of Human Resources 50:317-372.
- W. J. Conover (1999), Practical Nonparametric Statistics, 3rd ed., section 3.2 (order-statistic
  confidence interval for a quantile).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .frozen import Copied
from .interactions import INTERACTION_COLUMNS, InteractionResult, interaction_model
from .jsonable import plain as _plain
from .mated_scores import CONTROL, clean_input, condition_codes, conditions_of
from .paired_tests import (
    _CORRECTIONS,
    MCNEMAR_EXACT_BELOW,
    Correction,
    adjust_pvalues,
    mcnemar,
    median_interval,
    t_interval,
    wilcoxon,
)

__all__ = [
    "CONTROL",
    "EFFECT_COLUMNS",
    "INTERACTION_COLUMNS",
    "MCNEMAR_EXACT_BELOW",
    "TEST_COLUMNS",
    "FactorEffects",
    "InteractionResult",
    "adjust_pvalues",
    "factor_effects",
    "interaction_model",
]

#: Columns of :attr:`FactorEffects.effects`, in order.
EFFECT_COLUMNS: tuple[str, ...] = (
    "fr_model",
    "group",
    "factor",
    "level",
    "n_identities",
    "n_missing_control",
    "n_missing_level",
    "n_pairs",
    "mean_control",
    "mean_level",
    "mean_change",
    "mean_change_ci_low",
    "mean_change_ci_high",
    "median_change",
    "median_change_ci_low",
    "median_change_ci_high",
    "wilcoxon_n_nonzero",
    "wilcoxon_statistic",
    "wilcoxon_p",
    "wilcoxon_p_adjusted",
    "wilcoxon_significant",
    "threshold",
    "match_rate_control",
    "match_rate_level",
    "fnmr_control",
    "fnmr_level",
    "fnmr_change",
    "mcnemar_lost",
    "mcnemar_gained",
    "mcnemar_method",
    "mcnemar_statistic",
    "mcnemar_p",
    "mcnemar_p_adjusted",
    "mcnemar_significant",
    "significant",
)

#: Columns of :attr:`FactorEffects.tests` (one row per cell x test), in order.
TEST_COLUMNS: tuple[str, ...] = (
    "fr_model",
    "group",
    "factor",
    "level",
    "test",
    "method",
    "n_pairs",
    "n_informative",
    "statistic",
    "p_value",
    "family_size",
    "p_adjusted",
    "significant",
)


# --- factor effects ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FactorEffects:
    """Paired factor effects per fr_model x group x factor x level, computed once.

    Built by :func:`factor_effects`. Every accessor returns a fresh copy.

    Attributes / accessors
    ----------------------
    correction:
        ``"holm"`` or ``"fdr_bh"``.
    alpha:
        Level of the corrected tests; a test is significant when its adjusted p <= alpha.
    family:
        The definition of a family of tests (one sentence).
    effects:
        DataFrame, one row per cell, columns :data:`EFFECT_COLUMNS` (see :func:`factor_effects`).
    tests:
        Long DataFrame, one row per cell x test (``"wilcoxon"``, ``"mcnemar"``), columns
        :data:`TEST_COLUMNS`; the same p-values as ``effects``, for filtering and plotting.
    dropped_nan_scores:
        Number of input rows whose score was NaN, treated as missing cells.
    """

    correction: str
    alpha: float
    family: str
    dropped_nan_scores: int
    _effects: pd.DataFrame = field(repr=False)
    _tests: pd.DataFrame = field(repr=False)

    effects = Copied()
    tests = Copied()

    def significant(self) -> pd.DataFrame:
        """The rows of :attr:`effects` where either corrected test is significant."""
        return self._effects[self._effects["significant"]].reset_index(drop=True).copy()

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable values (NaN -> None); ``effects`` as a list of records."""
        return {
            "correction": self.correction,
            "alpha": float(self.alpha),
            "family": self.family,
            "dropped_nan_scores": int(self.dropped_nan_scores),
            "effects": [
                {col: _plain(row[col]) for col in EFFECT_COLUMNS}
                for _, row in self._effects.iterrows()
            ],
        }


def factor_effects(
    mated: pd.DataFrame,
    thresholds: Mapping[str, float],
    *,
    correction: Correction = "holm",
    alpha: float = 0.05,
) -> FactorEffects:
    """Paired change in mated score and in match decisions, per group and factor level.

    The statistics of each cell, and the test families of the adjusted p-values, are defined
    in the module docstring ("Per-cell statistics of :func:`factor_effects`").

    Every group x (factor, level) seen for a model gets a row, so a cell lost entirely to
    missing images shows up with ``n_pairs = 0`` and NaN statistics. ``n_identities`` counts the
    group's identities with any non-missing score for the model; ``n_missing_control`` those of
    them with no control score, ``n_missing_level`` those with no score at this level (the two may
    overlap; ``n_pairs`` have both). Rows with a NaN score count as missing.

    Parameters
    ----------
    mated:
        Tidy frame with columns ``fr_model, identity_id, group, factor, level, score`` (see the
        module docstring); ``factor == "control"`` marks the control image.
    thresholds:
        Decision threshold per fr_model (e.g. from :func:`audit.rates.threshold_at_fmr`); every
        fr_model in ``mated`` needs one.
    correction:
        ``"holm"`` (default) or ``"fdr_bh"``.
    alpha:
        Significance level of the corrected tests, in (0, 1).

    Returns
    -------
    FactorEffects
        Rows ordered by fr_model, group, factor, level (numbers in numeric order, then text).

    Raises
    ------
    ValueError
        On missing columns, infinite scores, an identity in two groups, duplicate rows for one
        identity and condition, a model without a threshold, a bad correction or alpha.
    """
    _check_correction(correction, alpha)
    frame, nan_rows = clean_input(mated)
    models = sorted(mated["fr_model"].dropna().unique(), key=str)
    _check_thresholds(models, thresholds)
    rows: list[dict[str, Any]] = []
    for model in models:
        rows.extend(_model_cells(frame[frame["fr_model"] == model], model, thresholds[model]))
    effects = _with_adjusted_pvalues(
        pd.DataFrame(rows, columns=[c for c in EFFECT_COLUMNS]), models, correction, alpha
    )
    family = (
        "per FR model and per test type (Wilcoxon, McNemar): all group x factor x level cells "
        f"of that model with at least one pair; {correction} at alpha={float(alpha)}"
    )
    return FactorEffects(
        correction=correction, alpha=float(alpha), family=family, dropped_nan_scores=nan_rows,
        _effects=effects, _tests=_long_tests(effects),
    )


def _check_correction(correction: Any, alpha: Any) -> None:
    """The correction must be a known one and alpha a number strictly between 0 and 1."""
    if correction not in _CORRECTIONS:
        raise ValueError(f"correction must be one of {_CORRECTIONS}, got {correction!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")


def _check_thresholds(models: list[Any], thresholds: Mapping[str, float]) -> None:
    """Every FR model needs a finite threshold."""
    missing_thresholds = [m for m in models if m not in thresholds]
    if missing_thresholds:
        raise ValueError(
            f"thresholds has no entry for fr_model(s) {missing_thresholds}: pass one threshold "
            "per FR model"
        )
    for m in models:
        value = thresholds[m]
        try:
            finite = not isinstance(value, bool) and math.isfinite(float(value))
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise ValueError(f"thresholds[{m!r}] must be a finite number, got {value!r}")


def _model_cells(sub: pd.DataFrame, model: Any, threshold: Any) -> list[dict[str, Any]]:
    """One row of :data:`EFFECT_COLUMNS` (before correction) per group x factor level of one
    FR model's rows ``sub``."""
    threshold = float(threshold)
    rows: list[dict[str, Any]] = []
    conditions = conditions_of(sub)
    # identity x condition matrix of scores (NaN = missing); column 0 is the control.
    codes = condition_codes(sub, conditions)
    identity_codes, identities = pd.factorize(sub["identity_id"])
    scores = np.full((len(identities), len(conditions) + 1), np.nan)
    scores[identity_codes, codes] = sub["score"].to_numpy()
    identity_group = sub["group"].to_numpy()[np.unique(identity_codes, return_index=True)[1]]
    for group in sorted(set(identity_group), key=str):
        members = scores[identity_group == group]
        has_control = ~np.isnan(members[:, 0])
        for k, (factor, level) in enumerate(conditions, start=1):
            has_level = ~np.isnan(members[:, k])
            both = has_control & has_level
            rows.append(
                _cell(
                    model, group, factor, level, threshold, members[both, k], members[both, 0]
                )
                | {
                    "n_identities": int(members.shape[0]),
                    "n_missing_control": int((~has_control).sum()),
                    "n_missing_level": int((~has_level).sum()),
                }
            )
    return rows


def _with_adjusted_pvalues(
    effects: pd.DataFrame, models: list[Any], correction: str, alpha: float
) -> pd.DataFrame:
    """``effects`` with the adjusted p-values (one family per FR model and test type), the
    significance flags and integer counts, columns in :data:`EFFECT_COLUMNS` order."""
    for test in ("wilcoxon", "mcnemar"):
        adjusted = np.full(len(effects), np.nan)
        for model in models:
            mask = (effects["fr_model"] == model).to_numpy()
            adjusted[mask] = adjust_pvalues(effects.loc[mask, f"{test}_p"].to_numpy(), correction)
        effects[f"{test}_p_adjusted"] = adjusted
        effects[f"{test}_significant"] = np.nan_to_num(adjusted, nan=np.inf) <= alpha
    effects["significant"] = effects["wilcoxon_significant"] | effects["mcnemar_significant"]
    effects = effects.loc[:, list(EFFECT_COLUMNS)]
    for col in ("n_identities", "n_missing_control", "n_missing_level", "n_pairs"):
        effects[col] = effects[col].astype(np.int64)
    for col in ("wilcoxon_n_nonzero", "mcnemar_lost", "mcnemar_gained"):
        effects[col] = effects[col].astype(np.int64)
    return effects


def _cell(
    model: Hashable,
    group: Hashable,
    factor: Hashable,
    level: Any,
    threshold: float,
    x: np.ndarray,
    c: np.ndarray,
) -> dict[str, Any]:
    """Statistics of one cell from the paired level scores ``x`` and control scores ``c``."""
    n = int(x.size)
    nan = math.nan
    row: dict[str, Any] = {
        "fr_model": model,
        "group": group,
        "factor": factor,
        "level": level,
        "n_pairs": n,
        "threshold": threshold,
    }
    if n == 0:
        return row | {
            "mean_control": nan, "mean_level": nan, "mean_change": nan,
            "mean_change_ci_low": nan, "mean_change_ci_high": nan, "median_change": nan,
            "median_change_ci_low": nan, "median_change_ci_high": nan,
            "wilcoxon_n_nonzero": 0, "wilcoxon_statistic": nan, "wilcoxon_p": nan,
            "match_rate_control": nan, "match_rate_level": nan, "fnmr_control": nan,
            "fnmr_level": nan, "fnmr_change": nan, "mcnemar_lost": 0, "mcnemar_gained": 0,
            "mcnemar_method": "none", "mcnemar_statistic": nan, "mcnemar_p": nan,
        }  # fmt: skip
    d = x - c
    ci_low, ci_high = t_interval(d)
    med_low, med_high = median_interval(d)
    n_nonzero, w_stat, w_p = wilcoxon(x, c)
    match_c = c >= threshold
    match_x = x >= threshold
    lost = int(np.sum(match_c & ~match_x))
    gained = int(np.sum(~match_c & match_x))
    method, m_stat, m_p = mcnemar(lost, gained)
    rate_c = float(match_c.mean())
    rate_x = float(match_x.mean())
    return row | {
        "mean_control": float(c.mean()),
        "mean_level": float(x.mean()),
        "mean_change": float(d.mean()),
        "mean_change_ci_low": ci_low,
        "mean_change_ci_high": ci_high,
        "median_change": float(np.median(d)),
        "median_change_ci_low": med_low,
        "median_change_ci_high": med_high,
        "wilcoxon_n_nonzero": n_nonzero,
        "wilcoxon_statistic": w_stat,
        "wilcoxon_p": w_p,
        "match_rate_control": rate_c,
        "match_rate_level": rate_x,
        "fnmr_control": 1.0 - rate_c,
        "fnmr_level": 1.0 - rate_x,
        "fnmr_change": (lost - gained) / n,
        "mcnemar_lost": lost,
        "mcnemar_gained": gained,
        "mcnemar_method": method,
        "mcnemar_statistic": m_stat,
        "mcnemar_p": m_p,
    }


def _long_tests(effects: pd.DataFrame) -> pd.DataFrame:
    keys = ["fr_model", "group", "factor", "level", "n_pairs"]
    parts = []
    for test in ("wilcoxon", "mcnemar"):
        part = effects.loc[:, keys].copy()
        part["test"] = test
        if test == "wilcoxon":
            part["method"] = np.where(
                effects["n_pairs"] == 0,
                "none",
                np.where(effects["wilcoxon_n_nonzero"] == 0, "none", "scipy-auto"),
            )
            part["n_informative"] = effects["wilcoxon_n_nonzero"]
        else:
            part["method"] = effects["mcnemar_method"]
            part["n_informative"] = effects["mcnemar_lost"] + effects["mcnemar_gained"]
        part["statistic"] = effects[f"{test}_statistic"]
        part["p_value"] = effects[f"{test}_p"]
        part["p_adjusted"] = effects[f"{test}_p_adjusted"]
        part["significant"] = effects[f"{test}_significant"]
        sizes = effects.groupby("fr_model", sort=False)[f"{test}_p"].transform("count")
        part["family_size"] = sizes.astype(np.int64)
        parts.append(part)
    tests = pd.concat(parts, ignore_index=True)
    return tests.loc[:, list(TEST_COLUMNS)]
