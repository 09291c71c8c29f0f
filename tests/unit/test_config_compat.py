"""skynetsoap's ``load_config(overrides=...)`` gives the settings of the equivalent soapd TOML.

Reference: the override dictionaries are the ones in skynetsoap 1.0.1's README
(../shared/reference/skynetsoap-readme.txt), copied verbatim; the key meanings are
from ../shared/reference/skynetsoap.md §2 and §6 (aperture.scale s gives r = s·FWHM/2).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

import soapd
from soapd.config import Config, load_config, parse_config
from soapd.config.compat import SKYNETSOAP_KEYS, SOAPConfig, translate
from soapd.errors import ConfigError

README_CASES: list[tuple[dict[str, Any], str]] = [
    (
        {"aperture": {"mode": "multi", "radii": [3.0, 5.0, 7.0, 10.0, 15.0], "keep_all": False}},
        (
            '[photometry]\naperture_mode = "multi"\nradii_px = [3.0, 5.0, 7.0, 10.0, 15.0]\n'
            "keep_all = false\n"
        ),
    ),
    (
        {"aperture": {"mode": "multi", "keep_all": True}},
        '[photometry]\naperture_mode = "multi"\nkeep_all = true\n',
    ),
    (
        {"aperture": {"mode": "optimal"}, "calibration": {"sigma_clip": 2.5}},
        '[photometry]\naperture_mode = "optimal"\n[calibration]\nsigma_clip = 2.5\n',
    ),
    (
        {"calibration": {"convert_vega_to_ab": True}},
        "[calibration]\nconvert_to_ab = true\n",
    ),
    (
        {
            "limiting_mag": {
                "method": "robust",
                "robust": {
                    "n_samples": 2000,
                    "mask_dilate_pixels": 3,
                    "edge_buffer_pixels": 25,
                    "sigma_estimator": "mad",
                    "max_draws_multiplier": 20,
                    "random_seed": 123,
                },
            }
        },
        (
            '[limits]\nmethod = "robust"\nn_samples = 2000\nmask_dilate_px = 3\n'
            'edge_buffer_px = 25\nsigma_estimator = "mad"\nrandom_seed = 123\n'
        ),
    ),
    (
        {"aperture": {"scale": 3.0, "min_radius": 2.0, "max_radius": 10.0, "step": 0.5}},
        (
            "[photometry]\nfwhm_factor = 1.5\nmin_radius_px = 2.0\nmax_radius_px = 10.0\n"
            "radius_step_px = 0.5\n"
        ),
    ),
]


def _soapd_toml(text: str, tmp_path: Path) -> Config:
    path = tmp_path / "soapd.toml"
    path.write_text(text)
    return load_config(path)


def _compat(overrides: dict[str, Any]) -> Config:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_config(overrides=overrides)


@pytest.mark.parametrize(("overrides", "toml"), README_CASES)
def test_overrides_equal_the_soapd_toml(
    overrides: dict[str, Any], toml: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOAPD_CONFIG", raising=False)
    compat = _compat(overrides)
    native = _soapd_toml(toml, tmp_path)
    for section in ("extraction", "photometry", "limits", "calibration"):
        assert getattr(compat, section) == getattr(native, section), section
    assert compat.fingerprint() == native.fingerprint()


def test_each_old_key_warns_naming_the_new_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOAPD_CONFIG", raising=False)
    with pytest.warns(DeprecationWarning, match=r"'aperture\.mode'.*'photometry\.aperture_mode'"):
        cfg = load_config(overrides={"aperture": {"mode": "fixed"}})
    assert cfg.photometry.aperture_mode == "fixed"


def test_keys_without_a_soapd_setting_warn_and_change_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SOAPD_CONFIG", raising=False)
    with pytest.warns(UserWarning, match=r"'astrometry\.enabled' ignored"):
        cfg = load_config(overrides={"astrometry": {"enabled": True}})
    assert cfg == Config()


def test_debug_keys_give_a_soapconfig_with_the_same_soapd_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """skynetsoap's [debug] is honoured by Soap.run (debug figures), so it is kept."""
    monkeypatch.delenv("SOAPD_CONFIG", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = load_config(overrides={"debug": {"enabled": True}})
    assert isinstance(cfg, SOAPConfig)
    assert cfg.debug.enabled is True
    assert cfg.debug.debug_dir == Path("soap_debug")
    assert cfg.fingerprint() == Config().fingerprint()
    with pytest.raises(ConfigError, match=r"debug\.enabled"):
        load_config(overrides={"debug": {"enabled": "yes"}})


def test_soapd_keys_pass_without_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOAPD_CONFIG", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = load_config(overrides={"photometry": {"aperture_mode": "multi"}})
    assert cfg.photometry.aperture_mode == "multi"


def test_unknown_key_is_still_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOAPD_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="unknown key 'aperture_mode'"):
        load_config(overrides={"aperture_mode": "multi"})


def test_no_path_starts_from_soapd_config_then_applies_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "env.toml"
    path.write_text("[calibration]\nsigma_clip = 4.0\n[photometry]\nfixed_radius_px = 6.0\n")
    monkeypatch.setenv("SOAPD_CONFIG", str(path))
    cfg = _compat({"calibration": {"sigma_clip": 2.5}})
    assert cfg.calibration.sigma_clip == 2.5  # the override wins
    assert cfg.photometry.fixed_radius_px == 6.0  # the file's value stays
    assert cfg.source == path.resolve()


def test_a_skynetsoap_layout_toml_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "my_config.toml"
    path.write_text(
        '[aperture]\nmode = "fixed"\nfixed_radius = 4.0\n[extraction]\nthreshold = 2.0\n'
    )
    with pytest.warns(DeprecationWarning, match="skynetsoap.s spelling"):
        cfg = load_config(path)
    assert cfg.photometry.aperture_mode == "fixed"
    assert cfg.photometry.fixed_radius_px == 4.0
    assert cfg.extraction.thresh_sigma == 2.0


def test_every_mapped_key_lands_on_a_real_soapd_key() -> None:
    for old, (new, convert) in SKYNETSOAP_KEYS.items():
        section, _, key = new.partition(".")
        default = getattr(getattr(Config(), section), key)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = translate(_nest(old, _sample(default)))
        parse_config(data)  # raises ConfigError if the key or value is wrong
        assert convert is not None


def test_top_level_names_are_importable() -> None:
    assert soapd.load_config is load_config
    assert soapd.SOAPConfig is SOAPConfig
    assert issubclass(SOAPConfig, Config)
    assert SOAPConfig().fingerprint() == Config().fingerprint()


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return out


def _sample(default: Any) -> Any:
    return default if not isinstance(default, float) else 2.0 * default
