"""Tests for audit.narrative: sentences built from hand-made operating points."""

from __future__ import annotations

import copy
import re

import numpy as np
import pandas as pd
import pytest

from audit.disparity import rankable_groups, summarize_disparity
from audit.narrative import operating_point_sentences, summary_sentences
from audit.uncertainty import bootstrap_group_rates


def group(fnmr, lo, hi, n_mated=200, fmr=0.01, fmr_lo=0.005, fmr_hi=0.02, n_nonmated=5000,
          n_identities=40):
    """One group's entries for by_group and bootstrap.by_group."""
    fnm = None if fnmr is None else round(fnmr * n_mated)
    fm = None if fmr is None else round(fmr * n_nonmated)
    point = {"n_mated": n_mated, "false_non_matches": fnm, "fnmr": fnmr,
             "n_identities": n_identities, "n_nonmated": n_nonmated, "false_matches": fm,
             "fmr": fmr}
    boot = dict(point, fnmr_lower=lo, fnmr_upper=hi, fmr_lower=fmr_lo, fmr_upper=fmr_hi)
    return point, boot


def operating_point(groups: dict, **extra) -> dict:
    op = {
        "target_fmr": 0.001,
        "threshold": 0.41,
        "by_group": {g: p for g, (p, _) in groups.items()},
        "bootstrap": {"confidence": 0.95, "by_group": {g: b for g, (_, b) in groups.items()}},
    }
    op.update(extra)
    return op


def fnmr_sentence(sentences: list[str]) -> str:
    found = [s for s in sentences if "FNMR" in s and "overall" not in s]
    assert len(found) == 1, sentences
    return found[0]


def fmr_sentence(sentences: list[str]) -> str:
    found = [s for s in sentences if re.search(r"\bFMR (is|for)\b", s)]
    assert len(found) == 1, sentences
    return found[0]


# --- overlapping intervals: no claim ---------------------------------------------------------


def test_no_difference_is_claimed_when_intervals_overlap():
    op = operating_point({
        "Lo": group(0.10, 0.06, 0.15),
        "Hi": group(0.14, 0.09, 0.20),  # 0.09 <= 0.15: overlap
    })
    sentence = fnmr_sentence(operating_point_sentences(op))
    assert "not resolved by this audit" in sentence
    assert "times" not in sentence
    # Both intervals are given, highest first.
    assert sentence.index("Hi, 14%") < sentence.index("Lo, 10%")
    assert "95% CI 9% to 20%" in sentence and "95% CI 6% to 15%" in sentence


def test_touching_intervals_count_as_overlapping():
    op = operating_point({"Lo": group(0.10, 0.06, 0.15), "Hi": group(0.30, 0.15, 0.40)})
    sentence = fnmr_sentence(operating_point_sentences(op))
    assert "not resolved" in sentence and "times" not in sentence


def test_no_claim_anywhere_when_every_pair_overlaps_with_many_groups():
    groups = {f"g{k}": group(0.1 + 0.01 * k, 0.05, 0.3, fmr=0.01 + 0.001 * k, fmr_lo=0.001,
                             fmr_hi=0.05) for k in range(5)}
    sentences = operating_point_sentences(operating_point(groups))
    assert not any("times" in s for s in sentences)
    assert sum("not resolved" in s for s in sentences) == 2


# --- a clear difference ----------------------------------------------------------------------


def test_a_clear_difference_is_stated_with_the_ratio_and_the_order():
    op = operating_point({
        "Y": group(0.05, 0.03, 0.07),
        "X": group(0.12, 0.09, 0.16),  # 0.12 / 0.05 = 2.4; 0.09 > 0.07: resolved
        "Z": group(0.08, 0.05, 0.11),
    })
    sentence = fnmr_sentence(operating_point_sentences(op))
    assert sentence.startswith("At FMR 0.001, FNMR for X is 2.4 times that of Y")
    assert "not resolved" not in sentence
    assert "12% (95% CI 9% to 16%) against 5% (95% CI 3% to 7%)" in sentence


def test_the_ratio_interval_is_quoted_when_the_disparity_block_names_the_same_groups():
    groups = {"Y": group(0.05, 0.03, 0.07), "X": group(0.12, 0.09, 0.16)}
    disparity = {
        "fnmr_ratio": {"value": 2.4, "max_group": "X", "min_group": "Y"},
        "measures": {"fnmr_max_min_ratio": {"estimate": 2.4, "lower": 1.3, "upper": 4.1}},
    }
    sentence = fnmr_sentence(operating_point_sentences(operating_point(groups,
                                                                      disparity=disparity)))
    assert "FNMR for X is 2.4 times that of Y (95% CI 1.3 to 4.1)" in sentence
    other = copy.deepcopy(disparity)
    other["fnmr_ratio"]["min_group"] = "W"
    sentence = fnmr_sentence(operating_point_sentences(operating_point(groups,
                                                                      disparity=other)))
    assert "1.3 to 4.1" not in sentence and "2.4 times" in sentence


def test_a_zero_rate_uses_the_rule_of_three_bound():
    # Y: no false non-match in 300 mated comparisons: bound 3/300 = 1%. X: 20% -> 20 times.
    op = operating_point({"Y": group(0.0, 0.0, 0.0, n_mated=300), "X": group(0.2, 0.15, 0.25)})
    sentence = fnmr_sentence(operating_point_sentences(op))
    assert "FNMR for X is 20 times the rule-of-three upper bound for Y" in sentence
    assert "no false non-matches observed in 300 mated comparisons" in sentence
    assert "upper bound 1%" in sentence
    assert " 0%" not in sentence  # never a bare zero


def test_a_zero_rate_with_a_wide_bound_is_not_claimed():
    # Y: 0 in 20 -> bound 15%, which overlaps X's interval from 12%.
    op = operating_point({"Y": group(0.0, 0.0, 0.0, n_mated=20), "X": group(0.2, 0.12, 0.3)})
    sentence = fnmr_sentence(operating_point_sentences(op))
    assert "not resolved" in sentence and "times" not in sentence
    assert "upper bound 15%" in sentence


def test_fmr_comparison_uses_fmr_intervals():
    op = operating_point({
        "A": group(0.1, 0.05, 0.15, fmr=0.004, fmr_lo=0.002, fmr_hi=0.006),
        "B": group(0.1, 0.05, 0.15, fmr=0.0005, fmr_lo=0.0001, fmr_hi=0.001),
    })
    sentences = operating_point_sentences(op)
    assert "FMR for A is 8.0 times that of B" in fmr_sentence(sentences)
    # Equal FNMR: stated as equal, no ranking.
    assert "FNMR is the same (10%) in all 2 groups" in fnmr_sentence(sentences)


# --- small groups, undefined rates, single group ----------------------------------------------


def test_groups_too_small_to_rank_are_named_and_left_out():
    op = operating_point(
        {"Y": group(0.05, 0.03, 0.07), "X": group(0.12, 0.09, 0.16),
         "Tiny": group(0.5, 0.05, 0.9, n_mated=8)},
        rankable={"Y": {"rankable": True, "reason": ""}, "X": {"rankable": True, "reason": ""},
                  "Tiny": {"rankable": False, "reason": "3 identities < 20"}},
    )
    sentences = operating_point_sentences(op)
    assert any("too small to rank" in s and "Tiny (3 identities < 20)" in s for s in sentences)
    sentence = fnmr_sentence(sentences)
    assert "FNMR for X is 2.4 times that of Y" in sentence and "Tiny" not in sentence
    # Without the rankable rule, Tiny (highest) is compared and overlaps.
    loose = fnmr_sentence(operating_point_sentences(op, respect_rankable=False))
    assert "highest for Tiny" in loose and "not resolved" in loose


def test_no_ranking_when_fewer_than_two_groups_are_rankable():
    op = operating_point(
        {"Y": group(0.05, 0.03, 0.07), "X": group(0.12, 0.09, 0.16)},
        rankable={"Y": {"rankable": False, "reason": "10 identities < 20"},
                  "X": {"rankable": True, "reason": ""}},
    )
    sentences = operating_point_sentences(op)
    assert not any("times" in s for s in sentences)
    assert any("rank by FNMR" in s and "does not rank groups by it" in s
               and "from 5% for Y to 12% for X" in s for s in sentences)
    # A zero rate in the unranked range is given with its bound, never as a bare 0%.
    op["by_group"]["Y"].update(fmr=0.0, false_matches=0, n_nonmated=3000)
    sentences = operating_point_sentences(op)
    assert any("from none observed (95% upper bound 0.1%) for Y to 1% for X" in s
               for s in sentences)
    assert not any(" 0%" in s for s in sentences)


def test_undefined_rates_are_named_and_skipped():
    op = operating_point({
        "Y": group(0.05, 0.03, 0.07),
        "X": group(0.12, 0.09, 0.16),
        "None": group(None, None, None, n_mated=0),
    })
    sentences = operating_point_sentences(op)
    assert "FNMR is undefined for None (no mated comparisons)." in sentences
    assert "FNMR for X is 2.4 times that of Y" in fnmr_sentence(
        [s for s in sentences if "undefined" not in s]
    )


def test_a_single_group_is_not_compared():
    sentences = operating_point_sentences(operating_point({"Only": group(0.1, 0.05, 0.2)}))
    assert any("Only one group (Only)" in s for s in sentences)
    assert not any("times" in s or "highest" in s for s in sentences)


def test_without_intervals_no_difference_is_assessed():
    op = operating_point({"Y": group(0.05, 0.03, 0.07), "X": group(0.12, 0.09, 0.16)})
    del op["bootstrap"]
    sentence = fnmr_sentence(operating_point_sentences(op))
    assert "does not assess" in sentence and "times" not in sentence


def test_user_threshold_label_and_overall_sentence():
    op = operating_point({"Y": group(0.05, 0.03, 0.07), "X": group(0.12, 0.09, 0.16)})
    del op["target_fmr"]
    op["bootstrap"]["overall"] = {"n_mated": 400, "false_non_matches": 34, "fnmr": 0.085,
                                  "fnmr_lower": 0.06, "fnmr_upper": 0.11, "n_nonmated": 10000,
                                  "false_matches": 0, "fmr": 0.0, "fmr_lower": 0.0,
                                  "fmr_upper": 0.0003}
    sentences = operating_point_sentences(op, model="m1")
    assert sentences[0].startswith("At threshold 0.41 with m1 (threshold 0.41), overall FNMR "
                                   "is 8.5% (95% CI 6% to 11%) over 400 mated comparisons")
    assert "no false matches observed in 10,000 non-mated comparisons" in sentences[0]
    assert all(isinstance(s, str) and "<" not in s for s in sentences)


# --- end to end on real result objects --------------------------------------------------------


def audit_comparisons(seed: int, gap: float) -> pd.DataFrame:
    """Two groups of 30 identities; group H's mated scores are lower by ``gap``."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, g in enumerate(("L", "H")):
        ids = [100 * k + i for i in range(30)]
        for i in ids:
            effect = rng.normal(0, 0.05)
            for _ in range(6):
                rows.append((0.7 - gap * k + effect + rng.normal(0, 0.1), True, g, g, i, i))
        for _ in range(1500):
            i, j = rng.choice(ids, size=2, replace=False)
            rows.append((rng.normal(0.2, 0.1), False, g, g, int(i), int(j)))
    return pd.DataFrame(rows, columns=["score", "mated", "group_a", "group_b", "identity_a",
                                       "identity_b"])


@pytest.mark.parametrize("gap, claimed", [(0.25, True), (0.0, False)])
def test_sentences_from_real_result_objects(gap, claimed):
    comparisons = audit_comparisons(3, gap)
    boot = bootstrap_group_rates(comparisons, 0.55, n_boot=300, seed=1)
    rank = rankable_groups(boot)
    op = {
        "target_fmr": 0.001,
        "threshold": 0.55,
        **boot.rates.to_dict(),
        "bootstrap": boot.to_dict(),
        "disparity": summarize_disparity(boot, alpha=0.5).to_dict(),
        "rankable": {g: {"rankable": bool(r), "reason": why}
                     for g, r, why in zip(rank.index, rank["rankable"], rank["reason"],
                                          strict=True)},
    }
    sentence = fnmr_sentence(operating_point_sentences(op))
    by_group = boot.by_group
    if claimed:
        ratio = by_group.at["H", "fnmr"] / by_group.at["L", "fnmr"]
        assert f"FNMR for H is {ratio:.1f} times that of L (95% CI" in sentence
        assert by_group.at["H", "fnmr_lower"] > by_group.at["L", "fnmr_upper"]
    else:
        assert "not resolved" in sentence and "times" not in sentence
    assert summary_sentences({"fr_models": {"m": {"operating_points": [op]}}})["m"]["0"]
