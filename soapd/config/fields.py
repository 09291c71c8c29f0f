"""Building blocks of the config schema: validated dataclass fields, plain-data export, names.

:func:`_opt` makes a dataclass field that carries its range or choices in the
field metadata (checked by :mod:`soapd.config.load`); :func:`to_dict` turns a
config (or any part of it) back into TOML-able data; :func:`name_problem` says
why a text cannot be a target name (control characters would forge log lines
and break the line-based outputs).
"""

from __future__ import annotations

import dataclasses
import unicodedata
from dataclasses import field
from pathlib import Path
from typing import Any

__all__ = ["MAX_NAME_CHARS", "name_problem", "to_dict"]

#: Longest target name accepted, in characters.
MAX_NAME_CHARS = 200

#: Unicode categories refused in names: control, format (bidi overrides, zero-width),
#: surrogate, private-use and unassigned characters, and the line/paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

_FROZEN = {"frozen": True, "slots": True, "kw_only": True}


def _opt(
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] | None = None,
    factory: bool = False,
    secret: bool = False,
) -> Any:
    """Return a dataclass field with validation metadata (range or enum).

    A ``secret`` field is left out of ``repr()`` and marked for redaction
    (``metadata["secret"]``) wherever the config is printed.
    """
    meta = {"min": lo, "max": hi, "choices": choices, "secret": secret}
    if factory:
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta, repr=not secret)


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


def name_problem(name: str) -> str | None:
    """Return why ``name`` cannot be a target name, or None when it can.

    A name must be a non-blank string of at most :data:`MAX_NAME_CHARS`
    characters without control characters (newline, tab, escape, ...),
    format characters (bidi overrides, zero-width marks), line or paragraph
    separators, surrogates, private-use or unassigned code points.
    """
    if not isinstance(name, str) or not name.strip():
        return "a target needs a non-empty name"
    if len(name) > MAX_NAME_CHARS:
        return f"a target name may have at most {MAX_NAME_CHARS} characters, got {len(name)}"
    bad = sorted({ch for ch in name if unicodedata.category(ch) in _REFUSED_CATEGORIES})
    if bad:
        shown = ", ".join(f"U+{ord(ch):04X}" for ch in bad[:5])
        return (
            f"target name {name!r} contains control or invisible characters ({shown}); "
            "use printable characters only"
        )
    return None
