"""Group x condition interactions of one FR model's mated scores (OLS, identity-clustered errors).

:func:`interaction_model` regresses the mated score on group, condition (the control and every
factor level) and group x condition with treatment coding, fitted by OLS (statsmodels) with
standard errors clustered by identity (Cameron & Miller 2015, "A practitioner's guide to
cluster-robust inference", Journal of Human Resources 50:317-372). The interaction terms say how
much more a condition lowers the mated score in one group than in the reference group. The input
is the tidy table of :mod:`audit.mated_scores`; the paired per-cell tests are in
:mod:`audit.factor_effects`, which re-exports every name here.

Standard errors of :func:`interaction_model`
-------------------------------------------

The model is fitted by OLS (statsmodels) with standard errors clustered by identity, because
an identity's images share that identity's random effects (Cameron & Miller 2015):
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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .frozen import Copied
from .jsonable import plain as _plain
from .mated_scores import CONTROL, clean_input, condition_codes, conditions_of

__all__ = ["INTERACTION_COLUMNS", "InteractionResult", "interaction_model"]

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

    interactions = Copied()
    coefficients = Copied()

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

    Fitted by OLS (statsmodels) with standard errors clustered by identity; the module docstring
    ("Standard errors") gives the formula and which way the correction goes.

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

    sub, groups, reference_group, conditions, cluster_codes = _model_rows(
        mated, fr_model, reference_group
    )
    names, design, cells = _design_matrix(sub, groups, reference_group, conditions, fr_model)
    y = sub["score"].to_numpy(dtype=np.float64)
    fit = sm.OLS(y, design).fit(cov_type="cluster", cov_kwds={"groups": cluster_codes}, use_t=True)
    coefficients = _coefficient_table(fit, names)
    return InteractionResult(
        fr_model=fr_model,
        reference_group=reference_group,
        reference_condition=CONTROL,
        n_obs=int(len(sub)),
        n_clusters=int(cluster_codes.max()) + 1,
        cov_type=("OLS, cluster-robust by identity (CR1: G/(G-1)*(N-1)/(N-K)), t(G-1) intervals"),
        _interactions=_interaction_table(coefficients, cells),
        _coefficients=coefficients,
    )


def _model_rows(
    mated: pd.DataFrame, fr_model: str, reference_group: Any
) -> tuple[pd.DataFrame, list[Any], Any, list[tuple[Any, Any]], np.ndarray]:
    """Check and select one model's rows -> (rows, groups, reference group, conditions, clusters)."""
    frame, _ = clean_input(mated)
    if fr_model not in set(mated["fr_model"]):
        raise ValueError(f"fr_model {fr_model!r} is not in mated")
    sub = frame[frame["fr_model"] == fr_model].reset_index(drop=True)
    groups, reference_group = _checked_groups(sub, fr_model, reference_group)
    conditions = conditions_of(sub)
    if not conditions:
        raise ValueError(f"fr_model {fr_model!r} has only control images: no factor levels")
    cluster_codes, _ = pd.factorize(sub["identity_id"])
    n_clusters = int(cluster_codes.max()) + 1
    if n_clusters < 2:
        raise ValueError("interaction_model needs at least two identities to cluster on")
    return sub, groups, reference_group, conditions, cluster_codes


def _interaction_table(coefficients: pd.DataFrame, cells: list[Any]) -> pd.DataFrame:
    """One row per group x condition interaction term (NaN estimates for an empty cell)."""
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
    return interactions


def _checked_groups(
    sub: pd.DataFrame, fr_model: str, reference_group: Any
) -> tuple[list[Any], Any]:
    """The model's groups in sorted order and the reference group (default the first); every
    group needs a control image, the reference condition."""
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
    return groups, reference_group


def _design_matrix(
    sub: pd.DataFrame,
    groups: list[Any],
    reference_group: Any,
    conditions: list[tuple[Any, Any]],
    fr_model: str,
) -> tuple[list[str], np.ndarray, list[tuple[Any, tuple[Any, Any], str, int]]]:
    """``(names, design, cells)``: the treatment-coded columns (intercept, group, condition and
    the group x condition terms that have data), the (N, K) design matrix, and per group x
    condition cell ``(group, condition, term name, images)``. Raises ``ValueError`` when the
    design is rank-deficient."""
    group_values = sub["group"].to_numpy()
    codes = condition_codes(sub, conditions)
    other_groups = [g for g in groups if g != reference_group]

    columns: dict[str, np.ndarray] = {"Intercept": np.ones(len(sub))}
    group_dummy = {g: (group_values == g).astype(np.float64) for g in other_groups}
    cond_dummy = {
        c: (codes == k).astype(np.float64) for k, c in enumerate(conditions, start=1)
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
    return names, design, cells


def _coefficient_table(fit: Any, names: list[str]) -> pd.DataFrame:
    """Every coefficient of the fitted model with its cluster-robust standard error, 95%
    t-interval and p-value."""
    conf = np.asarray(fit.conf_int(alpha=0.05))
    return pd.DataFrame(
        {
            "term": names,
            "estimate": np.asarray(fit.params, dtype=np.float64),
            "std_error": np.asarray(fit.bse, dtype=np.float64),
            "ci_low": conf[:, 0],
            "ci_high": conf[:, 1],
            "p_value": np.asarray(fit.pvalues, dtype=np.float64),
        }
    )
