"""The Store: the only place in soapd that issues SQL.

``Store`` is a thin facade over one repository per concern, all sharing one
connection (``store.db``):

============================  =====================================================
``store.ledger``              frames and their state machine (:mod:`.ledger`, reads in
                              :mod:`.frame_rows`)
``store.targets``             watched targets (:mod:`.targets`)
``store.measurements``        target measurements and lightcurve reads (:mod:`.measurements`)
``store.outbox``              the alerts outbox (:mod:`.outbox`)
``store.stacks``              stacked epochs of targets (:mod:`.stacks`)
``store.observations``        followed Skynet observations (:mod:`.observations`)
``store.status``              service status for ``soapd status`` (:mod:`.status`)
``store.rule_states``         what the alert rules read of each target (:mod:`.rule_state`)
``store.pruning``             files on record and what retention deleted (:mod:`.pruning`)
============================  =====================================================

Each repository method is also a ``Store`` method of the same name (``store.frame``
is ``store.ledger.frame``). Work spanning repositories — one transaction over the
frame summary, its measurements and its alerts — is written here. The schema is in
:mod:`.migrations`; the ``lightcurve`` view, which ``Store.lightcurve`` reads by the
same definition, in :mod:`.views`.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

from soapd.errors import StoreError
from soapd.models import AlertDraft, FrameResult, StackRecord
from soapd.store import checkpoint
from soapd.store.base import utc_iso
from soapd.store.connection import BUSY_TIMEOUT_MS, is_busy, open_database
from soapd.store.ledger import Ledger
from soapd.store.measurements import Measurements
from soapd.store.observations import Observations
from soapd.store.outbox import Outbox
from soapd.store.pruning import Pruning
from soapd.store.rule_state import RuleStates, TargetState
from soapd.store.stacks import Stacks
from soapd.store.status import ServiceStatus
from soapd.store.targets import Targets
from soapd.store.views import refresh_views

if TYPE_CHECKING:
    import numpy as np
    import sqlite_utils
    from astropy.table import Table

    from soapd.store.checkpoint import WalCheckpointer

__all__ = ["Store", "is_busy", "utc_iso"]

R = TypeVar("R")
P = ParamSpec("P")
T = TypeVar("T")


class _Via(Generic[R, P, T]):
    """A ``Store`` attribute that is the same-named method of one of its repositories."""

    def __init__(self, repo: str, method: Callable[Concatenate[R, P], T]) -> None:
        self.repo = repo
        self.name = method.__name__
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, store: None, owner: type[Store]) -> Self: ...

    @overload
    def __get__(self, store: Store, owner: type[Store] | None = None) -> Callable[P, T]: ...

    def __get__(
        self, store: Store | None, owner: type[Store] | None = None
    ) -> Self | Callable[P, T]:
        if store is None:
            return self
        bound: Callable[P, T] = getattr(getattr(store, self.repo), self.name)
        return bound


class Store:
    """The soapd database: ledger, targets, measurements, alerts, observations, status."""

    #: The file's WAL checkpointer while open read-write on a file (see :mod:`.checkpoint`).
    _checkpointer: WalCheckpointer | None = None
    _release: weakref.finalize[[WalCheckpointer], Store] | None = None

    def __init__(
        self,
        path: Path | str,
        *,
        migrate: bool = True,
        read_only: bool = False,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        """Open the database at ``path`` and, unless ``migrate`` is False, apply migrations.

        ``read_only`` opens an existing database with ``mode=ro`` (no migrations,
        every write raises): safe beside a running daemon.
        """
        self.path = path
        self.read_only = read_only
        db = open_database(path, read_only=read_only, busy_timeout_ms=busy_timeout_ms)
        self.db: sqlite_utils.Database = db
        if not read_only and str(path) != ":memory:":
            self._checkpointer = checkpoint.acquire(path)
            db.after_commit = self._checkpointer.request
            # given back on close(), or when a Store that was never closed is collected
            self._release = weakref.finalize(self, checkpoint.release, self._checkpointer)
        if migrate and not read_only:
            from soapd.store.migrations import migrations  # sqlite_utils: only to migrate

            migrations.apply(self.db)
            refresh_views(self.db)
        self._attach_repositories()

    def _attach_repositories(self) -> None:
        """Build one repository per concern on ``self.db``."""
        self.ledger = Ledger(self.db)
        self.targets = Targets(self.db)
        self.measurements = Measurements(self.db)
        self.outbox = Outbox(self.db)
        self.stacks = Stacks(self.db)
        self.observations = Observations(self.db)
        self.status = ServiceStatus(self.db)
        self.rule_states = RuleStates(self.db)
        self.pruning = Pruning(self.db)

    @staticmethod
    def now() -> str:
        """Return the current time as ISO-8601 UTC text."""
        return utc_iso()

    def close(self) -> None:
        """Close the connection (and give back the WAL checkpointer; the last one checkpoints)."""
        with contextlib.suppress(Exception):
            self.db.conn.close()
        if self._release is not None:
            self._release()

    def __enter__(self) -> Self:
        """Return self."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the connection."""
        self.close()

    # ------------------------------------------------------ across repositories
    def save_result(
        self,
        frame_id: int,
        result: FrameResult,
        *,
        alerts: Sequence[AlertDraft] = (),
        config_hash: str,
        soapd_version: str,
        table_path: str | None,
        lim_nsigma: float | None = None,
        rule_states: Mapping[str, TargetState] | None = None,
    ) -> list[int]:
        """Store a processed frame in one transaction; return the ids of new alerts.

        Writes the target measurements (rows of ``result.table`` whose
        ``target_name`` is a known target), the frame summary with
        ``state = 'processed'``, ``alerts`` into the outbox and the targets' new
        ``rule_states`` (target name -> state after this frame, see
        :mod:`.rule_state`); a measured target without a new state loses its state
        (it is rebuilt from history when needed). A crash in the middle leaves none
        of it; processing a frame again updates its rows, and never stores an alert
        twice (``alerts.dedupe_key`` is UNIQUE). Raise StoreError if the frame is not
        in the ledger.
        """
        with self.db.atomic():
            mjd = self.ledger.record_processed(
                frame_id,
                result.summary,
                config_hash=config_hash,
                soapd_version=soapd_version,
                table_path=table_path,
            )
            ids = self.targets.target_ids()
            self.measurements.upsert(
                frame_id,
                result.table,
                ids,
                config_hash=config_hash,
                mjd=mjd,
                lim_nsigma=lim_nsigma,
            )
            given = rule_states or {}
            self.rule_states.write_states({ids[n]: s for n, s in given.items() if n in ids})
            stale = _measured_names(result.table, ids) - set(given)
            self.rule_states.invalidate(ids[n] for n in stale)
            return self.outbox.insert(frame_id, alerts, ids)

    def save_measurements(
        self,
        frame_id: int,
        table: Table,
        *,
        config_hash: str,
        mjd: float,
        lim_nsigma: float | None = None,
    ) -> int:
        """Store target rows of ``table`` for an already processed frame (backfill).

        Only the targets present in ``table`` are touched; their alert rule states
        are rebuilt from history when next needed. Return the rows written.
        """
        ids = self.targets.target_ids()
        with self.db.atomic():
            n = self.measurements.upsert(
                frame_id, table, ids, config_hash=config_hash, mjd=mjd, lim_nsigma=lim_nsigma
            )
            self.rule_states.invalidate(ids[name] for name in _measured_names(table, ids))
            return n

    def fill_rule_state(
        self, target_name: str, build: Callable[[dict[str, np.ndarray]], TargetState]
    ) -> bool:
        """Build a target's missing alert rule state from its history; return True if built.

        ``build`` turns :meth:`rule_history`'s arrays into the state (the alert rules'
        fold). History read and state written in one transaction, so a frame stored
        meanwhile by another writer cannot be missed. Nothing is written for a
        target that has a state already or no stored point.
        """
        with self.db.atomic():
            tid = self.targets.target_ids().get(target_name)
            if tid is None or self.rule_states.states_of([tid]):
                return False
            history = self.measurements.rule_history(target_name)
            if not any(len(v) for v in history.values()):
                return False
            self.rule_states.write_states({tid: build(history)})
            return True

    def add_alerts(self, frame_id: int | None, alerts: Sequence[AlertDraft]) -> list[int]:
        """Store alert drafts on their own (deduplicated); return the ids of new ones."""
        with self.db.atomic():
            return self.outbox.insert(frame_id, alerts, self.targets.target_ids())

    def lightcurve(
        self,
        target_name: str,
        *,
        band: str | None = None,
        since_utc: datetime | str | None = None,
        include_superseded: bool = False,
        include_not_covered: bool = False,
    ) -> Table:
        """Return the lightcurve of ``target_name`` ordered by mid-exposure time.

        One row per frame x aperture of the frames that covered the target (plus
        older processings when ``include_superseded``; plus the stored rows of
        frames that had it in their footprint but could not measure it, flagged
        NOT_COVERED, when ``include_not_covered``), with the columns of
        :data:`soapd.columns.LIGHTCURVE_COLUMNS` and their units. ``meta`` holds the
        target's name, position and trigger time. Raise StoreError if there is no
        such target.
        """
        target = self.targets.get_target(target_name)
        if target is None or target.target_id is None:
            raise StoreError(f"no target named {target_name!r}; see `soapd targets list`")
        return self.measurements.lightcurve(
            target,
            band=band,
            since_utc=since_utc,
            include_superseded=include_superseded,
            include_not_covered=include_not_covered,
        )

    def save_stack(
        self, record: StackRecord, *, alerts: Sequence[AlertDraft] = ()
    ) -> tuple[int, list[int]]:
        """Store a stacked epoch and the alerts it raised in one transaction.

        The stack becomes the epoch's newest version (older ones are superseded).
        Return (stack_id, ids of new alerts). Raise StoreError for an unknown target.
        """
        ids = self.targets.target_ids()
        target_id = ids.get(record.target_name)
        if target_id is None:
            raise StoreError(f"no target named {record.target_name!r}; see `soapd targets list`")
        with self.db.atomic():
            stack_id, _ = self.stacks.insert_stack(target_id, record)
            return stack_id, self.outbox.insert(None, alerts, ids)

    def stacked(self, target_name: str, *, include_superseded: bool = False) -> list[StackRecord]:
        """Return the stacked epochs of ``target_name`` by mid-time (newest versions only).

        Raise StoreError if there is no such target.
        """
        target = self.targets.get_target(target_name)
        if target is None or target.target_id is None:
            raise StoreError(f"no target named {target_name!r}; see `soapd targets list`")
        return self.stacks.stacks_of(
            target.target_id, target.name, include_superseded=include_superseded
        )

    # ---------------------------------------------------------------- ledger
    frame = _Via("ledger", Ledger.frame)
    find_frame = _Via("ledger", Ledger.find_frame)
    frames_in_state = _Via("ledger", Ledger.frames_in_state)
    frames_of = _Via("ledger", Ledger.frames_of)
    frame_state_counts = _Via("ledger", Ledger.frame_state_counts)
    pending_frames = _Via("ledger", Ledger.pending_frames)
    frames_to_download = _Via("ledger", Ledger.frames_to_download)
    known_exp_ids = _Via("ledger", Ledger.known_exp_ids)
    frames_with_tables = _Via("ledger", Ledger.frames_with_tables)
    frame_obs_id = _Via("ledger", Ledger.frame_obs_id)
    record_seen = _Via("ledger", Ledger.record_seen)
    record_local = _Via("ledger", Ledger.record_local)
    mark_downloaded = _Via("ledger", Ledger.mark_downloaded)
    mark_download_failed = _Via("ledger", Ledger.mark_download_failed)
    note_error = _Via("ledger", Ledger.note_error)
    forget_files = _Via("ledger", Ledger.forget_files)
    start_attempt = _Via("ledger", Ledger.start_attempt)
    claim_frame = _Via("ledger", Ledger.claim_frame)
    mark_started = _Via("ledger", Ledger.mark_started)
    mark_retry = _Via("ledger", Ledger.mark_retry)
    abandon_attempt = _Via("ledger", Ledger.abandon_attempt)
    mark_failed = _Via("ledger", Ledger.mark_failed)
    mark_rejected = _Via("ledger", Ledger.mark_rejected)
    reset_stuck_processing = _Via("ledger", Ledger.reset_stuck_processing)
    requeue = _Via("ledger", Ledger.requeue)
    # --------------------------------------------------------------- targets
    upsert_target = _Via("targets", Targets.upsert_target)
    remove_target = _Via("targets", Targets.remove_target)
    get_target = _Via("targets", Targets.get_target)
    get_target_by_id = _Via("targets", Targets.get_target_by_id)
    list_targets = _Via("targets", Targets.list_targets)
    active_targets = _Via("targets", Targets.active_targets)
    target_ids = _Via("targets", Targets.target_ids)
    sync_config_targets = _Via("targets", Targets.sync_config_targets)
    # ---------------------------------------------------------- measurements
    rule_history = _Via("measurements", Measurements.rule_history)
    # ----------------------------------------------------------- rule states
    rule_states_of = _Via("rule_states", RuleStates.states_of)
    frame_has_measurements = _Via("rule_states", RuleStates.frame_has_measurements)
    # ---------------------------------------------------------------- stacks
    stacks_of = _Via("stacks", Stacks.stacks_of)
    stack_inputs = _Via("stacks", Stacks.stack_inputs)
    stack_candidates = _Via("stacks", Stacks.stack_candidates)
    # ---------------------------------------------------------------- outbox
    unsent_alerts = _Via("outbox", Outbox.unsent_alerts)
    mark_alert_delivered = _Via("outbox", Outbox.mark_alert_delivered)
    mark_alert_sent = _Via("outbox", Outbox.mark_alert_sent)
    mark_alert_failed = _Via("outbox", Outbox.mark_alert_failed)
    alert_counts = _Via("outbox", Outbox.alert_counts)
    list_alerts = _Via("outbox", Outbox.list_alerts)
    # ---------------------------------------------------------- observations
    follow_observation = _Via("observations", Observations.follow_observation)
    unfollow_observation = _Via("observations", Observations.unfollow_observation)
    followed_observations = _Via("observations", Observations.followed_observations)
    observation_rows = _Via("observations", Observations.observation_rows)
    sync_config_observations = _Via("observations", Observations.sync_config_observations)
    # ---------------------------------------------------------------- status
    set_status = _Via("status", ServiceStatus.set_status)
    status_values = _Via("status", ServiceStatus.status_values)
    backlog = _Via("status", ServiceStatus.backlog)
    last_processed_utc = _Via("status", ServiceStatus.last_processed_utc)
    recent_errors = _Via("status", ServiceStatus.recent_errors)
    # --------------------------------------------------------------- pruning
    files_on_record = _Via("pruning", Pruning.files_on_record)
    record_pruned = _Via("pruning", Pruning.record_pruned)
    pruned_files = _Via("pruning", Pruning.pruned_files)
    frames_selected = _Via("pruning", Pruning.frames_selected)


def _measured_names(table: Table, ids: Mapping[str, int]) -> set[str]:
    """Return the names of the known targets (in ``ids``) with a row in ``table``."""
    if len(table) == 0 or "target_name" not in table.colnames:
        return set()
    col = table["target_name"]
    values = col.filled("") if hasattr(col, "filled") else col
    # tolist(): Python str in C; iterating the Column made a numpy scalar per row (7 ms
    # for 6,000 rows)
    return {str(v) for v in set(values.tolist())} & set(ids)
