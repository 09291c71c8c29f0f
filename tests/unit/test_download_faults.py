"""Hostile downloads through the daemon's jobs and the real client (#15).

FakeSkynet on 127.0.0.1 plays each fault; ``download_frames`` runs them on its
download threads and records the results, as the daemon does:

* an HTML page with status 200 for a while: backoff, no try counted, the frames
  arrive once the page is gone; past ``skynet.download_budget_s`` such answers count;
* a drip-fed transfer: given up at ``skynet.download_deadline_s``, no try counted,
  and while it runs the scheduler thread is free (the inbox is drained);
* server file names that collide: each exposure keeps its own file and bytes, and a
  file replaced under the ledger is refused by the worker before any pixel is read;
* an exposure id of 2**64 in a listing: skipped with its reason, the others recorded;
* a gzip body is stored decompressed; a gzip bomb is rejected, not retried.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from soapd.config import Config, Token
from soapd.daemon.jobs import JobContext, download_frames, drain_inbox, poll_skynet
from soapd.daemon.pool import WorkerPool
from soapd.frames import run_task, start_task
from soapd.ingest.retry import Backoff
from soapd.skynet.client import SkynetClient
from soapd.skynet.fetcher import Fetcher
from soapd.store import Store
from soapd.testing.fake_skynet import FakeSkynet
from soapd.testing.synth import make_frame, write_frame
from tests.unit.ingest.test_checker import gzip_bomb

OBS = 5151
WAIT_S = 60.0
MakeCtx = Callable[..., JobContext]


@pytest.fixture(name="fits_bytes")
def fixture_fits_bytes(tmp_path: Path) -> Callable[[int], bytes]:
    """Factory: a small, valid FITS frame as bytes (different bytes per seed)."""

    def make(seed: int) -> bytes:
        frame = make_frame((64, 64), stars=5, seed=seed)
        return write_frame(tmp_path / f"src{seed}.fits", frame.data_adu, frame.header).read_bytes()

    return make


@pytest.fixture(name="fake")
def fixture_fake() -> Iterator[FakeSkynet]:
    """A running FakeSkynet with one observation."""
    with FakeSkynet(seed=2) as fake:
        fake.add_observation(OBS)
        yield fake


@pytest.fixture(name="make_ctx")
def fixture_make_ctx(
    fake: FakeSkynet, config: Callable[..., Config], tmp_path: Path
) -> Iterator[MakeCtx]:
    """Factory: a JobContext for ``fake`` with [skynet] (and other) overrides; closed after."""
    made: list[JobContext] = []

    def make(frame: dict[str, Any] | None = None, **skynet: Any) -> JobContext:
        cfg = config(
            skynet={"api_url": fake.url, "backoff_s": 0.0, "max_attempts": 1, **skynet},
            paths={"inbox_dir": str(tmp_path / "inbox")},
            frame=frame or {},
        )
        store = Store(cfg.paths.db_path)
        store.follow_observation(OBS)
        ctx = JobContext(
            config=cfg,
            store=store,
            pool=WorkerPool(cfg),
            wake=lambda _job: None,
            source_factory=lambda tok: SkynetClient.from_config(cfg.skynet, tok, frame=cfg.frame),
            read_token=lambda: Token(fake.token),
        )
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        if ctx.source is not None:
            ctx.source.close()
        if ctx.fetcher is not None:
            ctx.fetcher.close()
        ctx.store.close()


def _add(fake: FakeSkynet, data: bytes, **kw: Any) -> int:
    when = datetime.now(UTC) - timedelta(minutes=30)
    return fake.add_exposure(OBS, data, center_time_utc=when, archived=True, **kw)


def _row(ctx: JobContext, exp_id: int) -> Any:
    row = ctx.store.find_frame(exp_id=exp_id)
    assert row is not None
    return row


def test_html_page_for_a_while_then_frames_arrive_without_a_try(
    make_ctx: MakeCtx, fake: FakeSkynet, fits_bytes: Callable[[int], bytes]
) -> None:
    ctx = make_ctx(backoff_s=0.2, download_budget_s=600.0)
    ids = [_add(fake, fits_bytes(i)) for i in range(2)]
    assert poll_skynet(ctx) == 2
    fake.serve_html(2.0)  # a maintenance page, sent with status 200, for 2 s
    assert download_frames(ctx, limit=2, wait_s=WAIT_S) == 0
    for exp_id in ids:
        row = _row(ctx, exp_id)
        assert (row.state, row.tries) == ("seen", 0)
        assert row.last_error.startswith("download postponed: ")
        assert "HTML page (Content-Type text/html) instead of a FITS file" in row.last_error
        assert "Down for maintenance" in row.last_error
    deadline = time.monotonic() + WAIT_S
    while len(ctx.store.pending_frames(10)) < 2 and time.monotonic() < deadline:
        download_frames(ctx, limit=2, wait_s=WAIT_S)
        time.sleep(0.1)
    assert [_row(ctx, e).state for e in ids] == ["downloaded", "downloaded"]
    assert [_row(ctx, e).tries for e in ids] == [0, 0]  # no try was used up
    assert fake.count("/download/fits") > 4  # retried with backoff meanwhile


def test_bad_answers_past_the_budget_count_tries(
    make_ctx: MakeCtx, fake: FakeSkynet, fits_bytes: Callable[[int], bytes]
) -> None:
    ctx = make_ctx()
    clock = [0.0]
    backoff = Backoff(base_s=1.0, cap_s=1.0, budget_s=100.0, clock=lambda: clock[0])
    ctx.fetcher = Fetcher(1, backoff=backoff)
    exp_id = _add(fake, fits_bytes(1))
    poll_skynet(ctx)
    fake.serve_html(600.0)
    download_frames(ctx, wait_s=WAIT_S)
    assert (_row(ctx, exp_id).state, _row(ctx, exp_id).tries) == ("seen", 0)
    assert download_frames(ctx, wait_s=WAIT_S) == 0  # waiting: not even tried
    assert fake.count("/download/fits") == 1
    tries = []
    for _ in range(3):
        clock[0] += 101.0  # past the budget
        download_frames(ctx, wait_s=WAIT_S)
        tries.append(_row(ctx, exp_id).tries)
    assert tries == [1, 2, 3]
    row = _row(ctx, exp_id)
    assert row.state == "failed"
    assert "download_budget_s = 100 s: counted as a try" in row.last_error


def test_drip_fed_download_is_given_up_at_the_deadline_without_a_try(
    make_ctx: MakeCtx, fake: FakeSkynet, fits_bytes: Callable[[int], bytes]
) -> None:
    ctx = make_ctx(download_deadline_s=1.0, read_timeout_s=5.0)
    exp_id = _add(fake, fits_bytes(3))
    poll_skynet(ctx)
    fake.drip_next_download(chunk_bytes=256, interval_s=0.2)  # 20 KB in about 16 s
    download_frames(ctx, wait_s=WAIT_S)
    row = _row(ctx, exp_id)
    assert (row.state, row.tries) == ("seen", 0)
    assert "not done after 1 s (skynet.download_deadline_s" in row.last_error
    assert list(ctx.config.paths.frames_dir.iterdir()) == []  # no .part left behind
    assert download_frames(ctx, wait_s=WAIT_S) == 1  # the next transfer is normal


def test_drip_fed_download_leaves_the_scheduler_free(
    make_ctx: MakeCtx, fake: FakeSkynet, fits_bytes: Callable[[int], bytes]
) -> None:
    """The inbox is drained while a download trickles in on its own thread."""
    ctx = make_ctx(download_deadline_s=300.0, read_timeout_s=60.0)
    _add(fake, fits_bytes(4))
    poll_skynet(ctx)
    fake.drip_next_download(chunk_bytes=64, interval_s=0.5)  # minutes for the whole file
    assert download_frames(ctx) == 0  # returns at once: the download runs on its thread
    assert ctx.fetcher is not None
    assert len(ctx.fetcher.inflight) == 1
    inbox = ctx.config.paths.inbox_dir
    assert inbox is not None
    inbox.mkdir()
    (inbox / "local.fits").write_bytes(fits_bytes(5))
    ctx.inbox.put(inbox / "local.fits")
    assert drain_inbox(ctx) == 1
    assert len(ctx.fetcher.inflight) == 1, "the drip was still going while the inbox drained"
    assert ctx.store.backlog()["downloaded"] == 1
    assert ctx.source is not None
    ctx.source.close()  # what SIGTERM does: the transfer is interrupted ...
    (result,) = ctx.fetcher.close(timeout_s=WAIT_S)  # ... and its thread ends
    assert "interrupted" in str(result.error)
    assert not ctx.fetcher.inflight


def test_colliding_server_names_each_exposure_keeps_its_own_pixels(
    make_ctx: MakeCtx, fake: FakeSkynet, fits_bytes: Callable[[int], bytes]
) -> None:
    ctx = make_ctx()
    data = {_add(fake, fits_bytes(10 + i)): fits_bytes(10 + i) for i in range(3)}
    fake.collide_names("image.fits")  # the server calls every file image.fits
    poll_skynet(ctx)
    assert download_frames(ctx, limit=3, wait_s=WAIT_S) == 3
    for exp_id, payload in data.items():
        row = _row(ctx, exp_id)
        assert row.path.name == f"r{exp_id}.fits"
        assert row.path.read_bytes() == payload
        assert row.sha256 == hashlib.sha256(payload).hexdigest()


def test_a_file_replaced_under_the_ledger_is_refused_before_processing(
    make_ctx: MakeCtx, fake: FakeSkynet, fits_bytes: Callable[[int], bytes]
) -> None:
    """What a name collision did before #15: exposure 1's file held exposure 2's pixels."""
    ctx = make_ctx()
    one, two = _add(fake, fits_bytes(20)), _add(fake, fits_bytes(21))
    poll_skynet(ctx)
    download_frames(ctx, limit=2, wait_s=WAIT_S)
    row_one, row_two = _row(ctx, one), _row(ctx, two)
    row_one.path.write_bytes(row_two.path.read_bytes())
    task = start_task(ctx.store, row_one.frame_id, ())
    out = run_task(task, ctx.config)
    assert out.outcome == "failed"
    assert f"r{one}.fits changed since it was registered" in out.error


def test_exposure_id_2_64_in_a_listing_is_skipped_the_others_recorded(
    make_ctx: MakeCtx,
    fake: FakeSkynet,
    fits_bytes: Callable[[int], bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    ctx = make_ctx()
    good = [_add(fake, fits_bytes(30 + i)) for i in range(2)]
    fake.add_record({"id": 2**64, "obsId": OBS, "state": "archived"})
    fake.add_record({"obsId": OBS, "state": "archived"})  # no id at all
    fake.add_record({"id": 77.5, "obsId": OBS, "state": "archived"})
    assert poll_skynet(ctx) == 2
    assert ctx.store.known_exp_ids(good) == set(good)
    assert sum(ctx.store.backlog().values()) == 2
    assert "id 18446744073709551616 is outside 1..2**63-1" in caplog.text
    assert caplog.text.count("without an integer id") == 2  # no id; id 77.5
    assert download_frames(ctx, limit=5, wait_s=WAIT_S) == 2


def test_gzip_body_is_stored_decompressed(
    make_ctx: MakeCtx, fake: FakeSkynet, fits_bytes: Callable[[int], bytes]
) -> None:
    ctx = make_ctx()
    plain = fits_bytes(40)
    exp_id = _add(fake, gzip.compress(plain), filename="frame.fits.gz")
    poll_skynet(ctx)
    assert download_frames(ctx, wait_s=WAIT_S) == 1
    row = _row(ctx, exp_id)
    assert row.path.name == f"r{exp_id}.fits"
    assert row.path.read_bytes() == plain
    assert row.sha256 == hashlib.sha256(plain).hexdigest()


def test_gzip_bomb_download_is_rejected_with_the_reason_not_retried(
    make_ctx: MakeCtx, fake: FakeSkynet, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = make_ctx(frame={"max_decompressed_mb": 64})
    caplog.set_level(logging.WARNING)
    exp_id = _add(fake, gzip_bomb(tmp_path / "bomb.fits.gz").read_bytes())
    poll_skynet(ctx)
    assert download_frames(ctx, wait_s=WAIT_S) == 0
    row = _row(ctx, exp_id)
    assert row.state == "rejected"
    assert "decompresses to more than 64 MB" in row.last_error
    assert "[frame] max_decompressed_mb = 64" in row.last_error
    assert download_frames(ctx, wait_s=WAIT_S) == 0
    assert fake.count("/download/fits") == 1  # not tried again
    assert list(ctx.config.paths.frames_dir.iterdir()) == []
