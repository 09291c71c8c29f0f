"""The ``[retention]`` section: how long soapd keeps downloaded frames, field tables, cutouts.

Part of the configuration schema (:mod:`soapd.config.schema`), kept in its own
module; the same rules apply (defaults only here, a ``#:`` comment per field).
Every limit defaults to 0, which means "off": nothing is deleted unless asked.
Measurements and the ledger are never deleted; a pruned Skynet frame is
downloaded again by ``soapd reprocess``.
"""

from __future__ import annotations

from dataclasses import dataclass

from soapd.config.fields import _FROZEN, _opt

__all__ = ["RetentionConfig"]


@dataclass(**_FROZEN)
class RetentionConfig:
    """Retention of downloaded frames and field-wide tables (``soapd prune``, the daily job)."""

    #: Delete a downloaded frame file this many days after soapd finished with it (processed,
    #: rejected or failed); 0 keeps frames for ever. Frames waiting, downloading or being
    #: processed, and frames of a stack epoch still open, are never deleted.
    frames_keep_days: float = _opt(0.0, lo=0.0, hi=36500.0)
    #: Disk budget in GB (10^9 bytes) for downloaded frame files: past it, the oldest finished
    #: frames are deleted first until the rest fit; 0 means no budget.
    frames_max_gb: float = _opt(0.0, lo=0.0, hi=1.0e6)
    #: Delete a frame's field-wide table (all sources, used to extract targets added later)
    #: this many days after the frame was processed; 0 keeps tables for ever.
    field_tables_keep_days: float = _opt(0.0, lo=0.0, hi=36500.0)
    #: Disk budget in GB (10^9 bytes) for field-wide tables, oldest deleted first; 0: none.
    field_tables_max_gb: float = _opt(0.0, lo=0.0, hi=1.0e6)
    #: Also delete frames that came from the inbox or the command line. soapd may hold the only
    #: copy of those, and `soapd reprocess` cannot download them again.
    prune_local_frames: bool = False
    #: Delete the stacks' cached cutouts (``cache_dir/cutouts``, ~0.4 MB per frame and
    #: target, cut again from the frame file when a stack needs them) this many days after
    #: they were written; those of frames in a stack epoch still open are kept. 0: for ever.
    cutouts_keep_days: float = _opt(0.0, lo=0.0, hi=36500.0)
