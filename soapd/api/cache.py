"""Cache administration for the Python API: sizes, clearing and pruning of soapd's files.

Three folders are managed: downloaded frames (``paths.frames_dir``), field-wide
tables (``paths.tables_dir``) and reference-catalog tiles
(``paths.catalog_cache_dir``). Files are grouped by Skynet observation through the
ledger, so pruning deletes whole observations, oldest first, as skynetsoap's
``prune_cache`` does, but keeps the ledger true: every deletion is recorded
with :meth:`~soapd.store.ledger.Ledger.forget_files` (a frame not yet
processed is downloaded again when needed; measurements are never deleted).

Never deleted: frames that came from the inbox or the command line (soapd may
hold their only copy), frames being processed, files modified in the last
``GRACE_S`` seconds that the ledger does not know yet (a download in flight).
No interactive prompts: deletion happens only with ``confirm=True``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soapd.models import FRAME_STATES

if TYPE_CHECKING:
    from soapd.config import Config
    from soapd.store import Store

__all__ = ["GRACE_S", "CacheAdmin"]

logger = logging.getLogger(__name__)

#: Files unknown to the ledger and younger than this (seconds) are left alone.
GRACE_S = 3600.0

_MB = 1024.0 * 1024.0


@dataclass
class _Unit:
    """Files deleted together: one observation, one catalog tile or one stray file."""

    key: str
    obs_id: int | None = None
    files: list[Path] = field(default_factory=list)
    #: What each deletable file is: "frame", "table" (soapd's) or "result" (exports, plots).
    kinds: dict[Path, str] = field(default_factory=dict)
    frame_ids: list[int] = field(default_factory=list)
    table_ids: list[int] = field(default_factory=list)
    kept_bytes: int = 0
    newest_mtime: float = 0.0

    def add(self, path: Path, *, deletable: bool = True, kind: str = "") -> None:
        st = path.stat()
        self.newest_mtime = max(self.newest_mtime, st.st_mtime)
        if deletable:
            self.files.append(path)
            self.kinds[path] = kind
        else:
            self.kept_bytes += st.st_size

    def only(self, *, frames: bool, tables: bool) -> _Unit:
        """Return the part of this unit with frames (images) and/or tables and results."""
        want = ({"frame", "image"} if frames else set()) | (
            {"table", "result"} if tables else set()
        )
        part = _Unit(key=self.key, obs_id=self.obs_id, newest_mtime=self.newest_mtime)
        part.files = [p for p in self.files if self.kinds.get(p, "") in want]
        part.kinds = {p: self.kinds[p] for p in part.files}
        part.frame_ids = list(self.frame_ids) if frames else []
        part.table_ids = list(self.table_ids) if tables else []
        return part

    @property
    def size(self) -> int:
        return sum(_size(p) for p in self.files)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


class CacheAdmin:
    """Sizes, clearing and pruning over the frames, tables and catalog folders.

    ``image_root`` and ``result_root`` are skynetsoap's folders (``soap_images``,
    ``soap_results``), one sub-folder per observation id: their files belong to
    that observation (frames there are deletable like those of ``frames_dir``).
    """

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        image_root: Path | None = None,
        result_root: Path | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.frames_dir = config.paths.frames_dir
        self.tables_dir = config.paths.tables_dir
        self.catalog_dir = config.paths.catalog_cache_dir
        self.image_root = image_root
        self.result_root = result_root

    def _units(self) -> dict[str, _Unit]:
        """Group every managed file into deletion units, using the ledger."""
        units: dict[str, _Unit] = {}
        known: set[Path] = set()

        def obs_unit(obs_id: int | None) -> _Unit:
            key = f"obs:{obs_id}" if obs_id is not None else "local"
            return units.setdefault(key, _Unit(key=key, obs_id=obs_id))

        for row in self.store.frames_of():
            if row.path is None or not row.path.is_file():
                continue
            known.add(row.path.resolve())
            ok = (
                row.source == "skynet"
                and row.state != "processing"
                and (
                    _inside(row.path, self.frames_dir)
                    or (self.image_root is not None and _inside(row.path, self.image_root))
                )
            )
            unit = obs_unit(row.obs_id if row.source == "skynet" else None)
            unit.add(row.path, deletable=ok, kind="frame")
            if ok:
                unit.frame_ids.append(row.frame_id)
        for rec in self.store.frames_with_tables():
            path = Path(str(rec["catalog_path"]))
            if not path.is_file():
                continue
            known.add(path.resolve())
            unit = obs_unit(rec.get("obs_id"))
            unit.add(path, deletable=_inside(path, self.tables_dir), kind="table")
            unit.table_ids.append(int(rec["frame_id"]))
        for root, kind in ((self.image_root, "image"), (self.result_root, "result")):
            for folder in sorted(root.iterdir()) if root is not None and root.is_dir() else []:
                if not folder.is_dir() or not folder.name.isdigit():
                    continue
                for path in _files(folder):
                    if path.resolve() not in known:
                        known.add(path.resolve())
                        obs_unit(int(folder.name)).add(path, kind=kind)
        now = time.time()
        for folder in (self.frames_dir, self.tables_dir):
            for path in _files(folder):
                if path.resolve() in known:
                    continue
                stray = units.setdefault(f"stray:{path}", _Unit(key=f"stray:{path}"))
                stray.add(path, deletable=now - path.stat().st_mtime > GRACE_S)
        for path in _files(self.catalog_dir):
            units.setdefault(f"catalog:{path}", _Unit(key=f"catalog:{path}")).add(path)
        return units

    def info(self, obs_id: int | None = None) -> dict[str, Any]:
        """Return counts and sizes (MB) per folder, and for ``obs_id`` its files and states."""
        out: dict[str, Any] = {"state_dir": str(self.config.paths.state_dir)}
        total = 0
        for name, folder in (
            ("frames", self.frames_dir),
            ("tables", self.tables_dir),
            ("catalogs", self.catalog_dir),
        ):
            files = _files(folder)
            size = sum(_size(p) for p in files)
            total += size
            out[name] = {"dir": str(folder), "files": len(files), "size_mb": size / _MB}
        for name, root in (("images", self.image_root), ("results", self.result_root)):
            if root is not None and not _inside(root, self.config.paths.state_dir):
                files = _files(root)
                size = sum(_size(p) for p in files)
                total += size
                out[name] = {"dir": str(root), "files": len(files), "size_mb": size / _MB}
        out["total_size_mb"] = total / _MB
        if obs_id is not None:
            unit = self._units().get(f"obs:{obs_id}", _Unit(key=""))
            counts = self.store.frame_state_counts(obs_id)
            out["observation"] = {
                "obs_id": obs_id,
                "files": len(unit.files),
                "size_mb": (unit.size + unit.kept_bytes) / _MB,
                "states": {k: counts[k] for k in FRAME_STATES if counts.get(k)},
            }
        return out

    def _delete(self, unit: _Unit) -> tuple[int, int]:
        """Delete a unit's files and record it in the ledger; return (files, bytes) removed."""
        n = freed = 0
        for path in unit.files:
            size = _size(path)
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            n += 1
            freed += size
        frames_gone = [i for i in unit.frame_ids if i not in set(unit.table_ids)]
        both = [i for i in unit.frame_ids if i in set(unit.table_ids)]
        tables_only = [i for i in unit.table_ids if i not in set(unit.frame_ids)]
        self.store.forget_files(frames_gone, frame_file=True, table_file=False)
        self.store.forget_files(both, frame_file=True, table_file=True)
        self.store.forget_files(tables_only, frame_file=False, table_file=True)
        logger.info("cache: deleted %s (%d files, %.1f MB)", unit.key, n, freed / _MB)
        return n, freed

    def clear(
        self,
        obs_id: int,
        *,
        confirm: bool,
        catalogs: bool = False,
        frames: bool = True,
        tables: bool = True,
    ) -> dict[str, Any]:
        """Delete ``obs_id``'s frames and/or tables and results (and catalog tiles if asked).

        Without ``confirm`` nothing is deleted and the statistics say what would be
        (``images`` and ``results``: the files of each kind).
        """
        units = self._units()
        chosen = [
            u.only(frames=frames, tables=tables) for k, u in units.items() if k == f"obs:{obs_id}"
        ]
        if catalogs:
            chosen += [u for k, u in units.items() if k.startswith("catalog:")]
        files = sum(len(u.files) for u in chosen)
        size = sum(u.size for u in chosen)
        kinds = [u.kinds.get(p, "") for u in chosen for p in u.files]
        stats: dict[str, Any] = {
            "confirmed": confirm,
            "files": files,
            "size_mb": size / _MB,
            "images": sum(k in ("frame", "image") for k in kinds),
            "results": sum(k in ("table", "result") for k in kinds),
        }
        if not confirm:
            logger.warning(
                "clear_cache: nothing deleted (%d files, %.1f MB would be); pass confirm=True",
                files,
                size / _MB,
            )
            return stats
        deleted = [self._delete(u) for u in chosen]
        stats["deleted_files"] = sum(n for n, _ in deleted)
        stats["freed_mb"] = sum(b for _, b in deleted) / _MB
        return stats

    def prune(self, *, max_total_size_mb: float, keep_recent: int = 1) -> dict[str, Any]:
        """Delete observations (then stray files and catalog tiles), oldest first, to fit a budget.

        The ``keep_recent`` observations used most recently are never deleted.
        Return the sizes before and after, what was deleted and whether the budget
        is met.
        """
        if max_total_size_mb < 0 or keep_recent < 0:
            raise ValueError("max_total_size_mb and keep_recent must not be negative")
        units = self._units()
        total = sum(u.size + u.kept_bytes for u in units.values())
        budget = max_total_size_mb * _MB
        observations = sorted(
            (u for u in units.values() if u.obs_id is not None),
            key=lambda u: u.newest_mtime,
            reverse=True,
        )
        protected = {u.key for u in observations[:keep_recent]}
        stats: dict[str, Any] = {
            "total_before_mb": total / _MB,
            "budget_mb": max_total_size_mb,
            "kept_observations": [u.obs_id for u in observations[:keep_recent]],
            "deleted_observations": [],
            "deleted_files": 0,
            "freed_mb": 0.0,
        }
        candidates = sorted(
            (u for u in units.values() if u.key not in protected and u.files),
            key=lambda u: u.newest_mtime,
        )
        for unit in candidates:
            if total <= budget:
                break
            n, freed = self._delete(unit)
            total -= freed
            stats["deleted_files"] += n
            stats["freed_mb"] += freed / _MB
            if unit.obs_id is not None:
                stats["deleted_observations"].append(unit.obs_id)
        stats["total_after_mb"] = total / _MB
        stats["over_budget"] = total > budget
        if total > budget:
            logger.warning(
                "prune_cache: still %.3f MB over the %.3f MB budget (kept: the %d most recent "
                "observations and files soapd cannot fetch again)",
                (total - budget) / _MB,
                max_total_size_mb,
                keep_recent,
            )
        return stats
