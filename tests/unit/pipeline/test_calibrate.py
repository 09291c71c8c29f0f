"""Zero-point fitting, cross-match cuts and the catalog fallback chain (synthetic truth)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pytest
from astropy.table import Table
from hypothesis import given, settings
from hypothesis import strategies as st

from soapd.config import CalibrationConfig
from soapd.errors import CatalogError
from soapd.flags import Flag
from soapd.pipeline.calibrate import calibrate_sources, fit_zero_point
from soapd.pipeline.table import convert_mag_system

RA0, DEC0 = 150.0, 20.0
ZP = 21.37


@dataclass
class Provider:
    """A ReferenceProvider fake: per-catalog tables, or errors to raise."""

    tables: dict[str, Table | Exception]
    order: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)

    def chain(self, band: str) -> list[str]:
        return list(self.order or self.tables)

    def stars(self, name, *, ra_deg, dec_deg, radius_deg, band):
        self.asked.append(name)
        t = self.tables[name]
        if isinstance(t, Exception):
            raise t
        return t


def make_field(rng, n=60, *, zp=ZP, noise=0.02, color_term=0.0, system="AB", color_name="g-r"):
    """Return (sources, stars): catalog mags 11-17, ins = mag - zp - k (c - 0.6) + noise."""
    ra = RA0 + rng.uniform(-0.1, 0.1, n) / np.cos(np.radians(DEC0))
    dec = DEC0 + rng.uniform(-0.1, 0.1, n)
    mag = rng.uniform(11, 17, n)
    color = rng.uniform(0.0, 1.4, n)
    ins_err = np.full(n, noise)
    ins = mag - zp - color_term * (color - 0.6) + noise * rng.standard_normal(n)
    stars = Table(
        {
            "ra_deg": ra,
            "dec_deg": dec,
            "mag": mag,
            "mag_err": np.full(n, 0.01),
            "color": color,
            "color_err": np.full(n, 0.01),
            "variable": np.zeros(n, bool),
        },
        meta={"system": system, "color_name": color_name, "how": "r"},
    )
    # small astrometric noise (0.3")
    sources = Table(
        {
            "ra": ra + rng.normal(0, 0.3 / 3600, n),
            "dec": dec + rng.normal(0, 0.3 / 3600, n),
            "ins_mag": ins,
            "ins_mag_err": ins_err,
            "flag": np.zeros(n, np.int64),
            "snr": 1.0857 / ins_err,
        }
    )
    return sources, stars


def run(sources, provider, band="r", **cfg):
    cfg.setdefault("mag_min", 10.0)
    cfg.setdefault("mag_max", 18.0)
    return calibrate_sources(
        sources,
        band=band,
        center_ra_deg=RA0,
        center_dec_deg=DEC0,
        radius_deg=0.2,
        config=CalibrationConfig(**cfg),
        catalogs=provider,
    )


def test_zero_point_recovered_within_error(rng):
    """Truth ZP 21.37, 60 stars with 0.02 mag noise: |zp - truth| < 3 sigma; n used ~ 60."""
    sources, stars = make_field(rng)
    cal = run(sources, Provider({"apass": stars}))
    assert cal.ok
    assert abs(cal.zp_mag - ZP) < 3 * cal.zp_err_mag
    assert cal.zp_err_mag >= 0.01  # the systematic floor
    assert cal.n_stars >= 55
    assert cal.n_matched == 60
    assert cal.catalog == "apass"
    assert cal.mag_system == "AB"
    assert cal.scatter_mag == pytest.approx(0.022, abs=0.008)
    assert cal.flags == 0


def test_outliers_do_not_move_zero_point(rng):
    """10 of 60 calibrators shifted by +-0.5..2 mag: ZP within 0.01 of the clean fit; all clipped."""
    sources, stars = make_field(rng)
    clean = run(sources, Provider({"apass": stars}))
    bad = rng.choice(len(sources), 10, replace=False)
    sources["ins_mag"][bad] += rng.choice([-1, 1], 10) * rng.uniform(0.5, 2.0, 10)
    cal = run(sources, Provider({"apass": stars}))
    assert abs(cal.zp_mag - clean.zp_mag) < 0.01
    assert not set(bad) & set(cal.used_index.tolist())
    assert len(cal.rejected_index) >= 8  # the others failed a cut before the fit


def test_saturated_and_flagged_calibrators_are_not_used(rng):
    """Saturated stars (flag SATURATED) read 0.8 mag too faint: the ZP ignores them."""
    sources, stars = make_field(rng)
    sat = np.argsort(stars["mag"])[:8]
    sources["ins_mag"][sat] += 0.8
    sources["flag"][sat] = int(Flag.SATURATED)
    cal = run(sources, Provider({"apass": stars}))
    assert abs(cal.zp_mag - ZP) < 3 * cal.zp_err_mag
    assert not set(sat) & set(cal.used_index.tolist()) | set(cal.rejected_index.tolist())


def test_color_term_recovered_within_error(rng):
    """Injected colour term k = 0.12 (g-r, pivot 0.6): recovered within 3 sigma; zp at median colour."""
    sources, stars = make_field(rng, n=120, color_term=0.12)
    cal = run(sources, Provider({"apass": stars}), color_term=True)
    assert cal.color_term is not None
    assert cal.color_term_err is not None
    assert abs(cal.color_term - 0.12) < 3 * cal.color_term_err
    assert cal.color_name == "g-r"
    c_ref = cal.color_ref_mag
    expected_zp = ZP + 0.12 * (c_ref - 0.6)
    assert abs(cal.zp_mag - expected_zp) < 3 * cal.zp_err_mag


@settings(max_examples=40, deadline=None)
@given(shift=st.floats(min_value=-5.0, max_value=5.0, allow_nan=False), seed=st.integers(0, 10_000))
def test_shifting_catalog_mags_shifts_zero_point_exactly(shift, seed):
    """Property: mags + D (window widened to keep the same stars) -> ZP + D to 1e-9 mag."""
    rng = np.random.default_rng(seed)
    sources, stars = make_field(rng, n=30, noise=0.05)
    sources["ins_mag"][:3] += 1.0  # outliers, so that clipping takes part
    a = run(sources, Provider({"apass": stars}), mag_min=-5, mag_max=30)
    moved = stars.copy()
    moved["mag"] = moved["mag"] + shift
    b = run(sources, Provider({"apass": moved}), mag_min=-5, mag_max=30)
    assert b.zp_mag - a.zp_mag == pytest.approx(shift, abs=1e-9)
    assert b.zp_err_mag == pytest.approx(a.zp_err_mag, rel=1e-9)
    assert b.n_stars == a.n_stars


def test_chain_moves_on_after_failures_and_logs_why(rng, caplog):
    sources, stars = make_field(rng)
    masked = CatalogError("apass: every r magnitude in the field is masked")
    provider = Provider(
        {
            "refcat2": CatalogError("VizieR J/ApJ/867/105/refcat2 failed (ReadTimeout)"),
            "ps1": CatalogError("ps1: no stars within 0.2 deg (outside the footprint?)"),
            "apass": masked,
            "gaia_synth": stars,
        }
    )
    with caplog.at_level(logging.WARNING):
        cal = run(sources, provider)
    assert cal.ok
    assert cal.catalog == "gaia_synth"
    assert provider.asked == ["refcat2", "ps1", "apass", "gaia_synth"]
    assert "ReadTimeout" in caplog.text
    assert "masked" in caplog.text


def test_all_catalogs_failing_gives_flagged_uncalibrated_result_with_reason(rng):
    sources, _ = make_field(rng)
    provider = Provider(
        {
            "refcat2": CatalogError("refcat2 timed out"),
            "apass": CatalogError("apass cannot provide band 'z'"),
        }
    )
    cal = run(sources, provider, band="z")
    assert not cal.ok
    assert np.isnan(cal.zp_mag)
    assert cal.flags & Flag.NO_CALIBRATION
    assert "refcat2 timed out" in cal.reason
    assert "cannot provide band" in cal.reason


def test_too_few_stars_tries_next_catalog(rng):
    sources, stars = make_field(rng)
    few = stars[:2]
    cal = run(sources, Provider({"ps1": few, "apass": stars}))
    assert cal.catalog == "apass"
    assert cal.ok


def test_catalog_error_falls_through_but_a_bug_in_the_provider_propagates(rng):
    """Only CatalogError (the provider's documented failure) moves on to the next catalog;
    anything else is a bug and must surface as itself, not as "catalog unusable"."""
    sources, stars = make_field(rng)
    cal = run(sources, Provider({"ps1": CatalogError("ps1 down"), "apass": stars}))
    assert cal.catalog == "apass"
    assert cal.ok
    with pytest.raises(TypeError, match="boom"):
        run(sources, Provider({"ps1": TypeError("boom"), "apass": stars}))


def test_unfiltered_frame_calibrates_against_substitute_band_and_is_flagged(rng):
    sources, stars = make_field(rng)
    prov = Provider({"apass": stars})
    cal = run(sources, prov, band="Open", unfiltered_band="r")
    assert cal.ok
    assert cal.ref_band == "r"
    assert cal.flags & Flag.CAL_UNFILTERED
    assert not cal.flags & Flag.NO_CALIBRATION


def test_band_without_catalog_is_uncalibrated():
    class NoChain(Provider):
        def chain(self, band):
            return []

    sources = Table(
        {
            "ra": [RA0],
            "dec": [DEC0],
            "ins_mag": [-8.0],
            "ins_mag_err": [0.01],
            "flag": [0],
            "snr": [100.0],
        }
    )
    cal = run(sources, NoChain({}), band="Halpha")
    assert not cal.ok
    assert "Halpha" in cal.reason
    assert cal.flags & Flag.NO_CALIBRATION


def test_empty_sources_and_disabled_are_uncalibrated(rng):
    _, stars = make_field(rng)
    empty = Table(names=("ra", "dec", "ins_mag", "ins_mag_err", "flag", "snr"))
    assert "no detections" in run(empty, Provider({"apass": stars})).reason
    sources, _ = make_field(rng)
    cal = run(sources, Provider({"apass": stars}), enabled=False)
    assert "disabled" in cal.reason


def test_magnitude_window_and_variables_excluded(rng):
    sources, stars = make_field(rng)
    stars["variable"][:10] = True
    sources["ins_mag"][:10] += 0.5
    cal = run(sources, Provider({"apass": stars}), mag_min=12.0, mag_max=16.0)
    used_mags = stars["mag"][cal.used_index]
    assert used_mags.min() >= 12.0
    assert used_mags.max() <= 16.0
    assert not set(range(10)) & set(cal.used_index.tolist())
    assert abs(cal.zp_mag - ZP) < 3 * cal.zp_err_mag


def test_cross_match_is_one_to_one_and_requires_isolation(rng):
    sources, stars = make_field(rng, n=40)
    # a second detection 1" from star 0 (a double) and a catalog neighbour 3" from star 1
    extra = sources[0:1].copy()
    extra["ra"] = extra["ra"] + 1.0 / 3600
    extra["ins_mag"] = extra["ins_mag"] + 0.5
    sources = Table(np.concatenate([sources.as_array(), extra.as_array()]))
    near = stars[1:2].copy()
    near["dec_deg"] = near["dec_deg"] + 3.0 / 3600
    near["mag"] = near["mag"] + 1.0
    stars2 = Table(np.concatenate([stars.as_array(), near.as_array()]), meta=stars.meta)
    cal = run(sources, Provider({"apass": stars2}))
    used = set(cal.used_index.tolist())
    assert 0 not in used
    assert len(sources) - 1 not in used
    assert 1 not in used
    assert cal.n_stars >= 35


def test_vega_band_converted_to_ab_when_configured(rng):
    """V: m_AB - m_Vega = 0.02 (Blanton & Roweis 2007); ZP shifts by exactly that."""
    sources, stars = make_field(rng, system="Vega", color_name="B-V")
    vega = run(sources, Provider({"apass": stars}), band="V")
    ab = run(sources, Provider({"apass": stars}), band="V", convert_to_ab=True)
    assert vega.mag_system == "Vega"
    assert ab.mag_system == "AB"
    assert ab.zp_mag - vega.zp_mag == pytest.approx(0.02, abs=1e-12)


def test_convert_mag_system_after_the_fact_round_trips():
    t = Table(
        {
            "band": ["V", "r", "Open", "R"],
            "cal_mag_system": ["Vega", "AB", "AB", "none"],
            "calibrated_mag": [15.0, 16.0, 17.0, np.nan],
            "zeropoint": [21.0, 21.0, 21.0, np.nan],
            "limiting_mag": [19.0, 19.0, 19.0, 19.0],
        }
    )
    ab = convert_mag_system(t, "AB")
    assert ab["calibrated_mag"][0] == pytest.approx(15.02)
    assert ab["limiting_mag"][0] == pytest.approx(19.02)
    assert ab["cal_mag_system"].tolist() == ["AB", "AB", "AB", "none"]
    back = convert_mag_system(ab, "Vega")
    assert back["calibrated_mag"][0] == pytest.approx(15.0)
    assert back["calibrated_mag"][1] == pytest.approx(16.0 - 0.16)
    assert back["cal_mag_system"][2] == "AB"  # unfiltered: no defined offset, left alone
    with pytest.raises(ValueError, match="AB"):
        convert_mag_system(t, "ST")


def test_fit_zero_point_error_inflated_by_reduced_chi2(rng):
    """Errors claim 0.01 but scatter is 0.05: zp_err ~ 0.05/sqrt(n), not 0.01/sqrt(n)."""
    n = 100
    delta = 20.0 + 0.05 * rng.standard_normal(n)
    fit = fit_zero_point(delta, np.full(n, 0.01), floor_mag=0.0)
    assert fit is not None
    assert fit.chi2_red > 10
    assert fit.zp_err_mag == pytest.approx(0.05 / np.sqrt(n), rel=0.25)


def test_fit_zero_point_floor_added_in_quadrature():
    delta = np.full(50, 20.0)
    fit = fit_zero_point(delta, np.full(50, 0.001), floor_mag=0.02)
    assert fit is not None
    assert fit.zp_err_mag == pytest.approx(np.hypot(0.001 / np.sqrt(50), 0.02), rel=1e-6)


def test_fit_zero_point_too_few_returns_none():
    assert fit_zero_point(np.array([20.0, 20.1]), np.array([0.01, 0.01]), min_stars=3) is None


def test_zero_point_with_a_large_error_is_rejected_and_the_next_catalog_tried(rng, caplog):
    """Sanity gate (#10): 6 calibrators whose catalog magnitudes scatter by 1 mag give a
    zero-point error above calibration.max_zp_err_mag (0.2): rejected, logged, and the
    next catalog (the clean one) is used."""
    sources, stars = make_field(rng)
    scattered = stars[:6].copy()
    scattered["mag"] = scattered["mag"] + rng.normal(0.0, 1.0, 6)
    with caplog.at_level(logging.WARNING):
        bad = run(sources, Provider({"ps1": scattered}))
    assert not bad.ok
    assert bad.flags & Flag.NO_CALIBRATION
    assert "max_zp_err_mag" in bad.reason
    assert "rejected" in caplog.text
    loose = run(sources, Provider({"ps1": scattered}), max_zp_err_mag=5.0)
    assert loose.ok  # the same fit passes a looser gate: the gate, not the fit, refused it
    assert loose.zp_err_mag > 0.2
    chain = run(sources, Provider({"ps1": scattered, "apass": stars}))
    assert chain.ok
    assert chain.catalog == "apass"
    assert abs(chain.zp_mag - ZP) < 3 * chain.zp_err_mag


def test_implausible_zero_points() -> None:
    from soapd.pipeline.zeropoint import implausible

    cfg = CalibrationConfig(min_stars=3, max_zp_err_mag=0.2)
    assert implausible(23.0, 0.05, 10, cfg) == ""
    assert "not finite" in implausible(float("nan"), 0.05, 10, cfg)
    assert "not finite" in implausible(23.0, float("inf"), 10, cfg)
    assert "max_zp_err_mag" in implausible(12.526, 9e22, 4, cfg)
    assert "min_stars" in implausible(23.0, 0.05, 2, cfg)
