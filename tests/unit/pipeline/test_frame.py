"""Frame loading: containers, HDU choice, header fallbacks, times, saturation, WCS, bad input."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from soapd.config import FrameConfig
from soapd.errors import FrameRejected, FrameUnreadable
from soapd.models import ExposureMeta
from soapd.pipeline.frame import load_frame, parse_section
from soapd.testing.synth import make_frame, make_header, write_frame

DATA = Path(__file__).resolve().parents[2] / "data" / "images"
CFG = FrameConfig()


@pytest.mark.parametrize("name", ["a.fits", "a.fits.gz", "a.fits.bz2", "a.fits.fz", "a.fit"])
def test_load_frame_reads_every_container_identically(tmp_path, name) -> None:
    f = make_frame((64, 80), stars=5, seed=1)
    path = write_frame(tmp_path / name, f.data_adu, f.header)
    frame = load_frame(path, config=CFG)
    assert frame.data_e.dtype == np.float64
    assert frame.data_e.dtype.isnative
    np.testing.assert_allclose(frame.data_e, f.data_adu.astype(np.float64) * 1.5)
    assert frame.shape == (64, 80)
    assert frame.wcs is not None


def test_load_frame_big_endian_int_data_becomes_native_float(tmp_path) -> None:
    data = (np.arange(64 * 64).reshape(64, 64) % 1000 + 100).astype(">i2")
    hdr = make_header((64, 64))
    path = tmp_path / "int.fits"
    fits.PrimaryHDU(data, header=hdr).writeto(path)
    frame = load_frame(path, config=CFG)
    assert frame.data_e.dtype == np.dtype("float64")
    assert frame.data_e.dtype.isnative
    assert frame.data_e[0, 5] == pytest.approx(105 * 1.5)


def test_load_frame_picks_first_image_hdu_or_configured_one(tmp_path) -> None:
    f = make_frame((32, 32), stars=0, seed=1)
    table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=[1.0])])
    other = fits.ImageHDU((f.data_adu * 0 + 7).astype(np.float32), header=f.header)
    path = tmp_path / "multi.fits"
    fits.HDUList(
        [fits.PrimaryHDU(), table, fits.ImageHDU(f.data_adu, header=f.header), other]
    ).writeto(path)
    first = load_frame(path, config=CFG)
    np.testing.assert_allclose(first.data_e, f.data_adu * 1.5)
    with pytest.raises(FrameRejected, match="constant"):
        load_frame(path, config=FrameConfig(hdu=3))
    with pytest.raises(FrameUnreadable, match="only 4 HDU"):
        load_frame(path, config=FrameConfig(hdu=9))
    with pytest.raises(FrameUnreadable, match="no 2-D image"):
        load_frame(path, config=FrameConfig(hdu=1))


def test_gain_read_noise_sources_header_then_meta_then_config(tmp_path) -> None:
    f = make_frame(
        (32, 32),
        stars=0,
        seed=1,
        omit_keys=("GAIN", "RDNOISE"),
        extra_header={"EGAIN": 2.2, "READNOIS": 7.5},
    )
    path = write_frame(tmp_path / "e.fits", f.data_adu, f.header)
    frame = load_frame(path, config=CFG)
    assert (frame.gain_e_per_adu, frame.gain_source) == (2.2, "header:EGAIN")
    assert (frame.read_noise_e, frame.read_noise_source) == (7.5, "header:READNOIS")
    f = make_frame((32, 32), stars=0, seed=1, omit_keys=("GAIN", "RDNOISE"))
    path = write_frame(tmp_path / "n.fits", f.data_adu, f.header)
    meta = ExposureMeta(gain_e_per_adu=3.0, read_noise_e=4.0)
    frame = load_frame(path, config=CFG, meta=meta)
    assert (frame.gain_source, frame.read_noise_source) == ("archive", "archive")
    frame = load_frame(path, config=FrameConfig(gain_e_per_adu=1.7, read_noise_e=9.0))
    assert frame.gain_e_per_adu == 1.7
    assert frame.gain_source == "config:gain_e_per_adu"
    assert any("no GAIN" in n for n in frame.notes)


@pytest.mark.parametrize(
    ("extra", "omit", "expected", "source"),
    [
        ({}, (), "2026-11-24T03:00:30", "header:DATE-OBS+EXPTIME/2"),
        (
            {"DATE-OBS": "2026-11-24", "TIME-OBS": "03:00:00"},
            (),
            "2026-11-24T03:00:30",
            "header:DATE-OBS+TIME-OBS+EXPTIME/2",
        ),
        (
            {"DATE-OBS": "2026-11-24", "UT": "03:00:00"},
            (),
            "2026-11-24T03:00:30",
            "header:DATE-OBS+UT+EXPTIME/2",
        ),
        ({"DATE-AVG": "2026-11-24T03:10:00"}, (), "2026-11-24T03:10:00", "header:DATE-AVG"),
        ({"MJD-OBS": 61368.125}, ("DATE-OBS",), "2026-11-24T03:00:30", "header:MJD-OBS+EXPTIME/2"),
        ({"JD": 2461368.625}, ("DATE-OBS",), "2026-11-24T03:00:30", "header:JD(start)+EXPTIME/2"),
    ],
)
def test_mid_exposure_time_from_header_variants(tmp_path, extra, omit, expected, source) -> None:
    """One canonical mid-exposure UTC time (skynetsoap B16): start + EXPTIME/2, or DATE-AVG."""
    f = make_frame((32, 32), stars=0, seed=1, exptime_s=60.0, extra_header=extra, omit_keys=omit)
    path = write_frame(tmp_path / "t.fits", f.data_adu, f.header)
    frame = load_frame(path, config=CFG)
    assert frame.mid_time_utc.tzinfo is not None
    got = frame.mid_time_utc.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")
    assert got == expected
    assert frame.time_source == source


def test_mid_time_from_meta_when_header_has_none_and_rejected_without_any(tmp_path) -> None:
    f = make_frame((32, 32), stars=0, seed=1, omit_keys=("DATE-OBS",))
    path = write_frame(tmp_path / "t.fits", f.data_adu, f.header)
    with pytest.raises(FrameRejected, match="no observation time"):
        load_frame(path, config=CFG)
    mid = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    frame = load_frame(path, config=CFG, meta=ExposureMeta(mid_time_utc=mid))
    assert frame.mid_time_utc == mid
    assert frame.time_source == "archive:mid_time_utc"


def test_saturation_header_then_telescope_then_config_then_histogram(tmp_path) -> None:
    from astropy.table import Table

    stars = Table({"x": [30.0], "y": [30.0], "flux_e": [5e6]})
    f = make_frame((64, 64), stars=stars, seed=1, saturation_adu=20000.0, telescope="T1")
    path = write_frame(tmp_path / "s.fits", f.data_adu, f.header)
    frame = load_frame(path, config=CFG)
    assert (frame.saturation_adu, frame.saturation_source) == (20000.0, "header:SATURATE")
    assert frame.saturated[30, 30]
    assert frame.mask[30, 30]
    assert frame.data_e[30, 30] == 0.0
    f = make_frame(
        (64, 64),
        stars=stars,
        seed=1,
        saturation_adu=20000.0,
        telescope="T1",
        omit_keys=("SATURATE",),
    )
    path = write_frame(tmp_path / "s2.fits", f.data_adu, f.header)
    cfg = FrameConfig(saturation_by_telescope_adu={"T1": 30000.0}, saturation_adu=40000.0)
    assert load_frame(path, config=cfg).saturation_source == "config:saturation_by_telescope_adu"
    cfg = FrameConfig(saturation_adu=40000.0)
    assert load_frame(path, config=cfg).saturation_source == "config:saturation_adu"
    frame = load_frame(path, config=CFG)
    assert frame.saturation_source == "histogram"
    assert frame.saturation_adu == pytest.approx(20000.0)
    assert frame.saturated[30, 30]


def test_nan_and_inf_pixels_are_masked_and_zeroed(tmp_path) -> None:
    f = make_frame((64, 64), stars=0, seed=1, nan_fraction=0.05)
    data = f.data_adu.copy()
    data[0, 0] = np.inf
    path = write_frame(tmp_path / "n.fits", data, f.header)
    frame = load_frame(path, config=CFG)
    bad = ~np.isfinite(data)
    assert np.array_equal(frame.mask, bad)
    assert np.all(frame.data_e[bad] == 0.0)


def test_crval1_is_wrapped_into_0_360(tmp_path) -> None:
    f = make_frame((32, 32), stars=0, seed=1, extra_header={"CRVAL1": -10.0})
    path = write_frame(tmp_path / "w.fits", f.data_adu, f.header)
    frame = load_frame(path, config=CFG)
    assert frame.wcs is not None
    assert frame.wcs.wcs.crval[0] == pytest.approx(350.0)


def test_real_maxim_header_with_sip_wcs_loads_without_warnings() -> None:
    """Feder Observatory cutout (MaxIm DL header, TAN-SIP): WCS with SIP, B band, 120 s."""
    frame = load_frame(DATA / "feder_sa110sf2_B_cutout_sipwcs.fit", config=CFG)
    assert frame.wcs is not None
    assert frame.wcs.sip is not None
    assert frame.band == "B"
    assert frame.exptime_s == 120.0
    assert frame.mid_time_utc == datetime(2011, 9, 1, 2, 10, 5, tzinfo=UTC)


def test_parse_section_handles_fits_sections() -> None:
    assert parse_section("[   4:  13,   1: 520]", (520, 536)) == (slice(0, 520), slice(3, 13))
    assert parse_section("[1:4096, :]", (10, 4096)) == (slice(0, 10), slice(0, 4096))
    with pytest.raises(ValueError, match="outside"):
        parse_section("[1:600,1:10]", (10, 536))
    with pytest.raises(ValueError, match="not a FITS section"):
        parse_section("4:13", (10, 10))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "not a readable FITS"),
        (b"hello, I am a text file\n" * 300, "not a readable FITS"),
    ],
)
def test_non_fits_files_are_unreadable(tmp_path, content, match) -> None:
    path = tmp_path / "x.fits"
    path.write_bytes(content)
    with pytest.raises(FrameUnreadable, match=match):
        load_frame(path, config=CFG)


def test_truncated_fits_is_unreadable(tmp_path) -> None:
    f = make_frame((128, 128), stars=3, seed=1)
    path = write_frame(tmp_path / "full.fits", f.data_adu, f.header)
    cut = tmp_path / "cut.fits"
    cut.write_bytes(path.read_bytes()[:20000])
    with pytest.raises(FrameUnreadable, match="truncated"):
        load_frame(cut, config=CFG)
    gz = tmp_path / "cut.fits.gz"
    gz.write_bytes(gzip.compress(path.read_bytes())[:5000])
    with pytest.raises(FrameUnreadable):
        load_frame(gz, config=CFG)


def test_empty_image_missing_file_and_all_nan(tmp_path) -> None:
    path = tmp_path / "empty.fits"
    fits.PrimaryHDU(header=make_header((10, 10))).writeto(path)
    with pytest.raises(FrameUnreadable, match="no HDU holds a 2-D image"):
        load_frame(path, config=CFG)
    with pytest.raises(FrameUnreadable, match="no such file"):
        load_frame(tmp_path / "missing.fits", config=CFG)
    nan = tmp_path / "nan.fits"
    fits.PrimaryHDU(np.full((16, 16), np.nan, np.float32), header=make_header((16, 16))).writeto(
        nan
    )
    with pytest.raises(FrameRejected, match="NaN"):
        load_frame(nan, config=CFG)


def test_missing_exptime_is_rejected_with_advice(tmp_path) -> None:
    f = make_frame((32, 32), stars=0, seed=1, omit_keys=("EXPTIME",))
    path = write_frame(tmp_path / "x.fits", f.data_adu, f.header)
    with pytest.raises(FrameRejected, match="EXPTIME or EXPOSURE"):
        load_frame(path, config=CFG)
    f = make_frame(
        (32, 32), stars=0, seed=1, omit_keys=("EXPTIME",), extra_header={"EXPOSURE": 30.0}
    )
    path = write_frame(tmp_path / "y.fits", f.data_adu, f.header)
    assert load_frame(path, config=CFG).exptime_s == 30.0
