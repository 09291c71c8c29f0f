"""Helpers of :mod:`soapd.api.soap`: config, date windows, forced positions, table reuse, progress.

Plain functions with no state; they keep ``soap.py`` to the ``Soap`` class itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from soapd.config import Config, load_config
from soapd.downloads import Fetched, download_backoff, download_one
from soapd.errors import FrameUnreadable, SoapdError, StoreError
from soapd.timeutil import to_mjd

if TYPE_CHECKING:
    from astropy.coordinates import SkyCoord
    from astropy.table import Table

    from soapd.models import ExposureMeta, FrameRow, Target
    from soapd.skynet.records import Exposure
    from soapd.skynet.source import ExposureSource
    from soapd.store import Store

__all__ = [
    "all_off_frame",
    "exp_in_range",
    "fetch_file",
    "forced_targets",
    "frame_file",
    "frame_row_mjd",
    "has_forced_rows",
    "progress_iter",
    "resolve_config",
    "row_in_range",
    "stored_table",
    "why_skipped",
]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

#: A stored forced row closer than this to a requested position counts as that position.
SAME_POSITION_ARCSEC = 0.05


def resolve_config(
    config: Config | str | Path | None, state_dir: str | Path | None
) -> tuple[Config, bool]:
    """Return the effective Config (loaded if a path, ``state_dir`` applied) and if it is private.

    Private: no ``state_dir`` and the config does not name a state folder (no
    ``[paths]`` settings, and its file, if any, has no ``paths.state_dir``). Then
    state goes to ``./soapd_data`` (as skynetsoap's ``soap_images/``), not
    /var/lib, and ``Soap`` keeps skynetsoap's file layout. A config that names
    ``paths.state_dir`` (a daemon's) shares that state.
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    private = state_dir is None and cfg.paths == Config().paths and not _names_state(cfg.source)
    if state_dir is None and not private:
        return cfg, False
    root = Path(state_dir if state_dir is not None else "soapd_data").expanduser().resolve()
    cache = root / "cache" if private else cfg.paths.cache_dir
    paths = dataclasses.replace(cfg.paths, state_dir=root, cache_dir=cache)
    return cfg.replace(paths=paths), private


def _names_state(source: Path | None) -> bool:
    """Return True if the TOML file ``source`` sets ``paths.state_dir``."""
    if source is None:
        return False
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return True  # it was read a moment ago: treat it as a daemon's config
    paths = data.get("paths")
    return isinstance(paths, dict) and "state_dir" in paths


def exp_in_range(exp: Exposure, lower: float, upper: float) -> bool:
    """Return True when the exposure's mid-time lies in [lower, upper] (unknown: only if open)."""
    when = exp.meta.mid_time_utc
    if when is None:
        return lower == -math.inf and upper == math.inf
    return lower <= to_mjd(when) <= upper


def frame_row_mjd(row: FrameRow) -> float:
    """Return a ledger frame's mid-exposure MJD (``inf`` when unknown)."""
    when: datetime | None = row.meta.mid_time_utc
    return to_mjd(when) if when is not None else math.inf


def row_in_range(row: FrameRow, lower: float, upper: float) -> bool:
    """Return True when the frame's mid-time is in [lower, upper] (unknown: only if open)."""
    mjd = frame_row_mjd(row)
    if mjd == math.inf:
        return lower == -math.inf and upper == math.inf
    return lower <= mjd <= upper


def why_skipped(row: FrameRow) -> str:
    """Return why a frame in ``row.state`` cannot be processed now, for the log."""
    if row.state == "processing":
        return "being processed by the daemon right now; run again later"
    if row.state == "seen":
        return "not downloaded (run with download=True)"
    return f"{row.state}: {row.last_error or 'no reason recorded'}"


def forced_targets(positions: Sequence[SkyCoord] | SkyCoord | None) -> list[Target]:
    """Return forced-photometry targets named ``"RA+DEC"`` (degrees, 5 decimals)."""
    from soapd.models import Target

    if positions is None:
        return []
    if not isinstance(positions, Sequence):
        positions = [positions] if positions.isscalar else list(positions)
    targets: list[Target] = []
    for coord in positions:
        icrs = coord.icrs
        ra, dec = float(icrs.ra.deg) % 360.0, float(icrs.dec.deg)
        targets.append(Target(name=f"{ra:.5f}{dec:+.5f}", ra_deg=ra, dec_deg=dec))
    return targets


def has_forced_rows(table: Table, ra_deg: float, dec_deg: float) -> bool:
    """Return True if ``table`` has a forced row at (ra_deg, dec_deg)."""
    from soapd.api.select import extract_target

    if "is_forced" not in table.colnames or not len(table):
        return False
    forced = table[np.asarray(table["is_forced"], dtype=bool)]
    near = extract_target(
        forced, ra_deg, dec_deg, radius_arcsec=SAME_POSITION_ARCSEC, forced_photometry=True
    )
    return len(near) > 0 or all_off_frame(forced, ra_deg, dec_deg)


def all_off_frame(forced: Table, ra_deg: float, dec_deg: float) -> bool:
    """Return True if the forced row at the position exists but is flagged off the frame."""
    from soapd.flags import Flag

    ra = np.asarray(forced["ra"], dtype=float)
    dec = np.asarray(forced["dec"], dtype=float)
    flags = np.asarray(forced["flag"], dtype=np.int64) if "flag" in forced.colnames else 0
    close = (np.abs(dec - dec_deg) * 3600 < SAME_POSITION_ARCSEC) & (
        np.abs(((ra - ra_deg + 180) % 360 - 180) * np.cos(np.radians(dec_deg))) * 3600
        < SAME_POSITION_ARCSEC
    )
    return bool(np.any(close & ((flags & Flag.OFF_FRAME) != 0)))


def progress_iter(items: Sequence[_T], label: str) -> Iterator[_T]:
    """Yield ``items`` while drawing the TTY-only :class:`soapd.output.progress.ProgressBar`."""
    from soapd.output.progress import ProgressBar

    with ProgressBar(len(items), label=label) as bar:
        for item in items:
            yield item
            bar.advance()


def stored_table(
    row: FrameRow, stored: Mapping[str, Any] | None, targets: Sequence[Target], fingerprint: str
) -> Table | None:
    """Return a frame's stored field-wide table if it can be reused, else None.

    Reusable: the frame is processed, with the config ``fingerprint``, its Parquet
    table is readable and holds a forced row at every target position.
    """
    if row.state != "processed" or stored is None:
        return None
    if stored.get("config_hash") != fingerprint:
        return None
    path = Path(str(stored.get("catalog_path")))
    if not path.is_file():
        return None
    from soapd.output.export import read_table

    try:
        table = read_table(path, fmt="parquet")
    except SoapdError as exc:
        logger.warning(
            "frame %d: stored table unreadable (%s); processing again", row.frame_id, exc
        )
        return None
    if not all(has_forced_rows(table, t.ra_deg, t.dec_deg) for t in targets):
        return None
    return table


def fetch_file(
    store: Store,
    client: ExposureSource,
    exp: Exposure,
    *,
    config: Config,
    frames_dir: Path | None = None,
) -> Fetched:
    """Make sure an exposure recorded in the ledger has its file on disk (the API's download).

    A 'seen' frame is downloaded with :func:`soapd.frames.download_one`, as the
    daemon does (same errors, same tries). A download that failed for good is
    tried again, since the user asks for it. ``Fetched.path`` is None when the
    download failed, or when the ledger says the file was downloaded but it is
    gone (it is not fetched again). New files go to ``frames_dir`` (default
    ``paths.frames_dir``, the daemon's folder).
    """
    row = store.find_frame(exp_id=exp.exp_id)
    if row is not None and row.state == "failed" and row.path is None:
        store.requeue(frame_ids=[row.frame_id], states=("failed",))
        row = store.find_frame(exp_id=exp.exp_id)
    if row is None:
        raise StoreError(f"exposure {exp.exp_id} vanished from the ledger")
    if row.state == "seen":
        return download_one(
            store,
            client,
            row,
            frames_dir or config.paths.frames_dir,
            max_tries=config.service.max_tries,
            backoff=download_backoff(config.skynet),
        )
    path = row.path if row.path is not None and row.path.exists() else None
    if path is None:
        logger.warning(
            "exposure %d is '%s' but its file %s is gone; not downloaded again",
            exp.exp_id,
            row.state,
            row.path,
        )
    return Fetched(frame_id=row.frame_id, path=path, new=False, state=row.state)


def frame_file(
    store: Store, folders: Sequence[Path], image: str | Path | int
) -> tuple[Path, ExposureMeta | None]:
    """Return a frame's file and its archive metadata (from the ledger, if known).

    ``image`` is a FITS path, a file name in one of ``folders`` (an ``image_file``
    column value) or an exposure id. Raise FrameUnreadable if there is no file.
    """
    if isinstance(image, bool):
        raise TypeError("image must be a FITS path or an exposure id")
    if isinstance(image, int):
        row = store.find_frame(exp_id=image)
        if row is None or row.path is None:
            raise FrameUnreadable(f"exposure {image} has not been downloaded; call download()")
        return row.path, row.meta
    path = Path(image)
    for folder in folders:
        if not path.is_file() and (folder / path.name).is_file():
            path = folder / path.name
    if not path.is_file():
        raise FrameUnreadable(f"{path}: no such frame file")
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    row = store.find_frame(sha256=digest.hexdigest())
    return path, None if row is None else row.meta
