"""The global decision threshold of an FR model at a target false-match rate.

One global threshold per FR model is set on all non-mated comparisons (:func:`threshold_at_fmr`):
a comparison *matches* when its similarity score is at or above the threshold ``t``, and
``FMR(t) = (non-mated comparisons with score >= t) / (non-mated comparisons)`` (ISO/IEC
19795-1). Per-group rates are then read at that same threshold (:func:`audit.rates.error_rates`).
Both names are also importable from :mod:`audit.rates`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["ThresholdChoice", "threshold_at_fmr"]


@dataclass(frozen=True)
class ThresholdChoice:
    """A decision threshold chosen on non-mated scores.

    Attributes
    ----------
    threshold:
        Similarity threshold ``t`` (same units as the scores, e.g. cosine similarity); a
        comparison matches when ``score >= t``.
    target_fmr:
        The requested false-match rate.
    achieved_fmr:
        FMR(t) on the non-mated scores it was chosen on; always ``<= target_fmr``.
    n_nonmated:
        Number of non-mated scores.
    false_matches:
        Number of non-mated scores ``>= t`` (so ``achieved_fmr = false_matches / n_nonmated``).
    """

    threshold: float
    target_fmr: float
    achieved_fmr: float
    n_nonmated: int
    false_matches: int

    @property
    def resolvable(self) -> bool:
        """Whether the data can resolve the target at all: ``target_fmr >= 1 / n_nonmated``.

        When False, the threshold is just above the highest non-mated score, the achieved FMR is
        0 and the true FMR at that threshold is only bounded (by the rule of three, ``3 / n``).
        """
        return self.target_fmr * self.n_nonmated >= 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable values."""
        return {
            "threshold": float(self.threshold),
            "target_fmr": float(self.target_fmr),
            "achieved_fmr": float(self.achieved_fmr),
            "n_nonmated": int(self.n_nonmated),
            "false_matches": int(self.false_matches),
        }


def threshold_at_fmr(
    nonmated_scores: Sequence[float] | np.ndarray, target_fmr: float
) -> ThresholdChoice:
    """Smallest threshold, among the observed scores, whose FMR does not exceed a target.

    With FMR(t) = share of non-mated scores ``>= t`` (ISO/IEC 19795-1, match at or above the
    threshold), return the smallest observed score value ``t`` with ``FMR(t) <= target_fmr``.
    Ties are handled exactly: all scores equal to ``t`` count as false matches, so the achieved
    FMR never exceeds the target even when many scores tie at the cut. Lowering ``t`` to the next
    smaller distinct score would exceed the target. If even ``t = max(scores)`` gives an FMR above
    the target (for example when ``target_fmr < 1 / n``), the threshold is
    ``numpy.nextafter(max, +inf)``, just above every score, with 0 false matches.

    Parameters
    ----------
    nonmated_scores:
        1-D array-like of non-mated similarity scores, shape (n,), n >= 1, all finite.
    target_fmr:
        Target false-match rate, strictly between 0 and 1 (e.g. 1e-3).

    Returns
    -------
    ThresholdChoice

    Raises
    ------
    ValueError
        If the target is not in (0, 1), or the scores are empty, not 1-D or not finite.
    """
    if isinstance(target_fmr, bool) or not isinstance(target_fmr, (int, float, np.number)):
        raise ValueError(f"target_fmr must be a number in (0, 1), got {target_fmr!r}")
    target = float(target_fmr)
    if not (0.0 < target < 1.0):
        raise ValueError(f"target_fmr must be strictly between 0 and 1, got {target_fmr!r}")
    scores = np.asarray(nonmated_scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"nonmated_scores must be 1-D, got shape {scores.shape}")
    if scores.size == 0:
        raise ValueError("nonmated_scores is empty: no non-mated comparisons to set a threshold on")
    if not np.all(np.isfinite(scores)):
        raise ValueError("nonmated_scores contain NaN or infinite values")

    n = scores.size
    # Distinct values v_1 < ... < v_m; first_index[j] = number of scores < v_j, so the number of
    # scores >= v_j is n - first_index[j], which decreases with j.
    values, first_index = np.unique(np.sort(scores), return_index=True)
    at_or_above = n - first_index
    ok = at_or_above / n <= target  # same arithmetic as achieved_fmr below
    if ok.any():
        j = int(np.argmax(ok))  # first True: FMR is monotone, so this is the smallest t
        threshold = float(values[j])
        false_matches = int(at_or_above[j])
    else:
        threshold = float(np.nextafter(values[-1], np.inf))
        false_matches = 0
    return ThresholdChoice(
        threshold=threshold,
        target_fmr=target,
        achieved_fmr=false_matches / n,
        n_nonmated=int(n),
        false_matches=false_matches,
    )
