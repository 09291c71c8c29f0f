"""Exports, GCN drafts and plots of result tables: the output half of ``PhotometryResult``.

:class:`ResultOutput` is a mixin of :class:`soapd.api.results.PhotometryResult`
(which supplies ``_table``): ``to_csv/to_ecsv/to_parquet/to_json`` write the
rows, ``to_gcn``/``gcn_draft`` make a GCN circular of one position and ``plot``
draws its lightcurve.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from astropy.table import Table
from astropy.time import Time

from soapd.api.select import extract_target, row_mjd
from soapd.columns import column_or
from soapd.output.export import write_table
from soapd.timeutil import TimeLike, to_datetime

if TYPE_CHECKING:
    from soapd.alerts.circular import Draft

__all__ = ["ResultOutput", "as_datetime"]

logger = logging.getLogger(__name__)


class ResultOutput:
    """Writers and plots over ``self._table`` (rows of :data:`soapd.columns.RESULT_COLUMNS`)."""

    _table: Table

    def __len__(self) -> int:
        return len(self._table)

    def to_csv(self, path: str | Path) -> Path:
        """Write the rows as CSV (units are lost: use ECSV to keep them); return the path."""
        return write_table(self._table, path, "csv")

    def to_ecsv(self, path: str | Path) -> Path:
        """Write the rows as ECSV (keeps units, types and metadata); return the path."""
        return write_table(self._table, path, "ecsv")

    def to_parquet(self, path: str | Path) -> Path:
        """Write the rows as Parquet (keeps units and types); return the path."""
        return write_table(self._table, path, "parquet")

    def to_json(self, path: str | Path) -> Path:
        """Write the rows as JSON (see :func:`soapd.output.export.write_table`); return the path."""
        return write_table(self._table, path, "json")

    def _single_position(self, what: str) -> None:
        """Raise ValueError unless there is at most one row per frame and aperture."""
        keys = list(
            zip(
                column_or(self._table, "image_file", "").astype(str),
                row_mjd(self._table) if len(self) else [],
                column_or(self._table, "aperture_id", 0).astype(np.int64),
                strict=True,
            )
        )
        if len(set(keys)) != len(keys):
            raise ValueError(
                f"{what} is for one position: call extract_target(coord) first "
                "(this result holds every source of the field)"
            )

    def _one_position(self, what: str) -> Table:
        """Return this table if it holds one position, else its only forced position's rows.

        Raise ValueError (naming ``extract_target``) otherwise.
        """
        try:
            self._single_position(what)
        except ValueError:
            names = sorted(
                set(
                    column_or(self._table, "target_name", "").astype(str)[
                        column_or(self._table, "is_forced", default=False).astype(bool)
                    ]
                )
                - {""}
            )
            if len(names) != 1:
                raise
            rows = self._table[column_or(self._table, "target_name", "").astype(str) == names[0]]
            logger.info("%s of the field-wide result: forced position %s", what, names[0])
            return extract_target(
                rows,
                float(rows["ra"][0]),
                float(rows["dec"][0]),
                radius_arcsec=0.1,
                forced_photometry=True,
                target_name=names[0],
            )
        return self._table

    def to_gcn(
        self,
        path: str | Path | None = None,
        trigger_time_utc: TimeLike | None = None,
        *,
        name: str = "",
        start_time: float | None = None,
        all_results: bool | None = None,
        **options: Any,
    ) -> str:
        """Return a GCN circular draft of this one-position lightcurve; write it if ``path``.

        ``options`` and rows as for :meth:`gcn_draft`. With ``path``, also ``<path>.json``
        (GCN-schema sidecar), ``<path>.url`` (GCN's prefilled form). ValueError if field-wide
        (a field-wide result with the forced rows of exactly one position uses those).
        skynetsoap's spelling: ``start_time`` is the trigger as an MJD (UTC), and
        ``all_results=True`` lists every frame (``single_frames``) instead of epochs.
        """
        from soapd.alerts.circular import write_draft

        if start_time is not None:
            if trigger_time_utc is not None:
                raise ValueError("give trigger_time_utc or start_time (MJD), not both")
            trigger_time_utc = Time(float(start_time), format="mjd", scale="utc")
        if all_results is not None:
            options.setdefault("single_frames", all_results)
        draft = self.gcn_draft(trigger_time_utc, name=name, **options)
        if path is not None:
            write_draft(draft, path)
        return draft.circular.text

    def gcn_draft(
        self, trigger_time_utc: TimeLike | None = None, *, name: str = "", **options: Any
    ) -> Draft:
        """Return the circular (``.circular.url``: GCN's prefilled form) and its JSON sidecar.

        Mid-exposure times (hours since the trigger), normalised filters, ``> m_lim`` for
        limits (skynetsoap B17). ``options`` of :func:`soapd.alerts.circular.draft_from_table`:
        ``stacks`` (e.g. ``Store.stacked(name)``) gives the rows, else this table's frames,
        combined per epoch in flux (one row per frame with ``single_frames``).
        """
        from soapd.alerts.circular import draft_from_table

        table = self._one_position("a GCN circular")
        trigger = trigger_time_utc or getattr(self, "trigger_time_utc", None)
        return draft_from_table(
            table,
            name=name or getattr(self, "name", "") or self._target_name(table),
            trigger_time_utc=as_datetime(trigger),
            ra_deg=getattr(self, "ra_deg", None),
            dec_deg=getattr(self, "dec_deg", None),
            **options,
        )

    def _target_name(self, table: Table | None = None) -> str:
        table = self._table if table is None else table
        names = sorted(set(column_or(table, "target_name", "").astype(str)) - {""})
        return names[0] if len(names) == 1 else "the target"

    def plot(
        self,
        path: str | Path,
        units: Literal["calibrated_mag", "ins_mag", "flux"] = "calibrated_mag",
        *,
        trigger_time_utc: TimeLike | None = None,
        title: str = "",
        show: bool = False,
    ) -> Path:
        """Plot this one-position lightcurve to ``path`` (PNG/PDF/SVG) and return the path.

        ``units``: calibrated magnitudes (limits as downward arrows), instrumental
        magnitudes (-2.5 log10 e-/s) or flux density in microjansky (AB). Bands are
        coloured. ``show``: also ``plt.show()`` it. Raise ValueError for a field-wide
        result (extract a target first).
        """
        from soapd.output.plots import plot_lightcurve

        if units not in ("calibrated_mag", "ins_mag", "flux"):
            raise ValueError(f"units must be calibrated_mag, ins_mag or flux, got {units!r}")
        self._single_position("a lightcurve plot")
        table = self._table
        if units == "ins_mag":
            table = table.copy()
            zp = column_or(table, "zeropoint", np.nan).astype(float)
            table["calibrated_mag"] = column_or(table, "ins_mag", np.nan).astype(float)
            table["calibrated_mag_err"] = column_or(table, "ins_mag_err", np.nan).astype(float)
            table["limiting_mag"] = column_or(table, "limiting_mag", np.nan).astype(float) - zp
        out: Path = plot_lightcurve(
            table,
            path,
            units="flux" if units == "flux" else "mag",
            trigger_time_utc=as_datetime(trigger_time_utc),
            title=title or self._target_name() + (" (instrumental)" if units == "ins_mag" else ""),
            show=show,
        )
        return out


def as_datetime(value: TimeLike | None) -> datetime | None:
    """Return ``value`` as an aware UTC datetime (None stays None)."""
    return None if value is None else to_datetime(value)
