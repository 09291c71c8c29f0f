"""Rule state: per target, what the alert rules read of its lightcurve (issue 11).

The rules (:mod:`soapd.alerts.state`) decide a new point from a small summary of
the target's earlier points instead of its whole history, so recording a frame
costs the same after ten or ten thousand frames. The summary is two tables
(migration ``m010_rule_state``):

``rule_targets``  one row per target whose state is built: the number of points and
                  the newest point's (mjd, frame_id);
``rule_state``    one row per target x "kind" (telescope, band, magnitude system):
                  :class:`KindState`.

A target without a ``rule_targets`` row has no state: the next frame that measures
it builds the state from its history. ``Store.save_result`` writes the states it is
given in the transaction that stores the measurements, and invalidates (deletes) the
state of every other target the frame measured, so a state is never older than the
measurements it summarises.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from soapd.store.base import Repository
from soapd.store.connection import in_chunks

__all__ = ["Kind", "KindState", "RuleStates", "TargetState"]

#: What makes two points comparable: (telescope, band, magnitude system).
Kind = tuple[str, str, str]

_KIND_FIELDS = (
    "n_points",
    "any_detection",
    "any_real",
    "max_real_snr",
    "n_lim",
    "max_lim_mag",
    "max_nondet_lim_mag",
    "last_clean_mag",
    "last_clean_mag_err",
    "last_real_mag",
    "faded",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class KindState:
    """The summary of a target's points of one kind (magnitudes in mag; NaN: none).

    ``n_points``: points of the kind; ``any_detection``: one was a detection (spurious
    or not); ``any_real``: one was a real detection (no spurious bit);
    ``max_real_snr``: the highest finite S/N of a real detection; ``n_lim`` and
    ``max_lim_mag``: points with a finite limit and the deepest of those limits (of
    detections too); ``max_nondet_lim_mag``: the deepest limit of an upper limit;
    ``last_clean_mag``/``last_clean_mag_err``: the newest clean real detection with a
    finite magnitude and error; ``last_real_mag``: the newest real detection with a
    finite magnitude; ``faded``: an upper limit fainter than ``last_real_mag`` came
    after it.
    """

    n_points: int = 0
    any_detection: bool = False
    any_real: bool = False
    max_real_snr: float = math.nan
    n_lim: int = 0
    max_lim_mag: float = math.nan
    max_nondet_lim_mag: float = math.nan
    last_clean_mag: float = math.nan
    last_clean_mag_err: float = math.nan
    last_real_mag: float = math.nan
    faded: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetState:
    """A target's rule state: its points' count, the newest (mjd, frame_id), per-kind summaries.

    ``newest_mjd`` is -inf and ``newest_frame_id`` -1 while the target has no point.
    """

    n_points: int = 0
    newest_mjd: float = -math.inf
    newest_frame_id: int = -1
    kinds: Mapping[Kind, KindState] = field(default_factory=dict)


def _num(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _flt(value: Any) -> float:
    return math.nan if value is None else float(value)


class RuleStates(Repository):
    """Queries on ``rule_targets`` and ``rule_state``."""

    def states_of(self, target_ids: Iterable[int]) -> dict[int, TargetState]:
        """Return the built states of ``target_ids`` (target id -> state); absent: none built."""
        ids = sorted(set(target_ids))
        heads: dict[int, tuple[int, float, int]] = {}
        kinds: dict[int, dict[Kind, KindState]] = {}
        for marks, chunk in in_chunks(ids):
            for tid, n, mjd, fid in self.db.execute(
                "SELECT target_id, n_points, newest_mjd, newest_frame_id FROM rule_targets "
                f"WHERE target_id IN ({marks})",
                chunk,
            ).fetchall():
                heads[int(tid)] = (int(n), float(mjd), int(fid))
            for row in self.db.execute(
                f"SELECT target_id, telescope, band, mag_system, {', '.join(_KIND_FIELDS)} "
                f"FROM rule_state WHERE target_id IN ({marks})",
                chunk,
            ).fetchall():
                k = row[4:]
                kinds.setdefault(int(row[0]), {})[(row[1], row[2], row[3])] = KindState(
                    n_points=int(k[0]),
                    any_detection=bool(k[1]),
                    any_real=bool(k[2]),
                    max_real_snr=_flt(k[3]),
                    n_lim=int(k[4]),
                    max_lim_mag=_flt(k[5]),
                    max_nondet_lim_mag=_flt(k[6]),
                    last_clean_mag=_flt(k[7]),
                    last_clean_mag_err=_flt(k[8]),
                    last_real_mag=_flt(k[9]),
                    faded=bool(k[10]),
                )
        return {
            tid: TargetState(
                n_points=n, newest_mjd=mjd, newest_frame_id=fid, kinds=kinds.get(tid, {})
            )
            for tid, (n, mjd, fid) in heads.items()
        }

    def write_states(self, states: Mapping[int, TargetState]) -> None:
        """Replace the states of the targets in ``states`` (target id -> state).

        Inside the caller's transaction (``Store.save_result``).
        """
        if not states:
            return
        now = self.now()
        ids = sorted(states)
        self.invalidate(ids)
        self.db.conn.executemany(
            "INSERT INTO rule_targets (target_id, n_points, newest_mjd, newest_frame_id, "
            "updated_at) VALUES (?, ?, ?, ?, ?)",
            [
                (tid, s.n_points, s.newest_mjd, s.newest_frame_id, now)
                for tid, s in ((t, states[t]) for t in ids)
            ],
        )
        rows = [
            (
                tid,
                *kind,
                k.n_points,
                int(k.any_detection),
                int(k.any_real),
                _num(k.max_real_snr),
                k.n_lim,
                _num(k.max_lim_mag),
                _num(k.max_nondet_lim_mag),
                _num(k.last_clean_mag),
                _num(k.last_clean_mag_err),
                _num(k.last_real_mag),
                int(k.faded),
            )
            for tid in ids
            for kind, k in sorted(states[tid].kinds.items())
        ]
        marks = ", ".join("?" * (4 + len(_KIND_FIELDS)))
        self.db.conn.executemany(
            f"INSERT INTO rule_state (target_id, telescope, band, mag_system, "
            f"{', '.join(_KIND_FIELDS)}) VALUES ({marks})",
            rows,
        )

    def invalidate(self, target_ids: Iterable[int]) -> int:
        """Delete the states of ``target_ids`` (rebuilt from history when next needed).

        Return how many targets had one.
        """
        ids = sorted(set(target_ids))
        gone = 0
        for marks, chunk in in_chunks(ids):
            self.db.execute(f"DELETE FROM rule_state WHERE target_id IN ({marks})", chunk)
            gone += self.db.execute(
                f"DELETE FROM rule_targets WHERE target_id IN ({marks})", chunk
            ).rowcount
        return gone

    def frame_has_measurements(self, frame_id: int) -> bool:
        """Return True when frame ``frame_id`` already has stored measurement rows."""
        row = self.db.execute(
            "SELECT EXISTS (SELECT 1 FROM measurements WHERE frame_id = ?)", [frame_id]
        ).fetchone()
        return bool(row[0])
