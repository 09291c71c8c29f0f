"""register_file and check_fits: atomic copies into the frames folder, identity by SHA-256."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from soapd import fileio
from soapd.errors import FrameUnreadable
from soapd.ingest.files import register_file
from soapd.ingest.fitscheck import check_fits, safe_filename
from soapd.testing.synth import make_frame, write_frame


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _frame_file(path: Path, *, shape: tuple[int, int] = (32, 32), seed: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = make_frame(shape, stars=2, seed=seed)
    return write_frame(path, frame.data_adu, frame.header)


def test_register_copy_keeps_original_and_stores_by_checksum(
    tmp_path: Path, fits_payload: bytes
) -> None:
    src = _write(tmp_path / "inbox" / "night 1.fits", fits_payload)
    got = register_file(src, tmp_path / "frames")
    digest = hashlib.sha256(fits_payload).hexdigest()
    assert got.sha256 == digest
    assert got.size_bytes == len(fits_payload)
    assert got.path == tmp_path / "frames" / f"{digest[:16]}_night_1.fits"
    assert got.path.read_bytes() == fits_payload
    assert src.exists()
    assert got.original == src
    assert not got.already_present
    assert got.check.shape == (32, 32)
    assert [p.name for p in (tmp_path / "frames").iterdir()] == [got.path.name]


def test_register_fsyncs_the_copy_before_and_the_folder_after_the_rename(
    tmp_path: Path, fits_payload: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real = os.fsync

    def record(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(fileio.os, "fsync", record)
    got = register_file(_write(tmp_path / "inbox" / "a.fits", fits_payload), tmp_path / "frames")
    assert len(synced) == 2
    assert synced[0].endswith(".part")  # the copy, under its temporary name
    assert Path(synced[0]).parent == tmp_path / "frames"
    assert synced[1] == str(tmp_path / "frames")  # the folder, after the rename
    assert got.path.read_bytes() == fits_payload


def test_register_move_removes_original(tmp_path: Path, fits_payload: bytes) -> None:
    src = _write(tmp_path / "inbox" / "a.fits", fits_payload)
    got = register_file(src, tmp_path / "frames", action="move")
    assert not src.exists()
    assert got.path.read_bytes() == fits_payload


def test_register_same_content_twice_is_one_identity_one_file(
    tmp_path: Path, fits_payload: bytes
) -> None:
    frames = tmp_path / "frames"
    first = register_file(_write(tmp_path / "in" / "a.fits", fits_payload), frames)
    second = register_file(
        _write(tmp_path / "in" / "copy_of_a.fit", fits_payload), frames, action="move"
    )
    assert second.sha256 == first.sha256
    assert second.path == first.path
    assert second.already_present
    assert not (tmp_path / "in" / "copy_of_a.fit").exists()
    assert len(list(frames.iterdir())) == 1


def test_register_different_content_same_name_are_two_frames(
    tmp_path: Path, fits_payload: bytes
) -> None:
    frames = tmp_path / "frames"
    first = register_file(_write(tmp_path / "in1" / "a.fits", fits_payload), frames)
    second = register_file(_frame_file(tmp_path / "in2" / "a.fits"), frames)
    assert second.sha256 != first.sha256
    assert second.path != first.path
    assert len(list(frames.iterdir())) == 2


@pytest.mark.parametrize("suffix", [".fits.gz", ".fits.bz2", ".fits.fz"])
def test_register_compressed_frames_are_accepted(tmp_path: Path, suffix: str) -> None:
    src = _frame_file(tmp_path / "in" / f"c{suffix}", shape=(24, 24))
    got = register_file(src, tmp_path / "frames")
    # gzip and bzip2 are stored decompressed (#15: one identity with the plain file);
    # a tile-compressed .fz is FITS already and is kept as it is.
    stored = "_c.fits.fz" if suffix == ".fits.fz" else "_c.fits"
    assert got.path.name.endswith(stored)
    assert got.unpacked == {".fits.gz": "gzip", ".fits.bz2": "bzip2"}.get(suffix)
    assert got.check.shape == (24, 24)
    assert got.check.hdu_index == (1 if suffix == ".fits.fz" else 0)


def test_register_not_fits_is_unreadable_and_leaves_no_trace(tmp_path: Path) -> None:
    src = _write(tmp_path / "in" / "bad.fits", b"<html>nope</html>" * 200)
    frames = tmp_path / "frames"
    with pytest.raises(FrameUnreadable, match=r"bad\.fits.*not a readable FITS"):
        register_file(src, frames)
    assert src.exists()
    assert list(frames.iterdir()) == []


def test_register_truncated_fits_is_unreadable(tmp_path: Path) -> None:
    full = _frame_file(tmp_path / "full.fits", shape=(64, 64))
    src = _write(tmp_path / "in" / "cut.fits", full.read_bytes()[: 2880 * 3])
    with pytest.raises(FrameUnreadable, match=r"truncated|not a readable"):
        register_file(src, tmp_path / "frames", action="move")
    assert src.exists()  # a failed move leaves the original alone
    assert list((tmp_path / "frames").iterdir()) == []


def test_register_empty_or_missing_file_is_unreadable(tmp_path: Path) -> None:
    with pytest.raises(FrameUnreadable, match="empty"):
        register_file(_write(tmp_path / "e.fits", b""), tmp_path / "frames")
    with pytest.raises(FrameUnreadable, match="gone"):
        register_file(tmp_path / "missing.fits", tmp_path / "frames")


def test_register_unknown_action_raises(tmp_path: Path, fits_payload: bytes) -> None:
    with pytest.raises(ValueError, match="action"):
        register_file(_write(tmp_path / "a.fits", fits_payload), tmp_path / "frames", action="link")


def test_register_name_without_fits_suffix_gets_one(tmp_path: Path, fits_payload: bytes) -> None:
    got = register_file(_write(tmp_path / "weird name", fits_payload), tmp_path / "frames")
    assert got.path.name.endswith("_weird_name.fits")


def test_check_fits_image_in_extension_and_marks(tmp_path: Path) -> None:
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((8, 9), dtype=np.int16))])
    hdul[1].header["BIASCORR"] = "yes"
    hdul.writeto(tmp_path / "ext.fits")
    check = check_fits(tmp_path / "ext.fits")
    assert (check.hdu_index, check.shape, check.bitpix) == (1, (8, 9), 16)
    assert check.reduction_marks == ("BIASCORR",)
    assert check.integer_pixels


@pytest.mark.parametrize(
    "hdus",
    [
        [fits.PrimaryHDU()],
        [fits.PrimaryHDU(np.zeros(10, dtype=np.float32))],
        [
            fits.PrimaryHDU(),
            fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=np.zeros(3))]),
        ],
    ],
)
def test_check_fits_without_image_is_unreadable(
    tmp_path: Path, hdus: list[fits.hdu.base.ExtensionHDU]
) -> None:
    fits.HDUList(hdus).writeto(tmp_path / "noimg.fits")
    with pytest.raises(FrameUnreadable, match="no image"):
        check_fits(tmp_path / "noimg.fits")


@pytest.mark.parametrize("opener", [gzip.compress, bz2.compress])
def test_check_fits_reads_compressed_streams(
    tmp_path: Path, fits_payload: bytes, opener: object
) -> None:
    assert callable(opener)
    path = _write(tmp_path / "c.fits.x", opener(fits_payload))
    assert check_fits(path).shape == (32, 32)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.fits", "a.fits"),
        ("../../x.fits", "x.fits"),
        ("C:\\dir\\y.fit", "y.fit"),
        ("..", ""),
        ("___", ""),
        ("a b$c.fits", "a_b_c.fits"),
    ],
)
def test_safe_filename(name: str, expected: str) -> None:
    assert safe_filename(name) == expected
