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
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from .jsonable import plain as _plain

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

#: Value of ``factor`` that marks the control (null re-capture) image.
CONTROL = "control"

#: McNemar's test is exact (binomial) when the number of discordant pairs ``b + c`` is below this,
#: and the chi-square test with continuity correction otherwise (a common rule of thumb: the
#: chi-square approximation is poor for ``b + c < 25``).
MCNEMAR_EXACT_BELOW = 25

_INPUT_COLUMNS = ("fr_model", "identity_id", "group", "factor", "level", "score")

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

#: Columns of :attr:`InteractionResult.interactions`, in order.
INTERACTION_COLUMNS: tuple[str, ...] = (
    "term",
    "group",
    "factor",
    "level",
    "n_obs_cell",
    "estimate",
    "std_error",
    "ci_low",
    "ci_high",
    "p_value",
)

Correction = Literal["holm", "fdr_bh"]
_CORRECTIONS = ("holm", "fdr_bh")


# --- multiple-comparison correction -----------------------------------------------------------


def adjust_pvalues(pvalues: Sequence[float] | np.ndarray, method: str = "holm") -> np.ndarray:
    """Adjusted p-values for a family of tests (Holm 1979 or Benjamini-Hochberg 1995).

    With the ``m`` finite p-values sorted ascending, ``p_(1) <= ... <= p_(m)``:

    - Holm (step-down, controls the family-wise error rate under any dependence)::

          q_(i) = max_{j <= i} min(1, (m - j + 1) * p_(j))

    - Benjamini-Hochberg (step-up, controls the false discovery rate for independent or
      positively dependent tests)::

          q_(i) = min_{j >= i} min(1, m * p_(j) / j)

    A test is rejected at level ``alpha`` when ``q <= alpha``; this is the same decision as the
    sequential procedures in the papers. NaN entries (tests that were not run) are left NaN and
    do not count towards ``m``. Equals ``statsmodels.stats.multitest.multipletests(p,
    method="holm" | "fdr_bh")[1]`` on the finite entries.

    Parameters
    ----------
    pvalues:
        1-D array-like of p-values in [0, 1] or NaN, shape (k,).
    method:
        ``"holm"`` or ``"fdr_bh"``.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values, shape (k,), float64, in the input order.
    """
    if method not in _CORRECTIONS:
        raise ValueError(f"correction must be one of {_CORRECTIONS}, got {method!r}")
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"pvalues must be 1-D, got shape {p.shape}")
    out = np.full(p.shape, np.nan)
    finite = ~np.isnan(p)
    values = p[finite]
    if np.any((values < 0) | (values > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    m = values.size
    if m == 0:
        return out
    order = np.argsort(values, kind="stable")
    ranked = values[order]
    rank = np.arange(1, m + 1)
    if method == "holm":
        adjusted = np.maximum.accumulate(np.minimum(1.0, (m - rank + 1) * ranked))
    else:
        adjusted = np.minimum.accumulate((m * ranked / rank)[::-1])[::-1]
        adjusted = np.minimum(1.0, adjusted)
    unsorted = np.empty(m)
    unsorted[order] = adjusted
    out[finite] = unsorted
    return out


# --- per-cell statistics ----------------------------------------------------------------------


def _t_interval(diff: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student t-interval for the mean: mean -/+ t_{(1+level)/2, n-1} * sd / sqrt(n); n >= 2."""
    n = diff.size
    if n < 2:
        return math.nan, math.nan
    mean = float(diff.mean())
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * diff.std(ddof=1) / math.sqrt(n))
    return mean - half, mean + half


def _median_interval(diff: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval for the median: ``[d_(k), d_(n-k+1)]`` of the sorted values.

    ``k`` is the largest integer >= 1 with ``P(Binomial(n, 1/2) <= k - 1) <= (1 - level) / 2``;
    the coverage is ``1 - 2 P(B <= k - 1) >= level`` (Conover 1999, 3.2). No such ``k`` exists for
    n < 6 at the 95% level: NaN.
    """
    n = diff.size
    if n == 0:
        return math.nan, math.nan
    ks = np.arange(1, n + 1)
    ok = stats.binom.cdf(ks - 1, n, 0.5) <= (1.0 - level) / 2
    if not ok.any():
        return math.nan, math.nan
    k = int(ks[ok].max())
    ordered = np.sort(diff)
    return float(ordered[k - 1]), float(ordered[n - k])


def _wilcoxon(level: np.ndarray, control: np.ndarray) -> tuple[int, float, float]:
    """(non-zero differences, statistic, two-sided p) of the signed-rank test on the pairs.

    Rule: zero differences are dropped (Wilcoxon's own ``zero_method="wilcox"``). With no
    non-zero difference at all (every pair unchanged) the p-value is 1 (nothing moved; scipy
    returns the same value with a division warning). Otherwise ``scipy.stats.wilcoxon(level,
    control)`` with ``method="auto"``: exact null distribution for n <= 50 without ties or zeros,
    an exhaustive (hence deterministic) sign-flip permutation for n <= 13 with ties or zeros, the
    normal approximation with continuity and tie corrections otherwise. The exact and permutation
    p-values are valid for any n >= 1, but the smallest two-sided p attainable with n non-zero
    differences is ``2 ** (1 - n)``: cells with fewer than 6 cannot reach p < 0.05.
    """
    n_nonzero = int(np.count_nonzero(level - control))
    if level.size == 0:
        return 0, math.nan, math.nan
    if n_nonzero == 0:
        return 0, 0.0, 1.0
    result = stats.wilcoxon(level, control, zero_method="wilcox", alternative="two-sided")
    return n_nonzero, float(result.statistic), float(result.pvalue)


def _mcnemar(lost: int, gained: int) -> tuple[str, float, float]:
    """(method, statistic, two-sided p) of McNemar's test on the discordant pair counts.

    ``lost`` = pairs matching in the control but not at the level (b), ``gained`` = the reverse
    (c). Under H0 (equal match rates) each discordant pair is lost or gained with probability 1/2.

    - ``b + c == 0``: no discordant pair, p = 1 (method ``"none"``).
    - ``b + c < MCNEMAR_EXACT_BELOW``: exact binomial test, ``p = min(1, 2 P(Bin(b + c, 1/2) <=
      min(b, c)))``, statistic ``min(b, c)`` (method ``"exact"``).
    - otherwise chi-square with continuity correction (Edwards 1948): ``X2 = (|b - c| - 1)^2 /
      (b + c)`` on 1 degree of freedom (method ``"chi2"``).

    Same numbers as ``statsmodels.stats.contingency_tables.mcnemar(table, exact=...,
    correction=True)``.
    """
    discordant = lost + gained
    if discordant == 0:
        return "none", 0.0, 1.0
    if discordant < MCNEMAR_EXACT_BELOW:
        small = min(lost, gained)
        p = min(1.0, 2.0 * float(stats.binom.cdf(small, discordant, 0.5)))
        return "exact", float(small), p
    statistic = (abs(lost - gained) - 1.0) ** 2 / discordant
    return "chi2", float(statistic), float(stats.chi2.sf(statistic, 1))


# --- input checks -----------------------------------------------------------------------------


def _level_sort_key(level: Any) -> tuple[int, float, str]:
    """Numbers first in numeric order, then everything else by its text."""
    if isinstance(level, (int, float, np.integer, np.floating)) and not isinstance(
        level, (bool, np.bool_)
    ):
        return (0, float(level), "")
    return (1, 0.0, str(level))


def _clean_input(mated: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Checked copy of ``mated`` with control levels set to None; NaN scores removed.

    Returns the frame and the number of NaN-score rows removed.
    """
    if not isinstance(mated, pd.DataFrame):
        raise ValueError(f"mated must be a pandas DataFrame, got {type(mated).__name__}")
    missing = [c for c in _INPUT_COLUMNS if c not in mated.columns]
    if missing:
        raise ValueError(
            f"mated is missing column(s) {missing}: expected columns {list(_INPUT_COLUMNS)}"
        )
    frame = mated.loc[:, list(_INPUT_COLUMNS)].copy()
    for col in ("fr_model", "identity_id", "group", "factor"):
        if frame[col].isna().any():
            raise ValueError(f"mated column {col!r} has missing values: fill or drop those rows")
    try:
        frame["score"] = frame["score"].astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"mated column 'score' must be numeric: {exc}") from exc
    if np.isinf(frame["score"].to_numpy()).any():
        raise ValueError("mated column 'score' has infinite values: scores must be finite")
    frame["level"] = frame["level"].astype(object)
    is_control = (frame["factor"] == CONTROL).to_numpy()
    frame.loc[is_control, "level"] = None
    if frame.loc[~is_control, "level"].isna().any():
        raise ValueError(
            "mated column 'level' is missing for a non-control row: every factor row needs a level"
        )
    groups_per_identity = frame.groupby("identity_id", sort=False)["group"].nunique()
    bad = groups_per_identity[groups_per_identity > 1]
    if len(bad):
        raise ValueError(
            f"identity_id {bad.index[0]!r} appears in more than one group: an identity belongs "
            "to exactly one demographic group"
        )
    keys = pd.Series(
        list(
            zip(
                frame["fr_model"],
                frame["identity_id"],
                frame["factor"],
                frame["level"],
                strict=True,
            )
        ),
        dtype=object,
    )
    duplicated = keys.duplicated().to_numpy()
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise ValueError(
            f"duplicate mated score for fr_model={row['fr_model']!r}, identity_id="
            f"{row['identity_id']!r}, factor={row['factor']!r}, level={row['level']!r}: keep one "
            "row per identity and condition"
        )
    nan_rows = int(frame["score"].isna().sum())
    return frame[frame["score"].notna()].reset_index(drop=True), nan_rows


def _conditions(frame: pd.DataFrame) -> list[tuple[Any, Any]]:
    """Distinct (factor, level) of the non-control rows, by factor, then level (numbers first)."""
    variants = frame[frame["factor"] != CONTROL]
    found = set(zip(variants["factor"], variants["level"], strict=True))
    return sorted(found, key=lambda c: (str(c[0]), _level_sort_key(c[1])))


def _condition_codes(frame: pd.DataFrame, conditions: list[tuple[Any, Any]]) -> np.ndarray:
    """Per row: 0 for the control, ``1 + k`` for ``conditions[k]``."""
    lookup = {c: k for k, c in enumerate(conditions, start=1)}
    return np.array(
        [
            0 if f == CONTROL else lookup[(f, lv)]
            for f, lv in zip(frame["factor"], frame["level"], strict=True)
        ],
        dtype=np.int64,
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

    @property
    def effects(self) -> pd.DataFrame:
        return self._effects.copy(deep=True)

    @property
    def tests(self) -> pd.DataFrame:
        return self._tests.copy(deep=True)

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
    if correction not in _CORRECTIONS:
        raise ValueError(f"correction must be one of {_CORRECTIONS}, got {correction!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    frame, nan_rows = _clean_input(mated)

    models = sorted(mated["fr_model"].dropna().unique(), key=str)
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

    rows: list[dict[str, Any]] = []
    for model in models:
        threshold = float(thresholds[model])
        sub = frame[frame["fr_model"] == model]
        conditions = _conditions(sub)
        # identity x condition matrix of scores (NaN = missing); column 0 is the control.
        codes = _condition_codes(sub, conditions)
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

    effects = pd.DataFrame(rows, columns=[c for c in EFFECT_COLUMNS])
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

    tests = _long_tests(effects)
    family = (
        "per FR model and per test type (Wilcoxon, McNemar): all group x factor x level cells "
        f"of that model with at least one pair; {correction} at alpha={float(alpha)}"
    )
    return FactorEffects(
        correction=correction,
        alpha=float(alpha),
        family=family,
        dropped_nan_scores=nan_rows,
        _effects=effects,
        _tests=tests,
    )


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
    ci_low, ci_high = _t_interval(d)
    med_low, med_high = _median_interval(d)
    n_nonzero, w_stat, w_p = _wilcoxon(x, c)
    match_c = c >= threshold
    match_x = x >= threshold
    lost = int(np.sum(match_c & ~match_x))
    gained = int(np.sum(~match_c & match_x))
    method, m_stat, m_p = _mcnemar(lost, gained)
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


# --- interaction model ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class InteractionResult:
    """Group x condition interaction terms of one FR model's mated-score regression.

    Built by :func:`interaction_model`; every accessor returns a fresh copy.

    Attributes / accessors
    ----------------------
    fr_model:
        The FR model.
    reference_group:
        The group the interaction terms compare against.
    reference_condition:
        Always ``"control"``.
    n_obs:
        Observations (images with a mated score) in the regression.
    n_clusters:
        Identities (clusters). Cluster-robust inference needs many clusters; with fewer than
        about 30-50 the intervals are optimistic even with the G/(G-1) and t(G-1) corrections
        (Cameron & Miller 2015, section VI).
    cov_type:
        Description of the standard errors.
    interactions:
        DataFrame, one row per group (other than the reference) x condition (other than the
        control), columns :data:`INTERACTION_COLUMNS`. Terms without data (a group with no
        image at that condition) have ``n_obs_cell = 0`` and NaN statistics.
    coefficients:
        Every estimated coefficient: columns ``term, estimate, std_error, ci_low, ci_high,
        p_value`` (intercept, group and condition main effects, interactions).
    """

    fr_model: str
    reference_group: Any
    reference_condition: str
    n_obs: int
    n_clusters: int
    cov_type: str
    _interactions: pd.DataFrame = field(repr=False)
    _coefficients: pd.DataFrame = field(repr=False)

    @property
    def interactions(self) -> pd.DataFrame:
        return self._interactions.copy(deep=True)

    @property
    def coefficients(self) -> pd.DataFrame:
        return self._coefficients.copy(deep=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable values (NaN -> None)."""
        return {
            "fr_model": _plain(self.fr_model),
            "reference_group": _plain(self.reference_group),
            "reference_condition": self.reference_condition,
            "n_obs": int(self.n_obs),
            "n_clusters": int(self.n_clusters),
            "cov_type": self.cov_type,
            "interactions": [
                {col: _plain(row[col]) for col in INTERACTION_COLUMNS}
                for _, row in self._interactions.iterrows()
            ],
        }


def _condition_label(factor: Any, level: Any) -> str:
    return CONTROL if factor == CONTROL else f"{factor}={level}"


def interaction_model(
    mated: pd.DataFrame, fr_model: str, *, reference_group: Any = None
) -> InteractionResult:
    """Regress the mated score on group, condition and group x condition (clustered by identity).

    Model, for image ``j`` of identity ``i`` in group ``g(i)`` at condition ``c(j)`` (the control
    and every factor level; the control is the reference condition, ``reference_group`` the
    reference group)::

        score_ij = b0 + a_g(i) + b_c(j) + gamma_{g(i), c(j)} + e_ij

    with treatment (dummy) coding: ``a_ref = 0``, ``b_control = 0``, ``gamma = 0`` in the
    reference group or at the control. Then ``b_c`` is the condition's change in mated score in
    the reference group, and the interaction term ``gamma_{g,c}`` is the difference in
    differences ``(mean_{g,c} - mean_{g,control}) - (mean_{ref,c} - mean_{ref,control})``:
    how much more the condition lowers the mated score in group ``g`` than in the reference group
    (a negative gamma: the condition hurts group ``g`` more). With complete data it equals the
    difference of the two groups' mean paired changes from :func:`factor_effects`.

    Fitted by OLS (statsmodels) with standard errors clustered by identity, because an
    identity's images share that identity's random effects (Cameron & Miller 2015):
    ``fit(cov_type="cluster", cov_kwds={"groups": identity}, use_t=True)``, i.e. the sandwich
    ``(X'X)^-1 (sum_i X_i' u_i u_i' X_i) (X'X)^-1`` times ``G/(G-1) (N-1)/(N-K)``, with t(G-1)
    quantiles for the 95% intervals and the p-values (G identities, N images, K coefficients).
    Errors are not assumed independent or equal in variance within an identity. Which way the
    correction goes depends on the term. With one image per identity and condition, the group
    main effects compare groups at the control (one image per identity: nothing to cluster, the
    two SEs agree), and the condition and interaction terms are within-identity contrasts. A
    shared identity level (random intercept) cancels from those contrasts, while naive OLS counts
    it as noise, so their clustered SEs are *smaller* than naive ones: the pairing is used. When
    identities differ in how much a condition affects them (random slopes), the condition's
    images are noisier than the pooled residual variance says, and the clustered SEs are
    *larger*; naive intervals then under-cover (both shown in the tests).

    Rows with a NaN score are dropped; identities need not have every condition (the
    regression uses what exists), but then the estimate is no longer a pure within-identity
    contrast.

    Parameters
    ----------
    mated:
        Tidy frame as for :func:`factor_effects`.
    fr_model:
        The FR model whose scores to model.
    reference_group:
        Group to compare against; default: the first group in sorted order.

    Returns
    -------
    InteractionResult

    Raises
    ------
    ValueError
        On bad input (as :func:`factor_effects`), an unknown model or reference group, fewer than
        two groups, no factor levels, no control images in a group, fewer than two identities,
        or a design that cannot identify its coefficients.
    """
    import statsmodels.api as sm  # lazy: only this function needs statsmodels

    frame, _ = _clean_input(mated)
    if fr_model not in set(mated["fr_model"]):
        raise ValueError(f"fr_model {fr_model!r} is not in mated")
    sub = frame[frame["fr_model"] == fr_model].reset_index(drop=True)
    groups = sorted(sub["group"].unique(), key=str)
    if len(groups) < 2:
        raise ValueError(f"interaction_model needs at least two groups, got {groups}")
    if reference_group is None:
        reference_group = groups[0]
    if reference_group not in groups:
        raise ValueError(f"reference_group {reference_group!r} is not one of the groups {groups}")
    is_control = (sub["factor"] == CONTROL).to_numpy()
    groups_with_control = set(sub.loc[is_control, "group"])
    lacking = [g for g in groups if g not in groups_with_control]
    if lacking:
        raise ValueError(
            f"group(s) {lacking} have no control image for fr_model {fr_model!r}: the control is "
            "the reference condition"
        )
    conditions = _conditions(sub)
    if not conditions:
        raise ValueError(f"fr_model {fr_model!r} has only control images: no factor levels")
    cluster_codes, _ = pd.factorize(sub["identity_id"])
    n_clusters = int(cluster_codes.max()) + 1
    if n_clusters < 2:
        raise ValueError("interaction_model needs at least two identities to cluster on")

    group_values = sub["group"].to_numpy()
    condition_codes = _condition_codes(sub, conditions)
    other_groups = [g for g in groups if g != reference_group]

    columns: dict[str, np.ndarray] = {"Intercept": np.ones(len(sub))}
    group_dummy = {g: (group_values == g).astype(np.float64) for g in other_groups}
    cond_dummy = {
        c: (condition_codes == k).astype(np.float64) for k, c in enumerate(conditions, start=1)
    }
    for g in other_groups:
        columns[f"group[T.{g}]"] = group_dummy[g]
    for c in conditions:
        columns[f"condition[T.{_condition_label(*c)}]"] = cond_dummy[c]
    cells: list[tuple[Any, tuple[Any, Any], str, int]] = []
    for g in other_groups:
        for c in conditions:
            name = f"group[T.{g}]:condition[T.{_condition_label(*c)}]"
            product = group_dummy[g] * cond_dummy[c]
            n_cell = int(product.sum())
            cells.append((g, c, name, n_cell))
            if n_cell:
                columns[name] = product
    names = list(columns)
    design = np.column_stack([columns[k] for k in names])
    rank = int(np.linalg.matrix_rank(design))
    if rank < design.shape[1]:
        raise ValueError(
            f"the design for fr_model {fr_model!r} cannot identify all {design.shape[1]} "
            f"coefficients (rank {rank}): some group x condition cells are confounded; check for "
            "conditions observed in only one group"
        )
    y = sub["score"].to_numpy(dtype=np.float64)
    fit = sm.OLS(y, design).fit(cov_type="cluster", cov_kwds={"groups": cluster_codes}, use_t=True)
    conf = np.asarray(fit.conf_int(alpha=0.05))
    coefficients = pd.DataFrame(
        {
            "term": names,
            "estimate": np.asarray(fit.params, dtype=np.float64),
            "std_error": np.asarray(fit.bse, dtype=np.float64),
            "ci_low": conf[:, 0],
            "ci_high": conf[:, 1],
            "p_value": np.asarray(fit.pvalues, dtype=np.float64),
        }
    )
    by_term = coefficients.set_index("term")
    inter_rows = []
    for g, (factor, level), name, n_cell in cells:
        row: dict[str, Any] = {
            "term": name,
            "group": g,
            "factor": factor,
            "level": level,
            "n_obs_cell": n_cell,
        }
        for col in ("estimate", "std_error", "ci_low", "ci_high", "p_value"):
            row[col] = float(by_term.at[name, col]) if n_cell else math.nan
        inter_rows.append(row)
    interactions = pd.DataFrame(inter_rows, columns=list(INTERACTION_COLUMNS))
    interactions["n_obs_cell"] = interactions["n_obs_cell"].astype(np.int64)
    return InteractionResult(
        fr_model=fr_model,
        reference_group=reference_group,
        reference_condition=CONTROL,
        n_obs=int(len(sub)),
        n_clusters=n_clusters,
        cov_type=("OLS, cluster-robust by identity (CR1: G/(G-1)*(N-1)/(N-K)), t(G-1) intervals"),
        _interactions=interactions,
        _coefficients=coefficients,
    )
