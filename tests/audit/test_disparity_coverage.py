"""Coverage of the disparity intervals on simulated audits with known group rates.

Each simulated audit (:mod:`tests.audit.disparity_simulation`: identities with random effects
shared by their mated and non-mated comparisons) goes through the real code path,
:func:`audit.uncertainty.bootstrap_group_rates` then :func:`audit.disparity.summarize_disparity`,
and we count how often each 95% interval holds the true value of its measure. Run with ``-s`` to
see the figures; ``bench/coverage_disparity.py`` prints them for more audits and designs.
"""

from __future__ import annotations

import pytest

from audit.disparity import MEASURES
from tests.audit.disparity_simulation import run_coverage, scenario_rates

pytestmark = pytest.mark.slow

N_AUDITS = 300
N_BOOT = 300


def report(title: str, coverage) -> None:
    print(f"\n{title} ({coverage.n_audits} simulated audits, {N_BOOT} replicates each)")
    for m in MEASURES:
        print(f"  {m:20s} {coverage.covered[m]:.3f}")
    print(f"  old percentile interval of the FNMR max/min ratio: "
          f"{coverage.naive_percentile_ratio:.3f}")


def test_parity_is_inside_the_intervals_of_equal_groups():
    coverage = run_coverage(*scenario_rates("parity", 4), n_audits=N_AUDITS, n_boot=N_BOOT,
                            seed=20)
    report("4 equal groups: parity inside the 95% interval", coverage)
    for m in MEASURES:
        assert coverage.covered[m] >= 0.93, m
        assert coverage.contains_estimate[m] == 1.0, m
    # The old percentile interval of the max/min ratio almost never held parity here.
    assert coverage.naive_percentile_ratio < 0.5


def test_a_known_fnmr_ratio_of_two_is_covered_near_the_nominal_level():
    coverage = run_coverage(*scenario_rates("ratio2", 2), n_audits=N_AUDITS, n_boot=N_BOOT,
                            seed=21)
    report("2 groups, FNMR ratio 2: true value inside the 95% interval", coverage)
    for m in MEASURES:
        assert coverage.covered[m] >= 0.93, m
        assert coverage.contains_estimate[m] == 1.0, m
    # Near nominal, not trivially wide: with one pair the band is a single interval.
    for m in ("fnmr_max_min_ratio", "fnmr_max_gap", "fdr"):
        assert coverage.covered[m] <= 0.99, m


def test_a_known_fnmr_ratio_of_two_among_four_groups_is_covered():
    coverage = run_coverage(*scenario_rates("ratio2", 4), n_audits=N_AUDITS // 2, n_boot=N_BOOT,
                            seed=22)
    report("4 groups, FNMR ratio 2 for one: true value inside the 95% interval", coverage)
    for m in MEASURES:
        assert coverage.covered[m] >= 0.93, m
        assert coverage.contains_estimate[m] == 1.0, m
