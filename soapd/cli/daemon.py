"""``soapd run | status | observations | reprocess | migrate``: operate the daemon.

``run`` starts the service (or, with ``--until-idle``, processes everything
available and exits); it holds the state folder's lock, so a second ``soapd run``
on the same state exits at once naming the first one's pid. The other commands
open the same database and may be used while the daemon runs (SQLite WAL:
readers never block it, writes wait): ``status`` only reads, and
``observations``/``reprocess`` only edit the queue the daemon works from (they
never touch a frame in 'processing').

``run`` sets the file-creation mask to at least ``0027`` (no access for others,
no write for the group), as the systemd unit's ``UMask=0027`` does, so state
files are not world-readable when soapd is started by hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Any

from soapd.cli import HelpFormatter, add_config_option, log_level_of
from soapd.config import Config, load_config
from soapd.errors import ConfigError
from soapd.fileio import folder_usage, pid_alive
from soapd.logs import setup_logging
from soapd.models import FRAME_STATES, FrameRow
from soapd.store import Store
from soapd.store.targets import parse_utc

__all__ = ["RUN_UMASK", "register", "restrict_umask"]

_FMT = HelpFormatter


def register(sub: Any) -> None:
    """Add ``run``, ``status``, ``observations``, ``reprocess`` and ``migrate`` to ``sub``."""
    p = sub.add_parser(
        "run",
        help="run the photometry daemon",
        description="Run soapd: poll Skynet for the followed observations and telescopes, "
        "watch the inbox, process new frames, send alerts. Stops cleanly on SIGTERM/SIGINT; "
        "SIGHUP re-reads the config's targets and observations.",
        formatter_class=_FMT,
    )
    add_config_option(p)
    p.add_argument(
        "--until-idle",
        action="store_true",
        help="poll once, process everything available (inbox and archive), send the alerts "
        "it raised (batch window included), then exit (for cron jobs and tests); exit code 1 "
        "when followed Skynet frames could not be fetched because the token is missing or "
        "refused",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "status",
        help="show the daemon's state: last poll, backlog, errors",
        description="Show the last poll, the backlog per frame state, the last success, "
        "recent errors and the catalog cache. Safe while the daemon runs.",
        formatter_class=_FMT,
    )
    add_config_option(p)
    p.add_argument("--errors", type=int, default=5, metavar="N", help="recent errors shown")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_status)

    _register_observations(sub)
    _register_reprocess(sub)

    p = sub.add_parser(
        "migrate",
        help="create or upgrade the database schema (run it after upgrading soapd)",
        description="Apply pending schema migrations to the database (the daemon also does "
        "this at start), list the applied ones, and build the alert rule state of every "
        "measured target that has none (after an upgrade; otherwise the daemon's first "
        "frame of each such target reads its whole history on the scheduler thread).",
        formatter_class=_FMT,
    )
    add_config_option(p)
    p.set_defaults(func=cmd_migrate)


def _register_observations(sub: Any) -> None:
    p = sub.add_parser(
        "observations",
        help="follow Skynet observations: add, remove, list",
        description="Manage the Skynet observations whose archived exposures soapd "
        "processes. Changes reach a running daemon at its next poll.",
        formatter_class=_FMT,
    )
    osub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (("add", "follow"), ("remove", "stop following")):
        q = osub.add_parser(
            name,
            help=f"{text} observation(s)",
            description=f"{text.capitalize()} the given Skynet observation ids "
            "(a running daemon picks the change up at its next poll).",
            formatter_class=_FMT,
        )
        q.add_argument("obs_ids", type=int, nargs="+", metavar="OBS_ID", help="observation id")
        add_config_option(q)
    q = osub.add_parser(
        "list",
        help="list followed observations",
        description="List the followed observations (--all: removed ones too).",
        formatter_class=_FMT,
    )
    q.add_argument("--all", action="store_true", help="include removed observations")
    add_config_option(q)
    p.set_defaults(func=cmd_observations)


def _register_reprocess(sub: Any) -> None:
    p = sub.add_parser(
        "reprocess",
        help="process chosen frames again",
        description="Queue frames for processing again. Filters combine (AND); times are "
        "ISO-8601 UTC compared with mid-exposure. New results supersede the old rows (they "
        "are kept and marked), and no alert is sent twice. A running daemon picks the frames "
        "up within one processing interval; otherwise use `soapd run --until-idle`.",
        formatter_class=_FMT,
    )
    add_config_option(p)
    p.add_argument("--obs", type=int, metavar="ID", help="only this observation")
    p.add_argument("--frame", type=int, action="append", metavar="ID", help="only this frame")
    p.add_argument("--since", metavar="T", help="mid-exposure at or after T (UTC)")
    p.add_argument("--until", metavar="T", help="mid-exposure before T (UTC)")
    p.add_argument(
        "--state",
        action="append",
        choices=[s for s in FRAME_STATES if s != "processing"],
        help="only frames in this state (repeatable; default: processed, rejected, failed)",
    )
    p.add_argument(
        "--executor",
        choices=("process", "dask"),
        default=None,
        help="process the queued frames now, here (the daemon must not be running): "
        '"process" on worker processes of this host, "dask" on the workers of a '
        "dask.distributed scheduler; only this command writes the database (default: "
        "%(default)s = only queue them for the daemon)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="the dask scheduler's address, e.g. tcp://host:8786; implies --executor dask "
        "(default: %(default)s = service.dask_scheduler of the config)",
    )
    p.set_defaults(func=cmd_reprocess)


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def _open_store(cfg: Config, *, migrate: bool) -> Store:
    db = cfg.paths.db_path
    if not migrate and not db.exists():
        raise ConfigError(
            f"no soapd database at {db}; check paths.state_dir or start the daemon once"
        )
    return Store(db, migrate=migrate)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the service (or until idle). Return the exit code."""
    from soapd.daemon.service import Service

    cfg = _config(args)
    setup_logging(log_level_of(args) or cfg.logging.level, cfg.logging.style)
    restrict_umask()
    service = Service(cfg)
    return service.run_until_idle() if args.until_idle else service.run()


#: Bits ``soapd run`` always masks: write for the group, everything for others (as UMask=0027).
RUN_UMASK = 0o027


def restrict_umask() -> int:
    """Add :data:`RUN_UMASK` to the process's file-creation mask (never loosen it); return it."""
    mask = os.umask(RUN_UMASK) | RUN_UMASK
    os.umask(mask)
    return mask


def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply migrations and list them; build missing alert rule states."""
    from soapd.alerts.history import build_rule_states
    from soapd.output.progress import ProgressBar
    from soapd.store.migrations import migrations  # sqlite_utils: not for every command

    cfg = _config(args)
    with _open_store(cfg, migrate=True) as store:
        for m in migrations.applied(store.db):
            print(f"{m.applied_at}  {m.name}")
        # Missing alert rule states (after an upgrade, or stale ones dropped) would
        # otherwise be built from history by the daemon's first frames.
        with ProgressBar(len(store.target_ids()), label="rule states") as bar:
            built = build_rule_states(store, progress=bar.advance)
    if built:
        print(f"built the alert rule state of {built} target(s) from their history")
    print(f"database {cfg.paths.db_path} is up to date")
    return 0


def cmd_observations(args: argparse.Namespace) -> int:
    """Add, remove or list followed observations."""
    cfg = _config(args)
    with _open_store(cfg, migrate=args.action != "list") as store:
        if args.action == "add":
            for obs in args.obs_ids:
                new = store.follow_observation(obs)
                print(f"observation {obs}: {'followed' if new else 'already followed'}")
        elif args.action == "remove":
            for obs in args.obs_ids:
                gone = store.unfollow_observation(obs)
                print(f"observation {obs}: {'no longer followed' if gone else 'was not followed'}")
                if obs in cfg.skynet.observations:
                    print(
                        f"  note: {obs} is listed in skynet.observations of the config; "
                        "remove it there too or it is followed again at the next start"
                    )
        else:
            rows = [r for r in store.observation_rows() if args.all or r["active"]]
            if not rows:
                print("no observations followed (add one with `soapd observations add ID`)")
            for r in rows:
                state = "" if r["active"] else "  (removed)"
                print(
                    f"{r['obs_id']:>10}  {r['source']:<6}  since {r['added_at'][:19]}  "
                    f"frames {r['n_frames']} (processed {r['n_processed'] or 0}, "
                    f"failed/rejected {r['n_bad'] or 0}){state}"
                )
    return 0


def cmd_reprocess(args: argparse.Namespace) -> int:
    """Requeue the chosen frames; say which ones cannot be, because their file is gone.

    A Skynet frame whose file was pruned (or deleted) goes back to 'seen' and is
    downloaded again; a frame from the inbox or the command line whose file is
    gone cannot be fetched again, so it is left as it is and named. With
    ``--executor``/``--scheduler`` the frames are also processed now.
    """
    cfg = _config(args)
    executor = args.executor or ("dask" if args.scheduler else None)
    if executor is not None:
        service = dataclasses.replace(
            cfg.service,
            executor=executor,
            dask_scheduler=args.scheduler or cfg.service.dask_scheduler,
        )
        if executor == "dask" and not service.dask_scheduler.strip():
            raise ConfigError(
                "--executor dask needs --scheduler ADDRESS (or service.dask_scheduler)"
            )
        cfg = dataclasses.replace(cfg, service=service)
    states = tuple(args.state or ("processed", "rejected", "failed"))
    filters: dict[str, Any] = {
        "frame_ids": args.frame,
        "obs_id": args.obs,
        "since_utc": parse_utc(args.since, what="--since"),
        "until_utc": parse_utc(args.until, what="--until"),
        "states": states,
    }
    with _open_store(cfg, migrate=True) as store:
        rows = store.frames_selected(**filters)
        gone = [r for r in rows if r.path is None or not r.path.is_file()]
        local = [r for r in gone if r.source != "skynet" or r.exp_id is None]
        lost = [r for r in local if r.path is None]  # pruned: nothing to process
        missing = [r for r in local if r.path is not None]  # queued; fails unless put back
        refetch = [r for r in gone if r not in local]
        # a file deleted behind soapd's back: clear the path so the frame is downloaded again
        store.forget_files(
            [r.frame_id for r in refetch if r.path is not None], frame_file=True, table_file=False
        )
        keep = [r.frame_id for r in rows if r not in lost]
        n = store.requeue(frame_ids=keep, states=states) if keep else 0
        was = {r.frame_id: _last_path(store, r) for r in lost}
    print(f"{n} frame(s) queued for processing again")
    if refetch:
        print(
            f"  {len(refetch)} of them will be downloaded again from Skynet first "
            "(their file was pruned or is missing)"
        )
    for r in lost:
        where = f" ({was[r.frame_id]})" if was[r.frame_id] else ""
        print(
            f"frame {r.frame_id}{where} not queued: its file is gone and it came from the "
            f"{r.source}, not from Skynet, so soapd cannot fetch it again; put the file back "
            "in the inbox to measure it again"
        )
    for r in missing:
        print(
            f"warning: frame {r.frame_id}'s file {r.path} is missing and cannot be fetched "
            "again (not from Skynet); it will fail unless the file is put back"
        )
    if executor is None or n == 0:
        return 0
    from soapd.daemon.service import Service

    setup_logging(cfg.logging.level, cfg.logging.style)
    where = cfg.service.dask_scheduler if executor == "dask" else "worker processes"
    print(f"processing them now on {where} (only this process writes the database)")
    Service(cfg).run_until_idle(poll=False)
    with _open_store(cfg, migrate=False) as store:
        backlog = store.backlog()
    print("ledger: " + ", ".join(f"{s} {backlog[s]}" for s in FRAME_STATES if backlog.get(s)))
    return 0


def _last_path(store: Store, row: FrameRow) -> str:
    """Return where a frame's file was: its ledger path, else the last pruned path, else ''."""
    if row.path is not None:
        return str(row.path)
    pruned = [p for p in store.pruned_files(row.frame_id) if p["kind"] == "frame"]
    return str(pruned[-1]["path"]) if pruned else ""


def cmd_status(args: argparse.Namespace) -> int:
    """Print the daemon's status."""
    cfg = _config(args)
    with _open_store(cfg, migrate=False) as store:
        info = status_info(store, cfg, n_errors=args.errors)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True, default=str))
    else:
        print(format_status(info))
    return 0


def status_info(store: Store, cfg: Config, *, n_errors: int = 5) -> dict[str, Any]:
    """Return what ``soapd status`` shows, as plain data."""
    from soapd.store.lock import lock_holder

    values = store.status_values()
    holder = lock_holder(cfg.paths.state_dir)
    pid: Any = values.get("pid")
    running = bool(pid) and not values.get("stopped_utc") and pid_alive(int(pid or 0))
    if holder is not None:  # the lock says for sure who writes the state folder
        running, pid = holder.owner == "soapd run", holder.pid
    job_errors: dict[str, str] = json.loads(values.get("job_errors") or "{}")
    alerts: dict[str, int] = {}
    if hasattr(store, "alert_counts"):
        alerts = store.alert_counts()
    return {
        "database": str(cfg.paths.db_path),
        "daemon": "running" if running else "not running",
        "pid": int(pid) if running and pid else None,
        "writer": holder.describe() if holder is not None else None,
        "job_errors": job_errors,
        "status": values,
        "backlog": store.backlog(),
        "last_processed_utc": store.last_processed_utc(),
        "observations": store.followed_observations(),
        "alerts": alerts,
        "catalog_cache": folder_usage(cfg.paths.catalog_cache_dir),
        "recent_errors": store.recent_errors(n_errors),
        "inbox_rejected": _rejected(cfg),
    }


def format_status(info: dict[str, Any]) -> str:
    """Return the human-readable ``soapd status`` text."""
    st = info["status"]
    lines = [
        f"database      {info['database']}",
        f"daemon        {info['daemon']}"
        + (f" (pid {info['pid']}, since {st.get('started_utc')})" if info["pid"] else "")
        + (f" (stopped {st['stopped_utc']})" if not info["pid"] and st.get("stopped_utc") else ""),
        f"last poll     {st.get('last_poll_utc') or 'never'}"
        + (f" (last ok {st['last_poll_ok_utc']})" if st.get("last_poll_ok_utc") else ""),
    ]
    if st.get("last_poll_error"):
        lines.append(f"poll error    {st['last_poll_error']}")
    if info.get("writer") and not info["pid"]:
        lines.append(f"in use by     {info['writer']}")
    if st.get("auth_error"):
        lines.append(f"token         {st['auth_error']} (at {st.get('auth_error_utc')})")
    for _job, text in sorted(info.get("job_errors", {}).items()):
        lines.append(f"job error     {text}")
    lines += [
        f"last success  {info['last_processed_utc'] or 'never'}",
        f"heartbeat     {st.get('heartbeat_utc') or 'none yet'}",
        "backlog       " + ", ".join(f"{k} {v}" for k, v in info["backlog"].items()),
        f"observations  {', '.join(map(str, info['observations'])) or 'none'}",
    ]
    if info["alerts"]:
        lines.append("alerts        " + ", ".join(f"{k} {v}" for k, v in info["alerts"].items()))
    cache = info["catalog_cache"]
    lines.append(f"catalog cache {cache['files']} file(s), {cache['bytes'] / 1e6:.1f} MB")
    if info["recent_errors"]:
        lines.append("recent errors")
        for e in info["recent_errors"]:
            exp = f" exp {e['exp_id']}" if e["exp_id"] is not None else ""
            lines.append(
                f"  frame {e['frame_id']}{exp} {e['state']} (tries {e['tries']}) "
                f"{e['updated_at'][:19]}: {e['last_error']}"
            )
    rejected = info.get("inbox_rejected") or []
    if rejected:
        lines.append(
            f"inbox rejected {len(rejected)} file(s) in inbox/rejected/ (reasons beside them)"
        )
        lines += [f"  {r['rejected_utc'] or '?'} {r['name']}: {r['reason']}" for r in rejected[:10]]
    return "\n".join(lines)


def _rejected(cfg: Config) -> list[dict[str, Any]]:
    """Return the inbox files soapd refused (moved to ``<inbox>/rejected/``), newest first."""
    from soapd.ingest.rejected import list_rejected

    return list_rejected(cfg.paths.inbox_dir)
