"""calibrate_sources over the real CatalogService and query path, against a fake VizieR.

Bad replies (HTTP 500, empty cone, every magnitude masked, a timeout) each leave a
log line that says why, and the chain moves on; the frame's sources are the first
real EY UMa frame (tests/data/feder_ey_uma).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from soapd.catalogs import CatalogService
from soapd.flags import Flag
from soapd.pipeline.calibrate import calibrate_sources


@pytest.fixture(name="ey_frame")
def fixture_ey_frame(data_dir) -> Table:
    """The first of the 94 EY UMa frames as a calibrate_sources input table."""
    phot = Table.read(data_dir / "feder_ey_uma" / "2014-12-29-ey-uma-9_photometry.fits")
    s = phot[phot["file"] == np.unique(phot["file"])[0]]
    err = np.asarray(s["mag_error"], dtype=float)
    return Table(
        {
            "ra": np.asarray(s["RA"], dtype=float),
            "dec": np.asarray(s["Dec"], dtype=float),
            "ins_mag": np.asarray(s["mag_inst_R"], dtype=float),
            "ins_mag_err": err,
            "flag": np.zeros(len(s), np.int64),
            "snr": 1.0857 / err,
        }
    )


def _run(frame, cfg, tmp_path):
    svc = CatalogService(cfg, tmp_path / "cache")
    cal = calibrate_sources(
        frame,
        band="r",
        center_ra_deg=float(np.median(frame["ra"])),
        center_dec_deg=float(np.median(frame["dec"])),
        radius_deg=0.2,
        config=cfg,
        catalogs=svc,
    )
    return cal, svc


def test_chain_skips_error_empty_and_masked_catalogs(  # noqa: PLR0917 (pytest fixtures)
    ey_frame, fake_vizier, recorded, cal_config, tmp_path, caplog
):
    fake_vizier.behaviour["J/ApJ/867/105/refcat2"] = "error"  # HTTP 500
    # ps1: no table -> empty reply (outside the footprint); skymapper likewise
    masked = recorded("all_apass_ey_uma.ecsv")
    for c in ("Vmag", "Bmag", "g'mag", "r'mag", "i'mag"):
        masked[c] = MaskedColumn(masked[c], mask=np.ones(len(masked), bool))
    fake_vizier.tables["II/336/apass9"] = masked
    fake_vizier.tables["I/360/syntphot"] = _gaia_synth_like(recorded("all_refcat2_ey_uma.ecsv"))
    cfg = cal_config(online=True, vizier_server=fake_vizier.url, timeout_s=5.0, mag_max=15.0)
    with caplog.at_level(logging.WARNING):
        cal, _ = _run(ey_frame, cfg, tmp_path)
    assert cal.ok, cal.reason
    assert cal.catalog == "gaia_synth"
    assert 20.85 <= cal.zp_mag <= 20.96
    text = caplog.text
    assert "refcat2 unusable" in text
    assert "500" in text
    assert "ps1 unusable" in text
    assert "no stars within" in text
    assert "apass unusable" in text
    assert "masked" in text


def test_chain_after_timeout_uses_local_file_else_flags_frame(
    ey_frame, fake_vizier, data_dir, cal_config, tmp_path
):
    for source in (
        "J/ApJ/867/105/refcat2",
        "II/349/ps1",
        "II/379/smssdr4",
        "II/336/apass9",
        "I/360/syntphot",
    ):
        fake_vizier.behaviour[source] = "timeout"
    fake_vizier.delay_s = 2.5
    cfg = cal_config(online=True, vizier_server=fake_vizier.url, timeout_s=1.0, mag_max=15.0)
    cal, svc = _run(ey_frame, cfg, tmp_path)
    assert not cal.ok
    assert cal.flags & Flag.NO_CALIBRATION
    assert "unreachable (no answer within 1 s)" in cal.reason
    assert "unreachable moments ago" in cal.reason
    assert svc.network_calls == 1  # one timeout, then the server is left alone
    local = cal_config(
        online=True,
        vizier_server=fake_vizier.url,
        timeout_s=1.0,
        mag_max=15.0,
        catalog_files=[data_dir / "feder_ey_uma" / "all_apass_ey_uma.ecsv"],
    )
    cal, svc = _run(ey_frame, local, tmp_path / "second")
    assert cal.ok
    assert cal.catalog == "apass"
    assert cal.zp_mag == pytest.approx(20.87, abs=0.05)


def _gaia_synth_like(refcat2: Table) -> Table:
    """A Gaia-synthetic-style table (I/360/syntphot column names) from RefCat2's rows."""
    t = Table()
    t["RA_ICRS"] = refcat2["RA_ICRS"]
    t["DE_ICRS"] = refcat2["DE_ICRS"]
    for b in "griz":
        t[f"{b}mag"] = refcat2[f"{b}mag"]
        t[f"e_{b}mag"] = refcat2[f"e_{b}mag"]
    t["Vmag"] = refcat2["gmag"]
    t.meta["ID"] = "I_360_syntphot"
    return t
