"""The checker process (#15): decompression and pixel reads outside the daemon, within a limit.

A 1 MB gzip file of zeros behind a FITS header decompresses to 1 GiB; such a
file once took the daemon to 2.1 GB. Here it is stopped at the limit in the
checker process, with the reason, and the calling process's memory does not
move. The checker's environment holds no credential.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import hashlib
import io
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from soapd.config import Config
from soapd.errors import FrameRejected, FrameUnreadable
from soapd.ingest.checker import FileChecker, _result, mb_to_bytes

MB = 1024 * 1024


def _fits_bytes(shape: tuple[int, int] = (32, 32)) -> bytes:
    buf = io.BytesIO()
    data = np.arange(shape[0] * shape[1], dtype=np.float32).reshape(shape)
    fits.PrimaryHDU(data).writeto(buf)
    return buf.getvalue()


def gzip_bomb(path: Path, *, side_px: int = 32768) -> Path:
    """Write a ~1 MB .fits.gz: a valid header for ``side_px``^2 8-bit pixels, then zeros."""
    header = fits.PrimaryHDU(np.zeros((1, 1), dtype=np.uint8)).header
    header["NAXIS1"] = header["NAXIS2"] = side_px
    with gzip.GzipFile(path, "wb", compresslevel=9) as out:
        out.write(header.tostring().encode())
        zeros = bytes(MB)
        for _ in range(side_px * side_px // MB):
            out.write(zeros)
    return path


def _rss_bytes(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(name="bomb", scope="module")
def fixture_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One gzip bomb for the module (writing it compresses 1 GiB)."""
    return gzip_bomb(tmp_path_factory.mktemp("bomb") / "bomb.fits.gz")


@pytest.fixture(name="checker")
def fixture_checker() -> Iterator[FileChecker]:
    """A checker process of its own (closed after the test)."""
    checker = FileChecker(timeout_s=60.0)
    yield checker
    checker.close()


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress])
def test_unpack_gives_the_plain_files_sha256(
    tmp_path: Path, checker: FileChecker, compress: object
) -> None:
    assert callable(compress)
    plain = _fits_bytes()
    src = tmp_path / "a.fits.x"
    src.write_bytes(compress(plain))
    got = checker.unpack(src, tmp_path / "out.fits", max_bytes=MB)
    assert got.sha256 == hashlib.sha256(plain).hexdigest()
    assert got.size_bytes == len(plain)
    assert got.check.shape == (32, 32)
    assert (tmp_path / "out.fits").read_bytes() == plain


def test_gzip_bomb_is_stopped_at_the_limit_outside_this_process(
    tmp_path: Path, checker: FileChecker, bomb: Path
) -> None:
    assert bomb.stat().st_size < 1.1 * MB  # a 1 MB file ...
    checker.check(_write(tmp_path / "warm.fits", _fits_bytes()), max_bytes=MB)  # child started
    before = _rss_bytes()
    with pytest.raises(FrameRejected) as info:
        checker.unpack(bomb, tmp_path / "out.fits", max_bytes=mb_to_bytes(64))
    message = str(info.value)
    assert "bomb.fits.gz decompresses to more than 64 MB" in message
    assert "[frame] max_decompressed_mb = 64" in message
    assert not (tmp_path / "out.fits").exists()
    # ... that holds 1 GiB of zeros: none of it passed through this process.
    assert _rss_bytes() - before < 50 * MB


def test_declared_size_of_a_tile_compressed_image_is_checked_unread(
    tmp_path: Path, checker: FileChecker
) -> None:
    path = tmp_path / "z.fits.fz"
    hdu = fits.CompImageHDU(np.zeros((2048, 2048), dtype=np.float32))  # 16 MiB of pixels
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path)
    assert path.stat().st_size < MB
    with pytest.raises(
        FrameRejected, match=r"z\.fits\.fz: its headers declare data of more than 8 MB"
    ):
        checker.check(path, max_bytes=mb_to_bytes(8))
    assert checker.check(path, max_bytes=mb_to_bytes(32)).shape == (2048, 2048)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (gzip.compress(gzip.compress(_fits_bytes())), "gzip-compressed data inside"),
        (gzip.compress(_fits_bytes())[:-40], "corrupt gzip data|truncated"),
        (gzip.compress(b"<html>not a frame</html>"), "does not start with SIMPLE"),
    ],
)
def test_bad_compressed_files_are_unreadable(
    tmp_path: Path, checker: FileChecker, data: bytes, message: str
) -> None:
    src = _write(tmp_path / "bad.fits.gz", data)
    with pytest.raises(FrameUnreadable, match=message):
        checker.unpack(src, tmp_path / "out.fits", max_bytes=MB)
    assert not (tmp_path / "out.fits").exists()


def test_a_compressed_file_is_never_checked_in_place(tmp_path: Path, checker: FileChecker) -> None:
    """astropy would decompress a gzip stream in memory: check() refuses it instead."""
    src = _write(tmp_path / "a.fits", gzip.compress(_fits_bytes()))
    with pytest.raises(FrameUnreadable, match="gzip-compressed data inside"):
        checker.check(src, max_bytes=MB)


def test_checker_environment_has_no_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOAPD_SKYNET_TOKEN", "tok-secret-for-the-daemon-only")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("SOAPD_SMTP_PASSWORD", "hunter2")
    checker = FileChecker()
    try:
        checker.check(_write(tmp_path / "a.fits", _fits_bytes()), max_bytes=MB)
        assert checker.pid is not None
        environ = Path(f"/proc/{checker.pid}/environ").read_bytes()
    finally:
        checker.close()
    assert b"tok-secret-for-the-daemon-only" not in environ
    assert b"hunter2" not in environ
    assert b"CREDENTIALS_DIRECTORY=" not in environ
    assert b"OPENBLAS_NUM_THREADS=" in environ


def test_a_checker_that_dies_fails_that_file_only(
    tmp_path: Path, checker: FileChecker, bomb: Path
) -> None:
    good = _write(tmp_path / "a.fits", _fits_bytes())
    checker.check(good, max_bytes=MB)
    pid = checker.pid
    assert pid is not None
    killer = threading.Timer(0.3, os.kill, args=(pid, signal.SIGKILL))
    killer.start()
    try:
        with pytest.raises(FrameRejected, match="checker process was killed by signal 9"):
            checker.unpack(bomb, tmp_path / "out.fits", max_bytes=2**40)
    finally:
        killer.cancel()
        killer.join()
    assert not (tmp_path / "out.fits").exists()
    assert checker.check(good, max_bytes=MB).shape == (32, 32)  # a new child took over
    assert checker.pid != pid
    assert checker.started == 2


def test_a_check_past_the_timeout_is_stopped(tmp_path: Path, bomb: Path) -> None:
    checker = FileChecker(timeout_s=0.2)
    try:
        with pytest.raises(FrameRejected, match=r"took more than 0\.2 s"):
            checker.unpack(bomb, tmp_path / "out.fits", max_bytes=2**40)
        assert checker.pid is None  # killed
    finally:
        checker.close()
    assert not (tmp_path / "out.fits").exists()


def test_io_errors_of_the_child_come_back_as_oserror() -> None:
    answer = {
        "ok": False,
        "kind": "oserror",
        "errno": errno.ENOSPC,
        "message": "x",
        "filename": "f",
    }
    with pytest.raises(OSError, match="No space left") as info:
        _result(answer)
    assert info.value.errno == errno.ENOSPC


def test_max_decompressed_mb_is_not_in_the_fingerprint(config: object) -> None:
    assert callable(config)
    base: Config = config()
    bigger: Config = config(frame={"max_decompressed_mb": 4096.0})
    assert base.frame.max_decompressed_mb == 1024.0
    assert bigger.fingerprint() == base.fingerprint()  # no reprocessing after raising it


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
