"""End to end (issue 10): the real daemon reports only what was measured.

The service runs in a thread as ``soapd run`` runs it (worker processes, scheduler,
inbox watcher) against FakeSkynet on 127.0.0.1 and an inbox folder. Target "GRB T"
(V = 15.0) is detected in frame 1; then the archive delivers a frame where it is off
the frame (pointing 400" east), one where it is 3 px from the edge, and one with a
21 x 21 px block of NaN pixels over it; the inbox gets a frame of a different field
(FEDER, RA 30 Dec +40) and one without WCS (SAAO 1.0m, the same field, the target
on it). 300 more watched targets lie far from every frame.

Expected, each checked: no limit stored and no row for the 300 off-field targets; no
row for the target in the off-frame, other-field and no-WCS frames; a not-covered row
(no flux, no limit, no UPPER_LIMIT) for the edge and NaN frames; exactly one alert
(new_detection, frame 1); the lightcurve, the GCN draft ("observed with Prompt5"
only, one table row) and ``extract`` list frame 1 only. Before issue 10 the three
unmeasured archive frames gave three "faded below the limit" alerts at the frame's
limit and the circular said "observed with FEDER, Prompt5, SAAO 1.0m".

Frames: soapd.testing.synth, 512 x 512 px at 1"/px, V, 30 s, zero point 22.0, with
stars of a synthetic APASS-named catalog written by the test (calibration offline).
"""

from __future__ import annotations

import math
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from soapd.alerts.gcn import circular
from soapd.config import Config, Token, parse_config
from soapd.daemon.service import Service
from soapd.flags import Flag
from soapd.lightcurves import extract_lightcurve
from soapd.skynet.client import SkynetClient
from soapd.store import Store
from soapd.testing.fake_skynet import FakeSkynet
from soapd.testing.synth import make_frame, wcs_of, write_frame

pytestmark = pytest.mark.timeout(240)

CENTRE = (187.25, -12.5)
OBS_ID = 4242
ZP = 22.0
EXPTIME_S = 30.0
T_START = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
SHAPE = (512, 512)


def _offset(ra0: float, dec0: float, dx_arcsec: float, dy_arcsec: float) -> tuple[float, float]:
    """(ra, dec) in deg offset by dx (east) and dy (north) arcsec from (ra0, dec0)."""
    dec = dec0 + dy_arcsec / 3600.0
    return (ra0 + dx_arcsec / 3600.0 / math.cos(math.radians(dec0))) % 360.0, dec


TARGET = _offset(*CENTRE, 60.0, -40.0)


def _catalog() -> Table:
    """300 stars over 1400" x 1400" around the field, V 12-16.5, >= 20" from the target."""
    rng = np.random.default_rng(10)
    ras: list[float] = []
    decs: list[float] = []
    while len(ras) < 300:
        ra, dec = _offset(*CENTRE, *rng.uniform(-700.0, 700.0, 2))
        d = math.hypot(
            (ra - TARGET[0]) * 3600 * math.cos(math.radians(dec)), (dec - TARGET[1]) * 3600
        )
        if d > 20.0:
            ras.append(ra)
            decs.append(dec)
    v = rng.uniform(12.0, 16.5, len(ras))
    b_v = rng.uniform(0.3, 1.2, len(ras))
    tab = Table()
    tab["RAJ2000"] = np.round(ras, 7)
    tab["DEJ2000"] = np.round(decs, 7)
    tab["Vmag"] = np.round(v, 3)
    tab["e_Vmag"] = 0.02
    tab["Bmag"] = np.round(v + b_v, 3)
    tab["e_Bmag"] = 0.02
    tab["g'mag"] = np.round(v + 0.630 * b_v - 0.124, 3)
    tab["e_g'mag"] = 0.02
    tab["r'mag"] = np.round(v - 0.42 * b_v + 0.11, 3)
    tab["e_r'mag"] = 0.02
    tab["i'mag"] = np.round(v - 0.8 * b_v + 0.35, 3)
    tab["e_i'mag"] = 0.03
    tab["B-V"] = np.round(b_v, 3)
    tab["e_B-V"] = 0.03
    tab.meta["ID"] = "II_336_apass9"
    tab.meta["name"] = "II/336/apass9"
    return tab


def _write(
    path: Path,
    catalog: Table,
    index: int,
    centre: tuple[float, float],
    *,
    target: bool = True,
    nan_box_px: int = 0,
    with_wcs: bool = True,
    telescope: str = "Prompt5",
) -> tuple[Path, datetime]:
    """Write frame ``index`` centred on ``centre``; return its path and mid-exposure time."""
    from astropy.coordinates import angular_separation

    sep = angular_separation(
        *np.radians(centre), np.radians(catalog["RAJ2000"]), np.radians(catalog["DEJ2000"])
    )
    near = catalog[np.degrees(sep) < 0.15]  # the frame's half-diagonal is 0.1 deg
    ra = [*near["RAJ2000"]]
    dec = [*near["DEJ2000"]]
    mag = [*near["Vmag"]]
    if target:
        ra.append(TARGET[0])
        dec.append(TARGET[1])
        mag.append(15.0)
    start = T_START + timedelta(minutes=2 * index)
    synth = make_frame(
        SHAPE,
        stars=Table({"ra": ra, "dec": dec, "mag": mag}) if ra else 40,
        center_ra_deg=centre[0],
        center_dec_deg=centre[1],
        zeropoint_mag=ZP,
        exptime_s=EXPTIME_S,
        fwhm_px=3.5,
        date_obs=start,
        filter_name="V",
        telescope=telescope,
        seed=index,
    )
    data = synth.data_adu.copy()
    if nan_box_px:
        (x,), (y,) = wcs_of(synth.header).all_world2pix([TARGET[0]], [TARGET[1]], 0)
        x, y = float(x), float(y)
        h = nan_box_px // 2
        data[round(y) - h : round(y) + h + 1, round(x) - h : round(x) + h + 1] = np.nan
    header = synth.header
    if not with_wcs:
        wcs_keys = ("CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2")
        for key in (*wcs_keys, "CD2_1", "CD2_2", "CUNIT1", "CUNIT2", "RADESYS", "EQUINOX"):
            header.remove(key, ignore_missing=True)
    write_frame(path, data, header)
    return path, start + timedelta(seconds=EXPTIME_S / 2)


def _target_x_px(centre: tuple[float, float]) -> float:
    header = make_frame(SHAPE, stars=None, center_ra_deg=centre[0], center_dec_deg=centre[1]).header
    (x,), _ = wcs_of(header).all_world2pix([TARGET[0]], [TARGET[1]], 0)
    return float(x)


def _config(tmp_path: Path, url: str, catalog_path: Path, inbox: Path) -> Config:
    far = [
        {"name": f"FAR {k:03d}", "ra_deg": 10.0 + 0.5 * (k % 30), "dec_deg": 50.0 + 0.5 * (k // 30)}
        for k in range(300)
    ]
    data = {
        "skynet": {
            "api_url": url,
            "observations": [OBS_ID],
            "poll_interval_s": 5.0,
            "backoff_s": 0.05,
            "max_attempts": 3,
            "read_timeout_s": 5.0,
        },
        "paths": {
            "state_dir": str(tmp_path / "state"),
            "cache_dir": str(tmp_path / "cache"),
            "inbox_dir": str(inbox),
        },
        "service": {
            "workers": 2,
            "process_interval_s": 1.0,
            "inbox_interval_s": 1.0,
            "alerts_interval_s": 1.0,
        },
        "calibration": {"online": False, "catalog_files": [str(catalog_path)]},
        "alerts": {"batch_window_s": 0.0},
        "notifiers": [{"kind": "file", "directory": str(tmp_path / "alerts")}],
        "targets": [{"name": "GRB T", "ra_deg": TARGET[0], "dec_deg": TARGET[1]}, *far],
    }
    return parse_config(data, base=tmp_path)


def _wait(thread: threading.Thread, what: str, cond: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert thread.is_alive(), "the service stopped by itself"
        try:
            if cond():
                return
        except Exception:  # the schema may not exist yet
            pass
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(name="fake")
def fixture_fake() -> Iterator[FakeSkynet]:
    with FakeSkynet(seed=5) as fake:
        yield fake


def test_daemon_reports_only_what_was_measured(tmp_path: Path, fake: FakeSkynet) -> None:
    catalog = _catalog()
    catalog_path = tmp_path / "apass.ecsv"
    catalog.write(catalog_path, format="ascii.ecsv")
    frames = tmp_path / "frames"
    frames.mkdir()
    edge_centre = _offset(*TARGET, -253.0, 0.0)  # the target lands at x = 2.5 px
    # The edge is at x = -0.5: the target's aperture centre is 3 px from it.
    assert _target_x_px(edge_centre) + 0.5 == pytest.approx(3.0, abs=0.05)
    archive = [
        _write(frames / "f1.fits", catalog, 0, CENTRE),
        _write(frames / "f2_off.fits", catalog, 1, _offset(*CENTRE, 400.0, 0.0)),
        _write(frames / "f3_edge.fits", catalog, 2, edge_centre),
        _write(frames / "f4_nan.fits", catalog, 3, CENTRE, nan_box_px=21),
    ]
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    other, _ = _write(
        frames / "f5_other.fits", catalog, 4, (30.0, 40.0), target=False, telescope="FEDER"
    )  # no catalog star there: 40 random stars
    no_wcs, _ = _write(
        frames / "f6_nowcs.fits", catalog, 5, CENTRE, with_wcs=False, telescope="SAAO 1.0m"
    )
    fake.add_observation(OBS_ID)
    exp_ids = [
        fake.add_exposure(
            OBS_ID,
            path.read_bytes(),
            center_time_utc=mid,
            exptime_s=EXPTIME_S,
            telescope="Prompt5",
            filter_name="V",
            filename=path.name,
            archived=True,
        )
        for path, mid in archive
    ]
    shutil.copy(other, inbox / other.name)
    shutil.copy(no_wcs, inbox / no_wcs.name)
    cfg = _config(tmp_path, fake.url, catalog_path, inbox)
    service = Service(
        cfg,
        source_factory=lambda tok: SkynetClient.from_config(cfg.skynet, tok),
        read_token=lambda: Token(fake.token),
        env={},
    )
    thread = threading.Thread(target=service.run, name="soapd-under-test")
    thread.start()

    def processed() -> int:
        with Store(cfg.paths.db_path, migrate=False) as store:
            return int(store.backlog()["processed"])

    try:
        _wait(thread, "six processed frames", lambda: processed() == 6, 180.0)
    finally:
        service.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()

    with Store(cfg.paths.db_path) as store:
        fid = {
            name: store.find_frame(exp_id=e).frame_id
            for name, e in zip(("f1", "off", "edge", "nan"), exp_ids, strict=True)
        }
        q = store.db.execute
        rows = q(
            "SELECT t.name, m.frame_id, m.flags, m.lim_mag, m.flux_e, m.is_detection "
            "FROM measurements m JOIN targets t USING (target_id) ORDER BY m.frame_id"
        ).fetchall()
        inbox_frames = [r[0] for r in q("SELECT frame_id FROM frames WHERE source = 'inbox'")]
        footprints = dict(q("SELECT frame_id, footprint_json FROM frames").fetchall())
        alerts = store.list_alerts()
        lc = store.lightcurve("GRB T")
        gcn = circular(lc, target_name="GRB T")
        extracted = extract_lightcurve(store, *TARGET, radius_arcsec=3.0)
        zp_f1 = q("SELECT zp_mag FROM frames WHERE frame_id = ?", [fid["f1"]]).fetchone()[0]

    assert len(inbox_frames) == 2
    # 300 off-field targets: no row at all, in any frame
    assert {r[0] for r in rows} == {"GRB T"}
    by_frame = {r[1]: r for r in rows}
    # off the frame, another field, no WCS: no row; edge and NaN: a not-covered row
    assert set(by_frame) == {fid["f1"], fid["edge"], fid["nan"]}
    f1 = by_frame[fid["f1"]]
    assert f1[5] == 1
    assert not f1[2] & (Flag.NOT_COVERED | Flag.UPPER_LIMIT)
    for key, reason in (("edge", Flag.NEAR_EDGE), ("nan", Flag.MASKED_APERTURE)):
        _, _, flags, lim, flux, det = by_frame[fid[key]]
        assert flags & Flag.NOT_COVERED, key
        assert flags & reason, key
        assert not flags & Flag.UPPER_LIMIT, key
        assert (lim, flux, det) == (None, None, 0), key
    # no limit stored anywhere
    assert all(r[3] is None for r in rows if r[1] != fid["f1"])
    # footprints: every frame with WCS has one, the no-WCS frame none
    assert sum(v is not None for v in footprints.values()) == 5
    # exactly one alert: the detection in frame 1
    assert [(a["target_name"], a["rule"], a["frame_id"]) for a in alerts] == [
        ("GRB T", "new_detection", fid["f1"])
    ]
    # the lightcurve, the GCN draft and extract know frame 1 only
    assert set(lc["frame_id"].tolist()) == {fid["f1"]}
    assert zp_f1 is not None
    first = lc[lc["aperture_id"] == lc["aperture_id"].min()]
    assert abs(float(first["calibrated_mag"][0]) - 15.0) < 0.1
    assert "with Prompt5 of" in gcn
    for word in ("FEDER", "SAAO", "No source is detected", "> "):
        assert word not in gcn, word
    table_lines = [ln for ln in gcn.splitlines() if "Prompt5" in ln and " x 30" in ln]
    assert len(table_lines) == 1
    assert extracted["frame_id"].tolist() == [fid["f1"]]
    assert extracted["coverage"].tolist() == ["covered"]
