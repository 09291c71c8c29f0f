"""Retention planning (soapd.retention): what is deleted, and that a needed frame never is."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from soapd.config import RetentionConfig, StacksConfig
from soapd.models import FRAME_STATES
from soapd.retention import old_cutouts, open_epoch_frames, plan_prune, retention_enabled
from soapd.store.pruning import FINISHED_STATES, FileOnRecord

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
FRAMES = Path("/srv/soapd/frames")
TABLES = Path("/srv/soapd/tables")
MB = 1_000_000


def _file(
    frame_id: int,
    *,
    age_days: float,
    state: str = "processed",
    kind: str = "frame",
    source: str = "skynet",
    size_mb: float = 10.0,
    folder: Path | None = None,
    mid_utc: datetime | None = None,
) -> FileOnRecord:
    finished = NOW - timedelta(days=age_days)
    base = folder or (FRAMES if kind == "frame" else TABLES)
    mid = mid_utc or finished - timedelta(hours=1)
    return FileOnRecord(
        frame_id=frame_id,
        kind=kind,
        path=base / f"{kind}_{frame_id}.fits",
        size_bytes=int(size_mb * MB),
        source=source,
        state=state,
        obs_id=1,
        telescope="PROMPT-5",
        band="V",
        mid_time_utc=mid.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        finished_at=finished.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    )


def _plan(files: list[FileOnRecord], **policy: float | bool) -> list[tuple[int, str, str]]:
    plan = plan_prune(
        files,
        RetentionConfig(**policy),  # type: ignore[arg-type]
        now_utc=NOW,
        frames_dir=FRAMES,
        tables_dir=TABLES,
    )
    return [(f.frame_id, f.kind, f.reason) for f in plan.delete]


def test_defaults_keep_everything() -> None:
    files = [_file(i, age_days=1000.0 + i) for i in range(5)]
    assert not retention_enabled(RetentionConfig())
    assert _plan(files) == []


def test_age_limit_deletes_only_finished_frames_older_than_it() -> None:
    files = [
        _file(1, age_days=40.0),
        _file(2, age_days=20.0),
        _file(3, age_days=40.0, state="rejected"),
        _file(4, age_days=40.0, state="failed"),
        _file(5, age_days=400.0, state="downloaded"),
        _file(6, age_days=400.0, state="processing"),
        _file(7, age_days=400.0, state="seen"),
    ]
    got = _plan(files, frames_keep_days=30.0)
    assert [(i, k) for i, k, _ in got] == [(1, "frame"), (3, "frame"), (4, "frame")]
    assert {r for _, _, r in got} == {"older than 30 days"}


def test_budget_deletes_oldest_first_until_the_rest_fits() -> None:
    files = [_file(i, age_days=float(10 - i), size_mb=100.0) for i in range(10)]  # 1 GB
    got = _plan(files, frames_max_gb=0.75)
    # 1000 MB -> 700 MB: the three oldest (ids 0, 1, 2) go
    assert [i for i, _, _ in got] == [0, 1, 2]
    assert {r for _, _, r in got} == {"over the 0.75 GB budget"}


def test_budget_counts_needed_files_but_never_deletes_them() -> None:
    files = [
        _file(1, age_days=50.0, state="downloaded", size_mb=600.0),
        _file(2, age_days=5.0, size_mb=300.0),
        _file(3, age_days=1.0, size_mb=300.0),
    ]
    plan = plan_prune(files, RetentionConfig(frames_max_gb=0.5), now_utc=NOW, frames_dir=FRAMES)
    assert [f.frame_id for f in plan.delete] == [2, 3]
    assert plan.total_bytes["frame"] == 1200 * MB
    assert plan.after_bytes["frame"] == 600 * MB
    assert plan.over_budget == ("frame",)


def test_local_frames_and_files_outside_soapds_folder_are_kept() -> None:
    files = [
        _file(1, age_days=40.0, source="inbox"),
        _file(2, age_days=40.0, source="cli"),
        _file(3, age_days=40.0, folder=Path("/home/user/data")),
        _file(4, age_days=40.0),
    ]
    assert [i for i, _, _ in _plan(files, frames_keep_days=30.0)] == [4]
    assert [i for i, _, _ in _plan(files, frames_keep_days=30.0, prune_local_frames=True)] == [
        1,
        2,
        4,
    ]


def test_tables_have_their_own_limits() -> None:
    files = [
        _file(1, age_days=40.0),
        _file(1, age_days=40.0, kind="table"),
        _file(2, age_days=10.0, kind="table"),
        _file(3, age_days=40.0, kind="table", state="downloaded"),
    ]
    assert _plan(files, field_tables_keep_days=30.0) == [(1, "table", "older than 30 days")]
    assert _plan(files, frames_keep_days=30.0) == [(1, "frame", "older than 30 days")]


def test_protected_frames_are_kept_whatever_their_age() -> None:
    files = [_file(1, age_days=40.0), _file(2, age_days=40.0)]
    plan = plan_prune(
        files,
        RetentionConfig(frames_keep_days=1.0),
        now_utc=NOW,
        protected=frozenset({1}),
        frames_dir=FRAMES,
    )
    assert [f.frame_id for f in plan.delete] == [2]


def test_open_stack_epochs_protect_their_frames() -> None:
    stacks = StacksConfig(fixed_bin_s=3600.0)
    this_hour = NOW.replace(minute=0) + timedelta(minutes=10)
    files = [
        _file(1, age_days=0.0, mid_utc=this_hour),  # in the bin still open
        _file(2, age_days=0.0, mid_utc=NOW - timedelta(hours=3)),  # its bin is closed
    ]
    assert open_epoch_frames(files, [None], stacks, now_utc=NOW) == {1}
    # with a trigger 10 days ago, log bins ~1 day wide at t = 10 d: both still open
    trigger = NOW - timedelta(days=10)
    assert open_epoch_frames(files, [trigger], stacks, now_utc=NOW) == {1, 2}
    assert open_epoch_frames(files, [None], StacksConfig(enabled=False), now_utc=NOW) == set()
    assert open_epoch_frames(files, [], stacks, now_utc=NOW) == set()


_FILES = st.lists(
    st.builds(
        _file,
        st.integers(0, 50),
        age_days=st.floats(0.0, 200.0),
        state=st.sampled_from(FRAME_STATES),
        kind=st.sampled_from(("frame", "table")),
        source=st.sampled_from(("skynet", "inbox", "cli")),
        size_mb=st.floats(0.0, 100.0),
        folder=st.sampled_from((None, Path("/elsewhere"))),
    ),
    max_size=40,
    unique_by=lambda f: (f.kind, f.frame_id),  # one frame file and one table per frame
)


@settings(max_examples=100, deadline=None)
@given(
    files=_FILES,
    keep_days=st.sampled_from((0.0, 0.5, 10.0, 100.0)),
    max_gb=st.sampled_from((0.0, 0.0001, 0.5, 2.0)),
    local=st.booleans(),
    protected=st.frozensets(st.integers(0, 50)),
)
def test_a_needed_frame_is_never_selected(
    files: list[FileOnRecord],
    keep_days: float,
    max_gb: float,
    local: bool,
    protected: frozenset[int],
) -> None:
    policy = RetentionConfig(
        frames_keep_days=keep_days,
        frames_max_gb=max_gb,
        field_tables_keep_days=keep_days,
        field_tables_max_gb=max_gb,
        prune_local_frames=local,
    )
    plan = plan_prune(
        files,
        policy,
        now_utc=NOW,
        protected=protected,
        frames_dir=FRAMES,
        tables_dir=TABLES,
    )
    by_key = {(f.kind, f.frame_id, f.path): f for f in files}
    for chosen in plan.delete:
        f = by_key[(chosen.kind, chosen.frame_id, chosen.path)]
        assert f.state in FINISHED_STATES
        assert f.path.parent == (FRAMES if f.kind == "frame" else TABLES)
        if f.kind == "frame":
            assert f.frame_id not in protected
            assert local or f.source == "skynet"
        age_s = (NOW - datetime.fromisoformat(f.finished_at)).total_seconds()
        assert (keep_days > 0 and age_s > keep_days * 86400.0) or max_gb > 0
    assert len({(f.kind, f.frame_id, f.path) for f in plan.delete}) == len(plan.delete)


def test_old_cutouts_are_those_past_their_age_outside_open_epochs(tmp_path: Path) -> None:
    """Cached stack cutouts: by file age, never a protected frame's, only soapd's names."""
    import os

    def cutout(name: str, age_days: float) -> Path:
        path = tmp_path / name
        path.write_bytes(b"x" * 1000)
        when = NOW.timestamp() - age_days * 86400.0
        os.utime(path, (when, when))
        return path

    old = cutout("11-0123456789abcdef.npz", 40.0)
    cutout("12-0123456789abcdef.npz", 40.0)  # its epoch is open
    cutout("13-0123456789abcdef.npz", 5.0)  # younger than the limit
    cutout("notes.npz", 40.0)  # not a cutout's name
    cutout("14-0123456789abcdef.npz.99.tmp", 40.0)  # a write in progress
    got = old_cutouts(tmp_path, keep_days=30.0, now_utc=NOW, protected=frozenset({12}))
    assert got == {old: 1000}
    assert old_cutouts(tmp_path / "none", keep_days=1.0, now_utc=NOW, protected=frozenset()) == {}
    assert retention_enabled(RetentionConfig(cutouts_keep_days=30.0))
