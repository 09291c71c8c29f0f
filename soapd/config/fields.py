"""Building blocks of the config schema: validated dataclass fields and plain-data export.

:func:`_opt` makes a dataclass field that carries its range or choices in the
field metadata (checked by :mod:`soapd.config.load`); :func:`to_dict` turns a
config (or any part of it) back into TOML-able data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import field
from pathlib import Path
from typing import Any

__all__ = ["to_dict"]

_FROZEN = {"frozen": True, "slots": True, "kw_only": True}


def _opt(
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] | None = None,
    factory: bool = False,
) -> Any:
    """Return a dataclass field with validation metadata (range or enum)."""
    meta = {"min": lo, "max": hi, "choices": choices}
    if factory:
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def to_dict(obj: Any) -> Any:
    """Return ``obj`` (a config dataclass, list, dict or scalar) as plain TOML-able data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {
            f.name: to_dict(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.name != "source"
        }
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj
