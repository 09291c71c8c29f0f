"""The drain job against hostile and unlucky inbox files (#15, #14).

* the same frame as ``x.fits`` and ``x.fits.gz`` is one frame (content hash of the FITS);
* a symbolic link leading out of the inbox is not followed (the link is set aside);
* a full disk while copying (ENOSPC) leaves the file to be tried again, never dropped;
* an unreadable file or a gzip bomb goes to ``inbox/rejected/`` with a reason file,
  is listed by ``soapd status`` and is not picked up again.
"""

from __future__ import annotations

import errno
import gzip
import logging
import os
import queue
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from soapd.cli.daemon import format_status, status_info
from soapd.config import Config
from soapd.daemon.jobs import JobContext, drain_inbox
from soapd.daemon.pool import WorkerPool
from soapd.ingest import files as files_module
from soapd.ingest.inbox import InboxHandler, InboxWatcher, scan_dir
from soapd.ingest.rejected import list_rejected
from soapd.ingest.retry import Backoff
from soapd.store import Store
from soapd.testing.fake_skynet import NOT_FITS_BYTES
from soapd.testing.synth import make_frame, write_frame
from tests.unit.ingest.test_checker import gzip_bomb


@pytest.fixture(name="ctx")
def fixture_ctx(config: Callable[..., Config], tmp_path: Path) -> Iterator[JobContext]:
    """A JobContext with an inbox, a fresh store and a recorded wake log (no archive)."""
    cfg = config(paths={"inbox_dir": str(tmp_path / "inbox")}, frame={"max_decompressed_mb": 64})
    assert cfg.paths.inbox_dir is not None
    cfg.paths.inbox_dir.mkdir()
    store = Store(cfg.paths.db_path)
    woken: list[str] = []
    ctx = JobContext(config=cfg, store=store, pool=WorkerPool(cfg), wake=woken.append)
    yield ctx
    store.close()


def _inbox(ctx: JobContext) -> Path:
    assert ctx.config.paths.inbox_dir is not None
    return ctx.config.paths.inbox_dir


def _frame(path: Path, seed: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = make_frame((48, 48), stars=3, seed=seed)
    return write_frame(path, frame.data_adu, frame.header)


def _scan(ctx: JobContext) -> int:
    """The daemon's start-up scan, into ctx.inbox."""
    return InboxWatcher(_inbox(ctx), ctx.inbox).scan()


def _frames_dir(ctx: JobContext) -> list[str]:
    folder = ctx.config.paths.frames_dir
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_same_frame_as_fits_and_fits_gz_is_processed_once(
    ctx: JobContext, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = _inbox(ctx)
    plain = _frame(inbox / "night1.fits")
    (inbox / "night1_copy.fits.gz").write_bytes(gzip.compress(plain.read_bytes()))
    caplog.set_level(logging.INFO)
    assert _scan(ctx) == 2
    assert drain_inbox(ctx) == 1
    assert ctx.store.backlog()["downloaded"] == 1
    (row,) = ctx.store.pending_frames(10)
    assert row.sha256 is not None
    assert _frames_dir(ctx) == [f"{row.sha256[:16]}_night1.fits"]
    assert "night1_copy.fits.gz is frame" in caplog.text
    assert "(same checksum)" in caplog.text


def test_symlink_out_of_the_inbox_is_not_followed(ctx: JobContext, tmp_path: Path) -> None:
    inbox = _inbox(ctx)
    secret = _frame(tmp_path / "elsewhere" / "secret.fits")
    before = secret.read_bytes()
    (inbox / "link.fits").symlink_to(secret)
    (inbox / "dir").symlink_to(secret.parent, target_is_directory=True)
    inside = _frame(inbox / "sub" / "real.fits", seed=2)
    (inbox / "inner_link.fits").symlink_to(inside)
    assert _scan(ctx) == 3  # link.fits, inner_link.fits, sub/real.fits; dir/ is not entered
    assert drain_inbox(ctx) == 1  # real.fits (inner_link.fits is the same frame)
    assert secret.read_bytes() == before  # untouched, not copied, not moved
    assert secret.parent == tmp_path / "elsewhere"
    assert len(_frames_dir(ctx)) == 1
    moved = inbox / "rejected" / "link.fits"
    assert moved.is_symlink()  # the link was set aside, not its target
    reason = (inbox / "rejected" / "link.fits.reason.txt").read_text()
    assert "a symbolic link to" in reason
    assert "not followed" in reason
    assert str(secret) in reason


def test_symlinked_folder_moved_in_is_not_entered(ctx: JobContext, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _frame(outside / "a.fits")
    (_inbox(ctx) / "linked").symlink_to(outside, target_is_directory=True)
    assert list(scan_dir(_inbox(ctx), inbox=_inbox(ctx))) == []


def test_enospc_on_inbox_copy_is_retried_later_not_dropped(
    ctx: JobContext, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [1000.0]
    ctx.inbox_retry = Backoff(base_s=5.0, cap_s=600.0, clock=lambda: clock[0])
    src = _frame(_inbox(ctx) / "a.fits")
    real_copy = files_module.copy_to_part
    disk = {"full": True}

    def copy(src_path: Path, part: Path) -> Any:
        if disk["full"]:
            part.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(part))
        return real_copy(src_path, part)

    monkeypatch.setattr(files_module, "copy_to_part", copy)
    ctx.inbox.put(src)
    assert drain_inbox(ctx) == 0
    assert "No space left on device" in caplog.text
    assert "trying again in 5 s (attempt 1)" in caplog.text
    assert src.exists()  # not dropped, not set aside
    assert not (_inbox(ctx) / "rejected").exists()
    assert _frames_dir(ctx) == []  # the partial copy is gone
    assert src in ctx.inbox_retry
    assert drain_inbox(ctx) == 0  # not due yet: nothing tried
    clock[0] += 5.0
    assert drain_inbox(ctx) == 0  # still full: tried, waits twice as long
    assert "trying again in 10 s (attempt 2)" in caplog.text
    disk["full"] = False
    clock[0] += 10.0
    assert drain_inbox(ctx) == 1  # the disk has room again
    assert src not in ctx.inbox_retry
    assert ctx.store.backlog()["downloaded"] == 1


def test_unreadable_inbox_file_is_set_aside_and_listed_in_status(
    ctx: JobContext, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = _inbox(ctx)
    (inbox / "bad.fits").write_bytes(NOT_FITS_BYTES)
    assert _scan(ctx) == 1
    assert drain_inbox(ctx) == 0
    assert not (inbox / "bad.fits").exists()
    assert (inbox / "rejected" / "bad.fits").read_bytes() == NOT_FITS_BYTES
    assert "moved to" in caplog.text
    (entry,) = list_rejected(inbox)
    assert entry["name"] == "bad.fits"
    assert "not a readable FITS file" in entry["reason"]
    assert entry["rejected_utc"].endswith("Z")
    text = format_status(status_info(ctx.store, ctx.config))
    assert "inbox rejected 1 file(s) in inbox/rejected/" in text
    assert "bad.fits: " in text
    # The start-up scan and the watcher leave the rejected folder alone.
    assert _scan(ctx) == 0
    paths: queue.Queue[Path] = queue.Queue()
    InboxHandler(paths, inbox=inbox).enqueue(inbox / "rejected" / "bad.fits")
    assert paths.empty()
    # A second file of the same name does not overwrite the first.
    (inbox / "bad.fits").write_bytes(b"\x00" * 100)
    assert _scan(ctx) == 1
    assert drain_inbox(ctx) == 0
    assert sorted(p.name for p in (inbox / "rejected").iterdir()) == [
        "bad.fits",
        "bad.fits.1",
        "bad.fits.1.reason.txt",
        "bad.fits.reason.txt",
    ]


def test_gzip_bomb_in_the_inbox_is_rejected_with_the_reason(
    ctx: JobContext, tmp_path_factory: pytest.TempPathFactory
) -> None:
    inbox = _inbox(ctx)
    bomb = gzip_bomb(inbox / "bomb.fits.gz")
    ctx.inbox.put(bomb)
    assert drain_inbox(ctx) == 0
    assert _frames_dir(ctx) == []
    reason = (inbox / "rejected" / "bomb.fits.gz.reason.txt").read_text()
    assert "decompresses to more than 64 MB" in reason
    assert "[frame] max_decompressed_mb = 64" in reason


def test_a_file_gone_before_the_drain_is_dropped(
    ctx: JobContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    ctx.inbox.put(_inbox(ctx) / "gone.fits")
    assert drain_inbox(ctx) == 0
    assert "gone.fits is gone" in caplog.text
    assert list_rejected(_inbox(ctx)) == []
