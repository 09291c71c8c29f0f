"""InboxWatcher: close-after-write and moved-in files are enqueued; bare creation is not."""

from __future__ import annotations

import os
import queue
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from soapd.ingest.inbox import InboxWatcher, is_candidate, scan_dir

WAIT_S = 5.0  # upper bound for an inotify event to arrive; normally milliseconds
QUIET_S = 0.3  # how long "nothing arrives" is watched for


class Wakes:
    """A wake callback that counts its calls."""

    def __init__(self) -> None:
        self.count = 0
        self.event = threading.Event()

    def __call__(self) -> None:
        self.count += 1
        self.event.set()


@pytest.fixture(name="inbox")
def fixture_inbox(tmp_path: Path) -> Path:
    """An inbox folder path (not yet created)."""
    return tmp_path / "inbox"


@pytest.fixture(name="watch")
def fixture_watch(inbox: Path) -> Iterator[tuple[InboxWatcher, queue.Queue[Path], Wakes]]:
    """A started watcher on the inbox, stopped afterwards."""
    paths: queue.Queue[Path] = queue.Queue()
    wakes = Wakes()
    watcher = InboxWatcher(inbox, paths, wakes).start()
    try:
        yield watcher, paths, wakes
    finally:
        watcher.stop()


def _drain(paths: queue.Queue[Path], wait_s: float = QUIET_S) -> list[Path]:
    got: list[Path] = []
    try:
        got.append(paths.get(timeout=wait_s))
        while True:
            got.append(paths.get(timeout=QUIET_S))
    except queue.Empty:
        return got


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.fits", True),
        ("a.FIT", True),
        ("a.fts", True),
        ("a.fits.gz", True),
        ("a.fit.bz2", True),
        ("a.fits.fz", True),
        ("a.fits.part", False),
        ("a.txt", False),
        (".a.fits", False),
        ("fits", False),
    ],
)
def test_is_candidate_suffixes(name: str, expected: bool) -> None:
    assert is_candidate(Path(name)) is expected


def test_inbox_file_written_in_place_enqueued_only_after_close(
    watch: tuple[InboxWatcher, queue.Queue[Path], Wakes], inbox: Path, fits_payload: bytes
) -> None:
    _, paths, wakes = watch
    target = inbox / "frame.fits"
    with target.open("wb") as fh:
        fh.write(fits_payload[:2880])
        fh.flush()
        os.fsync(fh.fileno())
        assert _drain(paths) == []  # created and half-written: not yet
        fh.write(fits_payload[2880:])
    assert _drain(paths, WAIT_S) == [target]
    assert wakes.count >= 1


def test_inbox_file_moved_in_from_outside_enqueued(
    watch: tuple[InboxWatcher, queue.Queue[Path], Wakes],
    inbox: Path,
    tmp_path: Path,
    fits_payload: bytes,
) -> None:
    _, paths, _ = watch
    outside = tmp_path / "elsewhere.fits"
    outside.write_bytes(fits_payload)
    assert _drain(paths) == []
    os.rename(outside, inbox / "moved.fits")
    assert _drain(paths, WAIT_S) == [inbox / "moved.fits"]


def test_inbox_part_file_renamed_inside_enqueued_once(
    watch: tuple[InboxWatcher, queue.Queue[Path], Wakes], inbox: Path, fits_payload: bytes
) -> None:
    _, paths, _ = watch
    part = inbox / "upload.fits.part"
    part.write_bytes(fits_payload)  # closed, but .part is not a candidate
    part.rename(inbox / "upload.fits")
    assert _drain(paths, WAIT_S) == [inbox / "upload.fits"]


def test_inbox_ignores_other_suffixes_and_hidden_files(
    watch: tuple[InboxWatcher, queue.Queue[Path], Wakes], inbox: Path, fits_payload: bytes
) -> None:
    _, paths, wakes = watch
    (inbox / "notes.txt").write_text("hello")
    (inbox / ".hidden.fits").write_bytes(fits_payload)
    (inbox / "x.fits.tmp").write_bytes(fits_payload)
    assert _drain(paths) == []
    assert wakes.count == 0


def test_inbox_folder_moved_in_is_scanned(
    watch: tuple[InboxWatcher, queue.Queue[Path], Wakes],
    inbox: Path,
    tmp_path: Path,
    fits_payload: bytes,
) -> None:
    _, paths, _ = watch
    night = tmp_path / "night"
    (night / "sub").mkdir(parents=True)
    (night / "a.fits").write_bytes(fits_payload)
    (night / "sub" / "b.fits.gz").write_bytes(b"whatever")
    (night / "readme.txt").write_text("x")
    os.rename(night, inbox / "night")
    got = sorted(set(_drain(paths, WAIT_S)))
    assert got == [inbox / "night" / "a.fits", inbox / "night" / "sub" / "b.fits.gz"]


def test_inbox_file_closed_in_subfolder_enqueued(
    watch: tuple[InboxWatcher, queue.Queue[Path], Wakes], inbox: Path, fits_payload: bytes
) -> None:
    _, paths, _ = watch
    (inbox / "sub").mkdir()
    shutil.copyfile(_write(inbox.parent / "src.fits", fits_payload), inbox / "sub" / "c.fits")
    assert (inbox / "sub" / "c.fits") in _drain(paths, WAIT_S)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_inbox_startup_scan_enqueues_existing_files(inbox: Path, fits_payload: bytes) -> None:
    (inbox / "deep").mkdir(parents=True)
    for name in ("b.fits", "a.fit", "deep/c.fts", "skip.txt", ".hidden.fits"):
        (inbox / name).write_bytes(fits_payload)
    paths: queue.Queue[Path] = queue.Queue()
    wakes = Wakes()
    with InboxWatcher(inbox, paths, wakes) as watcher:
        assert watcher.running
        assert watcher.scan() == 3
        got = _drain(paths)
    assert got == [inbox / "a.fit", inbox / "b.fits", inbox / "deep" / "c.fts"]
    assert wakes.count == 3
    assert not watcher.running


def test_scan_dir_of_missing_folder_is_empty(tmp_path: Path) -> None:
    assert list(scan_dir(tmp_path / "nope")) == []


def test_inbox_failing_wake_callback_does_not_stop_watching(
    inbox: Path, fits_payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("scheduler gone")

    paths: queue.Queue[Path] = queue.Queue()
    with InboxWatcher(inbox, paths, broken):
        (inbox / "one.fits").write_bytes(fits_payload)
        assert _drain(paths, WAIT_S) == [inbox / "one.fits"]
        (inbox / "two.fits").write_bytes(fits_payload)
        assert _drain(paths, WAIT_S) == [inbox / "two.fits"]
    assert "wake callback failed" in caplog.text


def test_inbox_stop_twice_and_start_twice_are_safe(inbox: Path) -> None:
    watcher = InboxWatcher(inbox, queue.Queue())
    assert watcher.start() is watcher.start()
    watcher.stop()
    watcher.stop()
    assert not watcher.running
