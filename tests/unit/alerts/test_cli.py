"""Tests of `soapd targets`, `soapd lightcurve` and `soapd extract` (and backfill)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from soapd.cli import main
from soapd.output.export import read_table, write_table
from soapd.store import Store
from soapd.testing.lightcurves import register_frame, target_result
from soapd.timeutil import mjd_of

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def test_targets_add_list_remove(env_db: Path, capsys) -> None:
    assert (
        main(
            [
                "targets",
                "add",
                "--trigger-time",
                "2026-11-24T03:00:00Z",
                "--rule",
                "change_min_mag=0.5",
                "--",
                "GRB 261124A",
                "10:00:00",
                "-30:30:00",
            ]
        )
        == 0
    )
    assert main(["targets", "add", "VAR", "150.5", "2.25"]) == 0
    assert main(["targets", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.split("\n", 2)[2])
    grb = next(r for r in rows if r["name"] == "GRB 261124A")
    assert grb["ra_deg"] == pytest.approx(150.0)
    assert grb["dec_deg"] == pytest.approx(-30.5)
    assert grb["rules"] == {"change_min_mag": 0.5}
    assert grb["trigger_time_utc"].startswith("2026-11-24T03:00:00")
    assert main(["targets", "remove", "VAR"]) == 0
    assert main(["targets", "remove", "VAR2"]) == 1
    capsys.readouterr()
    assert main(["targets", "list", "--all"]) == 0
    out = capsys.readouterr().out
    assert "VAR " in out
    assert " no " in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["targets", "add", "X", "1", "95"], "Dec must be"),
        (["targets", "add", "X", "nonsense", "1"], "cannot read the position"),
        (["targets", "add", "X", "1", "1", "--rule", "foo=1"], "unknown alert rule key"),
        (["targets", "add", "X", "1", "1", "--rule", "change_min_mag"], "key=value"),
        (["targets", "add", "X", "1", "1", "--trigger-time", "soon"], "ISO-8601"),
        (["lightcurve", "nobody"], "no soapd database"),
    ],
)
def test_cli_bad_input_gives_one_line_error(env_db: Path, capsys, argv, message) -> None:
    assert main(argv) in (1, 2)
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def _fill(db: Path) -> None:
    with Store(db) as store:
        for i, mag in enumerate([None, 17.0, 17.4]):
            mid = T0 + timedelta(hours=i + 1)
            fid = register_frame(store, f"f{i}", mid_time_utc=mid)
            res = target_result({"GRB 261124A": mag}, mid_time_utc=mid, aperture_radii_px=(3, 6))
            store.save_result(fid, res, config_hash="h", soapd_version="t", table_path=None)


@pytest.mark.parametrize("fmt", ["csv", "ecsv", "parquet", "json"])
def test_lightcurve_export_formats(env_db: Path, tmp_path: Path, fmt: str) -> None:
    main(["targets", "add", "GRB 261124A", "150", "-30", "--trigger-time", T0.isoformat()])
    _fill(env_db)
    out = tmp_path / f"lc.{fmt}"
    assert (
        main(["lightcurve", "GRB 261124A", "--out", str(out), "--plot", str(tmp_path / "lc.png")])
        == 0
    )
    back = read_table(out)
    assert back["is_detection"].tolist() == [False, True, True]  # one aperture per frame
    assert (tmp_path / "lc.png").stat().st_size > 1000
    assert (
        main(["lightcurve", "GRB 261124A", "--all-apertures", "--format", fmt, "--out", str(out)])
        == 0
    )
    assert len(read_table(out)) == 6


def test_lightcurve_text_and_gcn_output(env_db: Path, tmp_path: Path, capsys) -> None:
    main(["targets", "add", "GRB 261124A", "150", "-30", "--trigger-time", T0.isoformat()])
    _fill(env_db)
    capsys.readouterr()
    assert main(["lightcurve", "GRB 261124A", "--band", "R"]) == 0
    text = capsys.readouterr().out
    assert "> 19.50" in text
    assert "17.000 +/- " in text
    assert (
        main(["lightcurve", "GRB 261124A", "--format", "gcn", "--out", str(tmp_path / "c.txt")])
        == 0
    )
    assert "1 x 80" in (tmp_path / "c.txt").read_text()
    doc = json.loads((tmp_path / "c.txt.json").read_text())  # sidecar: never c.json
    # GCN schema (boom/alert): detections carry "mag", upper limits only "limiting_mag".
    assert ["mag" in p for p in doc["data"]["photometry"]] == [False, True, True]
    assert not (tmp_path / "c.json").exists()
    capsys.readouterr()
    assert main(["lightcurve", "GRB 261124A", "--since", "2026-11-24T05:30:00Z"]) == 0
    assert capsys.readouterr().out.count("+/-") == 1


def test_lightcurve_tables_go_to_stdout_without_out(env_db: Path, tmp_path: Path, capsys) -> None:
    """`--format csv|ecsv|json` with no --out writes to standard output (#14)."""
    main(["targets", "add", "GRB 261124A", "150", "-30", "--trigger-time", T0.isoformat()])
    _fill(env_db)
    for fmt in ("csv", "ecsv", "json"):
        capsys.readouterr()
        assert main(["lightcurve", "GRB 261124A", "--band", "R", "--format", fmt]) == 0
        out = capsys.readouterr().out
        path = tmp_path / f"lc.{fmt}"
        path.write_text(out)
        back = read_table(path, fmt)
        assert len(back) == 3, fmt
        assert "calibrated_mag" in back.colnames
    assert main(["lightcurve", "GRB 261124A", "--format", "parquet"]) == 1
    assert "give --out FILE" in capsys.readouterr().err


def test_gcn_sidecar_never_overwrites_a_file_the_user_did_not_name(
    env_db: Path, tmp_path: Path
) -> None:
    main(["targets", "add", "GRB 261124A", "150", "-30", "--trigger-time", T0.isoformat()])
    _fill(env_db)
    mine = tmp_path / "X.json"
    mine.write_text("precious")
    assert (
        main(["lightcurve", "GRB 261124A", "--format", "gcn", "--out", str(tmp_path / "X.gcn")])
        == 0
    )
    assert mine.read_text() == "precious"
    assert json.loads((tmp_path / "X.gcn.json").read_text())


def _field_table(mid: datetime, sources: list[tuple[float, float, float]], name: str):
    """A field-wide result table: extracted (not forced) sources at (ra, dec, mag)."""
    mags = {f"s{i}": m for i, (_, _, m) in enumerate(sources)}
    pos = {f"s{i}": (ra, dec) for i, (ra, dec, _) in enumerate(sources)}
    res = target_result(mags, positions=pos, mid_time_utc=mid, image_file=name)
    t = res.table
    t["is_forced"] = False
    t["target_name"] = ""
    t["mjd"] = mjd_of(mid)
    return res, t


def test_extract_and_backfill_from_field_tables(env_db: Path, tmp_path: Path, capsys) -> None:
    ra0, dec0 = 150.0, -30.0
    around = [
        (ra0 + 0.05, dec0 + 0.05, 15.0),
        (ra0 - 0.05, dec0 - 0.05, 15.5),
        (ra0 + 0.05, dec0 - 0.05, 16.0),
    ]
    frames = [
        [(ra0 + 0.5 / 3600, dec0, 17.0), *around],  # detected 0.5" away
        around,  # covered, nothing there: a limit
        [
            (ra0 + 1.0, dec0 + 1.0, 15.0),
            (ra0 + 1.1, dec0 + 1.1, 15.0),
            (ra0 + 1.2, dec0 + 1.0, 15.0),
        ],  # elsewhere on the sky: skipped
    ]
    with Store(env_db) as store:
        for i, srcs in enumerate(frames):
            mid = T0 + timedelta(hours=i)
            fid = register_frame(store, f"f{i}", mid_time_utc=mid)
            res, table = _field_table(mid, srcs, f"f{i}.fits")
            path = write_table(table, tmp_path / f"f{i}.parquet")
            store.save_result(fid, res, config_hash="h", soapd_version="t", table_path=str(path))
        # A damaged field-wide table is skipped with a warning, not fatal.
        fid = register_frame(store, "broken", mid_time_utc=T0 + timedelta(hours=5))
        res, _ = _field_table(T0 + timedelta(hours=5), around, "broken.fits")
        (tmp_path / "broken.parquet").write_bytes(b"not parquet")
        store.save_result(
            fid,
            res,
            config_hash="h",
            soapd_version="t",
            table_path=str(tmp_path / "broken.parquet"),
        )
    out = tmp_path / "x.ecsv"
    assert main(["extract", "150.0", "-30.0", "--radius-arcsec", "2", "--out", str(out)]) == 0
    lc = read_table(out)
    assert lc["is_detection"].tolist() == [True, False]
    assert float(lc["calibrated_mag"][0]) == pytest.approx(17.0)
    assert float(lc["limiting_mag"][1]) == pytest.approx(19.5)
    assert main(["extract", "10", "10"]) == 1
    assert main(["targets", "add", "LATE", "150.0", "-30.0", "--backfill"]) == 0
    assert "backfilled 2 frame(s)" in capsys.readouterr().out
    with Store(env_db) as store:
        back = store.lightcurve("LATE")
    assert back["is_detection"].tolist() == [True, False]
    assert np.isfinite(back["limiting_mag"]).all()


def test_lightcurve_log_time_plot_needs_a_trigger_time(
    env_db: Path, tmp_path: Path, capsys
) -> None:
    main(["targets", "add", "GRB 261124A", "150", "-30"])
    _fill(env_db)
    png = tmp_path / "log.png"
    argv = ["lightcurve", "GRB 261124A", "--plot", str(png), "--log-time"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--log-time needs the target's trigger time" in err
    assert "soapd targets set 'GRB 261124A' --trigger-time" in err
    assert not png.exists()
    assert main(["targets", "set", "GRB 261124A", "--trigger-time", T0.isoformat()]) == 0
    assert main(argv) == 0
    assert png.stat().st_size > 1000
