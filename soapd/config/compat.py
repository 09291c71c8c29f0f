"""skynetsoap's configuration spelling, accepted with its meaning (issue #14).

skynetsoap users write ``load_config(overrides={"aperture": {"mode": "multi"}})``
and keep TOML files in skynetsoap's layout. :func:`load_config` here accepts both
spellings: a soapd key is used as it is; a skynetsoap key is translated to the
soapd key that means the same (with a :class:`DeprecationWarning` naming the new
key); a skynetsoap key soapd has no use for (astrometry, debug folders) is
dropped with a :class:`UserWarning` saying why. Anything else is a
:class:`~soapd.errors.ConfigError`, as for every soapd config.

The whole mapping is :data:`SKYNETSOAP_KEYS`; the README's table is drawn from it.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tomllib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soapd.config.load import parse_config
from soapd.config.schema import Config
from soapd.errors import ConfigError

__all__ = [
    "SKYNETSOAP_IGNORED",
    "SKYNETSOAP_KEYS",
    "DebugConfig",
    "SOAPConfig",
    "load_config",
    "translate",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class DebugConfig:
    """skynetsoap's ``[debug]`` section, honoured by the Python API (``Soap.run``)."""

    #: Draw the four-panel debug figure of every frame ``Soap.run`` processes.
    enabled: bool = False
    #: Folder of those figures; each observation gets its own ``<debug_dir>/<obs id>/``.
    debug_dir: Path = Path("soap_debug")


@dataclass(frozen=True, slots=True, kw_only=True)
class SOAPConfig(Config):  # type: ignore[misc]  # Config is frozen too (**_FROZEN)
    """skynetsoap's name for the configuration: soapd's :class:`Config` plus ``debug``.

    :func:`load_config` returns one when the settings have a ``[debug]`` section
    (skynetsoap's), else a plain :class:`Config`; ``SOAPConfig()`` gives soapd's
    defaults. The daemon ignores ``debug``; ``Soap`` draws the figures.
    """

    debug: DebugConfig = field(default_factory=DebugConfig)


def _same(value: Any) -> Any:
    return value


def _half(value: Any) -> Any:
    """Skynetsoap's ``aperture.scale`` s gives r = s·FWHM/2; soapd's ``fwhm_factor`` is r/FWHM."""
    return float(value) / 2.0


def _seed(value: Any) -> Any:
    """skynetsoap: a seed <= 0 means non-deterministic; soapd always samples from a seed >= 0."""
    return max(int(value), 0)


#: skynetsoap dotted key -> (soapd dotted key, value conversion).
SKYNETSOAP_KEYS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "extraction.threshold": ("extraction.thresh_sigma", _same),
    "extraction.min_area": ("extraction.minarea_px", _same),
    "aperture.mode": ("photometry.aperture_mode", _same),
    "aperture.scale": ("photometry.fwhm_factor", _half),
    "aperture.fixed_radius": ("photometry.fixed_radius_px", _same),
    "aperture.min_radius": ("photometry.min_radius_px", _same),
    "aperture.max_radius": ("photometry.max_radius_px", _same),
    "aperture.step": ("photometry.radius_step_px", _same),
    "aperture.radii": ("photometry.radii_px", _same),
    "aperture.keep_all": ("photometry.keep_all", _same),
    "calibration.default_cat_error": ("calibration.missing_err_mag", _same),
    "calibration.convert_vega_to_ab": ("calibration.convert_to_ab", _same),
    "forced_photometry.snr_threshold": ("photometry.forced_snr_threshold", _same),
    "limiting_mag.method": ("limits.method", _same),
    "limiting_mag.robust.n_samples": ("limits.n_samples", _same),
    "limiting_mag.robust.mask_dilate_pixels": ("limits.mask_dilate_px", _same),
    "limiting_mag.robust.edge_buffer_pixels": ("limits.edge_buffer_px", _same),
    "limiting_mag.robust.sigma_estimator": ("limits.sigma_estimator", _same),
    "limiting_mag.robust.random_seed": ("limits.random_seed", _seed),
}

#: skynetsoap keys with no soapd setting, and why they are dropped.
SKYNETSOAP_IGNORED: dict[str, str] = {
    "calibration.merge_tolerance_arcsec": "soapd cross-matches one-to-one within "
    "calibration.match_radius_arcsec and needs no merge step",
    "forced_photometry.enabled": "soapd measures forced photometry whenever positions are given",
    "forced_photometry.aperture_radius": "soapd measures forced positions with the frame's "
    "photometry aperture (photometry.*), so forced and field rows are comparable",
    "limiting_mag.robust.max_draws_multiplier": "soapd's blank-sky sampler bounds its draws itself",
    "astrometry": "soapd uses the archive's WCS; frames without one are reported, not solved",
    "debug.save_intermediates": "soapd keeps each frame's field-wide table (paths.state_dir/"
    "tables); Soap.debug_image() draws a frame's stages",
    "debug.intermediates_dir": "soapd writes no intermediate products "
    "(see debug.save_intermediates)",
    "filters": "filter aliases and AB-Vega offsets live in soapd.filters",
    "catalogs": "reference catalogs are chosen per band by calibration.chains",
}


#: skynetsoap's debug keys that soapd honours (in :class:`SOAPConfig`), kept as they are.
_DEBUG_KEYS = ("debug.enabled", "debug.debug_dir")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and _descend(dotted):
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _descend(dotted: str) -> bool:
    """Return True when ``dotted`` names a table to walk into (not a dict-valued setting)."""
    return dotted != "calibration.chains"


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value


def _ignored_reason(dotted: str) -> str | None:
    for key, why in SKYNETSOAP_IGNORED.items():
        if dotted == key or dotted.startswith(key + "."):
            return why
    return None


def translate(data: Mapping[str, Any]) -> dict[str, Any]:
    """Return config data with skynetsoap keys turned into soapd keys (soapd keys kept).

    Each translated key raises a DeprecationWarning naming its soapd key; each
    dropped key a UserWarning saying why. Keys neither soapd nor skynetsoap knows
    are passed on, so that soapd's validation names them in its error.
    """
    out: dict[str, Any] = {}
    for dotted, value in _flatten(data).items():
        if dotted in SKYNETSOAP_KEYS:
            new, convert = SKYNETSOAP_KEYS[dotted]
            warnings.warn(
                f"config key '{dotted}' is skynetsoap's spelling; soapd calls it '{new}'",
                DeprecationWarning,
                stacklevel=3,
            )
            _set(out, new, convert(value))
            continue
        why = _ignored_reason(dotted)
        if why is not None:
            warnings.warn(f"config key '{dotted}' ignored: {why}", UserWarning, stacklevel=3)
            continue
        if dotted in _DEBUG_KEYS:
            _set(out, dotted, value)
            continue
        upper = dotted == "logging.level" and isinstance(value, str)
        _set(out, dotted, value.upper() if upper else value)
    return out


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found; copy config/soapd.example.toml there and edit it"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None


def load_config(
    user_config_path: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Return the config of a TOML file with ``overrides`` deep-merged on top (skynetsoap's call).

    Parameters
    ----------
    user_config_path
        A TOML file in soapd's or skynetsoap's layout. None: the file named by
        ``$SOAPD_CONFIG`` when it is set, else soapd's built-in defaults.
    overrides
        Nested settings (``{"aperture": {"mode": "multi"}}``), in either spelling,
        applied after the file.

    Raises
    ------
    ConfigError
        For unknown keys, wrong types and out-of-range values, naming the key.
    """
    if user_config_path is None and os.environ.get("SOAPD_CONFIG"):
        user_config_path = os.environ["SOAPD_CONFIG"]
    path = None if user_config_path is None else Path(user_config_path).expanduser()
    raw = {} if path is None else _read_toml(path)
    if overrides:
        raw = _deep_merge(raw, overrides)
    data = translate(raw)
    where = str(path) if path is not None else "<overrides>"
    debug = data.pop("debug", None)
    cfg = parse_config(data, where=where, base=path.parent.resolve() if path else None)
    if debug is not None:
        fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(Config)}
        cfg = SOAPConfig(**fields, debug=_debug_section(debug, where))
    return cfg if path is None else dataclasses.replace(cfg, source=path.resolve())


def _debug_section(data: Mapping[str, Any], where: str) -> DebugConfig:
    """Return the ``[debug]`` settings of skynetsoap's layout, checked. Raise ConfigError."""
    enabled = data.get("enabled", False)
    folder = data.get("debug_dir", "soap_debug")
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}: debug.enabled must be true or false, got {enabled!r}")
    if not isinstance(folder, str | Path) or not str(folder):
        raise ConfigError(f"{where}: debug.debug_dir must be a folder name, got {folder!r}")
    return DebugConfig(enabled=enabled, debug_dir=Path(folder).expanduser())
