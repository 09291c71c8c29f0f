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
from pathlib import Path
from typing import Any

from soapd.config.load import parse_config
from soapd.config.schema import Config
from soapd.errors import ConfigError

__all__ = ["SKYNETSOAP_IGNORED", "SKYNETSOAP_KEYS", "SOAPConfig", "load_config", "translate"]

#: skynetsoap's name for the configuration class; in soapd it is :class:`Config`.
SOAPConfig = Config


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
    "debug": "soapd writes debug figures on request: Soap.debug_image() or `soapd process --debug`",
    "filters": "filter aliases and AB-Vega offsets live in soapd.filters",
    "catalogs": "reference catalogs are chosen per band by calibration.chains",
}


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
    cfg = parse_config(data, where=where, base=path.parent.resolve() if path else None)
    return cfg if path is None else dataclasses.replace(cfg, source=path.resolve())
