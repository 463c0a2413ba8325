"""Immutable result objects: read-only accessors that hand out fresh copies.

Every statistics result of :mod:`audit` (:class:`audit.rates.GroupRates`,
:class:`audit.uncertainty.BootstrapResult`, :class:`audit.disparity.DisparitySummary`, ...) is
a ``@dataclass(frozen=True, eq=False)`` computed once. Its tables live in private fields
(``_by_group``) and are read through a public accessor of the same name without the underscore
(``by_group``) that returns a fresh copy, so editing what a caller gets back never changes the
result. :class:`Copied` is that accessor, declared in one line instead of a hand-written
property per table::

    @dataclass(frozen=True, eq=False)
    class GroupRates:
        threshold: float
        _by_group: pd.DataFrame = field(repr=False)

        by_group = Copied()  # -> self._by_group.copy(deep=True)

The accessor is not a dataclass field (it has no annotation), so ``repr``, ``__init__`` and the
private fields are exactly those declared. :func:`readonly_array` freezes the numpy arrays such
results keep (replicate matrices), so the stored values cannot be written in place either.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Copied", "fresh_copy", "readonly_array"]


def fresh_copy(value: Any) -> Any:
    """A copy of a stored value that shares no mutable state with it.

    DataFrame/Series -> deep copy; ndarray -> ``np.array(value, copy=True)`` (writeable again);
    dict/list -> a shallow copy of the container (their items are immutable scalars); anything
    else (tuples, strings, numbers) is immutable and returned as it is.
    """
    if isinstance(value, (pd.DataFrame, pd.Series)):
        return value.copy(deep=True)
    if isinstance(value, np.ndarray):
        return np.array(value, copy=True)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


class Copied:
    """Public read-only accessor of the private field ``_<name>`` of a frozen result.

    ``field`` names the private field when it is not ``"_" + name``; ``via`` names a method of
    the result that builds the returned value from the stored one (e.g. a labelled DataFrame
    from a bare matrix), instead of :func:`fresh_copy`. Setting the attribute raises
    ``AttributeError`` (as a read-only property does).
    """

    def __init__(self, field: str | None = None, *, via: str | None = None) -> None:
        self.field = field
        self.via = via
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        if self.field is None:
            self.field = "_" + name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        value = getattr(obj, self.field)  # type: ignore[arg-type]
        if self.via is not None:
            return getattr(obj, self.via)(value)
        return fresh_copy(value)

    def __set__(self, obj: Any, value: Any) -> None:
        raise AttributeError(f"{self.name} is read-only")


def readonly_array(values: Any, dtype: Any = np.float64) -> np.ndarray:
    """A copy of ``values`` as a ``dtype`` array with the write flag cleared."""
    out = np.array(values, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out
