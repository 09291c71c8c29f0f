"""What the web pages and the JSON endpoints show, as plain JSON-able data.

Every function takes a read-only store (:class:`~soapd.store.readonly.ReadOnlyStore`)
and returns dicts and lists of str, int, float, bool and None (NaN becomes
None), so the same data feeds the Jinja2 templates and ``/api/...``. No SQL
here: the queries live in :mod:`soapd.store`.
"""

from __future__ import annotations

import functools
import inspect
import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from soapd.fileio import folder_usage, pid_alive
from soapd.flags import Flag, describe
from soapd.web.stackrows import stack_points

if TYPE_CHECKING:
    from collections.abc import Sequence

    from astropy.table import Table

    from soapd.config import Config
    from soapd.models import StackRecord
    from soapd.store.readonly import ReadOnlyStore

__all__ = [
    "flag_meanings",
    "flag_words",
    "lightcurve_payload",
    "status_payload",
    "target_rows",
    "target_state",
]

_MJD0 = datetime(1858, 11, 17, tzinfo=UTC)
#: Flags that mean "the target was not measured in this frame".
_NOT_COVERED = int(Flag.OFF_FRAME | Flag.NO_WCS)


def _now() -> datetime:
    return datetime.now(UTC)


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _age_s(text: str | None, now: datetime) -> float | None:
    when = _parse(text)
    return None if when is None else round((now - when).total_seconds(), 1)


def _num(value: Any) -> Any:
    """Return ``value`` with numpy scalars unwrapped and NaN/inf as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def mjd_to_utc(mjd: float) -> str:
    """Return an MJD (UTC days) as ISO-8601 UTC text to the second, with a ``Z``."""
    seconds = (mjd - 40587.0) * 86400.0
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------- flags
@functools.cache
def flag_meanings() -> dict[str, str]:
    """Return each flag bit's name -> its meaning (the ``#:`` comments of soapd.flags.Flag)."""
    out: dict[str, str] = {}
    buf: list[str] = []
    for line in inspect.getsource(Flag).splitlines():
        text = line.strip()
        if text.startswith("#:"):
            buf.append(text[2:].strip())
        elif "=" in text and buf:
            out[text.split("=")[0].strip()] = " ".join(buf)
            buf = []
    return out


@functools.cache
def flag_words(value: int) -> tuple[str, ...]:
    """Return the bits of a flag word as words, e.g. ``("UPPER_LIMIT: not a detection ...",)``."""
    meanings = flag_meanings()
    return tuple(f"{name}: {meanings.get(name, '')}".rstrip(": ") for name in describe(value))


# ---------------------------------------------------------------------------- status


def status_payload(
    store: ReadOnlyStore, cfg: Config, *, notifier_keys: list[str]
) -> dict[str, Any]:
    """Return everything the status page shows: daemon, backlog, problems, alerts, cache."""
    now = _now()
    values = store.status_values()
    pid_text = values.get("pid") or ""
    pid = int(pid_text) if pid_text.isdigit() else 0
    running = bool(pid) and not values.get("stopped_utc") and pid_alive(pid)
    heartbeat_age = _age_s(values.get("heartbeat_utc"), now)
    stale_after_s = 3.0 * cfg.service.heartbeat_interval_s
    daemon = {
        "running": running,
        "pid": pid if running else None,
        "soapd_version": values.get("soapd_version"),
        "started_utc": values.get("started_utc"),
        "stopped_utc": values.get("stopped_utc"),
        "heartbeat_utc": values.get("heartbeat_utc"),
        "heartbeat_age_s": heartbeat_age,
        "heartbeat_stale": bool(running and heartbeat_age and heartbeat_age > stale_after_s),
        "last_poll_utc": values.get("last_poll_utc"),
        "last_poll_age_s": _age_s(values.get("last_poll_utc"), now),
        "last_poll_ok_utc": values.get("last_poll_ok_utc"),
        "last_poll_error": values.get("last_poll_error"),
        "auth_error": values.get("auth_error"),
        "auth_error_utc": values.get("auth_error_utc"),
        "last_success_utc": values.get("last_success_utc"),
    }
    return {
        "generated_utc": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "database": str(cfg.paths.db_path),
        "daemon": daemon,
        "backlog": store.backlog(),
        "last_processed_utc": store.last_processed_utc(),
        "observations": store.observation_activity(),
        "failed_frames": store.problem_frames("failed"),
        "rejected_frames": store.problem_frames("rejected"),
        "alerts": {
            "counts": store.alert_counts(),
            "notifiers": store.notifier_alert_counts(notifier_keys),
        },
        "catalog_cache": folder_usage(cfg.paths.catalog_cache_dir),
        "pending_migrations": store.pending_migrations(),
    }


# --------------------------------------------------------------------------- targets
def target_state(point: dict[str, Any] | None) -> tuple[str, str]:
    """Return (state, text) of a target's latest point: detected, limit, not covered, no data.

    ``point`` holds the decoded measurement fields (``is_detection``, ``mag``,
    ``mag_err``, ``lim_mag``, ``flags``) or is None.
    """
    if point is None:
        return "no data", "-"
    flags = int(_num(point.get("flags")) or 0)
    mag, err, lim = (_num(point.get(k)) for k in ("mag", "mag_err", "lim_mag"))
    if flags & _NOT_COVERED:
        return "not covered", ", ".join(describe(flags & _NOT_COVERED))
    if point.get("is_detection") and mag is not None:
        return "detected", f"{mag:.3f} ± {err:.3f}" if err is not None else f"{mag:.3f}"
    if lim is not None:
        return "limit", f"> {lim:.2f}"
    return "not covered", ", ".join(describe(flags)) or "no limit"


def target_rows(store: ReadOnlyStore) -> list[dict[str, Any]]:
    """Return the targets table: one JSON-able row per target with its latest state."""
    now = _now()
    out = []
    for row in store.target_overview():
        last = row["last"]
        state, text = target_state(last)
        trigger = _parse(row["trigger_time_utc"])
        last_mjd = _num(row["last_mjd"])
        out.append(
            {
                "name": row["name"],
                "ra_deg": row["ra_deg"],
                "dec_deg": row["dec_deg"],
                "active": bool(row["active"]),
                "trigger_time_utc": row["trigger_time_utc"],
                "since_trigger_h": (
                    round((now - trigger).total_seconds() / 3600.0, 3) if trigger else None
                ),
                "n_points": int(row["n_points"]),
                "state": state,
                "last_text": text,
                "last_band": (last or {}).get("band"),
                "last_mag": _num((last or {}).get("mag")) if state == "detected" else None,
                "last_mag_err": _num((last or {}).get("mag_err")) if state == "detected" else None,
                "last_lim_mag": _num((last or {}).get("lim_mag")),
                "last_frame_id": int(last["frame_id"]) if last else None,
                "last_mjd": last_mjd,
                "last_utc": mjd_to_utc(last_mjd) if last_mjd is not None else None,
            }
        )
    return out


# ------------------------------------------------------------------------ lightcurve
def _listed(values: np.ndarray, digits: int | None = None) -> list[float | None]:
    """Return floats as a list, rounded to ``digits``, NaN and infinities as None."""
    if digits is not None:
        values = np.round(values, digits)
    out: list[float | None] = values.tolist()
    if not np.isfinite(values).all():
        out = [v if math.isfinite(v) else None for v in out]  # type: ignore[arg-type]
    return out


class _Columns:
    """The columns of a lightcurve Table as plain arrays, for the rows in ``keep`` only."""

    def __init__(self, table: Table, keep: np.ndarray | None) -> None:
        self.table = table
        self.keep = keep
        self.n = len(table) if keep is None else len(keep)

    def array(self, name: str, dtype: Any, fill: Any) -> np.ndarray | None:
        if name not in self.table.colnames:
            return None
        col = self.table[name]
        values = np.ma.filled(np.ma.asarray(getattr(col, "value", col)), fill).astype(dtype)
        return values if self.keep is None else values[self.keep]

    def floats(self, name: str) -> np.ndarray:
        values = self.array(name, float, np.nan)
        return np.full(self.n, np.nan) if values is None else values

    def ints(self, name: str, fill: int = 0) -> list[int]:
        values = self.array(name, np.int64, fill)
        out: list[int] = [fill] * self.n if values is None else values.tolist()
        return out

    def strs(self, name: str) -> list[str]:
        values = self.array(name, str, "")
        out: list[str] = [""] * self.n if values is None else values.tolist()
        return out


def _one_per_frame(table: Table) -> np.ndarray | None:
    """Rows of each frame's lowest ``aperture_id``, in (mjd, aperture) order; None: every row.

    The selection of :func:`soapd.alerts.gcn.one_per_frame`, without copying the Table.
    """
    n = len(table)
    if n == 0 or "frame_id" not in table.colnames:
        return None
    mjd: np.ndarray = np.ma.filled(np.ma.asarray(table["mjd"], dtype=float), np.nan)
    aperture = (
        np.ma.filled(np.ma.asarray(table["aperture_id"]), 0).astype(np.int64)
        if "aperture_id" in table.colnames
        else np.zeros(n, dtype=np.int64)
    )
    order = np.lexsort((aperture, mjd))
    frames = np.ma.filled(np.ma.asarray(table["frame_id"]), -1).astype(np.int64)[order]
    _, first = np.unique(frames, return_index=True)
    keep = order[np.sort(first)]
    if len(keep) == n and bool((keep == np.arange(n)).all()):
        return None
    return keep


def _limit_flux_ujy(lim_mag: np.ndarray, bands: list[str], systems: list[str]) -> np.ndarray:
    """Return each limit (mag) as an AB flux density in microjansky (NaN when uncalibrated)."""
    from soapd.filters import AB_MINUS_VEGA

    system = np.asarray(systems, dtype=str)
    names, which = np.unique(np.asarray(bands, dtype=str), return_inverse=True)
    vega = np.array([AB_MINUS_VEGA.get(str(b), 0.0) for b in names])[which.reshape(-1)]
    ab = lim_mag + np.where(system == "Vega", vega, 0.0)
    calibrated = (system == "AB") | (system == "Vega")
    return np.where(calibrated, 10.0 ** (-0.4 * (ab - 23.9)), np.nan)


def lightcurve_payload(
    table: Table,
    *,
    target: dict[str, Any],
    all_apertures: bool = False,
    stacks: Sequence[StackRecord] = (),
) -> dict[str, Any]:
    """Return a lightcurve as column arrays: frame rows, then stacked-epoch rows.

    Parameters
    ----------
    table
        ``Store.lightcurve`` of the target.
    target
        The target's name, ra_deg, dec_deg and trigger_time_utc (ISO text or None).
    all_apertures
        Keep every aperture's row instead of each frame's lowest ``aperture_id``.
    stacks
        The target's stacked epochs (``Store.stacked``): one row each, after the
        frame rows (see :func:`soapd.web.stackrows.stack_points`).

    Returns
    -------
    dict
        ``target``; ``n_points``, ``n_detections``, ``n_limits`` (single-frame
        rows); ``n_stacks``, ``n_stack_detections``, ``n_stack_limits``;
        ``n_rows`` (every row); ``units`` (per column) and ``points``: equal-length
        lists, one entry per row: the frame rows in time order, then the stack
        rows in time order. ``row_type`` is "frame" or "stack" (``stacked`` the
        same as a bool); ``mjd`` in days, magnitudes in mag, ``flux_ujy`` and
        ``lim_flux_ujy`` (the limit as AB flux density) in microjansky,
        ``t_since_trigger_h`` in hours or None, ``flag_words`` the flag bits in
        words; ``frame_id`` is None for a stack, whose frames are in
        ``member_frame_ids`` (``n_frames`` x ``exptime_s`` = ``total_exptime_s``;
        ``excluded``: the epoch's frames left out, {reason: [frame ids]}). NaN is null.
    """
    keep = None if all_apertures else _one_per_frame(table)
    cols = _Columns(table, keep)
    n = cols.n
    mjd = cols.floats("mjd")
    trigger = _parse(target.get("trigger_time_utc"))
    t0 = (trigger - _MJD0).total_seconds() / 86400.0 if trigger else None
    flags = cols.ints("flag")
    words = {v: list(flag_words(v)) for v in set(flags)}
    is_det = [bool(v) for v in cols.ints("is_detection")]
    bands = cols.strs("band" if "band" in table.colnames else "filter")
    systems = cols.strs("cal_mag_system")
    lim_mag = cols.floats("limiting_mag")
    frame_ids = cols.ints("frame_id", -1)
    exptime = _listed(cols.floats("exptime"), 3)
    points: dict[str, list[Any]] = {
        "frame_id": frame_ids,
        "mjd": _listed(mjd, 7),
        "mid_time_utc": cols.strs("mid_time_utc"),
        "t_since_trigger_h": (_listed((mjd - t0) * 24.0, 6) if t0 is not None else [None] * n),
        "band": bands,
        "telescope": cols.strs("telescope"),
        "exptime_s": exptime,
        "is_detection": is_det,
        "mag": _listed(cols.floats("calibrated_mag"), 4),
        "mag_err": _listed(cols.floats("calibrated_mag_err"), 4),
        "lim_mag": _listed(lim_mag, 3),
        "lim_flux_ujy": _listed(_limit_flux_ujy(np.round(lim_mag, 3), bands, systems), 4),
        "lim_nsigma": _listed(cols.floats("limiting_nsigma"), 2),
        "flux_ujy": _listed(cols.floats("flux_ujy"), 4),
        "flux_ujy_err": _listed(cols.floats("flux_ujy_err"), 4),
        "snr": _listed(cols.floats("snr"), 2),
        "mag_system": systems,
        "zp_mag": _listed(cols.floats("zeropoint"), 4),
        "n_cal_stars": cols.ints("n_cal_stars", -1),
        "aperture_id": cols.ints("aperture_id", -1),
        "aperture_radius_px": _listed(cols.floats("aperture_radius"), 3),
        "flags": flags,
        "flag_words": [words[v] for v in flags],
        "image_file": cols.strs("image_file"),
        "obs_id": cols.ints("obs_id", -1),
        "stacked": [False] * n,
        "row_type": ["frame"] * n,
        "stack_id": [None] * n,
        "epoch_key": [None] * n,
        "n_frames": [1] * n,
        "total_exptime_s": list(exptime),
        "member_frame_ids": np.asarray(frame_ids, dtype=np.int64).reshape(-1, 1).tolist(),
        "excluded": [{}] * n,
    }
    n_det = sum(is_det)
    n_stack_det = 0
    if stacks:
        extra = stack_points(
            stacks,
            t0_mjd=t0,
            flag_words=lambda v: list(flag_words(v)),
            limit_flux_ujy=lambda lim, b, s: _listed(
                _limit_flux_ujy(np.asarray(lim, dtype=float), b, s), 4
            ),
        )
        for key, values in points.items():
            values.extend(extra[key])
        n_stack_det = sum(extra["is_detection"])
    return {
        "target": {k: _num(v) for k, v in target.items()},
        "n_points": n,
        "n_detections": n_det,
        "n_limits": n - n_det,
        "n_stacks": len(stacks),
        "n_stack_detections": n_stack_det,
        "n_stack_limits": len(stacks) - n_stack_det,
        "n_rows": n + len(stacks),
        "units": {
            "mjd": "d",
            "t_since_trigger_h": "h",
            "exptime_s": "s",
            "total_exptime_s": "s",
            "mag": "mag",
            "mag_err": "mag",
            "lim_mag": "mag",
            "flux_ujy": "uJy",
            "flux_ujy_err": "uJy",
            "lim_flux_ujy": "uJy",
            "zp_mag": "mag",
            "aperture_radius_px": "pix",
        },
        "points": points,
    }
