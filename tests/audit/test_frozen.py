"""Tests for audit.frozen: the read-only accessors of the immutable result objects."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

from audit.frozen import Copied, fresh_copy, readonly_array


@dataclass(frozen=True, eq=False)
class Result:
    threshold: float
    _table: pd.DataFrame = field(repr=False)
    _counts: dict[str, int] = field(repr=False)
    _groups: tuple[str, ...] = field(repr=True)
    _reps: np.ndarray = field(repr=False)

    table = Copied()
    counts = Copied()
    groups = Copied()
    replicates = Copied("_reps")
    labelled = Copied("_reps", via="_frame")

    def _frame(self, values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(values, columns=list(self._groups))


def result() -> Result:
    return Result(
        threshold=0.5,
        _table=pd.DataFrame({"fnmr": [0.1, 0.2]}, index=["A", "B"]),
        _counts={"n": 3},
        _groups=("A", "B"),
        _reps=readonly_array([[0.1, 0.2], [0.3, 0.4]]),
    )


def test_editing_what_an_accessor_returns_never_changes_the_result():
    r = result()
    table = r.table  # a copy: editing it must not reach the result
    table.loc["A", "fnmr"] = 9.0
    r.counts["n"] = 9
    copy = r.replicates
    copy[0, 0] = 9.0
    assert r.table.at["A", "fnmr"] == 0.1
    assert r.counts == {"n": 3}
    assert r.replicates[0, 0] == 0.1


def test_an_accessor_cannot_be_assigned():
    r = result()
    with pytest.raises(AttributeError):
        r.table = pd.DataFrame()  # type: ignore[misc]


def test_via_builds_the_returned_value_with_a_method_of_the_result():
    frame = result().labelled
    assert list(frame.columns) == ["A", "B"]
    assert frame.iat[1, 1] == 0.4


def test_accessors_are_not_dataclass_fields_so_repr_is_unchanged():
    names = [f.name for f in dataclasses.fields(Result)]
    assert names == ["threshold", "_table", "_counts", "_groups", "_reps"]
    assert repr(result()) == "Result(threshold=0.5, _groups=('A', 'B'))"


def test_stored_arrays_are_read_only_and_copies_are_writeable():
    stored = readonly_array([1, 2], np.int64)
    assert stored.dtype == np.int64 and not stored.flags.writeable
    assert fresh_copy(stored).flags.writeable
    assert fresh_copy(("A", "B")) == ("A", "B")
