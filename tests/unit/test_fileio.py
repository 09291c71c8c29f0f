"""soapd.fileio: a file appears complete or not at all, and the write is made durable."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from soapd import fileio
from soapd.fileio import (
    atomic_write_bytes,
    atomic_write_text,
    atomic_writer,
    copy_to_part,
    fsync_dir,
    fsync_file,
    publish,
    sha256_file,
    write_part,
)


@pytest.fixture(name="fsyncs")
def fixture_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record what every os.fsync call synced: a file's path, or 'dir:<path>' for a folder."""
    calls: list[str] = []
    real = os.fsync

    def record(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        kind = "dir:" if stat.S_ISDIR(os.fstat(fd).st_mode) else ""
        calls.append(kind + target)
        real(fd)

    monkeypatch.setattr(fileio.os, "fsync", record)
    return calls


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _write_then_fail(path: Path, data: bytes, error: Exception) -> None:
    """Write ``data`` through atomic_writer, then raise ``error`` inside the block."""
    with atomic_writer(path) as fh:
        fh.write(data)
        raise error


def test_atomic_write_bytes_writes_fsyncs_file_then_folder(tmp_path: Path, fsyncs: list[str]):
    out = tmp_path / "tile.npz"
    atomic_write_bytes(out, b"\x00payload\xff")
    assert out.read_bytes() == b"\x00payload\xff"
    assert _leftovers(tmp_path) == ["tile.npz"]
    # the temporary file is fsynced before the rename, the folder after it
    assert len(fsyncs) == 2
    assert fsyncs[0].startswith(str(tmp_path / ".tile.npz."))
    assert fsyncs[0].endswith(".part")
    assert fsyncs[1] == f"dir:{tmp_path}"


def test_atomic_write_text_replaces_an_existing_file(tmp_path: Path, fsyncs: list[str]):
    out = tmp_path / "alert.txt"
    out.write_text("old", encoding="utf-8")
    atomic_write_text(out, "névé 17.42 +/- 0.05\n")
    assert out.read_text(encoding="utf-8") == "névé 17.42 +/- 0.05\n"
    assert _leftovers(tmp_path) == ["alert.txt"]
    assert fsyncs[-1] == f"dir:{tmp_path}"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, fsyncs: list[str]):
    out = tmp_path / "tile.npz"
    out.write_bytes(b"old tile")
    with pytest.raises(OSError, match="disk full"):
        _write_then_fail(out, b"half a ti", OSError(28, "disk full"))
    assert out.read_bytes() == b"old tile"
    assert _leftovers(tmp_path) == ["tile.npz"]
    assert fsyncs == []  # nothing was made durable: nothing was renamed


def test_a_failed_first_write_leaves_nothing(tmp_path: Path):
    out = tmp_path / "alert.json"
    with pytest.raises(ValueError, match="not JSON"):
        _write_then_fail(out, b"{", ValueError("not JSON"))
    assert _leftovers(tmp_path) == []


def test_a_reader_never_sees_a_partial_file(tmp_path: Path):
    out = tmp_path / "frame.fits"
    out.write_bytes(b"A" * 10)
    with atomic_writer(out) as fh:
        fh.write(b"B" * 5)
        fh.flush()
        assert out.read_bytes() == b"A" * 10  # mid-write, the old content is all there is
        fh.write(b"B" * 5)
    assert out.read_bytes() == b"B" * 10


def test_atomic_write_gives_umask_permissions_or_the_mode_asked(tmp_path: Path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a", b"x")
        atomic_write_bytes(tmp_path / "b", b"x", mode=0o600)
        (tmp_path / "c").write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o600
    assert (tmp_path / "a").stat().st_mode == (tmp_path / "c").stat().st_mode


def test_atomic_write_into_a_missing_folder_raises_and_creates_nothing(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(tmp_path / "nope" / "x", b"x")
    assert _leftovers(tmp_path) == []


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # several read blocks
    (tmp_path / "x").write_bytes(data)
    assert sha256_file(tmp_path / "x") == (hashlib.sha256(data).hexdigest(), len(data))
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(tmp_path / "empty") == (hashlib.sha256(b"").hexdigest(), 0)


def test_write_part_hashes_what_it_writes_and_fsyncs_it(tmp_path: Path, fsyncs: list[str]):
    part = tmp_path / "r1.fits.part"
    chunks = [b"abc", b"", b"def" * 1000]
    digest, size = write_part(part, chunks)
    data = b"".join(chunks)
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert part.read_bytes() == data
    assert fsyncs == [str(part)]


def test_write_part_does_not_fsync_when_the_chunks_fail(tmp_path: Path, fsyncs: list[str]):
    def broken() -> Iterator[bytes]:
        yield b"abc"
        raise ConnectionError("closed")

    part = tmp_path / "r1.fits.part"
    with pytest.raises(ConnectionError):
        write_part(part, broken())
    assert fsyncs == []
    assert part.read_bytes() == b"abc"  # left for the caller to remove


def test_copy_to_part_copies_hashes_and_fsyncs(tmp_path: Path, fsyncs: list[str]):
    src = tmp_path / "in.fits"
    src.write_bytes(b"SIMPLE  =" + bytes(5000))
    part = tmp_path / ".x.part"
    assert copy_to_part(src, part) == sha256_file(src)
    assert part.read_bytes() == src.read_bytes()
    assert fsyncs == [str(part)]


def test_fsync_dir_syncs_the_folder(tmp_path: Path, fsyncs: list[str]):
    fsync_dir(tmp_path)
    assert fsyncs == [f"dir:{tmp_path}"]


def test_publish_fsyncs_the_part_renames_it_and_fsyncs_the_folder(
    tmp_path: Path, fsyncs: list[str]
):
    part, final = tmp_path / "7.parquet.part", tmp_path / "7.parquet"
    final.write_bytes(b"old")
    part.write_bytes(b"new table")  # as a path-based writer (pyarrow) leaves it
    publish(part, final)
    assert final.read_bytes() == b"new table"
    assert _leftovers(tmp_path) == ["7.parquet"]
    assert fsyncs == [str(part), f"dir:{tmp_path}"]


def test_publish_of_an_already_synced_part_only_renames_and_fsyncs_the_folder(
    tmp_path: Path, fsyncs: list[str]
):
    part, final = tmp_path / "r1.fits.part", tmp_path / "r1.fits"
    write_part(part, [b"SIMPLE"])
    publish(part, final, part_synced=True)
    assert final.read_bytes() == b"SIMPLE"
    assert fsyncs == [str(part), f"dir:{tmp_path}"]  # write_part's own fsync, then the folder


def test_fsync_file_syncs_that_file(tmp_path: Path, fsyncs: list[str]):
    (tmp_path / "x").write_bytes(b"x")
    fsync_file(tmp_path / "x")
    assert fsyncs == [str(tmp_path / "x")]


def test_pid_alive_and_folder_usage(tmp_path) -> None:
    import os
    import subprocess
    import sys

    from soapd.fileio import folder_usage, pid_alive

    assert pid_alive(os.getpid())
    assert not pid_alive(0)
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    assert not pid_alive(int(done.stdout))  # exited and reaped
    assert folder_usage(tmp_path / "absent") == {"files": 0, "bytes": 0}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"12345")
    (tmp_path / "y.bin").write_bytes(b"67")
    assert folder_usage(tmp_path) == {"files": 2, "bytes": 7}
