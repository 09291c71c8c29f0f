"""Retention: delete old downloaded frames and field tables, never one still needed (issue 11).

The ``[retention]`` settings (:class:`soapd.config.RetentionConfig`) bound how
long frame files and field-wide tables are kept (``*_keep_days``) and how much
disk they may use (``*_max_gb``); every limit is off (0) by default.

* :func:`plan_prune` is pure: given the files on record, the settings, the time
  and the frames to protect, it returns what to delete, oldest first, and why.
  It never selects a frame file whose frame is still needed: waiting
  ('seen'/'downloaded': a download may be under way), being processed, in a
  stack epoch that is still open (:func:`open_epoch_frames`), outside soapd's
  own folder, or (unless ``prune_local_frames``) a frame from the inbox or the
  command line, which soapd cannot download again. Tables are deleted only for
  finished frames, and only from soapd's tables folder.
* :func:`prune` gathers the inputs from the store and the disk, plans, and
  (unless ``dry_run``) records each deletion in the store
  (:meth:`~soapd.store.Store.record_pruned`: the frame's path is cleared, a
  ``pruned_files`` row says what went and why) before it deletes the file.
* :func:`run_daily` is what the daemon calls once a day: ``prune`` when a limit
  is set, nothing otherwise.

Measurements and ledger rows are never deleted. A pruned Skynet frame is
downloaded again when ``soapd reprocess`` selects it (its ledger path is empty,
so the requeued frame goes back to 'seen').
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from soapd.config import Config, RetentionConfig, StacksConfig
from soapd.stacks.epochs import epoch_bin
from soapd.store.pruning import FINISHED_STATES, FileOnRecord, PrunedFile
from soapd.timeutil import parse_utc

if TYPE_CHECKING:
    from soapd.store import Store

__all__ = [
    "PruneOutcome",
    "PrunePlan",
    "old_cutouts",
    "open_epoch_frames",
    "plan_prune",
    "prune",
    "retention_enabled",
    "run_daily",
]

logger = logging.getLogger(__name__)

#: Bytes in one GB as the settings count it (10^9).
BYTES_PER_GB = 1_000_000_000
#: Seconds in one day.
DAY_S = 86400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PrunePlan:
    """What :func:`plan_prune` chose: files to delete, oldest first, and the disk use after.

    ``total_bytes`` and ``after_bytes`` map a kind ('frame', 'table') to the bytes
    on disk before and after the deletions; ``over_budget`` lists the kinds still
    above their budget because every remaining file is needed or protected.
    """

    delete: tuple[PrunedFile, ...]
    total_bytes: dict[str, int]
    after_bytes: dict[str, int]
    over_budget: tuple[str, ...] = ()


@dataclass(slots=True, kw_only=True)
class PruneOutcome:
    """What :func:`prune` did (or, with ``dry_run``, would do)."""

    dry_run: bool
    plan: PrunePlan
    deleted: list[PrunedFile] = field(default_factory=list)
    freed_bytes: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    #: Cached stack cutouts deleted (or, with ``dry_run``, to delete): path -> bytes.
    cutouts: dict[Path, int] = field(default_factory=dict)

    def summary(self) -> str:
        """Return one line: files and MB freed per kind (or that would be freed)."""
        chosen = self.plan.delete if self.dry_run else self.deleted
        parts = []
        for kind, label in (("frame", "frame file(s)"), ("table", "field table(s)")):
            n = sum(1 for f in chosen if f.kind == kind)
            size = sum(f.size_bytes for f in chosen if f.kind == kind)
            parts.append(f"{n} {label}, {size / 1e6:.1f} MB")
        if self.cutouts:
            size = sum(self.cutouts.values())
            parts.append(f"{len(self.cutouts)} cached cutout(s), {size / 1e6:.1f} MB")
        verb = "would free" if self.dry_run else "freed"
        return f"retention {verb} {'; '.join(parts)}"


def retention_enabled(policy: RetentionConfig) -> bool:
    """Return True when any retention limit is set (all 0: keep everything)."""
    return any(
        v > 0
        for v in (
            policy.frames_keep_days,
            policy.frames_max_gb,
            policy.field_tables_keep_days,
            policy.field_tables_max_gb,
            policy.cutouts_keep_days,
        )
    )


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return parse_utc(text)
    except ValueError:
        return None


def open_epoch_frames(
    files: Iterable[FileOnRecord],
    trigger_times_utc: Iterable[datetime | None],
    stacks: StacksConfig,
    *,
    now_utc: datetime,
) -> frozenset[int]:
    """Return the frames whose stack epoch is still open for some target, given its trigger.

    A frame can still be co-added again while its epoch's time bin is open (a new
    frame may join it and the stack is rebuilt from the members' files), so its
    file is kept. Bins depend on each target's trigger time (None: fixed bins);
    a frame is protected if its bin is open for any of them. Nothing is
    protected when stacking is off or there are no targets.
    """
    triggers = set(trigger_times_utc)
    if not stacks.enabled or not triggers:
        return frozenset()
    out: set[int] = set()
    for f in files:
        mid = _when(f.mid_time_utc)
        if f.kind != "frame" or mid is None:
            continue
        for t0 in triggers:
            b = epoch_bin(
                mid,
                trigger_time_utc=t0,
                log_bin_factor=stacks.log_bin_factor,
                first_bin_s=stacks.first_bin_s,
                fixed_bin_s=stacks.fixed_bin_s,
            )
            if b.is_open(now_utc):
                out.add(f.frame_id)
                break
    return frozenset(out)


def _inside(path: Path, folder: Path | None) -> bool:
    """Return True if ``path`` lies in ``folder`` (by their normalised text: no disk access)."""
    if folder is None:
        return True
    return Path(os.path.normpath(path)).is_relative_to(os.path.normpath(folder))


def _deletable(
    f: FileOnRecord,
    policy: RetentionConfig,
    protected: frozenset[int],
    folders: dict[str, Path | None],
) -> bool:
    """Return True if ``f`` may be deleted at all (the safety rules of the module doc)."""
    if f.state not in FINISHED_STATES or not _inside(f.path, folders.get(f.kind)):
        return False
    if f.kind == "frame":
        if f.frame_id in protected:
            return False
        if f.source != "skynet" and not policy.prune_local_frames:
            return False
    return True


def plan_prune(
    files: Sequence[FileOnRecord],
    policy: RetentionConfig,
    *,
    now_utc: datetime,
    sizes: dict[tuple[str, int], int] | None = None,
    protected: frozenset[int] = frozenset(),
    frames_dir: Path | None = None,
    tables_dir: Path | None = None,
) -> PrunePlan:
    """Choose the files to delete under ``policy``, oldest first; a pure function.

    Parameters
    ----------
    files
        Every frame file and field table on record (:meth:`Store.files_on_record`).
    policy
        The ``[retention]`` settings: ages in days, budgets in GB (10^9 bytes).
    now_utc
        The time ages are counted to.
    sizes
        Size in bytes of each (kind, frame_id) file on disk; files absent from it
        use their ledger size (0 if unknown).
    protected
        Frame ids whose frame file must be kept (e.g. :func:`open_epoch_frames`).
    frames_dir, tables_dir
        soapd's folders: files elsewhere are never deleted (None: no check).

    Returns
    -------
    PrunePlan
        Files past their age limit first, then the oldest others until each kind
        fits its budget. A frame that is not finished, protected, outside its
        folder or (unless ``prune_local_frames``) not from Skynet is never chosen.
    """
    sizes = sizes or {}
    folders = {"frame": frames_dir, "table": tables_dir}
    limits = {
        "frame": (policy.frames_keep_days, policy.frames_max_gb),
        "table": (policy.field_tables_keep_days, policy.field_tables_max_gb),
    }
    chosen: list[PrunedFile] = []
    total: dict[str, int] = {}
    after: dict[str, int] = {}
    over: list[str] = []
    for kind, (keep_days, max_gb) in limits.items():
        mine = [f for f in files if f.kind == kind]
        size = {f.frame_id: sizes.get((kind, f.frame_id), f.size_bytes or 0) for f in mine}
        total[kind] = after[kind] = sum(size.values())
        finished = {f.frame_id: _when(f.finished_at) or now_utc for f in mine}
        candidates = sorted(
            (f for f in mine if _deletable(f, policy, protected, folders)),
            key=lambda f: (finished[f.frame_id], f.frame_id),
        )
        budget = int(max_gb * BYTES_PER_GB)
        for f in candidates:
            age_s = (now_utc - finished[f.frame_id]).total_seconds()
            if keep_days > 0 and age_s > keep_days * DAY_S:
                reason = f"older than {keep_days:g} days"
            elif max_gb > 0 and after[kind] > budget:
                reason = f"over the {max_gb:g} GB budget"
            else:
                continue
            chosen.append(
                PrunedFile(
                    frame_id=f.frame_id,
                    kind=kind,
                    path=f.path,
                    size_bytes=size[f.frame_id],
                    reason=reason,
                )
            )
            after[kind] -= size[f.frame_id]
        if max_gb > 0 and after[kind] > budget:
            over.append(kind)
    return PrunePlan(
        delete=tuple(chosen), total_bytes=total, after_bytes=after, over_budget=tuple(over)
    )


def _disk_sizes(files: Iterable[FileOnRecord]) -> dict[tuple[str, int], int]:
    """Return the size in bytes on disk of each file that exists, by (kind, frame id)."""
    sizes: dict[tuple[str, int], int] = {}
    for f in files:
        try:
            sizes[(f.kind, f.frame_id)] = f.path.stat().st_size
        except OSError:
            continue
    return sizes


def prune(
    store: Store,
    config: Config,
    *,
    dry_run: bool = False,
    now_utc: datetime | None = None,
) -> PruneOutcome:
    """Apply ``config.retention`` to the files on record; return what was (or would be) freed.

    Files that no longer exist on disk are left to the ledger as they are (they
    occupy nothing). Each deletion is recorded in the store first, then the file
    is unlinked; a frame requeued or started meanwhile is not recorded, and its
    file not touched.
    """
    now_utc = now_utc or datetime.now(UTC)
    policy = config.retention
    files = store.files_on_record()
    sizes = _disk_sizes(files)
    present = [f for f in files if (f.kind, f.frame_id) in sizes]
    triggers = [t.trigger_time_utc for t in store.active_targets()]
    protected = open_epoch_frames(present, triggers, config.stacks, now_utc=now_utc)
    plan = plan_prune(
        present,
        policy,
        now_utc=now_utc,
        sizes=sizes,
        protected=protected,
        frames_dir=config.paths.frames_dir,
        tables_dir=config.paths.tables_dir,
    )
    outcome = PruneOutcome(dry_run=dry_run, plan=plan)
    if policy.cutouts_keep_days > 0:
        keep = open_epoch_frames(files, triggers, config.stacks, now_utc=now_utc)
        outcome.cutouts = old_cutouts(
            config.paths.cache_dir / "cutouts",
            keep_days=policy.cutouts_keep_days,
            now_utc=now_utc,
            protected=keep,
        )
        if not dry_run:
            for path in list(outcome.cutouts):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    outcome.errors.append(f"{path}: {exc.strerror or exc}")
                    del outcome.cutouts[path]
    if dry_run or not plan.delete:
        if outcome.cutouts and not dry_run:
            logger.info("%s", outcome.summary())
        return outcome
    for f in store.record_pruned(plan.delete):
        try:
            f.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            outcome.errors.append(f"{f.path}: {exc.strerror or exc}")
            continue
        outcome.deleted.append(f)
        outcome.freed_bytes[f.kind] = outcome.freed_bytes.get(f.kind, 0) + f.size_bytes
    logger.info("%s", outcome.summary())
    for kind in plan.over_budget:
        logger.warning(
            "retention: %s files still over their budget: every remaining one is needed "
            "(waiting, processing, open stack epoch) or not soapd's to delete",
            kind,
        )
    return outcome


def old_cutouts(
    directory: Path, *, keep_days: float, now_utc: datetime, protected: frozenset[int]
) -> dict[Path, int]:
    """Return the cached cutouts in ``directory`` written over ``keep_days`` ago (path -> bytes).

    A cutout file is ``<frame id>-<key>.npz`` (:class:`soapd.stacks.cache.CutoutCache`);
    those of ``protected`` frames (in a stack epoch still open) and files not named
    that way are never returned.
    """
    if not directory.is_dir():
        return {}
    cutoff_s = now_utc.timestamp() - keep_days * DAY_S
    out: dict[Path, int] = {}
    for entry in os.scandir(directory):
        head, sep, _ = entry.name.partition("-")
        if not (sep and head.isdigit() and entry.name.endswith(".npz")):
            continue
        if int(head) in protected or not entry.is_file(follow_symlinks=False):
            continue
        stat = entry.stat(follow_symlinks=False)
        if stat.st_mtime < cutoff_s:
            out[Path(entry.path)] = stat.st_size
    return out


def run_daily(store: Store, config: Config) -> PruneOutcome | None:
    """Prune under ``[retention]`` (the daemon's daily job); return None when every limit is off."""
    if not retention_enabled(config.retention):
        return None
    return prune(store, config)
