"""Plain-language summary sentences for one operating point of an audit.

Input is the JSON structure the audit summary stores per FR model and operating point
(``summary["fr_models"][model]["operating_points"][k]``): ``target_fmr`` and ``threshold``,
``overall`` and ``by_group`` (the point rates and counts of :meth:`audit.rates.GroupRates.to_dict`),
``bootstrap`` (:meth:`audit.uncertainty.BootstrapResult.to_dict`), ``disparity``
(:meth:`audit.disparity.DisparitySummary.to_dict`) and ``rankable`` (group -> ``{"rankable",
"reason"}``, from :func:`audit.disparity.rankable_groups`). Any of the last three may be absent.

Rules the sentences follow, for FNMR and for FMR separately:

- Compare the group with the highest rate against the one with the lowest (point estimates),
  among the groups whose rate is defined and, when ``rankable`` is given, that are large enough to
  rank. Other groups are named as too small to rank, with the reason.
- Claim a difference only when the two groups' intervals do not overlap (``lower_high >
  upper_low``; touching intervals count as overlapping). Non-overlap of two 95% intervals is a
  conservative check of a difference. Otherwise say that the audit does not resolve the
  difference and give both intervals.
- The size of a resolved difference is the ratio ``rate_high / rate_low``. A rate of 0 (no error
  in n trials) is replaced by its rule-of-three bound ``3 / n`` (the floor of
  :func:`audit.disparity.max_min_ratio`), and the sentence says so. When the disparity block's
  max/min ratio names the same two groups, its interval is quoted; it is the interval of the
  max/min ratio across the compared groups (a simultaneous bootstrap band over every pair of
  groups, :mod:`audit.disparity_intervals`), not of this one pair's ratio alone.
- Zero rates are written as "no errors observed" with the rule-of-three bound, never as a bare 0;
  undefined rates (``None``) are named; with fewer than two groups nothing is compared.

Failure to acquire (:func:`acquisition_sentences`, from ``summary["acquisition"]``): when the
share of images with no face found differs between groups (an identity-level permutation test,
:mod:`audit.acquisition`), the sentence gives the highest and the lowest group's rates with their
counts and says that FNMR, measured only on images with a face, understates the first group's
total failure to verify. When images were lost but the test does not show a difference, the
rates are given with the p-value and no difference is claimed; without per-identity counts no
test is made and the sentence says so. Nothing is said when every image had a face.

Everything here is a pure function of the input; the output is a list of plain strings (no HTML,
no markup).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .counts import finite_number
from .summary import AuditSummary

__all__ = ["acquisition_sentences", "operating_point_sentences", "summary_sentences"]

_RATES = {
    # rate: (label, errors key, trials key, error noun, trial noun)
    "fnmr": ("FNMR", "false_non_matches", "n_mated", "false non-matches", "mated comparisons"),
    "fmr": (
        "FMR",
        "false_matches",
        "n_nonmated",
        "false matches",
        "within-group non-mated comparisons",
    ),
}


# --- formatting -------------------------------------------------------------------------------


def _pct(rate: float) -> str:
    """Rate as a percentage with 3 significant figures, no exponent: 0.2564 -> '25.6%'."""
    p = 100.0 * rate
    if p == 0.0:
        return "0%"
    decimals = max(0, 2 - math.floor(math.log10(abs(p))))
    text = f"{p:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text}%"


def _times(ratio: float) -> str:
    """Ratio with 2 significant figures below 10, whole numbers above: 2.43 -> '2.4'."""
    if ratio >= 10:
        return f"{ratio:.0f}"
    return f"{ratio:.2g}" if ratio < 1 else f"{ratio:.1f}"


# --- per-group facts --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cell:
    group: str
    rate: float | None
    errors: int | None
    trials: int | None
    lower: float | None
    upper: float | None

    @property
    def zero(self) -> bool:
        return self.rate == 0.0 and bool(self.trials)

    @property
    def bound(self) -> float | None:
        """Rule-of-three 95% upper bound 3/n (capped at 1) when no error was observed."""
        if not self.zero or not self.trials:
            return None
        return min(3.0 / self.trials, 1.0)

    @property
    def has_interval(self) -> bool:
        return self.lower is not None and self.upper is not None


def _cells(op: Mapping[str, Any], rate: str) -> dict[str, _Cell]:
    _, errors_key, trials_key, _, _ = _RATES[rate]
    by_group = op.get("by_group") or {}
    boot = (op.get("bootstrap") or {}).get("by_group") or {}
    groups = list(by_group) or list(boot)
    out = {}
    for g in groups:
        point = by_group.get(g) or boot.get(g) or {}
        interval = boot.get(g) or {}
        trials = finite_number(point.get(trials_key, interval.get(trials_key)))
        errors = finite_number(point.get(errors_key, interval.get(errors_key)))
        value = finite_number(point.get(rate, interval.get(rate)))
        if trials is not None and trials <= 0:
            value = None
        lower = finite_number(interval.get(f"{rate}_lower"))
        upper = finite_number(interval.get(f"{rate}_upper"))
        if value == 0.0 and trials:
            # No error observed: the interval is [0, 3/n] whatever the bootstrap says.
            lower, upper = 0.0, min(3.0 / trials, 1.0)
        out[str(g)] = _Cell(
            group=str(g),
            rate=value,
            errors=None if errors is None else int(errors),
            trials=None if trials is None else int(trials),
            lower=lower,
            upper=upper,
        )
    return out


def _short(cell: _Cell) -> str:
    """'25.6%', or for no observed error 'none observed (95% upper bound 0.68%)'."""
    if cell.zero:
        return f"none observed (95% upper bound {_pct(cell.bound or 0.0)})"
    return _pct(cell.rate or 0.0)


def _describe(cell: _Cell, rate: str, level: str) -> str:
    """'25.6% (95% CI 14.3% to 34.8%)' or 'no false matches in 441 ... (upper bound 0.68%)'."""
    _, _, _, error_noun, trial_noun = _RATES[rate]
    if cell.zero:
        return (
            f"no {error_noun} observed in {cell.trials:,} {trial_noun} "
            f"(95% upper bound {_pct(cell.bound or 0.0)}, rule of three)"
        )
    assert cell.rate is not None
    text = _pct(cell.rate)
    if cell.has_interval:
        text += f" ({level} CI {_pct(cell.lower or 0.0)} to {_pct(cell.upper or 0.0)})"
    return text


# --- sentences --------------------------------------------------------------------------------


def _prefix(op: Mapping[str, Any], model: str | None) -> str:
    target = finite_number(op.get("target_fmr"))
    threshold = finite_number(op.get("threshold"))
    if target is not None:
        text = f"At FMR {target:g}"
    elif threshold is not None:
        text = f"At threshold {threshold:.4g}"
    else:
        text = "At this operating point"
    return f"{text} with {model}" if model else text


def _ratio_interval(
    op: Mapping[str, Any], rate: str, high: str, low: str, level: str
) -> str | None:
    """The disparity block's max/min ratio interval, if it is about these two groups."""
    disparity = op.get("disparity") or {}
    ratio = disparity.get(f"{rate}_ratio") or {}
    if ratio.get("max_group") != high or ratio.get("min_group") != low:
        return None
    measure = (disparity.get("measures") or {}).get(f"{rate}_max_min_ratio") or {}
    lower, upper = finite_number(measure.get("lower")), finite_number(measure.get("upper"))
    if lower is None or upper is None:
        return None
    return f"{level} CI {_times(lower)} to {_times(upper)}"


def _compare(
    op: Mapping[str, Any],
    rate: str,
    cells: list[_Cell],
    prefix: str,
    level: str,
    rankable_known: bool,
) -> str:
    label = _RATES[rate][0]
    _, _, _, error_noun, _ = _RATES[rate]
    high = max(cells, key=lambda c: c.rate or 0.0)  # first on ties
    low = min(cells, key=lambda c: c.rate or 0.0)
    which = "rankable groups" if rankable_known else "groups"

    if high.rate == low.rate:
        if high.rate == 0.0:
            bounds = sorted(c.bound or 0.0 for c in cells)
            span = _pct(bounds[0]) if bounds[0] == bounds[-1] else (
                f"{_pct(bounds[0])} to {_pct(bounds[-1])}"
            )
            return (
                f"{prefix}, no {error_noun} were observed in any of the {len(cells)} {which} "
                f"(rule-of-three 95% upper bounds {span}), so {label} does not separate them."
            )
        return (
            f"{prefix}, {label} is the same ({_pct(high.rate or 0.0)}) in all {len(cells)} "
            f"{which}."
        )

    described = (
        f"{label} is highest for {high.group}, {_describe(high, rate, level)}, and lowest for "
        f"{low.group}, {_describe(low, rate, level)}"
    )
    if not (high.has_interval and low.has_interval):
        return (
            f"{prefix}, {described}; without confidence intervals this audit does not assess "
            "whether the difference is real."
        )
    assert high.lower is not None and low.upper is not None
    if high.lower <= low.upper:
        return (
            f"{prefix}, {described}; the intervals overlap, so the difference is not resolved "
            "by this audit."
        )

    ci = _ratio_interval(op, rate, high.group, low.group, level)
    ci_text = f" ({ci})" if ci else ""
    assert high.rate is not None
    if low.zero:
        bound = low.bound or 0.0
        return (
            f"{prefix}, {label} for {high.group} is {_times(high.rate / bound)} times the "
            f"rule-of-three upper bound for {low.group}{ci_text}: "
            f"{_describe(high, rate, level)} against {_describe(low, rate, level)}; with no "
            f"{error_noun} observed for {low.group}, the true ratio may be larger."
        )
    assert low.rate is not None
    return (
        f"{prefix}, {label} for {high.group} is {_times(high.rate / low.rate)} times that of "
        f"{low.group}{ci_text}: {_describe(high, rate, level)} against "
        f"{_describe(low, rate, level)}."
    )


def operating_point_sentences(
    operating_point: Mapping[str, Any],
    *,
    model: str | None = None,
    respect_rankable: bool = True,
) -> list[str]:
    """Short plain-language sentences summarising one operating point.

    Parameters
    ----------
    operating_point:
        One entry of ``summary["fr_models"][model]["operating_points"]`` (see the module
        docstring); at least ``by_group`` or ``bootstrap`` must be present.
    model:
        Optional FR model name, worded into the first clause ("At FMR 0.001 with <model>").
    respect_rankable:
        When True (default) and ``rankable`` is present, groups too small to rank are left out
        of the highest-versus-lowest comparison and named with the reason.

    Returns
    -------
    list of str
        In order: the overall rates; groups too small to rank; per rate (FNMR, then FMR) groups
        where it is undefined and the highest-versus-lowest sentence. Empty when the operating
        point holds no per-group data.
    """
    prefix = _prefix(operating_point, model)
    boot = operating_point.get("bootstrap") or {}
    confidence = finite_number(boot.get("confidence"))
    level = f"{100 * confidence:g}%" if confidence is not None else "95%"
    sentences: list[str] = []
    overall = _overall_sentence(operating_point, boot, prefix, level)
    if overall is not None:
        sentences.append(overall)

    cells = {rate: _cells(operating_point, rate) for rate in _RATES}
    groups = list(cells["fnmr"])
    if not groups:
        return sentences
    if len(groups) == 1:
        g = groups[0]
        sentences.append(
            f"Only one group ({g}) took part, so no comparison between groups is possible."
        )
        return sentences

    too_small = _too_small_to_rank(operating_point, groups) if respect_rankable else {}
    if too_small:
        listed = "; ".join(f"{g} ({why})" for g, why in too_small.items())
        sentences.append(
            f"{len(too_small)} of {len(groups)} groups are too small to rank and are not "
            f"compared: {listed}."
        )
    for rate in ("fnmr", "fmr"):
        sentences.extend(
            _rate_sentences(operating_point, rate, cells[rate], too_small, prefix, level)
        )
    return sentences


def _overall_sentence(
    operating_point: Mapping[str, Any], boot: Mapping[str, Any], prefix: str, level: str
) -> str | None:
    """The sentence giving the overall FNMR and FMR, or None when neither is known."""
    overall = boot.get("overall") or operating_point.get("overall") or {}
    parts = []
    for rate in ("fnmr", "fmr"):
        label, errors_key, trials_key, _, _ = _RATES[rate]
        value, trials = finite_number(overall.get(rate)), finite_number(overall.get(trials_key))
        if value is None or not trials:
            continue
        cell = _Cell("overall", value, _int(overall.get(errors_key)), int(trials),
                     finite_number(overall.get(f"{rate}_lower")),
                     finite_number(overall.get(f"{rate}_upper")))
        if cell.zero:
            cell = _Cell("overall", 0.0, 0, int(trials), 0.0, cell.bound)
        noun = "mated" if rate == "fnmr" else "non-mated"
        described = _describe(cell, rate, level).replace(
            "within-group non-mated", "non-mated"
        )
        parts.append(f"overall {label} is {described}" + (
            "" if cell.zero else f" over {int(trials):,} {noun} comparisons"
        ))
    threshold = finite_number(operating_point.get("threshold"))
    at = f" (threshold {threshold:.4g})" if threshold is not None else ""
    if parts:
        return f"{prefix}{at}, " + "; ".join(parts) + "."
    return None


def _too_small_to_rank(operating_point: Mapping[str, Any], groups: list[str]) -> dict[str, str]:
    """Group -> reason, for the groups that ``rankable`` marks as too small to rank."""
    rankable = operating_point.get("rankable") or {}
    too_small = {}
    for g in groups:
        entry = rankable.get(g)
        if entry is not None and not entry.get("rankable", True):
            too_small[g] = str(entry.get("reason") or "too few comparisons")
    return too_small


def _rate_sentences(
    operating_point: Mapping[str, Any],
    rate: str,
    cells: Mapping[str, _Cell],
    too_small: Mapping[str, str],
    prefix: str,
    level: str,
) -> list[str]:
    """One rate's sentences: groups where it is undefined, then highest versus lowest."""
    label = _RATES[rate][0]
    sentences = []
    undefined = [g for g, c in cells.items() if c.rate is None]
    if undefined:
        sentences.append(
            f"{label} is undefined for {', '.join(undefined)} (no "
            f"{_RATES[rate][4]})."
        )
    usable = [c for g, c in cells.items() if c.rate is not None and g not in too_small]
    if len(usable) >= 2:
        sentences.append(_compare(operating_point, rate, usable, prefix, level, bool(too_small)))
    elif too_small and len(usable) < 2:
        sentences.append(_unranked_sentence(cells, label, prefix))
    else:
        sentences.append(
            f"{prefix}, {label} is defined for fewer than two groups, so no comparison "
            "between groups is possible."
        )
    return sentences


def _unranked_sentence(cells: Mapping[str, _Cell], label: str, prefix: str) -> str:
    """Fewer than two groups are rankable: say so, with the observed (unranked) range."""
    defined = [c for c in cells.values() if c.rate is not None]
    observed = ""
    if len(defined) >= 2:
        high = max(defined, key=lambda c: c.rate or 0.0)
        low = min(defined, key=lambda c: c.rate or 0.0)
        observed = (
            f" (observed, unranked: from {_short(low)} for {low.group} to "
            f"{_short(high)} for {high.group})"
        )
    return (
        f"{prefix}, fewer than two groups are large enough to rank by {label}, so "
        f"this audit does not rank groups by it{observed}."
    )


def _int(value: Any) -> int | None:
    x = finite_number(value)
    return None if x is None else int(x)


def _share(rate: float) -> str:
    """A failure-to-acquire share: one decimal from 1% up ('12.0%'), 2 significant figures
    below ('0.42%'), '0%' for none."""
    p = 100.0 * rate
    if p == 0.0:
        return "0%"
    return f"{p:.1f}%" if p >= 1 else f"{p:.2g}%"


def _p(value: float) -> str:
    return f"p = {value:.2g}" if value >= 0.001 else "p < 0.001"


def acquisition_sentences(acquisition: Mapping[str, Any] | None, identities: Any = None, *,
                          alpha: float = 0.05) -> list[str]:
    """Sentences on failure to acquire (no face found) across groups.

    Parameters
    ----------
    acquisition:
        ``summary["acquisition"]``: ``by_group`` maps a group to ``{"images", "faces_found",
        "failure_to_acquire_rate"}``.
    identities:
        Optional per-identity counts (a DataFrame with ``group``, ``images``, ``failures``; see
        :func:`audit.acquisition.identity_counts`). Without them no test is made.
    alpha:
        Level of the identity-level permutation test (:func:`audit.acquisition.
        compare_acquisition`); "differs" means ``p < alpha``.

    Returns an empty list when there is nothing to say (no data, fewer than two groups, or a
    face was found in every image).
    """
    from audit.acquisition import compare_acquisition

    by_group = (acquisition or {}).get("by_group") or {}
    result = compare_acquisition(by_group, identities, alpha=alpha)
    high, low = result.highest, result.lowest
    if len(result.groups) < 2 or not result.failures or high is None or low is None:
        return []

    test = ""
    if result.p_value is not None:
        n_ids = sum(g.identities or 0 for g in result.groups)
        test = f"{result.method} over {n_ids:,} identities, {_p(result.p_value)}"

    def rate(g) -> str:
        return (f"{_share(g.rate or 0.0)} of the images of {g.group} "
                f"({g.failures:,} of {g.images:,})")

    if result.differs:
        assert result.p_value is not None
        return [
            f"Failure to acquire differs between groups: no face was found in {rate(high)} "
            f"against {rate(low)} ({test}). FNMR is measured only on images where a face was "
            f"found, so it understates {high.group}'s total failure to verify."
        ]
    overall = (
        f"No face was found in {_share(result.failures / result.images)} of all images "
        f"({result.failures:,} of {result.images:,}), from {rate(low)} to {rate(high)}"
    )
    if result.p_value is None:
        if high.failures * low.images == low.failures * high.images:
            return [f"{overall}: the same share in every group; FNMR is measured only on "
                    "images where a face was found."]
        return [f"{overall}; without per-identity counts this audit does not test whether "
                "failure to acquire differs between groups. FNMR is measured only on images "
                "where a face was found."]
    return [f"{overall}; the audit does not show that failure to acquire differs between "
            f"groups ({test}). FNMR is measured only on images where a face was found."]


def summary_sentences(summary: Mapping[str, Any]) -> dict[str, dict[str, list[str]]]:
    """Sentences for every FR model and operating point of an audit summary.

    Returns ``{model: {label: sentences}}`` where ``label`` is the operating point's ``label``
    (e.g. ``"FMR 0.01"``) or, failing that, its position as a string.
    """
    return {str(name): {str(p.raw.get("label") or p.index):
                        operating_point_sentences(p.raw, model=str(name)) for p in model.points}
            for name, model in AuditSummary.of(summary).models.items()}
