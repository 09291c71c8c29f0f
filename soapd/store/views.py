"""The ``lightcurve`` SQL view: one definition, read by operators and by ``Store.lightcurve``.

:data:`LIGHTCURVE_VIEW` says which stored column each view column is (``m``:
measurements, ``f``: frames, ``t``: targets). The view is built from it, and the
store's lightcurve reads (:mod:`soapd.store.lctable`) take every column, filter and
sort key from the same entries, so ``SELECT * FROM lightcurve`` and
``Store.lightcurve`` agree by construction (``tests/unit/store/test_lightcurve_view.py``
checks it row for row).

The view shows covered rows only (:data:`COVERED_WHERE`): a stored not-covered row
(flag NOT_COVERED: the frame had the target inside its footprint but could not
measure it) is kept in ``measurements`` for the record but is no lightcurve point.

A view holds no data, so it is not part of the frozen migration history: after
the migrations, :func:`refresh_views` (re)creates it whenever its text differs
from this definition, and every database, old or new, gets the current one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from soapd.flags import Flag

if TYPE_CHECKING:
    import sqlite_utils

__all__ = [
    "COVERED_WHERE",
    "LIGHTCURVE_ORDER",
    "LIGHTCURVE_VIEW",
    "lightcurve_view_sql",
    "refresh_views",
    "sql_of",
]

#: The condition of a covered measurement row (``m``: measurements): a detection or a limit.
COVERED_WHERE = f"(m.flags & {int(Flag.NOT_COVERED)}) = 0"

#: The view's columns, in order: (column, expression). Columns are only ever added
#: at the end, so positional readers keep working.
LIGHTCURVE_VIEW: tuple[tuple[str, str], ...] = (
    ("measurement_id", "m.measurement_id"),
    ("frame_id", "m.frame_id"),
    ("target_id", "m.target_id"),
    ("target_name", "t.name"),
    ("mjd", "m.mjd"),
    ("mid_time_utc", "f.mid_time_utc"),
    ("obs_id", "f.obs_id"),
    ("telescope", "f.telescope"),
    ("band", "f.band"),
    ("filter_raw", "f.filter"),
    ("exptime_s", "f.exptime_s"),
    ("flux_e", "m.flux_e"),
    ("flux_err_e", "m.flux_err_e"),
    ("flux_ujy", "m.flux_ujy"),
    ("flux_ujy_err", "m.flux_ujy_err"),
    ("snr", "m.snr"),
    ("mag", "m.mag"),
    ("mag_err", "m.mag_err"),
    ("lim_mag", "m.lim_mag"),
    ("lim_nsigma", "m.lim_nsigma"),
    ("is_detection", "m.is_detection"),
    ("mag_system", "m.mag_system"),
    ("zp_mag", "m.zp_mag"),
    ("zp_err_mag", "m.zp_err_mag"),
    ("zp_scatter_mag", "f.zp_scatter_mag"),
    ("n_cal_stars", "m.n_cal_stars"),
    ("cal_catalog", "f.cal_catalog"),
    ("aperture_id", "m.aperture_id"),
    ("aperture_px", "m.aperture_px"),
    ("flags", "m.flags"),
    ("image_file", "f.image_file"),
    ("path", "f.path"),
    ("is_forced", "m.is_forced"),
    ("ra_deg", "m.ra_deg"),
    ("dec_deg", "m.dec_deg"),
    ("x_px", "m.x_px"),
    ("y_px", "m.y_px"),
    ("superseded", "m.superseded"),
    ("config_hash", "m.config_hash"),
    ("ins_mag", "m.ins_mag"),
    ("ins_mag_err", "m.ins_mag_err"),
    ("lim_ins_mag", "m.lim_ins_mag"),
)

#: The order of a lightcurve: by time, then frame, aperture and processing (view columns).
LIGHTCURVE_ORDER = ("mjd", "frame_id", "aperture_id", "config_hash")

_SQL = dict(LIGHTCURVE_VIEW)


def sql_of(column: str) -> str:
    """Return the expression of view column ``column`` (e.g. ``band`` -> ``f.band``)."""
    return _SQL[column]


def lightcurve_view_sql() -> str:
    """Return the ``CREATE VIEW lightcurve`` statement (as SQLite stores it)."""
    select = ",\n    ".join(
        expr if expr.split(".", 1)[1] == name else f"{expr} AS {name}"
        for name, expr in LIGHTCURVE_VIEW
    )
    return (
        f"CREATE VIEW lightcurve AS\nSELECT\n    {select}\n"
        "FROM measurements AS m\n"
        "JOIN frames AS f ON f.frame_id = m.frame_id\n"
        "JOIN targets AS t ON t.target_id = m.target_id\n"
        f"WHERE {COVERED_WHERE}"
    )


def refresh_views(db: sqlite_utils.Database) -> bool:
    """Make the ``lightcurve`` view match :data:`LIGHTCURVE_VIEW`; return True if it changed."""
    sql = lightcurve_view_sql()
    row = db.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'view' AND name = 'lightcurve'"
    ).fetchone()
    if row is not None and row[0] == sql:
        return False
    with db.atomic():
        db.execute("DROP VIEW IF EXISTS lightcurve")
        db.execute(sql)
    return True
