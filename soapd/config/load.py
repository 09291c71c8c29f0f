"""Read and validate a TOML config into the frozen dataclasses of :mod:`soapd.config.schema`.

:func:`load_config` rejects unknown keys and out-of-range values with a
:class:`~soapd.errors.ConfigError` that names the file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from soapd.config.fields import name_problem
from soapd.config.schema import Config, PathsConfig
from soapd.errors import ConfigError

__all__ = ["load_config", "parse_config"]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, where: str, base: Path) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it; raise ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(value, args[0], key, where, base)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key} must be a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]", where, base) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key} must be a table, got {value!r}")
        _, val_tp = typing.get_args(tp)
        return {str(k): _convert(v, val_tp, f"{key}.{k}", where, base) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: [{key}] must be a table, got {value!r}")
        return _build(tp, value, key, where, base)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {key} must be finite, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a path string, got {value!r}")
        path = Path(value).expanduser()
        return path if path.is_absolute() else (base / path).resolve()
    raise ConfigError(f"{where}: {key}: unsupported type {_type_name(tp)}")  # pragma: no cover


def _check_range(value: Any, meta: typing.Mapping[str, Any], key: str, where: str) -> None:
    lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: {key} = {value!r} is not one of {', '.join(choices)}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if lo is not None and value < lo:
            raise ConfigError(f"{where}: {key} = {value!r} is below the minimum {lo}")
        if hi is not None and value > hi:
            raise ConfigError(f"{where}: {key} = {value!r} is above the maximum {hi}")


def _build(cls: Any, data: dict[str, Any], prefix: str, where: str, base: Path) -> Any:
    """Build dataclass ``cls`` from a TOML table, rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"{where}: unknown key {dotted!r} (known keys here: {known})")
        converted = _convert(value, hints[key], dotted, where, base)
        _check_range(converted, names[key].metadata, dotted, where)
        kwargs[key] = converted
    return cls(**kwargs)


def _check_inbox(paths: PathsConfig, where: str) -> None:
    """Refuse an inbox (watched recursively) that holds or sits inside the state folder."""
    inbox = paths.inbox_dir
    if inbox is None:
        return
    inbox, state = inbox.resolve(), paths.state_dir.resolve()
    if inbox == state or state in inbox.parents or inbox in state.parents:
        raise ConfigError(
            f"{where}: paths.inbox_dir ({inbox}) must be outside paths.state_dir ({state}) "
            "and must not contain it; soapd copies inbox files into state_dir/frames"
        )


def _check_logic(cfg: Config, where: str) -> None:
    """Cross-field checks that a single field's range cannot express."""
    _check_inbox(cfg.paths, where)
    ph = cfg.photometry
    if ph.min_radius_px > ph.max_radius_px:
        raise ConfigError(f"{where}: photometry.min_radius_px must not exceed max_radius_px")
    if ph.local_sky and ph.annulus_inner_px >= ph.annulus_outer_px:
        raise ConfigError(
            f"{where}: photometry.annulus_inner_px must be smaller than annulus_outer_px"
        )
    if not ph.radii_px or any(r <= 0 for r in ph.radii_px):
        raise ConfigError(f"{where}: photometry.radii_px must list positive radii in px")
    if cfg.service.executor == "dask" and not cfg.service.dask_scheduler.strip():
        raise ConfigError(
            f'{where}: service.executor = "dask" needs service.dask_scheduler '
            '(the scheduler\'s address, e.g. "tcp://host:8786")'
        )
    cal = cfg.calibration
    if cal.mag_min >= cal.mag_max:
        raise ConfigError(f"{where}: calibration.mag_min must be brighter than mag_max")
    names = [t.name for t in cfg.targets]
    if any(not n.strip() for n in names):
        raise ConfigError(f"{where}: every [[targets]] entry needs a name")
    for i, problem in enumerate(map(name_problem, names)):
        if problem:
            raise ConfigError(f"{where}: targets[{i}].name: {problem}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: [[targets]] names must be unique")
    for i, n in enumerate(cfg.notifiers):
        key = f"notifiers[{i}]"
        if n.kind == "file" and n.directory is None:
            raise ConfigError(f"{where}: {key}.directory is required for a file notifier")
        if n.kind == "email" and not n.recipients:
            raise ConfigError(f"{where}: {key}.recipients is required for an email notifier")
        if n.kind == "webhook" and not n.url:
            raise ConfigError(f"{where}: {key}.url is required for a webhook notifier")
        if n.kind == "apprise" and not n.apprise_urls:
            raise ConfigError(f"{where}: {key}.apprise_urls is required for an apprise notifier")


def parse_config(
    data: dict[str, Any], *, where: str = "<config>", base: Path | None = None
) -> Config:
    """Given TOML data as a dict, return a validated :class:`Config`. Raise ConfigError."""
    cfg: Config = _build(Config, data, "", where, base or Path.cwd())
    _check_logic(cfg, where)
    return cfg


def load_config(path: Path | str | None = None) -> Config:
    """Given a TOML file (or None for $SOAPD_CONFIG, else built-in defaults), return its Config.

    Relative paths inside the file are resolved against the file's folder. Raise
    ConfigError naming the file and the dotted key for unknown keys, wrong types,
    out-of-range values and TOML syntax errors.
    """
    if path is None:
        env = os.environ.get("SOAPD_CONFIG")
        if not env:
            return Config()
        path = env
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found; copy config/soapd.example.toml there and edit it"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    cfg = parse_config(data, where=str(path), base=path.parent.resolve())
    return dataclasses.replace(cfg, source=path.resolve())
