"""Reading an audit config from a file or from text, safely, into a plain mapping.

:func:`load_config_file` and :func:`parse_config_text` return the mapping that
:func:`generator.config.parse_config` then validates. They refuse what could hurt the process
before any validation: text over :data:`MAX_CONFIG_BYTES`, and YAML anchors and aliases (the
"billion laughs": a few hundred bytes of nested aliases expand to gigabytes). Errors are
:class:`~generator.config_values.ConfigError` under the key ``config`` and quote at most a short
part of the input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from generator.config_values import MAX_ECHO, ConfigError, clip

MAX_CONFIG_BYTES = 64 * 1024


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (``.yaml``/``.yml``) or JSON config file into a mapping (not yet validated).

    Raises :class:`ConfigError` for unreadable, oversized or malformed files.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise ConfigError({"config": f"cannot read {p}: {exc.strerror}"}) from None
    if size > MAX_CONFIG_BYTES:
        raise ConfigError({"config": f"{p} is {size:,} bytes; the limit is {MAX_CONFIG_BYTES:,}"})
    text = p.read_text(encoding="utf-8", errors="replace")
    return parse_config_text(text, yaml_syntax=p.suffix.lower() in (".yaml", ".yml"))


class _AliasRefused(Exception):
    def __init__(self, mark: Any):
        super().__init__()
        self.line = mark.line + 1 if mark is not None else None


def _no_alias_loader():
    """A safe YAML loader that refuses anchors (``&name``) and aliases (``*name``): an alias
    repeats a whole subtree, so a few hundred bytes of nested aliases (the "billion laughs")
    expand to gigabytes. A config never needs them."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):  # type: ignore[override]
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise _AliasRefused(event.start_mark)
            return super().compose_node(parent, index)

    return NoAliasLoader


def parse_config_text(text: str, *, yaml_syntax: bool = True) -> dict[str, Any]:
    """Parse config text (YAML, a superset of JSON, or strict JSON) into a mapping.

    YAML anchors and aliases are refused (see :func:`_no_alias_loader`), as is text over
    MAX_CONFIG_BYTES; error messages quote at most a short part of the input.
    """
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_CONFIG_BYTES:
        raise ConfigError({"config": f"the config is {size:,} bytes; the limit is "
                                     f"{MAX_CONFIG_BYTES:,}"})
    try:
        if yaml_syntax:
            import yaml

            data = yaml.load(text, Loader=_no_alias_loader())  # noqa: S506 (a SafeLoader)
        else:
            data = json.loads(text)
    except _AliasRefused as exc:
        where = f" (line {exc.line})" if exc.line else ""
        raise ConfigError({"config": f"YAML anchors and aliases (&name, *name) are not accepted "
                                     f"in audit configs{where}: write the list out in full"}
                          ) from None
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError carry the line number
        raise ConfigError({"config": f"not valid {'YAML' if yaml_syntax else 'JSON'}: "
                                     f"{clip(str(exc), 4 * MAX_ECHO)}"}) from None
    if not isinstance(data, dict):
        raise ConfigError({"config": "the file must hold a mapping of fields to values"})
    return data
