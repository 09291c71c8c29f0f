"""Epochs: which frames of a target are stacked together.

Frames are grouped by (telescope, band) and by a time bin of their mid-exposure
time. The bins are fixed in advance, so a frame arriving later joins the same
epoch as its neighbours and never reshuffles earlier ones:

* **with a trigger time** ``T0`` and ``t = mid - T0 >= first_bin_s``: log-spaced
  bins with edges ``first_bin_s * (1 + f)**k`` (``f = log_bin_factor``); a bin
  starting at ``t_k`` spans ``f * t_k``, so every frame in it lies within
  ``f * t`` of the others (``Delta t <= f t``, the afterglow hardly changes
  across an epoch). Frames in ``0 <= t < first_bin_s`` share one epoch (index -1);
* **without a trigger**, or before it: fixed bins of ``fixed_bin_s`` seconds
  counted from 1970-01-01 UTC (from ``T0`` backwards before a trigger).

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> b = epoch_bin(t0 + timedelta(hours=1), trigger_time_utc=t0, log_bin_factor=0.1,
...               first_bin_s=60.0, fixed_bin_s=3600.0)
>>> b.kind, b.index, round((b.end_utc - b.start_utc) / (b.start_utc - t0), 3)
('log', 42, 0.1)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, Protocol, TypeVar

__all__ = ["Epoch", "EpochBin", "Timed", "epoch_bin", "group_epochs"]

_UNIX0 = datetime(1970, 1, 1, tzinfo=UTC)


class Timed(Protocol):
    """What grouping needs of a frame: where and when it was taken."""

    @property
    def telescope(self) -> str:
        """Telescope name."""
        ...

    @property
    def band(self) -> str:
        """Normalised band."""
        ...

    @property
    def mid_time_utc(self) -> datetime:
        """Mid-exposure time (aware, UTC)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochBin:
    """One time bin: ``kind`` "log" (after the trigger), "pre" (before it) or "fixed"."""

    kind: str
    index: int
    start_utc: datetime
    end_utc: datetime

    @property
    def label(self) -> str:
        """Stable text id of the bin, e.g. ``log42`` or ``fixed493827``."""
        return f"{self.kind}{self.index}"

    def is_open(self, now_utc: datetime) -> bool:
        """Return True while frames taken before ``now_utc`` could still fall in this bin."""
        return now_utc < self.end_utc


T = TypeVar("T", bound=Timed)


@dataclass(frozen=True, slots=True, kw_only=True)
class Epoch(Generic[T]):
    """The frames of one telescope and band in one time bin, in time order."""

    telescope: str
    band: str
    bin: EpochBin
    frames: tuple[T, ...]

    @property
    def key(self) -> str:
        """Stable id of the epoch: ``telescope|band|bin label``."""
        return f"{self.telescope}|{self.band}|{self.bin.label}"


def _log_edge(first_bin_s: float, factor: float, k: int) -> float:
    return first_bin_s * (1.0 + factor) ** k


def epoch_bin(
    mid_time_utc: datetime,
    *,
    trigger_time_utc: datetime | None,
    log_bin_factor: float,
    first_bin_s: float,
    fixed_bin_s: float,
) -> EpochBin:
    """Return the bin of a frame whose mid-exposure time is ``mid_time_utc`` (see the module)."""
    if trigger_time_utc is not None:
        t0 = trigger_time_utc.astimezone(UTC)
        t_s = (mid_time_utc - t0).total_seconds()
        if t_s < 0:
            k = math.floor(t_s / fixed_bin_s)
            return EpochBin(
                kind="pre",
                index=k,
                start_utc=t0 + timedelta(seconds=k * fixed_bin_s),
                end_utc=t0 + timedelta(seconds=(k + 1) * fixed_bin_s),
            )
        if t_s < first_bin_s:
            return EpochBin(
                kind="log", index=-1, start_utc=t0, end_utc=t0 + timedelta(seconds=first_bin_s)
            )
        k = math.floor(math.log(t_s / first_bin_s) / math.log1p(log_bin_factor))

        def edge(i: int) -> datetime:
            return t0 + timedelta(seconds=_log_edge(first_bin_s, log_bin_factor, i))

        # Membership is decided on the (microsecond) datetimes of the edges, so that a
        # frame exactly at an edge falls in the later bin whatever the float rounding.
        if mid_time_utc >= edge(k + 1):
            k += 1
        elif mid_time_utc < edge(k):
            k -= 1
        return EpochBin(kind="log", index=k, start_utc=edge(k), end_utc=edge(k + 1))
    t_s = (mid_time_utc - _UNIX0).total_seconds()
    k = math.floor(t_s / fixed_bin_s)
    return EpochBin(
        kind="fixed",
        index=k,
        start_utc=_UNIX0 + timedelta(seconds=k * fixed_bin_s),
        end_utc=_UNIX0 + timedelta(seconds=(k + 1) * fixed_bin_s),
    )


def group_epochs(
    frames: Iterable[T],
    *,
    trigger_time_utc: datetime | None,
    log_bin_factor: float,
    first_bin_s: float,
    fixed_bin_s: float,
) -> list[Epoch[T]]:
    """Group ``frames`` into epochs by (telescope, band, time bin); return them by start time.

    Each epoch's frames are in mid-time order. Ties in the epoch order are broken
    by telescope, then band.
    """
    groups: dict[tuple[str, str, str], tuple[EpochBin, list[T]]] = {}
    for frame in frames:
        b = epoch_bin(
            frame.mid_time_utc,
            trigger_time_utc=trigger_time_utc,
            log_bin_factor=log_bin_factor,
            first_bin_s=first_bin_s,
            fixed_bin_s=fixed_bin_s,
        )
        key = (frame.telescope, frame.band, b.label)
        groups.setdefault(key, (b, []))[1].append(frame)
    epochs: list[Epoch[T]] = []
    for (telescope, band, _), (b, members) in groups.items():
        ordered: Sequence[T] = sorted(members, key=lambda f: f.mid_time_utc)
        epochs.append(Epoch(telescope=telescope, band=band, bin=b, frames=tuple(ordered)))
    epochs.sort(key=lambda e: (e.bin.start_utc, e.telescope, e.band))
    return epochs
