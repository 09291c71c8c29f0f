"""A frame's metadata is stored once: in the ``frames`` columns, ``meta_json`` holds the rest."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from soapd.models import ExposureMeta, Target
from soapd.store import Store
from soapd.store.base import utc_iso
from soapd.store.frame_rows import COLUMN_FIELDS, meta_from_json, meta_to_json
from soapd.store.migrations import migrations
from soapd.testing.lightcurves import target_result

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
REST = {"extra", "gain_e_per_adu", "read_noise_e"}


def _meta(exp_id: int | None, **kw: object) -> ExposureMeta:
    base = {
        "exp_id": exp_id,
        "obs_id": 7 if exp_id else None,
        "telescope": "Prompt5",
        "filter": "rprime",
        "exptime_s": 60.0,
        "mid_time_utc": T0 + timedelta(minutes=exp_id or 0),
        "gain_e_per_adu": 1.5,
        "read_noise_e": 7.5,
        "extra": {"camera": "x", "mid_time_source": "centerTime"},
    }
    return ExposureMeta(**(base | kw))


class _Exp:
    def __init__(self, meta: ExposureMeta) -> None:
        self.exp_id = meta.exp_id
        self.obs_id = meta.obs_id
        self.meta = meta


def _raw(store: Store, frame_id: int) -> dict:
    return next(store.db.query("SELECT * FROM frames WHERE frame_id = ?", [frame_id]))


def test_meta_json_holds_only_what_has_no_column(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        meta = _meta(11)
        (fid,) = store.record_seen([_Exp(meta)])
        local = store.record_local(tmp_path / "a.fits", "sha", 9, meta=_meta(None)).frame_id
        for frame_id, expected in ((fid, meta), (local, _meta(None))):
            raw = _raw(store, frame_id)
            assert set(json.loads(raw["meta_json"])) == REST
            assert raw["telescope"] == "Prompt5"
            assert raw["mid_time_utc"] == utc_iso(expected.mid_time_utc)
            assert store.frame(frame_id).meta == expected


def test_processed_frame_reports_what_processing_established(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as store:
        store.upsert_target(Target(name="A", ra_deg=150.0, dec_deg=-30.0))
        fid = store.record_local(tmp_path / "a.fits", "sha", 9, meta=_meta(None)).frame_id
        mid = T0 + timedelta(seconds=30)
        res = target_result({"A": 17.0}, mid_time_utc=mid, telescope="PROMPT-5", filter_raw="R")
        store.save_result(fid, res, config_hash="h", soapd_version="t", table_path=None)
        meta = store.frame(fid).meta
    assert (meta.telescope, meta.filter, meta.mid_time_utc) == ("PROMPT-5", "R", mid)
    assert (meta.gain_e_per_adu, meta.read_noise_e, meta.extra) == (1.5, 7.5, _meta(1).extra)


def test_m005_moves_old_databases_to_one_copy_and_keeps_the_data(tmp_path: Path) -> None:
    """Rows as the old code wrote them (whole meta in meta_json too) survive the migration."""
    old_insert = (
        "INSERT INTO frames (source, exp_id, obs_id, telescope, filter, mid_time_utc, exptime_s,"
        " meta_json, path, sha256, state, seen_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'x', 'x')"
    )
    seen, local = _meta(21), _meta(None, telescope=None)
    processed_meta = _meta(22)
    orphan = _meta(23, extra={})
    with Store(tmp_path / "old.db", migrate=False) as store:
        migrations.apply(store.db, stop_before="m005_frame_metadata_once")
        rows = [
            # an archive exposure seen, one local file, one processed frame
            ("skynet", seen, None, "seen"),
            ("inbox", local, "b.fits", "downloaded"),
            ("skynet", processed_meta, "c.fits", "processed"),
            # columns left NULL while meta_json had values (never written by soapd,
            # but the migration must not lose them)
            ("skynet", orphan, None, "seen"),
        ]
        for i, (source, meta, path, state) in enumerate(rows):
            blank = meta is orphan
            store.db.execute(
                old_insert,
                [
                    source,
                    None if blank else meta.exp_id,
                    None if blank else meta.obs_id,
                    None if blank else meta.telescope,
                    None if blank else meta.filter,
                    None if blank else utc_iso(meta.mid_time_utc),
                    None if blank else meta.exptime_s,
                    meta_to_json(meta),
                    path,
                    f"sha{i}" if path else None,
                    state,
                ],
            )
        # processing overwrote the columns of frame 3 with the header's values
        store.db.execute(
            "UPDATE frames SET telescope = 'PROMPT-5', filter = 'R', exptime_s = 59.5, "
            "mid_time_utc = ? WHERE frame_id = 3",
            [utc_iso(T0)],
        )
        store.db.execute(
            "INSERT INTO frames (source, state, seen_at, updated_at) "
            "VALUES ('cli', 'seen', 'x', 'x')"
        )
        before = {
            r["frame_id"]: meta_from_json(r["meta_json"])
            for r in store.db.query("SELECT frame_id, meta_json FROM frames")
        }
        migrations.apply(store.db)
        after = {fid: store.frame(fid).meta for fid in before}
        raw = {fid: _raw(store, fid) for fid in before}
    assert after[1] == before[1] == seen
    assert after[2] == before[2] == local
    assert after[3] == replace(
        processed_meta, telescope="PROMPT-5", filter="R", exptime_s=59.5, mid_time_utc=T0
    )
    assert after[4] == before[4] == orphan
    assert (raw[4]["exp_id"], raw[4]["telescope"]) == (23, "Prompt5")
    assert after[5] == before[5] == ExposureMeta()
    for fid in (1, 2, 3, 4):
        assert not set(json.loads(raw[fid]["meta_json"])) & set(COLUMN_FIELDS)
        assert set(json.loads(raw[fid]["meta_json"])) == REST
