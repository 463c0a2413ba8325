"""Reading a user's config values, and echoing them in error messages.

:class:`ConfigError` carries every problem of a config at once, keyed by field. The helpers here
turn what a person typed (a YAML list, a comma-separated string, a number as text) into Python
values or None, and show a value back in a message as a person would write it, never repeating
more than :data:`MAX_ECHO` characters of it. :mod:`generator.config` (the schema) and
:mod:`generator.config_files` (reading config files) use them; nothing here imports anything
beyond the standard library.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: Characters of a user's value that an error message repeats (then "...").
MAX_ECHO = 80


class ConfigError(ValueError):
    """The config is invalid. ``errors`` maps a field name to a message naming the fix."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.errors.items()))


def clip(text: str, limit: int = MAX_ECHO) -> str:
    """``text`` cut to ``limit`` characters plus "..." (an error repeats only so much input)."""
    return text if len(text) <= limit else text[:limit] + "..."


def show(value: Any, depth: int = 0) -> str:
    """A user's value for an error message, as a person would write it: lists joined by
    commas (``15, abc``, never ``['15', 'abc']``), nested ones in brackets, at most MAX_ECHO
    characters (then "..."). Items are rendered only up to the limit and nesting only three
    deep, so a huge or deep value costs no more than a short one."""
    if isinstance(value, (list, tuple, Mapping)):
        if depth >= 3:
            return "..."
        pairs = value.items() if isinstance(value, Mapping) else ((None, v) for v in value)
        parts: list[str] = []
        size = 0
        for key, item in pairs:
            if size > MAX_ECHO:
                parts.append("...")
                break
            part = show(item, depth + 1)
            if isinstance(item, (list, tuple)):
                part = f"[{part}]"
            if key is not None:
                part = f"{show(key, depth + 1)}: {part}"
            parts.append(part)
            size += len(part) + 2
        text = ", ".join(parts)
        return clip("{" + text + "}" if isinstance(value, Mapping) else text)
    if isinstance(value, float):
        return f"{value:g}"
    try:
        return clip(str(value))
    except ValueError:  # an int beyond Python's 4,300-digit limit on int -> str
        return "(a number too long to show)"


def too_many(what: str, n: int, limit: int, fix: str) -> str:
    """The message for a list over its limit, e.g. ``"12 levels; at most 10 (...): fix"``."""
    return f"{n:,} {what}; at most {limit} (what a report can show): {fix}"


def as_list(value: Any) -> list[Any] | None:
    """A list of items from a list or tuple, a comma-separated string (items stripped, empty
    ones dropped) or a single number; None for anything else."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        return [p for p in parts if p]
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value]
    return None


def parse_seed(value: Any) -> int | None:
    """A seed from 0 to 2**32 - 1 given as an int or a string of ASCII digits, else None
    (``"²".isdigit()`` is true in Python, so the ASCII check matters)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 10:
            return None
        value = int(text)
    if not isinstance(value, int) or not 0 <= value < 2**32:
        return None
    return value


def number(value: Any) -> float | None:
    """A finite float from a number or numeric text, else None (booleans are not numbers)."""
    if isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond float range
        return None
    return x if math.isfinite(x) else None


