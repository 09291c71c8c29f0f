"""`soapd lightcurve NAME` as text: the array path prints what the Table path prints, byte for byte.

The text path reads the lightcurve as arrays on a plain read-only connection
(:class:`soapd.store.readonly.LightcurveReader`), without astropy.table or
sqlite_utils; every other output (and a database the Store would change on
opening) goes through ``Store.lightcurve`` and its Table. Both are compared on one
database holding detections, limits, instrumental-only points, flagged and
not-covered rows, several bands and telescopes, two apertures, reprocessed
(superseded) frames, frames at the same time, NaNs, a magnitude system outside
the packed codes and a stacked epoch.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils

import soapd.cli.lightcurve as lc_cli
from soapd.alerts.gcn import one_per_frame
from soapd.cli import main
from soapd.flags import Flag
from soapd.models import StackRecord, Target
from soapd.output.lctext import first_aperture_rows, text_table
from soapd.store import Store
from soapd.store.migrations import migrations
from soapd.store.readonly import LightcurveReader, known_migrations
from soapd.testing.lightcurves import register_frame, target_result

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
GRB = "GRB 261124A"
VAR = "VAR B"
ROOT = Path(__file__).resolve().parents[3]


def _stack(mid: datetime, members: tuple[int, ...]) -> StackRecord:
    return StackRecord(
        target_name=GRB,
        epoch_key="PROMPT-5|R|e1",
        telescope="PROMPT-5",
        band="R",
        bin_start_utc=mid - timedelta(minutes=5),
        bin_end_utc=mid + timedelta(minutes=5),
        mid_time_utc=mid,
        mean_mid_time_utc=mid,
        start_utc=mid - timedelta(minutes=4),
        stop_utc=mid + timedelta(minutes=4),
        exptime_s=80.0,
        total_exptime_s=80.0 * len(members),
        members=members,
        weights=tuple(1.0 / len(members) for _ in members),
        considered=members,
        lim_mag=20.5,
        n_cal_stars=40,
        cal_catalog="APASS DR9",
        zp_mag=22.0,
        zp_err_mag=0.004,
        zp_scatter_mag=0.05,
        mag_system="Vega",
        best_single_lim_mag=19.5,
        config_hash="h",
    )


def _edit(res, **columns):
    """Return ``res`` with its table's ``columns`` set (each to one value or a list)."""
    table = res.table.copy()
    for name, value in columns.items():
        table[name] = value
    return replace(res, table=table)


def _fill(store: Store) -> None:
    """Store the frames of both targets (see the module doc)."""
    rng = np.random.default_rng(11)
    store.upsert_target(Target(name=GRB, ra_deg=150.0, dec_deg=-30.0, trigger_time_utc=T0))
    store.upsert_target(Target(name=VAR, ra_deg=150.001, dec_deg=-30.0))
    telescopes = ("PROMPT-5", "PROMPT-7", "RRRT")
    bands = ("R", "V", "B", "r'")
    grb_ids = []
    for i in range(24):
        # frames 6 and 7 share a mid time (two telescopes at once)
        mid = T0 + timedelta(minutes=13 * min(i, 6) + 11 * max(i - 7, 0) + 0.5)
        tel, band = telescopes[i % 3], bands[i % 4]
        exptime = (20.0, 80.0, 37.5)[i % 3]
        fid = register_frame(
            store,
            f"f{i:02d}.fits",
            mid_time_utc=mid,
            telescope=tel,
            filter_raw=band,
            exptime_s=exptime,
        )
        mags = {GRB: 15.5 + 0.25 * i if i % 5 else None, VAR: 17.0 + 0.1 * (i % 7)}
        res = target_result(
            mags, mid_time_utc=mid, band=band, telescope=tel, exptime_s=exptime,
            lim_mag=19.0 + 0.1 * i, aperture_radii_px=(3.0, 5.5), rng=rng,
            image_file=f"f{i:02d}.fits",
        )  # fmt: skip
        n = len(res.table)
        if i == 3:  # no zero point: instrumental magnitudes and limits only
            res = _edit(
                res, calibrated_mag=np.nan, calibrated_mag_err=np.nan, limiting_mag=np.nan,
                zeropoint=np.nan, flux_ujy=np.nan, flux_ujy_err=np.nan, cal_mag_system="none",
                limiting_ins_mag=-3.25,
            )  # fmt: skip
        if i == 4:  # the edge buffer: stored, flagged NOT_COVERED, shown on request only
            res = _edit(
                res, flux=np.nan, snr=np.nan, calibrated_mag=np.nan, limiting_mag=np.nan,
                is_detection=False, flag=int(Flag.NOT_COVERED | Flag.NEAR_EDGE),
            )  # fmt: skip
        if i == 8:  # quality flags named in words; a system without a packed code
            flags = [int(Flag.SATURATED), int(Flag.BLENDED | Flag.COSMIC_RAY)] * (n // 2)
            res = _edit(res, flag=flags, cal_mag_system="ST")
        if i == 9:  # NaN signal-to-noise and error on a detection
            res = _edit(res, snr=np.nan, calibrated_mag_err=np.nan)
        store.save_result(fid, res, config_hash="h1", soapd_version="t", table_path=None)
        if i in (2, 10):  # processed again with another configuration: older rows superseded
            again = _edit(res, calibrated_mag=res.table["calibrated_mag"] + 0.125)
            store.save_result(fid, again, config_hash="h2", soapd_version="t", table_path=None)
        grb_ids.append(fid)
    store.save_stack(_stack(T0 + timedelta(minutes=20), tuple(grb_ids[:3])))


@pytest.fixture(name="cfg")
def fixture_cfg(env_db: Path) -> Path:
    """Fill the database of the $SOAPD_CONFIG config (``env_db``); return its path."""
    with Store(env_db) as store:
        _fill(store)
    return env_db


def _both(argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys) -> tuple[str, str]:
    """Return (array path output, Table path output) of ``soapd lightcurve`` with ``argv``."""
    taken: list[bool] = []
    fast = lc_cli._print_text_only

    def spy(*args, **kwargs):
        taken.append(fast(*args, **kwargs))
        return taken[-1]

    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(lc_cli, "_print_text_only", spy)
        assert main(["lightcurve", *argv]) == 0
    assert taken == [True], "the text went through the Table path"
    arrays = capsys.readouterr().out
    with monkeypatch.context() as m:
        m.setattr(lc_cli, "_print_text_only", lambda *a: False)
        assert main(["lightcurve", *argv]) == 0
    return arrays, capsys.readouterr().out


CASES = [
    [GRB],
    [VAR],
    [GRB, "--all-apertures"],
    [VAR, "--all-apertures", "--include-superseded"],
    [GRB, "--include-not-covered"],
    [GRB, "--include-not-covered", "--all-apertures", "--include-superseded"],
    [GRB, "--band", "V"],
    [VAR, "--band", "r'", "--all-apertures"],
    [GRB, "--since", "2026-11-24T04:00:00Z"],
    [GRB, "--band", "I"],  # no point: the heading alone
    [VAR, "--since", "2027-01-01T00:00:00Z"],
    [GRB, "--format", "text"],
]


@pytest.mark.parametrize("argv", CASES, ids=[" ".join(c) for c in CASES])
def test_text_from_arrays_is_the_table_text_byte_for_byte(
    cfg: Path, argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    arrays, table = _both(argv, monkeypatch, capsys)
    assert arrays == table
    assert arrays.startswith("mid_time_utc")


def test_the_database_exercises_what_the_text_shows(
    cfg: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """The comparison above covers every kind of line the text table has."""
    text = "".join(_both(argv, monkeypatch, capsys)[0] for argv in CASES)
    for shown in (
        " +/- ",
        "(instrumental)",
        "> 2",
        "not measured",
        "not covered (edge of frame)",
        "saturated",
        "cosmic ray",
        "t-trig(h)",
        "  mjd  ",
    ):
        assert shown in text, shown
    lines = _both([GRB, "--all-apertures", "--include-superseded"], monkeypatch, capsys)[0]
    with Store(cfg, read_only=True) as store:
        lc = store.lightcurve(GRB, include_superseded=True)
    assert lines.count("\n") == len(lc) + 1
    assert set(lc["cal_mag_system"]) >= {"ST", "none"}
    assert lc["superseded"].any()
    assert not np.isfinite(np.asarray(lc["snr"])).all()


def test_text_to_a_file_is_the_same(cfg: Path, tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["lightcurve", GRB]) == 0
    printed = capsys.readouterr().out
    assert main(["lightcurve", GRB, "--out", str(tmp_path / "lc.txt")]) == 0
    assert (tmp_path / "lc.txt").read_text(encoding="utf-8") == printed


def test_unknown_target_says_so_on_both_paths(cfg: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["lightcurve", "NOPE"]) == 1
    assert "no target named 'NOPE'" in capsys.readouterr().err
    assert main(["lightcurve", "NOPE", "--format", "csv"]) == 1
    assert "no target named 'NOPE'" in capsys.readouterr().err


def test_reader_declines_a_database_the_store_would_change(cfg: Path) -> None:
    """A pending migration or a stale view: the Store path runs, and updates the file."""
    reader = LightcurveReader.open_current(cfg)
    assert reader is not None
    reader.close()
    with sqlite3.connect(cfg) as conn:
        conn.execute("DROP VIEW lightcurve")
    assert LightcurveReader.open_current(cfg) is None
    assert main(["lightcurve", GRB]) == 0  # through the Store, which restores the view
    reader = LightcurveReader.open_current(cfg)
    assert reader is not None
    reader.close()
    last = known_migrations()
    with sqlite3.connect(cfg) as conn:
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = ?", [last[-1]])
    assert LightcurveReader.open_current(cfg) is None


def test_known_migrations_are_the_registered_ones() -> None:
    """The listed names are those sqlite_utils would apply, in order."""
    registered = [m.name for m in migrations.pending(sqlite_utils.Database(memory=True))]
    assert known_migrations() == registered, (
        "a migration was added or renamed: list it in soapd.store.readonly.SCHEMA_MIGRATIONS"
    )


def test_reader_target_and_arrays_are_the_store_ones(cfg: Path) -> None:
    with Store(cfg, read_only=True) as store, LightcurveReader.open_current(cfg) as reader:
        for name in (GRB, VAR):
            target = store.get_target(name)
            assert reader.get_target(name) == target
            assert target is not None
            table = store.lightcurve(name, include_not_covered=True, include_superseded=True)
            arrays = reader.lightcurve_arrays(
                target, include_not_covered=True, include_superseded=True
            )
            assert list(arrays) == table.colnames
            for col, values in arrays.items():
                assert values.dtype == table[col].dtype, col
                np.testing.assert_array_equal(values, np.asarray(table[col]), err_msg=col)
        assert reader.get_target("NOPE") is None


def test_first_aperture_rows_select_as_one_per_frame() -> None:
    """Random frames with shared times and apertures in any order: the same rows, same order."""
    from astropy.table import Table

    rng = np.random.default_rng(3)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        table = Table(
            {
                "frame_id": rng.integers(1, 8, n),
                "aperture_id": rng.integers(0, 3, n),
                "mjd": rng.choice([61000.0, 61000.5, 61001.25], n),
                "row": np.arange(n),
            }
        )
        keep = first_aperture_rows(table["frame_id"], table["aperture_id"], table["mjd"])
        assert keep.tolist() == one_per_frame(table)["row"].tolist()


def test_text_table_reads_a_table_and_its_columns_alike(cfg: Path) -> None:
    with Store(cfg, read_only=True) as store:
        table = store.lightcurve(GRB, include_not_covered=True)
    columns = {name: np.asarray(table[name]) for name in table.colnames}
    assert text_table(columns, T0) == text_table(table, T0)
    assert text_table(columns, None) == text_table(table, None)
    assert text_table(table[:0], None) == text_table({"mjd": np.zeros(0)}, None)


def test_text_command_imports_neither_astropy_table_nor_sqlite_utils(cfg: Path) -> None:
    """The whole process: what made ``soapd lightcurve NAME`` slow is not imported.

    No astropy at all, with or without a trigger time (the trigger's MJD comes from
    :func:`soapd.timeutil.mjd_of`, which calls ERFA without astropy.time).
    """
    code = (
        "import sys\nfrom soapd.cli import main\n"
        f"assert main(['lightcurve', {VAR!r}]) == 0\n"
        "print('NO TRIGGER', [m for m in sys.modules if m.startswith(('astropy', 'sqlite_utils'))],"
        " file=sys.stderr)\n"
        f"assert main(['lightcurve', {GRB!r}]) == 0\n"
        "print('TRIGGER', [m for m in sys.modules if m.startswith(('astropy', 'sqlite_utils'))],"
        " file=sys.stderr)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert "NO TRIGGER []" in done.stderr
    assert "\nTRIGGER []" in done.stderr
    assert done.stdout.count("\n") > 20
