"""Tests for audit.permutation: the p-values against a literal re-implementation that relabels
identities in the comparison table and recounts with pandas, and the documented limits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from audit.disparity import summarize_disparity
from audit.permutation import permutation_test
from audit.uncertainty import bootstrap_group_rates
from tests.audit.test_uncertainty import small_comparisons


def floored_ratio(errors: pd.Series, trials: pd.Series) -> float:
    if trials.isna().any():  # a group without comparisons: undefined
        return np.nan
    rates = [e / n if e > 0 else min(3 / n, 1.0) for e, n in zip(errors, trials, strict=True)]
    return np.nan if (errors == 0).all() else max(rates) / min(rates)


def literal_statistics(comp: pd.DataFrame, label_of: dict[int, str], groups) -> tuple:
    """(FNMR ratio, FMR ratio) with identities relabelled by ``label_of``, from the table."""
    a = comp["identity_a"].map(label_of)
    b = comp["identity_b"].map(label_of)
    match = comp["score"] >= 0.5
    mated = comp[comp["mated"]]
    fnm = (~match[mated.index]).groupby(a[mated.index]).agg(["sum", "size"]).reindex(groups)
    within = comp.index[~comp["mated"] & (a == b) & a.isin(groups)]
    fm = match[within].groupby(a[within]).agg(["sum", "size"]).reindex(groups)
    return floored_ratio(fnm["sum"], fnm["size"]), floored_ratio(fm["sum"], fm["size"])


def literal_test(comp: pd.DataFrame, groups, n_perm: int, seed: int) -> tuple[float, float]:
    group_of = dict(zip(comp["identity_a"], comp["group_a"], strict=False))
    group_of.update(zip(comp["identity_b"], comp["group_b"], strict=False))
    ids = sorted((i for i in group_of if group_of[i] in groups),
                 key=lambda i: (groups.index(group_of[i]), i))
    codes = np.array([groups.index(group_of[i]) for i in ids])
    observed = literal_statistics(comp, {i: group_of[i] for i in ids}, groups)
    shuffled = np.random.default_rng(seed).permuted(np.tile(codes, (n_perm, 1)), axis=1)
    counts, defined = np.zeros(2), np.zeros(2)
    for row in shuffled:
        stats = literal_statistics(comp, {i: groups[c] for i, c in zip(ids, row, strict=True)},
                                   groups)
        # Shuffles that leave a group without comparisons are left out.
        defined += [not np.isnan(s) for s in stats]
        counts += [s >= o - 1e-12 for s, o in zip(stats, observed, strict=True)]
    return tuple((1 + counts) / (1 + defined))


@pytest.mark.parametrize("groups", [["A", "B", "C"], ["A", "B"]])
def test_p_values_match_a_literal_relabel_and_recount(groups):
    comp = small_comparisons()
    result = permutation_test(comp, 0.5, groups, n_permutations=60, seed=4)
    p_fnmr, p_fmr = literal_test(comp, groups, 60, 4)
    assert result.fnmr.p_value == pytest.approx(p_fnmr)
    assert result.fmr.p_value == pytest.approx(p_fmr)
    assert result.groups == tuple(groups) and result.fnmr.n_valid == 60


def test_a_clear_difference_gets_a_small_p_value_and_a_shuffled_one_does_not():
    rng = np.random.default_rng(0)
    rows = []
    for g, fail in (("P", 0.05), ("Q", 0.4)):
        for i in range(30):
            ident = (0 if g == "P" else 100) + i
            rows += [(0.0 if rng.random() < fail else 1.0, True, g, g, ident, ident)
                     for _ in range(4)]
    ids = [(g, (0 if g == "P" else 100) + i) for g in "PQ" for i in range(30)]
    for x in range(len(ids)):
        for y in range(x + 1, len(ids)):
            (ga, ia), (gb, ib) = ids[x], ids[y]
            rows.append((1.0 if rng.random() < 0.1 else 0.0, False, ga, gb, ia, ib))
    comp = pd.DataFrame(rows, columns=["score", "mated", "group_a", "group_b", "identity_a",
                                       "identity_b"])
    result = permutation_test(comp, 0.5, ["P", "Q"], n_permutations=199, seed=1)
    assert result.fnmr.p_value <= 0.01
    assert result.fmr.p_value > 0.05  # same FMR in both groups and across them
    assert result.fmr.note == ""


def test_fmr_is_not_tested_without_cross_group_comparisons():
    comp = small_comparisons()
    comp = comp[comp["group_a"] == comp["group_b"]]
    result = permutation_test(comp, 0.5, ["A", "B"], n_permutations=20, seed=0)
    assert result.fmr.p_value is None and "not run" in result.fmr.note
    assert result.fnmr.p_value is not None


def test_the_summary_records_the_seeded_test_and_stays_json():
    comp = small_comparisons()
    boot = bootstrap_group_rates(comp, 0.5, n_boot=50, seed=9)
    one = summarize_disparity(boot, alpha=0.5, comparisons=comp, n_permutations=40)
    two = summarize_disparity(boot, alpha=0.5, comparisons=comp, n_permutations=40)
    data = json.loads(json.dumps(one.to_dict(), allow_nan=False))
    block = data["permutation_test"]
    assert block == two.to_dict()["permutation_test"]
    assert block["seed"] == 9 and block["n_permutations"] == 40
    assert 0 < block["fnmr"]["p_value"] <= 1 and "statistic" in block
    assert any(note.startswith("Permutation test") for note in data["notes"])
    measure = data["measures"]["fnmr_max_min_ratio"]
    assert {"estimate", "lower", "upper", "n_valid", "definition", "interval_method"} <= set(
        measure)
    assert summarize_disparity(boot, alpha=0.5).to_dict()["permutation_test"] is None
    other = summarize_disparity(boot, alpha=0.5, comparisons=comp, n_permutations=40, seed=10)
    assert other.permutation is not None and other.permutation.seed == 10


def test_bad_inputs_are_rejected():
    comp = small_comparisons()
    with pytest.raises(ValueError, match="at least 2 groups"):
        permutation_test(comp, 0.5, ["A"])
    with pytest.raises(ValueError, match="n_permutations"):
        permutation_test(comp, 0.5, ["A", "B"], n_permutations=0)
