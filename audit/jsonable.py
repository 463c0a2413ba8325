"""Plain JSON values from numpy/pandas results (shared by every result object's ``to_dict``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def plain(value: Any) -> Any:
    """numpy/pandas scalar -> plain Python value; NaN -> None (JSON has no NaN)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value
