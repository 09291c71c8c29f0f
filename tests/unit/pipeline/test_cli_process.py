"""``soapd process``: directories, bad files, exit codes, outputs, targets, progress bar."""

from __future__ import annotations

import io

import numpy as np
import pytest

from soapd.cli import main
from soapd.cli.process import expand_paths, parse_target
from soapd.errors import ConfigError
from soapd.output.export import read_table
from soapd.output.progress import ProgressBar
from soapd.testing.synth import make_frame, write_frame


@pytest.fixture(name="frames_dir")
def fixture_frames_dir(tmp_path):
    """A folder with two good frames, a truncated one, a text file and a non-FITS name."""
    d = tmp_path / "frames"
    d.mkdir()
    for i in range(2):
        f = make_frame((128, 128), stars=10, seed=i)
        write_frame(d / f"good{i}.fits", f.data_adu, f.header)
    good = (d / "good0.fits").read_bytes()
    (d / "cut.fits").write_bytes(good[:9000])
    (d / "notes.fits.gz").write_bytes(b"not gzip at all")
    (d / "readme.txt").write_text("ignored")
    return d


def test_directory_with_bad_files_processes_the_others_and_exits_1(
    frames_dir, tmp_path, capsys
) -> None:
    out = tmp_path / "rows.ecsv"
    code = main(["process", str(frames_dir), "--zeropoint", "23", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if line.startswith("soapd: error:")]
    assert len(errors) == 2
    assert any("cut.fits" in e and "truncated" in e for e in errors)
    assert any("notes.fits.gz" in e and "not a readable FITS" in e for e in errors)
    assert "2 of 4 file(s) failed" in captured.err
    assert "good0.fits: V 60 s" in captured.out
    table = read_table(out)
    assert set(table["image_file"]) == {"good0.fits", "good1.fits"}
    assert "readme" not in captured.out + captured.err


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".json"])
def test_all_good_files_exit_0_and_write_format_by_suffix(frames_dir, tmp_path, suffix) -> None:
    out = tmp_path / f"rows{suffix}"
    files = [str(frames_dir / "good0.fits"), str(frames_dir / "good1.fits")]
    assert main(["process", *files, "--out", str(out)]) == 0
    assert len(read_table(out)) > 10


def test_targets_are_measured_and_summarised(tmp_path, capsys) -> None:
    f = make_frame((200, 200), stars=None, seed=1)
    path = write_frame(tmp_path / "one.fits", f.data_adu, f.header)
    code = main(
        [
            "process",
            str(path),
            "--target",
            "blank=150.0,20.0",
            "--target",
            "far=10:00:00,-30:00:00",
            "--zeropoint",
            "23",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "blank r=" in out
    assert "upper limit" in out
    assert "far: not covered (off frame)" in out


def test_target_on_frame_without_wcs_is_an_error(tmp_path, capsys) -> None:
    f = make_frame((128, 128), stars=10, seed=1, with_wcs=False)
    path = write_frame(tmp_path / "nowcs.fits", f.data_adu, f.header)
    assert main(["process", str(path)]) == 0
    assert main(["process", str(path), "--target", "T=1,2"]) == 1
    assert "no WCS" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("header_change", "message"),
    [
        ({"omit_keys": ("EXPTIME",)}, "no exposure time"),
        ({"omit_keys": ("DATE-OBS",)}, "no observation time"),
        ({"nan_fraction": 1.0}, "NaN"),
    ],
)
def test_bad_headers_and_pixels_exit_1_with_message(
    tmp_path, capsys, header_change, message
) -> None:
    f = make_frame((64, 64), stars=3, seed=1, **header_change)
    path = write_frame(tmp_path / "bad.fits", f.data_adu, f.header)
    assert main(["process", str(path)]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert err.count("soapd: error:") == 1


def test_missing_gain_falls_back_to_config_and_says_so(tmp_path, capsys) -> None:
    f = make_frame((128, 128), stars=10, seed=1, omit_keys=("GAIN",))
    path = write_frame(tmp_path / "nogain.fits", f.data_adu, f.header)
    assert main(["process", str(path)]) == 0
    assert "no GAIN in the header" in capsys.readouterr().out


def test_bad_arguments_are_config_errors(tmp_path, capsys) -> None:
    with pytest.raises(ConfigError):
        parse_target("nonsense")
    with pytest.raises(ConfigError, match="Dec"):
        parse_target("x=10,95")
    assert parse_target("GRB=10:00:00,+20:00:00").ra_deg == pytest.approx(150.0)
    f = make_frame((64, 64), stars=3, seed=1)
    path = write_frame(tmp_path / "a.fits", f.data_adu, f.header)
    assert main(["process", str(path), "--out", str(tmp_path / "rows.xlsx")]) == 1
    assert main(["process", str(path), "--target", "oops"]) == 2
    assert main(["process", str(tmp_path / "nothing")]) == 1


def test_expand_paths_lists_fits_suffixes_only(frames_dir) -> None:
    names = [p.name for p in expand_paths([str(frames_dir)])]
    assert names == ["cut.fits", "good0.fits", "good1.fits", "notes.fits.gz"]


def test_progress_bar_draws_only_on_a_tty() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    plain = io.StringIO()
    with ProgressBar(3, stream=plain) as bar:
        for _ in range(3):
            bar.advance()
    assert plain.getvalue() == ""
    tty = Tty()
    with ProgressBar(3, label="frames", stream=tty) as bar:
        bar.advance()
    assert "1/3 frames" in tty.getvalue()
    assert np.isclose(bar.done, 1)


def test_user_values_win_over_a_wrong_or_silent_header(tmp_path, capsys) -> None:
    """--exptime for a header without one; --filter over a filter-wheel code; --gain."""
    f = make_frame((128, 128), stars=10, seed=1, omit_keys=("EXPTIME",))
    f.header["FILTER"] = "48"  # a wheel position, not a band
    path = write_frame(tmp_path / "x.fits", f.data_adu, f.header)
    assert main(["process", str(path), "--zeropoint", "23"]) == 1
    assert "give it: soapd process --exptime SECONDS" in capsys.readouterr().err
    out = tmp_path / "rows.ecsv"
    argv = ["process", str(path), "--zeropoint", "23", "--out", str(out)]
    assert main([*argv, "--exptime", "60", "--filter", "V", "--gain", "3.0"]) == 0
    table = read_table(out)
    meta = table.meta["frames"][0]
    assert (meta["filter_raw"], meta["gain_e_per_adu"], meta["gain_source"]) == ("V", 3.0, "user")
    assert set(table["band"]) == {"V"}
    assert set(table["exptime"]) == {60.0}
    with pytest.raises(SystemExit):
        main([*argv, "--exptime", "-1"])
    assert "--exptime: -1 must be a positive number" in capsys.readouterr().err


def test_a_frame_the_daemon_downloaded_gets_the_archive_metadata(tmp_path, capsys) -> None:
    """The ledger knows the file by checksum: its archive gain is used, as the daemon did."""
    from soapd.config import load_config
    from soapd.fileio import sha256_file
    from soapd.models import ExposureMeta
    from soapd.skynet.records import Exposure
    from soapd.store import Store

    cfg = tmp_path / "soapd.toml"
    cfg.write_text(f'[paths]\nstate_dir = "{tmp_path / "state"}"\n')
    f = make_frame((128, 128), stars=10, seed=2, omit_keys=("GAIN", "RDNOISE"))
    path = write_frame(tmp_path / "r42.fits", f.data_adu, f.header)
    meta = ExposureMeta(exp_id=42, obs_id=7, gain_e_per_adu=2.5, read_noise_e=9.0)
    digest, size = sha256_file(path)
    with Store(load_config(cfg).paths.db_path) as store:
        (fid,) = store.record_seen([Exposure(exp_id=42, obs_id=7, state="archived", meta=meta)])
        store.mark_downloaded(fid, path, digest, size)
    out = tmp_path / "rows.ecsv"
    argv = ["process", str(path), "--zeropoint", "23", "--out", str(out)]
    assert main([*argv, "--config", str(cfg)]) == 0
    known = read_table(out).meta["frames"][0]
    assert (known["gain_e_per_adu"], known["gain_source"]) == (2.5, "archive")
    assert known["read_noise_e"] == 9.0
    # Without the daemon's state the header has no gain: the config's default, said so.
    assert main(argv) == 0
    alone = read_table(out).meta["frames"][0]
    assert alone["gain_source"] == "config:gain_e_per_adu"
    # --gain still wins over the archive.
    assert main([*argv, "--config", str(cfg), "--gain", "4"]) == 0
    assert read_table(out).meta["frames"][0]["gain_e_per_adu"] == 4.0


def test_jobs_2_prints_and_writes_exactly_what_jobs_1_does(frames_dir, tmp_path, capsys) -> None:
    """The worker pool changes nothing visible: same lines, same order, same rows, same code."""
    for i in range(2, 5):  # more frames than workers, so results arrive out of order
        f = make_frame((128 + 32 * i, 128), stars=10 + i, seed=i)
        write_frame(frames_dir / f"good{i}.fits", f.data_adu, f.header)
    runs = {}
    for jobs in (1, 2):
        out = tmp_path / f"rows{jobs}.ecsv"
        code = main(
            [
                "process",
                str(frames_dir),
                "--zeropoint",
                "23",
                "--jobs",
                str(jobs),
                "--out",
                str(out),
            ]
        )
        captured = capsys.readouterr()
        runs[jobs] = (code, captured.out.replace(str(out), "OUT"), captured.err, read_table(out))
    code, stdout, stderr, table = runs[1]
    assert code == 1
    assert stdout.count(": V 60 s") == 5
    assert runs[2][:3] == (code, stdout, stderr)
    assert runs[2][3].colnames == table.colnames
    assert runs[2][3].meta == table.meta
    for name in table.colnames:
        np.testing.assert_array_equal(np.asarray(runs[2][3][name]), np.asarray(table[name]))


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_jobs_must_be_a_positive_whole_number(frames_dir, value, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["process", str(frames_dir), "--jobs", value])
    assert exc.value.code == 2
    assert "--jobs" in capsys.readouterr().err
