"""Stacks of watched targets: which epochs need building, the worker task, storing the outcome.

The database is the queue here too. An epoch needs (re)building when the set of
processed frames that measured the target in it differs from the set its newest
stored stack considered, or when the stacking configuration changed
(:func:`stacks_fingerprint`); so a frame joining an epoch, a restart after a crash
or a config change all lead to the same rebuild, and nothing else does.

* :func:`dirty_tasks` (scheduler thread) lists the :class:`StackTask` values due;
* :func:`run_stack_task` (worker process) builds the stack
  (:func:`soapd.stacks.build.build_stack`, cutouts cached under
  ``paths.cache_dir/cutouts``) and returns a :class:`StackOutcome` by value;
* :func:`record_stack` (scheduler thread) drafts the stack alerts
  (:mod:`soapd.alerts.stack_rules`) and stores stack and alerts in one transaction.

:func:`build_stacks` does all three in the calling process (CLI, tests, the API).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from soapd.config import Config, StacksConfig, to_dict
from soapd.errors import ConfigError, SoapdError
from soapd.models import StackRecord, Target
from soapd.stacks.epochs import Epoch, group_epochs
from soapd.stacks.records import Candidate, StackResult

if TYPE_CHECKING:
    from soapd.store import Store

__all__ = [
    "StackOutcome",
    "StackTask",
    "build_stacks",
    "candidates_for",
    "dirty_tasks",
    "record_stack",
    "run_stack_task",
    "stacks_fingerprint",
    "to_record",
]

logger = logging.getLogger(__name__)

#: Key of one stack task: (target name, epoch key).
StackKey = tuple[str, str]


def stacks_fingerprint(config: Config) -> str:
    """Return the SHA-256 (hex) of what a stack depends on: the science config and [stacks]."""
    blob = json.dumps(
        {"science": config.fingerprint(), "stacks": _stack_content(config.stacks)},
        sort_keys=True,
    ).encode()
    return hashlib.sha256(blob).hexdigest()


def _stack_content(cfg: StacksConfig) -> dict[str, object]:
    """Return the [stacks] settings a stack's pixels depend on (not when it is rebuilt)."""
    out: dict[str, object] = dict(to_dict(cfg))
    out.pop("rebuild_growth", None)
    return out


def candidates_for(store: Store, target: Target) -> tuple[list[Candidate], dict[int, int | None]]:
    """Return the target's stacking candidates (processed frames that measured it) and obs ids."""
    if target.target_id is None:
        return [], {}
    rows = store.stack_candidates(target.target_id)
    out = [
        Candidate(
            frame_id=int(r["frame_id"]),
            path=r["path"],
            telescope=str(r["telescope"] or "unknown"),
            band=str(r["band"] or ""),
            exptime_s=float(r["exptime_s"]),
            mid_time_utc=r["mid_time_utc"],
            zp_mag=r["zp_mag"],
            zp_err_mag=r["zp_err_mag"],
            zp_scatter_mag=r["zp_scatter_mag"],
            n_cal_stars=int(r["n_cal_stars"] or 0),
            cal_catalog=str(r["cal_catalog"] or ""),
            mag_system=str(r["mag_system"] or "none"),
            lim_mag=r["lim_mag"],
            lim_nsigma=r["lim_nsigma"] if r["lim_nsigma"] == r["lim_nsigma"] else 5.0,
            flags=int(r["frame_flags"] or 0) | int(r["row_flags"] or 0),
            single_detection=bool(r["is_detection"]),
        )
        for r in rows
    ]
    return out, {int(r["frame_id"]): r["obs_id"] for r in rows}


@dataclass(frozen=True, slots=True, kw_only=True)
class StackTask:
    """One epoch of one target to stack: what :func:`run_stack_task` needs besides the config."""

    target: Target
    epoch: Epoch[Candidate]
    reference_zp_mag: float | None
    config_hash: str
    obs_id: int | None = None

    @property
    def key(self) -> StackKey:
        """(target name, epoch key)."""
        return (self.target.name, self.epoch.key)

    @property
    def considered(self) -> frozenset[int]:
        """The frame ids of the epoch."""
        return frozenset(c.frame_id for c in self.epoch.frames)


@dataclass(frozen=True, slots=True, kw_only=True)
class StackOutcome:
    """What :func:`run_stack_task` returns: the built stack, or the error text."""

    task: StackTask
    result: StackResult | None = None
    error: str = ""
    duration_s: float = 0.0


def _reference_zps(candidates: Iterable[Candidate]) -> dict[tuple[str, str], float]:
    """Return the median finite zero point per (telescope, band): the clouds reference."""
    zps: dict[tuple[str, str], list[float]] = {}
    for c in candidates:
        if c.zp_mag == c.zp_mag:
            zps.setdefault((c.telescope, c.band), []).append(c.zp_mag)
    return {k: float(np.median(v)) for k, v in zps.items()}


def _grows_later(
    stored: tuple[frozenset[int], str] | None,
    ids: frozenset[int],
    fingerprint: str,
    *,
    open_: bool,
    cfg: StacksConfig,
) -> bool:
    """Return True when an open epoch's stack may wait for more frames (``rebuild_growth``)."""
    if not open_ or stored is None or stored[1] != fingerprint:
        return False
    return len(ids) < (1.0 + cfg.rebuild_growth) * len(stored[0])


def dirty_tasks(
    store: Store,
    target: Target,
    config: Config,
    *,
    frame_ids: Iterable[int] | None = None,
    done: Mapping[StackKey, tuple[frozenset[int], str]] | None = None,
    now_utc: datetime | None = None,
) -> list[StackTask]:
    """Return the target's epochs whose stack is missing or out of date, as tasks.

    ``frame_ids`` limits the answer to epochs holding one of these frames (the frame
    just processed); ``done`` lists epochs already built this run without a result
    (nothing stackable), so they are not tried again until their frames change.
    ``now_utc`` (the daemon) applies ``stacks.rebuild_growth``: an epoch whose bin
    ends after ``now_utc`` and that has a stored stack of the same config is
    rebuilt only once it holds that fraction more frames than the stack considered;
    None (one-shot builds) rebuilds every out-of-date epoch.
    """
    if target.target_id is None or not config.stacks.enabled:
        return []
    candidates, obs_ids = candidates_for(store, target)
    if not candidates:
        return []
    only = None if frame_ids is None else set(frame_ids)
    cfg = config.stacks
    epochs = group_epochs(
        candidates,
        trigger_time_utc=target.trigger_time_utc,
        log_bin_factor=cfg.log_bin_factor,
        first_bin_s=cfg.first_bin_s,
        fixed_bin_s=cfg.fixed_bin_s,
    )
    stored = store.stack_inputs(target.target_id)
    fingerprint = stacks_fingerprint(config)
    refs = _reference_zps(candidates)
    tasks = []
    for epoch in epochs:
        ids = frozenset(c.frame_id for c in epoch.frames)
        if only is not None and not ids & only:
            continue
        if stored.get(epoch.key) == (ids, fingerprint):
            continue
        if done is not None and done.get((target.name, epoch.key)) == (ids, fingerprint):
            continue
        if now_utc is not None and _grows_later(
            stored.get(epoch.key), ids, fingerprint, open_=epoch.bin.end_utc > now_utc, cfg=cfg
        ):
            continue
        newest = epoch.frames[-1].frame_id
        tasks.append(
            StackTask(
                target=target,
                epoch=epoch,
                reference_zp_mag=refs.get((epoch.telescope, epoch.band)),
                config_hash=fingerprint,
                obs_id=obs_ids.get(newest),
            )
        )
    return tasks


def run_stack_task(task: StackTask, config: Config) -> StackOutcome:
    """Build one epoch's stack (in a worker); errors come back as the outcome's text."""
    # The pixel side (reproject, astropy.wcs, the pipeline) is imported on first use, so
    # a process that only plans or pools stacks (``soapd process``) does not load it.
    from soapd.stacks.build import build_stack
    from soapd.stacks.cache import CutoutCache, cached_loader

    start = time.perf_counter()
    try:
        cache = CutoutCache(config.paths.cache_dir / "cutouts")
        result = build_stack(
            task.epoch,
            task.target,
            config=config,
            reference_zp_mag=task.reference_zp_mag,
            loader=cached_loader(cache, task.target, config),
        )
    except (SoapdError, OSError, ValueError) as exc:
        return StackOutcome(
            task=task,
            error=f"{type(exc).__name__}: {exc}",
            duration_s=time.perf_counter() - start,
        )
    except Exception as exc:  # unit-of-work boundary: a bug fails this stack, not the worker
        logger.exception("stack %s of %s: unexpected error", task.epoch.key, task.target.name)
        return StackOutcome(
            task=task,
            error=f"unexpected {type(exc).__name__}: {exc}",
            duration_s=time.perf_counter() - start,
        )
    return StackOutcome(task=task, result=result, duration_s=time.perf_counter() - start)


def to_record(result: StackResult, task: StackTask) -> StackRecord:
    """Return the stored form of a built stack (``result.ok`` must be True)."""
    if (
        result.mid_time_utc is None
        or result.mean_mid_time_utc is None
        or result.start_utc is None
        or result.stop_utc is None
    ):
        raise ValueError("an empty stack has no record")
    return StackRecord(
        target_name=task.target.name,
        epoch_key=result.epoch_key,
        telescope=result.telescope,
        band=result.band,
        bin_start_utc=result.bin_start_utc,
        bin_end_utc=result.bin_end_utc,
        mid_time_utc=result.mid_time_utc,
        mean_mid_time_utc=result.mean_mid_time_utc,
        start_utc=result.start_utc,
        stop_utc=result.stop_utc,
        exptime_s=result.exptime_s,
        total_exptime_s=result.total_exptime_s,
        members=result.members,
        weights=result.weights,
        considered=tuple(sorted(task.considered)),
        excluded=result.excluded,
        mag=result.mag,
        mag_err=result.mag_err,
        lim_mag=result.lim_mag,
        lim_nsigma=result.lim_nsigma,
        snr=result.snr,
        flux_e=result.flux_e,
        flux_err_e=result.flux_err_e,
        flux_ujy=result.flux_ujy,
        flux_ujy_err=result.flux_ujy_err,
        is_detection=result.is_detection,
        flags=result.flags,
        zp_mag=result.zp_mag,
        zp_err_mag=result.zp_err_mag,
        zp_scatter_mag=result.zp_scatter_mag,
        n_cal_stars=result.n_cal_stars,
        cal_catalog=result.cal_catalog,
        mag_system=result.mag_system,
        predicted_lim_mag=result.predicted_lim_mag,
        single_detections=result.single_detections,
        best_single_lim_mag=result.best_single_lim_mag,
        fwhm_px=result.fwhm_px,
        aperture_px=result.aperture_px,
        alignment=",".join(sorted(set(result.alignment))),
        config_hash=task.config_hash,
    )


def record_stack(
    store: Store, outcome: StackOutcome, *, config: Config
) -> tuple[int | None, list[int]]:
    """Draft the stack's alerts and store both in one transaction; return (stack id, alert ids).

    An outcome without a stack (an error, or nothing stackable) stores nothing and
    returns (None, []).
    """
    from soapd.alerts.history import stack_history
    from soapd.alerts.rules import RuleParams
    from soapd.alerts.stack_rules import stack_alerts

    result = outcome.result
    if result is None or not result.ok:
        return None, []
    record = to_record(result, outcome.task)
    target = store.get_target(record.target_name)
    if target is None:  # removed while the stack was being built
        return None, []
    drafts = []
    if config.alerts.enabled and target.active:
        try:
            params = RuleParams.from_config(config.alerts, target.rules)
        except ConfigError as exc:
            logger.error("target %r: %s; using the [alerts] defaults", target.name, exc)  # noqa: TRY400
            params = RuleParams.from_config(config.alerts)
        drafts = stack_alerts(
            record,
            history=stack_history(store, target.name),
            other_stacks=store.stacked(target.name),
            params=params,
            obs_id=outcome.task.obs_id,
        )
    return store.save_stack(record, alerts=drafts)


def build_stacks(store: Store, config: Config, *, targets: Iterable[Target] | None = None) -> int:
    """Build, in this process, every out-of-date stack of ``targets`` (default: all active).

    Return how many stacks were stored.
    """
    stored = 0
    for target in store.active_targets() if targets is None else targets:
        for task in dirty_tasks(store, target, config):
            outcome = run_stack_task(task, config)
            if outcome.error:
                logger.warning("stack %s of %s: %s", task.epoch.key, target.name, outcome.error)
                continue
            stack_id, _ = record_stack(store, outcome, config=config)
            stored += stack_id is not None
    return stored
