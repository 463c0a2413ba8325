"""Failure to acquire across groups: the identity-level permutation test (audit.acquisition)
and the plain-language sentence about it (audit.narrative.acquisition_sentences), with
p-values worked out by hand."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from audit.acquisition import compare_acquisition, identity_counts
from audit.narrative import acquisition_sentences


def identities(per_group: dict[str, list[tuple[int, int]]]) -> pd.DataFrame:
    """Per-identity counts from ``{group: [(images, failures), ...]}``."""
    rows = [{"identity_id": f"{g}{k}", "group": g, "images": n, "failures": f}
            for g, ids in per_group.items() for k, (n, f) in enumerate(ids)]
    return pd.DataFrame(rows)


def by_group(ids: pd.DataFrame) -> dict[str, dict]:
    """The summary's ``acquisition.by_group`` block that matches ``ids``."""
    out = {}
    for g, part in ids.groupby("group", sort=False):
        images, failures = int(part["images"].sum()), int(part["failures"].sum())
        out[g] = {"images": images, "faces_found": images - failures,
                  "failure_to_acquire_rate": failures / images}
    return out


# --- the test -------------------------------------------------------------------------------


def test_three_faces_that_always_fail_are_three_observations_not_twelve():
    # A: 3 identities whose 4 images all fail; B: 3 identities whose images all have a face.
    # Only the relabellings that put the 3 failing identities together in one group (A or B)
    # reach the observed chi-square: 2 of C(6, 3) = 20, so p = 0.1 exactly. An image-level
    # test (Fisher's exact on 12/12 against 0/12) would give p < 1e-6.
    ids = identities({"A": [(4, 4)] * 3, "B": [(4, 0)] * 3})
    result = compare_acquisition(by_group(ids), ids)
    assert result.method == "exact identity-level permutation test"
    assert result.n_relabellings == 20
    assert result.p_value == pytest.approx(2 / 20)
    assert not result.differs
    assert (result.highest.group, result.highest.rate) == ("A", 1.0)
    assert (result.lowest.group, result.lowest.rate) == ("B", 0.0)
    assert [g.identities for g in result.groups] == [3, 3]


def test_five_identities_each_is_enough_for_a_clear_difference():
    # Every identity of A loses 2 of its 4 images, none of B does. The statistic depends only
    # on how many of the 5 failing identities land in A (k): (4k - 10)^2 is largest at k = 0
    # and k = 5, each reached by 1 of C(10, 5) = 252 relabellings: p = 2/252.
    ids = identities({"A": [(4, 2)] * 5, "B": [(4, 0)] * 5})
    result = compare_acquisition(by_group(ids), ids)
    assert result.p_value == pytest.approx(2 / 252)
    assert result.differs


def test_three_groups_exact():
    # Two identities of A lose all 3 images; B and C lose none (2 identities per group).
    # The statistic is largest when both failing identities share a group: 3 groups x C(4, 2)
    # ways to fill the other two = 18 of 6!/(2!2!2!) = 90 relabellings; p = 0.2.
    ids = identities({"A": [(3, 3)] * 2, "B": [(3, 0)] * 2, "C": [(3, 0)] * 2})
    result = compare_acquisition(by_group(ids), ids)
    assert result.n_relabellings == 90
    assert result.p_value == pytest.approx(18 / 90)


def test_many_identities_use_seeded_random_relabellings():
    # 30 identities per group: C(60, 30) relabellings are too many to enumerate. Every
    # identity of A loses 1 of 5 images, none of B: no random relabelling reaches the
    # observed split, so p is its floor 1 / (1 + 1999).
    ids = identities({"A": [(5, 1)] * 30, "B": [(5, 0)] * 30})
    result = compare_acquisition(by_group(ids), ids)
    assert "1,999 random relabellings" in result.method
    assert result.p_value == pytest.approx(1 / 2000)
    assert compare_acquisition(by_group(ids), ids).p_value == result.p_value  # same seed


def test_equal_rates_give_p_one():
    ids = identities({"A": [(4, 1), (4, 0)], "B": [(4, 0), (4, 1)]})
    result = compare_acquisition(by_group(ids), ids)
    assert result.p_value == pytest.approx(1.0)
    assert not result.differs


@pytest.mark.parametrize("ids, method", [
    (None, "no per-identity counts"),
    # counts that do not add up to the summary's: not used
    (identities({"A": [(4, 4)] * 2, "B": [(4, 0)] * 3}), "no per-identity counts"),
])
def test_without_usable_identity_counts_no_test_is_made(ids, method):
    summary = by_group(identities({"A": [(4, 4)] * 3, "B": [(4, 0)] * 3}))
    result = compare_acquisition(summary, ids)
    assert result.p_value is None and result.method == method and not result.differs


def test_no_failure_anywhere_needs_no_test():
    ids = identities({"A": [(4, 0)] * 3, "B": [(4, 0)] * 3})
    result = compare_acquisition(by_group(ids), ids)
    assert result.p_value is None and result.failures == 0


def test_identity_counts_from_per_image_rows_as_read_from_a_csv():
    images = pd.DataFrame({"identity_id": [1, 1, 1, 2, 2, 2], "group": ["A"] * 3 + ["B"] * 3,
                           "face_found": ["True", "False", "False", True, True, "nonsense"]})
    counts = identity_counts(images).set_index("identity_id")
    assert counts.loc[1, ["images", "failures"]].tolist() == [3, 2]
    assert counts.loc[2, ["images", "failures"]].tolist() == [2, 0]  # the unreadable row left out
    assert identity_counts(pd.DataFrame({"group": ["A"]})).empty


# --- the sentence ---------------------------------------------------------------------------


def test_a_difference_is_stated_with_both_rates_and_what_it_means_for_fnmr():
    # A: 20 identities x 10 images, 12 identities lose 2 images each: 24 of 200 = 12.0%.
    # B: 20 identities x 10 images, 3 identities lose 1 image each: 3 of 200 = 1.5%.
    ids = identities({"A": [(10, 2)] * 12 + [(10, 0)] * 8, "B": [(10, 1)] * 3 + [(10, 0)] * 17})
    [sentence] = acquisition_sentences({"by_group": by_group(ids)}, ids)
    assert sentence.startswith(
        "Failure to acquire differs between groups: no face was found in 12.0% of the images "
        "of A (24 of 200) against 1.5% of the images of B (3 of 200) (identity-level "
        "permutation test, 1,999 random relabellings over 40 identities, p ")
    p = re.search(r"p (?:= ([0-9.e-]+)|< 0\.001)\)", sentence)
    assert p and (p.group(1) is None or float(p.group(1)) < 0.05)
    assert sentence.endswith(
        "FNMR is measured only on images where a face was found, so it understates A's total "
        "failure to verify.")


def test_an_unresolved_difference_is_reported_without_a_claim():
    ids = identities({"A": [(4, 4)] * 3, "B": [(4, 0)] * 3})
    [sentence] = acquisition_sentences({"by_group": by_group(ids)}, ids)
    assert sentence == (
        "No face was found in 50.0% of all images (12 of 24), from 0% of the images of B "
        "(0 of 12) to 100.0% of the images of A (12 of 12); the audit does not show that "
        "failure to acquire differs between groups (exact identity-level permutation test "
        "over 6 identities, p = 0.1). FNMR is measured only on images where a face was found.")
    assert "differs between groups:" not in sentence


def test_without_identity_counts_the_rates_are_given_untested():
    summary = {"by_group": {"A": {"images": 400, "faces_found": 398},
                            "B": {"images": 400, "faces_found": 380}}}
    [sentence] = acquisition_sentences(summary)
    assert "from 0.5% of the images of A (2 of 400) to 5.0% of the images of B (20 of 400)" \
        in sentence
    assert "does not test whether failure to acquire differs" in sentence


@pytest.mark.parametrize("acquisition", [
    None, {}, {"by_group": {}},
    {"by_group": {"A": {"images": 8, "faces_found": 8}, "B": {"images": 8, "faces_found": 8}}},
    {"by_group": {"A": {"images": 8, "faces_found": 5}}},  # one group: nothing to compare
    {"by_group": {"A": {"images": "x", "faces_found": None}, "B": {}}},
])
def test_nothing_is_said_when_there_is_nothing_to_compare(acquisition):
    assert acquisition_sentences(acquisition) == []


def test_small_rates_keep_two_significant_figures():
    summary = {"by_group": {"A": {"images": 2400, "faces_found": 2399},
                            "B": {"images": 2400, "faces_found": 2390}}}
    [sentence] = acquisition_sentences(summary)
    assert "0.042% of the images of A (1 of 2,400)" in sentence
    assert "0.42% of the images of B (10 of 2,400)" in sentence
