"""The circular of a stored target, from its stacked epochs: text, link and JSON together."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soapd.alerts.circular.rows import CircularRow, rows_from_lightcurve
from soapd.alerts.circular.schema import sidecar, validate_sidecar
from soapd.alerts.circular.text import Circular, compose

if TYPE_CHECKING:
    from soapd.config import CircularConfig
    from soapd.store import Store

__all__ = ["Draft", "draft_for_target", "draft_from_table", "write_draft"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Draft:
    """A circular and its JSON sidecar (schema-valid), ready to write or attach."""

    circular: Circular
    sidecar: dict[str, Any]
    stacked: bool


def draft_for_target(
    store: Store,
    target_name: str,
    *,
    config: CircularConfig | None = None,
    single_frames: bool = False,
    band: str | None = None,
    since_utc: datetime | None = None,
) -> Draft:
    """Draft the circular of a stored target from its stacked epochs (see the module).

    Rows are the target's current stacks (``Store.stacked``); with ``single_frames``,
    or when no stack is stored yet (stacking off, or not built), the single frames'
    forced photometry, combined per epoch unless ``single_frames`` (the text says
    which). ``band`` and ``since_utc`` keep only those rows. Raise CircularError when
    there is nothing to report or the event name is refused, StoreError for an
    unknown target.
    """
    from soapd.config import CircularConfig
    from soapd.errors import StoreError

    cfg = config or CircularConfig()
    target = store.get_target(target_name)
    if target is None:
        raise StoreError(f"no target named {target_name!r}; see `soapd targets list`")
    trigger = target.trigger_time_utc
    rows: list[CircularRow] = []
    stacked = not single_frames
    if stacked:
        rows = [CircularRow.from_stack(s) for s in store.stacked(target.name)]
    if not rows:
        stacked = False
        lc = store.lightcurve(target.name)
        rows = rows_from_lightcurve(lc, trigger_time_utc=trigger, single_frames=single_frames)
    if band is not None:
        rows = [r for r in rows if r.band == band]
    if since_utc is not None:
        rows = [r for r in rows if r.mid_time_utc >= since_utc]
    circular = compose(
        rows,
        target_name=target.name,
        trigger_time_utc=trigger,
        team=cfg.team,
        authors=cfg.authors,
        event_name_check=cfg.event_name_check,
        max_lines=cfg.max_lines,
        stacked=stacked,
    )
    doc = sidecar(
        rows,
        event_name=circular.event_name,
        team=cfg.team,
        trigger_time_utc=trigger,
        ra_deg=target.ra_deg,
        dec_deg=target.dec_deg,
    )
    validate_sidecar(doc)
    return Draft(circular=circular, sidecar=doc, stacked=stacked)


def draft_from_table(
    table: Any,
    *,
    name: str,
    trigger_time_utc: datetime | None = None,
    ra_deg: float | None = None,
    dec_deg: float | None = None,
    stacks: Sequence[Any] | None = None,
    single_frames: bool = False,
    config: CircularConfig | None = None,
) -> Draft:
    """Draft a circular for a lightcurve held in memory (``extract``, the Python API).

    Rows are the stacked epochs in ``stacks`` (``StackRecord`` or ``StackResult``
    values) when given; else the table's frames, combined per epoch in flux, or one
    row per frame with ``single_frames`` (the text says which).
    """
    from soapd.config import CircularConfig

    cfg = config or CircularConfig()
    if stacks:
        rows = [CircularRow.from_stack(s) for s in stacks]
    else:
        rows = rows_from_lightcurve(
            table, trigger_time_utc=trigger_time_utc, single_frames=single_frames
        )
    circular = compose(
        rows,
        target_name=name,
        trigger_time_utc=trigger_time_utc,
        team=cfg.team,
        authors=cfg.authors,
        event_name_check=cfg.event_name_check,
        max_lines=cfg.max_lines,
        stacked=bool(stacks),
    )
    doc = sidecar(
        rows,
        event_name=circular.event_name,
        team=cfg.team,
        trigger_time_utc=trigger_time_utc,
        ra_deg=ra_deg,
        dec_deg=dec_deg,
    )
    validate_sidecar(doc)
    return Draft(circular=circular, sidecar=doc, stacked=bool(stacks))


def write_draft(draft: Draft, path: str | Path) -> tuple[Path, Path, Path]:
    """Write the text to ``path``, the JSON to ``<path>.json``, the link to ``<path>.url``.

    The sidecar names add to the given name (``X.gcn`` -> ``X.gcn.json``), so no file
    the caller did not name is overwritten. Return the three paths.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    side = out.with_name(out.name + ".json")
    link = out.with_name(out.name + ".url")
    out.write_text(draft.circular.text, encoding="utf-8")
    side.write_text(json.dumps(draft.sidecar, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    link.write_text(draft.circular.url + "\n", encoding="utf-8")
    return out, side, link
