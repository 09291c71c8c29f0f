"""The store and coverage (issue 10): footprints in the ledger, not-covered rows kept but
never in lightcurves (``Store.lightcurve``, the SQL view, the rules' history), and old
databases' unmeasured rows marked by migration m007."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from soapd.flags import Flag
from soapd.models import FrameResult, Target
from soapd.store import Store
from soapd.store.frame_rows import footprint_from_json
from soapd.testing.lightcurves import register_frame, target_result

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
ZP = 22.0
CORNERS = ((150.1, -30.1), (149.9, -30.1), (149.9, -29.9), (150.1, -29.9))
COVERED = ((150.09, -30.09), (149.91, -30.09), (149.91, -29.91), (150.09, -29.91))


def not_covered(table: Table, name: str, reason: Flag) -> Table:
    """Return ``table`` with target ``name``'s rows made not covered for ``reason``."""
    out = table.copy()
    rows = np.asarray(out["target_name"]) == name
    for col in ("flux", "flux_err", "snr", "ins_mag", "ins_mag_err", "calibrated_mag"):
        out[col][rows] = np.nan
    out["calibrated_mag_err"][rows] = np.nan
    out["limiting_mag"][rows] = np.nan
    out["flux_ujy"][rows] = np.nan
    out["flux_ujy_err"][rows] = np.nan
    out["is_detection"][rows] = False
    out["flag"][rows] = int(Flag.NOT_COVERED | reason)
    return out


@pytest.fixture(name="store")
def fixture_store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "soapd.db")
    s.upsert_target(Target(name="GRB A", ra_deg=150.0, dec_deg=-30.0, trigger_time_utc=T0))
    s.upsert_target(Target(name="VAR B", ra_deg=150.01, dec_deg=-30.0))
    yield s
    s.close()


def _save(store: Store, i: int, result: FrameResult) -> int:
    t = T0 + timedelta(minutes=10 * (i + 1))
    fid = register_frame(store, f"f{i}.fits", mid_time_utc=t, obs_id=7)
    store.save_result(fid, result, config_hash="h", soapd_version="t", table_path=f"t{i}.pq")
    return fid


def _result(i: int, mags: dict, **kw) -> FrameResult:
    t = T0 + timedelta(minutes=10 * (i + 1))
    return target_result(mags, mid_time_utc=t, image_file=f"f{i}.fits", **kw)


def test_not_covered_rows_are_stored_but_no_lightcurve_shows_them(store: Store) -> None:
    first = _result(0, {"GRB A": 17.0, "VAR B": 16.0})
    second = _result(1, {"GRB A": None, "VAR B": 16.0})
    second = FrameResult(
        summary=second.summary,
        table=not_covered(second.table, "GRB A", Flag.MASKED_APERTURE),
    )
    f0 = _save(store, 0, first)
    f1 = _save(store, 1, second)
    stored = store.db.execute(
        "SELECT frame_id, flags, lim_mag, is_detection FROM measurements "
        "WHERE target_id = 1 ORDER BY frame_id"
    ).fetchall()
    assert [r[0] for r in stored] == [f0, f1]  # the not-covered row is kept for the record
    assert stored[1][1] & Flag.NOT_COVERED
    assert stored[1][2] is None
    assert stored[1][3] == 0
    lc = store.lightcurve("GRB A")
    assert lc["frame_id"].tolist() == [f0]
    view = store.db.execute(
        "SELECT frame_id FROM lightcurve WHERE target_name = 'GRB A' ORDER BY mjd"
    ).fetchall()
    assert [r[0] for r in view] == [f0]
    assert store.rule_history("GRB A")["frame_id"].tolist() == [f0]
    both = store.lightcurve("GRB A", include_not_covered=True)
    assert both["frame_id"].tolist() == [f0, f1]
    assert int(both["flag"][1]) & Flag.NOT_COVERED
    assert math.isnan(float(both["limiting_mag"][1]))
    assert store.lightcurve("VAR B")["frame_id"].tolist() == [f0, f1]


def test_instrumental_columns_are_stored_and_read_back(store: Store) -> None:
    res = _result(0, {"GRB A": 17.0})
    res.table["limiting_ins_mag"] = np.full(len(res.table), -2.5)
    _save(store, 0, res)
    lc = store.lightcurve("GRB A")
    assert float(lc["limiting_ins_mag"][0]) == -2.5
    assert float(lc["ins_mag"][0]) == pytest.approx(float(res.table["ins_mag"][0]))
    assert float(lc["ins_mag_err"][0]) == pytest.approx(float(res.table["ins_mag_err"][0]))
    hist = store.rule_history("GRB A")
    assert hist["limiting_ins_mag"].tolist() == [-2.5]
    assert hist["telescope"].tolist() == ["PROMPT-5"]
    assert hist["flag"].tolist() == [0]


def test_footprint_is_stored_with_the_frame_and_read_by_frames_with_tables(store: Store) -> None:
    from dataclasses import replace

    res = _result(0, {"GRB A": 17.0})
    res = replace(
        res, summary=replace(res.summary, footprint_deg=CORNERS, covered_footprint_deg=COVERED)
    )
    fid = _save(store, 0, res)
    no_wcs = _result(1, {"GRB A": 17.0})
    fid2 = _save(store, 1, no_wcs)
    text = store.db.execute(
        "SELECT footprint_json FROM frames WHERE frame_id = ?", [fid]
    ).fetchone()
    assert json.loads(text[0]) == {
        "corners": [list(c) for c in CORNERS],
        "covered": [list(c) for c in COVERED],
    }
    rows = {r["frame_id"]: r for r in store.frames_with_tables()}
    assert rows[fid]["footprint"] == (CORNERS, COVERED)
    assert rows[fid2]["footprint"] is None
    assert footprint_from_json(None) is None


def test_migration_m007_marks_old_unmeasured_rows_not_covered(tmp_path: Path) -> None:
    """Rows written before coverage existed: an off-frame forced row with the frame's limit
    and UPPER_LIMIT, an edge row without flux, a real limit and a real detection. The
    first two become NOT_COVERED (no limit, UPPER_LIMIT cleared, also in the packed blob);
    the others are untouched."""
    from soapd.store.lctable import PACKED_FIELDS
    from soapd.store.migrations import migrations
    from soapd.store.views import refresh_views

    old_rows = {  # name: (flags, flux_e, lim_mag, is_detection, mag)
        "OFF": (int(Flag.OFF_FRAME | Flag.UPPER_LIMIT), None, 19.5, 0, None),
        "EDGE": (int(Flag.NEAR_EDGE | Flag.UPPER_LIMIT), None, 19.5, 0, None),
        "LIM": (int(Flag.UPPER_LIMIT), 12.0, 19.5, 0, None),
        "DET": (0, 5000.0, 19.5, 1, 15.0),
    }
    with Store(tmp_path / "old.db", migrate=False) as s:
        migrations.apply(s.db, stop_before="m007_frame_footprint_and_coverage")
        fid = register_frame(s, "old.fits", mid_time_utc=T0)
        s.db.execute("UPDATE frames SET state = 'processed', mjd = 61368.125")
        for tid, (name, (flags, flux, lim, det, mag)) in enumerate(old_rows.items(), start=1):
            s.upsert_target(Target(name=name, ra_deg=1.0, dec_deg=2.0))
            values = dict.fromkeys(PACKED_FIELDS[:22], np.nan)  # m006's layout
            values.update(
                mjd=61368.125,
                flux_e=np.nan if flux is None else flux,
                mag=np.nan if mag is None else mag,
                lim_mag=lim,
                is_detection=det,
                aperture_id=0,
                aperture_px=4.0,
                flags=flags,
                is_forced=1,
                frame_id=fid,
                mag_system=2,
            )
            blob = np.array([values[f] for f in PACKED_FIELDS[:22]], dtype="<f8").tobytes()
            s.db.execute(
                "INSERT INTO measurements (frame_id, target_id, aperture_mpx, config_hash, mjd, "
                "aperture_id, aperture_px, flux_e, mag, lim_mag, is_detection, is_forced, flags, "
                "mag_system, packed, ins_mag, created_at, updated_at) VALUES (?, ?, 4000, 'h', "
                "61368.125, 0, 4.0, ?, ?, ?, ?, 1, ?, 'Vega', ?, ?, 'x', 'x')",
                [fid, tid, flux, mag, lim, det, flags, blob, None if mag is None else mag - ZP],
            )
        migrations.apply(s.db)
        refresh_views(s.db)
        rows = dict(
            s.db.execute(
                "SELECT t.name, m.flags FROM measurements m JOIN targets t USING (target_id)"
            ).fetchall()
        )
        assert rows["OFF"] & Flag.NOT_COVERED
        assert not rows["OFF"] & Flag.UPPER_LIMIT
        assert rows["EDGE"] & Flag.NOT_COVERED
        assert rows["LIM"] == int(Flag.UPPER_LIMIT)
        assert rows["DET"] == 0
        assert len(s.lightcurve("OFF")) == 0
        assert len(s.lightcurve("EDGE")) == 0
        old = s.lightcurve("OFF", include_not_covered=True)
        assert math.isnan(float(old["limiting_mag"][0]))
        assert int(old["flag"][0]) & Flag.NOT_COVERED
        assert not int(old["flag"][0]) & Flag.UPPER_LIMIT
        assert not bool(old["is_detection"][0])
        assert float(s.lightcurve("LIM")["limiting_mag"][0]) == 19.5
        assert int(s.lightcurve("LIM")["flag"][0]) == int(Flag.UPPER_LIMIT)
        det_lc = s.lightcurve("DET")
        assert float(det_lc["calibrated_mag"][0]) == 15.0
        # the blob grew by the instrumental values: ins_mag from its column, no limit
        assert float(det_lc["ins_mag"][0]) == 15.0 - ZP
        assert math.isnan(float(det_lc["limiting_ins_mag"][0]))
        blobs = s.db.execute("SELECT packed FROM measurements").fetchall()
        assert {len(b[0]) for b in blobs} == {8 * len(PACKED_FIELDS)}
        assert bool(s.lightcurve("DET")["is_detection"][0])
