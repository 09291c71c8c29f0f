"""One read path: ``Store.lightcurve`` and the ``lightcurve`` SQL view agree row for row."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from soapd.columns import LIGHTCURVE_COLUMNS, spec
from soapd.models import Target
from soapd.store import Store
from soapd.store.migrations import migrations
from soapd.store.views import lightcurve_view_sql, refresh_views
from soapd.testing.lightcurves import register_frame, target_result

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
RADII = (3.0, 5.0, 7.0)
#: Zero point of each aperture (the frame summary's is the first one's).
ZP_BY_APERTURE = (22.0, 22.05, 22.1)


def _save(
    store: Store, i: int, mags: dict, *, band: str = "R", hash_: str = "h1", systems=None, **kw
) -> int:
    """Store a frame whose apertures have their own zero point; the last one uncalibrated."""
    t = T0 + timedelta(minutes=10 * (i + 1))
    obs = kw.pop("obs_id", 7)
    fid = register_frame(store, f"f{i}.fits", mid_time_utc=t, obs_id=obs, filter_raw=band)
    res = target_result(
        mags,
        mid_time_utc=t,
        band=band,
        image_file=f"f{i}.fits",
        aperture_radii_px=RADII,
        rng=np.random.default_rng(i),
        **kw,
    )
    ap = np.asarray(res.table["aperture_id"])
    zp = np.array(ZP_BY_APERTURE)[ap] if math.isfinite(res.summary.zp_mag) else np.nan
    res.table["zeropoint"] = zp
    res.table["n_cal_stars"] = 40 - ap
    system = str(res.table["cal_mag_system"][0])
    res.table["cal_mag_system"] = np.array(systems or (system, system, "none"))[ap]
    store.save_result(fid, res, config_hash=hash_, soapd_version="t", table_path=None)
    return fid


@pytest.fixture(name="store")
def fixture_store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "soapd.db")
    s.upsert_target(Target(name="GRB A", ra_deg=150.0, dec_deg=-30.0, trigger_time_utc=T0))
    s.upsert_target(Target(name="VAR B", ra_deg=150.1, dec_deg=-30.0))
    _save(s, 0, {"GRB A": None, "VAR B": 15.0})
    # "ST" has no packed code: read from its column
    _save(s, 1, {"GRB A": 17.0, "VAR B": 15.1}, band="V", systems=("AB", "ST", "none"))
    _save(s, 2, {"GRB A": 17.2}, zp_mag=math.nan, lim_mag=math.nan)  # no zero point
    _save(s, 3, {"GRB A": 17.4}, obs_id=None)
    fid = _save(s, 4, {"GRB A": 17.5, "VAR B": 15.2})
    # processed again with another configuration: the first rows are superseded
    res = target_result({"GRB A": 17.6}, mid_time_utc=T0 + timedelta(minutes=50))
    s.save_result(fid, res, config_hash="h2", soapd_version="t", table_path=None)
    yield s
    s.close()


def _view(store: Store, name: str, *, superseded: bool, band: str | None, since_mjd: float | None):
    where, params = ["target_name = ?"], [name]
    if not superseded:
        where.append("superseded = 0")
    if band is not None:
        where.append("band = ?")
        params.append(band)
    if since_mjd is not None:
        where.append("mjd >= ?")
        params.append(since_mjd)
    return list(
        store.db.query(
            f"SELECT * FROM lightcurve WHERE {' AND '.join(where)} "
            "ORDER BY mjd, frame_id, aperture_id, config_hash",
            params,
        )
    )


def _as_view(value, dtype: str):
    """A lightcurve value as the view shows it (NULL for NaN, -1 and '')."""
    if dtype == "U":
        return str(value) or None
    if dtype == "?":
        return int(bool(value))
    if dtype in ("i4", "i8"):
        return None if int(value) == -1 else int(value)
    return None if math.isnan(float(value)) else float(value)


@pytest.mark.parametrize("superseded", [False, True])
@pytest.mark.parametrize("band", [None, "R", "V"])
@pytest.mark.parametrize("since_minutes", [None, 25])
@pytest.mark.parametrize("name", ["GRB A", "VAR B"])
def test_store_lightcurve_equals_the_view_row_for_row(
    store: Store, superseded: bool, band: str | None, since_minutes: int | None, name: str
) -> None:
    since = None if since_minutes is None else T0 + timedelta(minutes=since_minutes)
    lc = store.lightcurve(name, band=band, since_utc=since, include_superseded=superseded)
    mjd0 = datetime(1858, 11, 17, tzinfo=UTC)
    since_mjd = None if since is None else (since - mjd0) / timedelta(days=1)
    rows = _view(store, name, superseded=superseded, band=band, since_mjd=since_mjd)
    assert len(lc) == len(rows)
    if band is None and since is None:
        assert len(rows) >= 6
    expected_names = [n for n in LIGHTCURVE_COLUMNS if superseded or n != "superseded"]
    assert lc.colnames == expected_names
    for k, row in enumerate(rows):
        for col in lc.colnames:
            entry = spec(col)
            if entry.db is None:  # jd
                assert lc[col][k] == row["mjd"] + 2400000.5
                continue
            assert _as_view(lc[col][k], entry.dtype) == row[entry.db], (k, col)


def test_lightcurve_has_each_apertures_own_calibration(store: Store) -> None:
    lc = store.lightcurve("GRB A")
    frame = lc[lc["frame_id"] == 1]
    assert frame["zeropoint"].tolist() == list(ZP_BY_APERTURE)
    assert frame["n_cal_stars"].tolist() == [40, 39, 38]
    assert frame["cal_mag_system"].tolist() == ["Vega", "Vega", "none"]
    assert frame["zeropoint_scatter"].tolist() == [0.05] * 3
    assert lc[lc["frame_id"] == 2]["cal_mag_system"].tolist() == ["AB", "ST", "none"]
    uncalibrated = lc[lc["frame_id"] == 3]
    assert np.all(np.isnan(uncalibrated["zeropoint"]))
    assert np.all(np.isnan(uncalibrated["calibrated_mag"]))
    assert lc[lc["frame_id"] == 4]["obs_id"].tolist() == [-1] * 3


def test_rule_history_is_the_lightcurve_subset(store: Store) -> None:
    hist = store.rule_history("GRB A")
    lc = store.lightcurve("GRB A")
    for name, values in hist.items():
        assert values.dtype.kind == lc[name].dtype.kind, name
        assert np.array_equal(values, np.asarray(lc[name]), equal_nan=values.dtype.kind == "f")


def test_old_view_is_replaced_once_and_then_left_alone(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db", migrate=False) as store:
        migrations.apply(store.db)  # the view as migration m003 wrote it
        old = store.db.execute("SELECT sql FROM sqlite_master WHERE name = 'lightcurve'")
        assert "ins_mag" not in old.fetchone()[0]
    with Store(tmp_path / "s.db") as store:
        sql = store.db.execute("SELECT sql FROM sqlite_master WHERE name = 'lightcurve'")
        assert sql.fetchone()[0] == lightcurve_view_sql()
        assert refresh_views(store.db) is False
        assert "ins_mag" in [c.name for c in store.db["lightcurve"].columns]


@pytest.mark.parametrize("name", ["GRB A", "VAR B"])
def test_one_value_fetch_gives_the_row_by_row_lightcurve(
    store: Store, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """group_concat's single value, when used, holds exactly the rows of the ordered query."""
    import soapd.store.measurements as meas

    used: list[bool] = []
    real = meas._packed_in_one_value

    def spy(*args):
        got = real(*args)
        used.append(got is not None)
        return got

    monkeypatch.setattr(meas, "_packed_in_one_value", spy)
    fast = store.lightcurve(name)
    assert used == [True]
    monkeypatch.setattr(meas, "_packed_in_one_value", lambda *args: None)
    slow = store.lightcurve(name)
    assert fast.colnames == slow.colnames
    assert len(fast) == len(slow) >= 4
    for col in fast.colnames:
        a, b = np.asarray(fast[col]), np.asarray(slow[col])
        if a.dtype.kind == "f":
            np.testing.assert_array_equal(a, b, err_msg=col)  # NaN == NaN here
        else:
            assert a.tolist() == b.tolist(), col


def test_one_value_fetch_is_refused_out_of_order_or_with_ties(store: Store) -> None:
    import soapd.store.measurements as meas

    target = store.get_target("GRB A")
    assert target is not None
    tid = target.target_id
    base = "FROM measurements AS m WHERE m.target_id = ? AND m.superseded = 0 ORDER BY "
    ordered = meas._packed_in_one_value(store.db.conn, base + "m.mjd, m.aperture_id", [tid])
    assert ordered is not None
    assert len(ordered) >= 4
    assert meas._packed_in_one_value(store.db.conn, base + "m.mjd DESC", [tid]) is None
    keys = np.array([[1.0, 1, 0], [1.0, 1, 1], [1.0, 2, 0], [2.0, 0, 0]])
    packed = np.zeros((4, len(meas.PACKED_FIELDS)))
    packed[:, meas._ORDER_KEYS] = keys
    assert meas._strictly_ordered(packed)
    assert meas._strictly_ordered(packed[:1])
    assert not meas._strictly_ordered(packed[[0, 0, 1]])  # a tie
    assert not meas._strictly_ordered(packed[[1, 0]])  # out of order
    with_nan = packed.copy()
    with_nan[1, meas._ORDER_KEYS[2]] = np.nan  # aperture_id unknown: SQL would sort it first
    assert not meas._strictly_ordered(with_nan)
