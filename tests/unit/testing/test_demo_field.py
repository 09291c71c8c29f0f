"""The demo field: deterministic files, a usable catalog, and the injected truth in the pixels."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import httpx
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from soapd.catalogs.local import read_local
from soapd.skynet.records import exposure_from_json
from soapd.testing.demo_field import DemoField, build_demo_field, load_into
from soapd.testing.fake_skynet import FakeSkynet

N_FRAMES = 4
APASS_COLUMNS = [
    "RAJ2000", "DEJ2000", "Vmag", "e_Vmag", "Bmag", "e_Bmag", "g'mag", "e_g'mag",
    "r'mag", "e_r'mag", "i'mag", "e_i'mag", "B-V", "e_B-V",
]  # fmt: skip


@pytest.fixture(name="demo", scope="module")
def fixture_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoField:
    """A 4-frame demo field, built once for this module."""
    return build_demo_field(tmp_path_factory.mktemp("demo"), n_frames=N_FRAMES)


def _digests(demo: DemoField) -> list[str]:
    return [hashlib.sha256(f.path.read_bytes()).hexdigest() for f in demo.frames]


def test_demo_field_is_deterministic_across_builds(demo: DemoField, tmp_path: Path) -> None:
    again = build_demo_field(tmp_path, n_frames=N_FRAMES)
    assert _digests(again) == _digests(demo)
    assert again.catalog_path.read_bytes() == demo.catalog_path.read_bytes()


def test_demo_field_second_build_reuses_files(demo: DemoField) -> None:
    mtimes = [f.path.stat().st_mtime_ns for f in demo.frames]
    build_demo_field(demo.frames[0].path.parent, n_frames=N_FRAMES)
    assert [f.path.stat().st_mtime_ns for f in demo.frames] == mtimes


def test_demo_field_missing_frame_is_rebuilt(tmp_path: Path) -> None:
    first = build_demo_field(tmp_path, n_frames=2)
    digest = _digests(first)
    first.frames[1].path.unlink()
    assert _digests(build_demo_field(tmp_path, n_frames=2)) == digest


def test_demo_field_rejects_a_single_frame(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        build_demo_field(tmp_path, n_frames=1)


def test_demo_catalog_is_apass_named_and_readable(demo: DemoField) -> None:
    raw = Table.read(demo.catalog_path, format="ascii.ecsv")
    assert raw.colnames == APASS_COLUMNS
    assert raw.meta["ID"] == "II_336_apass9"
    assert len(raw) == 60
    spec, table = read_local(demo.catalog_path)
    assert spec.name == "apass"
    assert len(table) == 60


def test_demo_frames_lack_gain_and_rdnoise_but_have_the_rest(demo: DemoField) -> None:
    header = fits.getheader(demo.frames[0].path)
    assert "GAIN" not in header
    assert "RDNOISE" not in header
    assert header["FILTER"] == "V"
    assert header["TELESCOP"] == "Prompt5"
    assert header["EXPTIME"] == 30.0
    assert header["DATE-OBS"].startswith("2026-11-24T03:00:00")


def _aperture_flux_e(path: Path, ra: float, dec: float, gain: float) -> float:
    """Background-subtracted flux in electrons in a 12 px radius aperture at (ra, dec)."""
    with fits.open(path) as hdul:
        data = hdul[0].data.astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            x, y = WCS(hdul[0].header).all_world2pix(ra, dec, 0)
    yy, xx = np.indices(data.shape)
    r = np.hypot(xx - x, yy - y)
    sky = np.median(data[(r > 20) & (r < 30)])
    return float(np.sum(data[r < 12] - sky) * gain)


def test_demo_frames_hold_the_injected_transients(demo: DemoField) -> None:
    """Injected truth: flux_e = exptime_s * 10**(-0.4 (mag - zp)), zp 22.0, exptime 30 s.

    DEMO-FADER is 14.5 mag in frame 0 (30000 e) and 15.25 in frame 3 (15000 e);
    DEMO-RISER is absent in frames 0-1 and 15.5 mag (11943 e) in frames 2-3. A
    12 px aperture holds > 99.9 % of a 4 px FWHM Gaussian; tolerance 5 % of the
    flux (noise is about 1 %), or 600 e for the absent source (3 sigma of the
    sky noise in the aperture).
    """
    fader, riser = demo.targets
    gain = demo.gain_e_per_adu
    for frame in demo.frames:
        i = frame.index
        for target in (fader, riser):
            measured = _aperture_flux_e(frame.path, target.ra_deg, target.dec_deg, gain)
            mag = target.mags[i]
            if mag is None:
                assert abs(measured) < 600.0, (target.name, i, measured)
            else:
                expected = frame.exptime_s * 10 ** (-0.4 * (mag - demo.zeropoint_mag))
                assert measured == pytest.approx(expected, rel=0.05), (target.name, i)


def test_demo_truth_file_matches_targets(demo: DemoField) -> None:
    truth = json.loads((demo.frames[0].path.parent / "truth.json").read_text())
    assert truth["targets"]["DEMO-FADER"] == list(demo.targets[0].mags)
    assert truth["targets"]["DEMO-RISER"] == [None, None, 15.5, 15.5]


def test_demo_load_into_fake_publishes_completed_exposures(demo: DemoField) -> None:
    with FakeSkynet() as fake:
        ids = load_into(fake, demo)
        assert fake.pending == N_FRAMES
        assert fake.release_next() == ids[0]
    assert len(ids) == N_FRAMES
    assert len(set(ids)) == N_FRAMES


def test_demo_load_into_records_carry_api_metadata(demo: DemoField) -> None:
    with FakeSkynet(token="demo-token-1234567890") as fake:
        load_into(fake, demo, archived=True)
        with httpx.Client(
            base_url=fake.url, headers={"Authentication-Token": "demo-token-1234567890"}
        ) as http:
            records = http.get("/exps", params={"include": "*"}).json()
    exp = exposure_from_json(records[0])
    assert exp.meta.gain_e_per_adu == demo.gain_e_per_adu
    assert exp.meta.read_noise_e == demo.read_noise_e
    assert exp.meta.mid_time_utc == demo.frames[0].mid_time_utc
    assert exp.meta.filter == "V"
