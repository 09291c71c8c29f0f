"""Tests of targets, measurements (upsert, supersede), lightcurve and outbox through Store."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soapd.config import TargetConfig
from soapd.errors import ConfigError, StoreError
from soapd.models import AlertDraft, Target
from soapd.store import Store
from soapd.testing.lightcurves import register_frame, target_result

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


@pytest.fixture(name="store")
def fixture_store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "soapd.db")
    s.upsert_target(Target(name="GRB A", ra_deg=150.0, dec_deg=-30.0, trigger_time_utc=T0))
    s.upsert_target(Target(name="VAR B", ra_deg=150.1, dec_deg=-30.0))
    yield s
    s.close()


def _save(store: Store, i: int, mags: dict, *, hash_: str = "h1", alerts=(), **kw) -> int:
    t = T0 + timedelta(minutes=10 * (i + 1))
    fid = register_frame(store, f"f{i}.fits", mid_time_utc=t, obs_id=7)
    res = target_result(mags, mid_time_utc=t, image_file=f"f{i}.fits", **kw)
    store.save_result(
        fid, res, alerts=alerts, config_hash=hash_, soapd_version="t", table_path=None
    )
    return fid


def _count(store: Store, sql: str) -> int:
    return int(store.db.execute(sql).fetchone()[0])


def test_upsert_target_twice_updates_in_place(store: Store) -> None:
    tid = store.upsert_target(Target(name="GRB A", ra_deg=151.0, dec_deg=-31.0, rules={"x": 1}))
    assert tid == store.get_target("GRB A").target_id
    t = store.get_target("GRB A")
    assert (t.ra_deg, t.dec_deg, t.trigger_time_utc, t.rules) == (151.0, -31.0, None, {"x": 1.0})
    assert len(store.list_targets()) == 2


def test_remove_target_keeps_history_and_deactivates(store: Store) -> None:
    _save(store, 0, {"GRB A": 17.0})
    assert store.remove_target("GRB A") is True
    assert store.remove_target("nope") is False
    assert [t.name for t in store.active_targets()] == ["VAR B"]
    assert [t.name for t in store.list_targets(include_inactive=True)] == ["GRB A", "VAR B"]
    assert len(store.lightcurve("GRB A")) == 1


def test_upsert_target_bad_position_raises_config_error(store: Store) -> None:
    with pytest.raises(ConfigError, match="Dec must be"):
        store.upsert_target(Target(name="bad", ra_deg=10.0, dec_deg=95.0))
    with pytest.raises(ConfigError, match="RA must be"):
        store.upsert_target(Target(name="bad", ra_deg=math.nan, dec_deg=0.0))


def test_sync_config_targets_upserts_by_name_and_parses_trigger(store: Store) -> None:
    store.sync_config_targets(
        [
            TargetConfig(
                name="VAR C", ra_deg=10.0, dec_deg=5.0, trigger_time="2026-11-24T01:00:00"
            ),
            TargetConfig(name="NEW", ra_deg=20.0, dec_deg=-5.0, rules={"change_min_mag": 0.5}),
        ]
    )
    c = store.get_target("VAR C")
    assert (c.ra_deg, c.trigger_time_utc) == (10.0, datetime(2026, 11, 24, 1, tzinfo=UTC))
    store.sync_config_targets([TargetConfig(name="VAR C", ra_deg=11.0, dec_deg=5.0)])
    assert store.get_target("VAR C").ra_deg == 11.0  # the file's own target follows the file
    assert store.get_target("NEW").rules == {"change_min_mag": 0.5}
    assert store.get_target("GRB A") is not None
    with pytest.raises(ConfigError, match="trigger_time"):
        store.sync_config_targets([TargetConfig(name="X", trigger_time="yesterday")])


def test_a_cli_edit_survives_a_restart_and_the_difference_is_logged(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Rule (README, Targets): a target last changed on the command line keeps its values."""
    toml = [TargetConfig(name="T", ra_deg=10.0, dec_deg=5.0, trigger_time="2026-11-24T01:00:00")]
    store.sync_config_targets(toml)
    edited = Target(
        name="T", ra_deg=10.0, dec_deg=5.0, trigger_time_utc=datetime(2026, 11, 24, 2, tzinfo=UTC)
    )
    store.upsert_target(edited, source="cli")
    with caplog.at_level("WARNING", logger="soapd.store.targets"):
        store.sync_config_targets(toml)  # a restart / SIGHUP
    assert store.get_target("T").trigger_time_utc == datetime(2026, 11, 24, 2, tzinfo=UTC)
    assert "differs in trigger_time_utc" in caplog.text
    assert "keeping the command line" in caplog.text
    caplog.clear()
    store.remove_target("T")
    store.sync_config_targets(toml)  # removed on the CLI: the file's version comes back
    assert store.get_target("T").trigger_time_utc == datetime(2026, 11, 24, 1, tzinfo=UTC)
    assert caplog.text == ""


def test_save_result_reprocess_same_hash_upserts_without_duplicates(store: Store) -> None:
    fid = _save(store, 0, {"GRB A": 17.0, "VAR B": 16.0}, aperture_radii_px=(3.0, 5.0))
    res = target_result(
        {"GRB A": 17.5, "VAR B": 16.0},
        mid_time_utc=T0 + timedelta(minutes=10),
        aperture_radii_px=(3.0, 5.0),
    )
    store.save_result(fid, res, config_hash="h1", soapd_version="t", table_path="/x.parquet")
    assert _count(store, "SELECT count(*) FROM measurements") == 4
    lc = store.lightcurve("GRB A")
    assert np.allclose(lc["calibrated_mag"], 17.5)
    row = store.frame(fid)
    assert row.state == "processed"
    assert store.db.execute(
        "SELECT catalog_path, config_hash, zp_mag, band FROM frames WHERE frame_id=?", [fid]
    ).fetchone() == ("/x.parquet", "h1", 22.0, "R")


def test_save_result_new_config_hash_supersedes_old_rows(store: Store) -> None:
    fid = _save(store, 0, {"GRB A": 17.0})
    res = target_result({"GRB A": 17.2}, mid_time_utc=T0 + timedelta(minutes=10))
    store.save_result(fid, res, config_hash="h2", soapd_version="t", table_path=None)
    assert len(store.lightcurve("GRB A")) == 1
    assert float(store.lightcurve("GRB A")["calibrated_mag"][0]) == pytest.approx(17.2)
    everything = store.lightcurve("GRB A", include_superseded=True)
    assert sorted(everything["superseded"].tolist()) == [False, True]
    # The old row keeps its numbers.
    old = everything[everything["superseded"]]
    assert float(old["calibrated_mag"][0]) == pytest.approx(17.0)
    # Processing with the first config again makes its rows current again.
    store.save_result(
        fid,
        target_result({"GRB A": 17.0}, mid_time_utc=T0 + timedelta(minutes=10)),
        config_hash="h1",
        soapd_version="t",
        table_path=None,
    )
    assert float(store.lightcurve("GRB A")["calibrated_mag"][0]) == pytest.approx(17.0)


def test_save_result_nan_aperture_radius_does_not_duplicate(store: Store) -> None:
    fid = _save(store, 0, {"GRB A": 17.0}, aperture_radii_px=(math.nan,))
    res = target_result(
        {"GRB A": 17.0}, mid_time_utc=T0 + timedelta(minutes=10), aperture_radii_px=(math.nan,)
    )
    store.save_result(fid, res, config_hash="h1", soapd_version="t", table_path=None)
    assert _count(store, "SELECT count(*) FROM measurements") == 1
    assert math.isnan(float(store.lightcurve("GRB A")["aperture_radius"][0]))


def test_save_result_unknown_frame_raises_and_stores_nothing(store: Store) -> None:
    res = target_result({"GRB A": 17.0}, mid_time_utc=T0)
    with pytest.raises(StoreError, match="not in the ledger"):
        store.save_result(999, res, config_hash="h", soapd_version="t", table_path=None)
    assert _count(store, "SELECT count(*) FROM measurements") == 0


def test_save_result_failing_alert_rolls_back_measurements_and_state(store: Store) -> None:
    fid = register_frame(store, "f.fits", mid_time_utc=T0)
    bad = AlertDraft(
        target_name="GRB A",
        rule="r",
        dedupe_key="k",
        batch_key="b",
        message="m",
        payload={"mag": math.nan},
    )
    with pytest.raises(ValueError, match="JSON"):
        store.save_result(
            fid,
            target_result({"GRB A": 17.0}, mid_time_utc=T0),
            alerts=[bad],
            config_hash="h",
            soapd_version="t",
            table_path=None,
        )
    assert _count(store, "SELECT count(*) FROM measurements") == 0
    assert _count(store, "SELECT count(*) FROM alerts") == 0
    assert store.frame(fid).state == "downloaded"


def test_save_result_ignores_rows_of_unknown_targets(store: Store) -> None:
    _save(store, 0, {"GRB A": 17.0, "not watched": 15.0})
    assert _count(store, "SELECT count(*) FROM measurements") == 1


def test_lightcurve_has_units_meta_and_filters(store: Store) -> None:
    _save(store, 0, {"GRB A": None}, band="R")
    _save(store, 1, {"GRB A": 17.0}, band="V")
    _save(store, 2, {"GRB A": 17.1}, band="R")
    lc = store.lightcurve("GRB A")
    assert len(lc) == 3
    assert lc["is_detection"].tolist() == [False, True, True]
    assert str(lc["calibrated_mag"].unit) == "mag"
    assert str(lc["mjd"].unit) == "d"
    assert str(lc["exptime"].unit) == "s"
    assert str(lc["flux_ujy"].unit) == "uJy"
    assert str(lc["ra"].unit) == "deg"
    assert lc["jd"][0] - lc["mjd"][0] == pytest.approx(2400000.5)
    assert lc.meta["trigger_time_utc"].startswith("2026-11-24T03:00:00")
    assert lc["mid_time_utc"][0].startswith("2026-11-24T03:10:00")
    assert np.all(np.diff(lc["mjd"]) > 0)
    assert len(store.lightcurve("GRB A", band="R")) == 2
    assert len(store.lightcurve("GRB A", since_utc=T0 + timedelta(minutes=25))) == 1
    assert len(store.lightcurve("GRB A", since_utc="2026-11-24T03:25:00Z")) == 1
    with pytest.raises(StoreError, match="no target"):
        store.lightcurve("nobody")


def test_lightcurve_empty_has_all_columns(store: Store) -> None:
    lc = store.lightcurve("VAR B")
    assert len(lc) == 0
    assert "is_detection" in lc.colnames
    assert "limiting_mag" in lc.colnames


def test_outbox_dedupe_key_stores_an_alert_once(store: Store) -> None:
    draft = AlertDraft(target_name="GRB A", rule="r", dedupe_key="k1", batch_key="b", message="m")
    fid = _save(store, 0, {"GRB A": 17.0}, alerts=[draft])
    assert store.alert_counts() == {"pending": 1, "sent": 0, "failed": 0}
    res = target_result({"GRB A": 17.0}, mid_time_utc=T0 + timedelta(minutes=10))
    ids = store.save_result(
        fid, res, alerts=[draft], config_hash="h9", soapd_version="t", table_path=None
    )
    assert ids == []
    assert store.add_alerts(fid, [draft]) == []
    assert store.alert_counts()["pending"] == 1


def test_outbox_failed_then_sent_and_given_up(store: Store) -> None:
    drafts = [
        AlertDraft(target_name="GRB A", rule="r", dedupe_key=f"k{i}", batch_key="b", message="m")
        for i in range(2)
    ]
    a, b = store.add_alerts(None, drafts)
    later = datetime.now(UTC) + timedelta(hours=1)
    store.mark_alert_failed(a, "smtp down", later)
    assert [x.alert_id for x in store.unsent_alerts()] == [b]
    due = store.unsent_alerts(later + timedelta(seconds=1))
    assert [x.alert_id for x in due] == [a, b]
    assert due[0].attempts == 1
    store.mark_alert_delivered(a, "email:x")
    store.mark_alert_delivered(a, "email:x")
    assert store.unsent_alerts(later + timedelta(seconds=1))[0].delivered_to == {"email:x"}
    store.mark_alert_sent(a)
    store.mark_alert_failed(b, "boom", None)
    assert store.alert_counts() == {"pending": 0, "sent": 1, "failed": 1}
    rows = store.list_alerts(target_name="GRB A")
    assert {r["status"] for r in rows} == {"sent", "failed"}


mag_or_none = st.one_of(st.none(), st.floats(min_value=10.0, max_value=22.0))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    mags=st.lists(mag_or_none, min_size=1, max_size=6),
    lim=st.floats(min_value=15.0, max_value=23.0),
    radii=st.lists(
        st.one_of(st.just(math.nan), st.floats(min_value=0.5, max_value=30.0)),
        min_size=1,
        max_size=3,
        unique_by=lambda r: -1 if math.isnan(r) else round(r * 1000),
    ),
)
def test_save_then_lightcurve_round_trips_values(tmp_path: Path, mags, lim, radii) -> None:
    """Every stored number comes back unchanged (NaN as NaN), one row per frame x aperture."""
    with Store(
        tmp_path / f"rt{abs(hash((tuple(map(str, mags)), lim, tuple(map(str, radii)))))}.db"
    ) as s:
        s.upsert_target(Target(name="T", ra_deg=1.0, dec_deg=2.0))
        results = []
        for i, m in enumerate(mags):
            t = T0 + timedelta(minutes=i)
            fid = register_frame(s, f"g{i}", mid_time_utc=t)
            res = target_result({"T": m}, mid_time_utc=t, lim_mag=lim, aperture_radii_px=radii)
            s.save_result(fid, res, config_hash="h", soapd_version="t", table_path=None)
            s.save_result(fid, res, config_hash="h", soapd_version="t", table_path=None)
            results.append(res.table)
        lc = s.lightcurve("T")
        assert len(lc) == len(mags) * len(radii)
        for k, name in (
            ("flux", "flux"),
            ("snr", "snr"),
            ("calibrated_mag", "calibrated_mag"),
            ("limiting_mag", "limiting_mag"),
            ("aperture_radius", "aperture_radius"),
        ):
            expect = np.concatenate([np.asarray(t[name], float) for t in results])
            got = np.asarray(lc[k], float)
            assert np.allclose(got, expect, equal_nan=True, rtol=0, atol=1e-9)
        expect_det = np.concatenate([np.asarray(t["is_detection"], bool) for t in results])
        assert lc["is_detection"].tolist() == expect_det.tolist()


def test_migration_m004_packs_existing_measurements(tmp_path: Path) -> None:
    """Rows written before m004 get their packed copy, so lightcurve() reads them."""
    from soapd.store.migrations import migrations

    with Store(tmp_path / "old.db", migrate=False) as s:
        migrations.apply(s.db, stop_before="m004_measurements_packed")
        s.upsert_target(Target(name="OLD", ra_deg=1.0, dec_deg=2.0))
        fid = register_frame(s, "old.fits", mid_time_utc=T0)
        s.db.execute(
            "INSERT INTO measurements (frame_id, target_id, aperture_mpx, config_hash, mjd, "
            "aperture_id, aperture_px, mag, lim_mag, snr, is_detection, is_forced, flags, "
            "created_at, updated_at) VALUES (?, 1, 4000, 'h', 61368.125, 0, 4.0, 17.25, NULL, "
            "12.0, 1, 1, 0, 'x', 'x')",
            [fid],
        )
        migrations.apply(s.db)
        lc = s.lightcurve("OLD")
    assert len(lc) == 1
    assert float(lc["calibrated_mag"][0]) == 17.25
    assert float(lc["mjd"][0]) == 61368.125
    assert math.isnan(float(lc["limiting_mag"][0]))
    assert bool(lc["is_detection"][0]) is True
    assert float(lc["aperture_radius"][0]) == 4.0


def test_rule_history_matches_lightcurve(store: Store) -> None:
    _save(store, 0, {"GRB A": None}, band="R", aperture_radii_px=(3.0, 5.0))
    _save(store, 1, {"GRB A": 17.0}, band="V", aperture_radii_px=(3.0, 5.0))
    hist = store.rule_history("GRB A")
    lc = store.lightcurve("GRB A")
    for name in ("frame_id", "aperture_id", "band", "is_detection", "cal_mag_system"):
        assert hist[name].tolist() == lc[name].tolist(), name
    for name in ("mjd", "snr", "calibrated_mag", "calibrated_mag_err", "limiting_mag"):
        assert np.allclose(hist[name], lc[name], equal_nan=True), name
    assert len(store.rule_history("nobody")["frame_id"]) == 0


def test_a_frames_rows_are_inserted_in_target_order_whatever_the_table_order(
    store: Store,
) -> None:
    # ids follow creation (GRB A, VAR B, then "AAA" last); the table lists them by name
    store.upsert_target(Target(name="AAA", ra_deg=150.2, dec_deg=-30.0))
    ids = store.targets.target_ids()
    fid = _save(store, 0, {"AAA": 15.0, "GRB A": 16.0, "VAR B": None}, aperture_radii_px=(3.0, 5.0))
    rows = store.db.execute(
        "SELECT target_id, aperture_px, mag FROM measurements WHERE frame_id = ? "
        "ORDER BY measurement_id",
        [fid],
    ).fetchall()
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert [r[0] for r in rows[:2]] == [ids["GRB A"]] * 2
    assert [r[0] for r in rows[-2:]] == [ids["AAA"]] * 2
    # every row still holds its own target's values (apertures in table order)
    aaa = [r for r in rows if r[0] == ids["AAA"]]
    assert [r[1] for r in aaa] == [3.0, 5.0]
    assert store.lightcurve("AAA")["calibrated_mag"][0] == pytest.approx(15.0, abs=0.5)
