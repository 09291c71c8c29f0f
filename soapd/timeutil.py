"""UTC, ISO-8601, MJD and JD conversions: the one copy soapd uses.

Conventions, everywhere in soapd:

* times are UTC; a **naive** ``datetime`` (or naive ISO text) is read as UTC,
  never as the machine's local time (skynetsoap B1);
* an MJD is a UTC Modified Julian Date in days as astropy ``Time(...).mjd``
  computes it (a day with a leap second has 86401 s, so MJD 60000.0 is always
  00:00:00 UTC); JD = MJD + :data:`MJD_ZERO_JD`;
* ISO text written by soapd for the Skynet API is naive ISO-8601 in UTC
  (``2026-11-24T03:00:00``).

Pure functions, no I/O. astropy is imported on first use only. Like every
``astropy.time.Time`` in UTC, the MJD conversions warn (``ErfaWarning``,
"dubious year") for times before 1960 or past the horizon of the installed
leap-second table.

>>> from datetime import UTC, datetime
>>> mjd_of(datetime(2026, 11, 24, 3, 0, tzinfo=UTC))
61368.125
>>> datetime_from_mjd(61368.125)
datetime.datetime(2026, 11, 24, 3, 0, tzinfo=datetime.timezone.utc)
>>> to_mjd("2026-11-24T05:00:00+02:00")
61368.125
>>> jd_from_mjd(61368.125)
2461368.625
>>> iso_utc(parse_utc("2026-11-24T04:00:00+01:00"))
'2026-11-24T03:00:00'
"""

from __future__ import annotations

import math
import warnings
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from astropy.time import Time

__all__ = [
    "JD_GUARD",
    "MJD_ZERO_JD",
    "TimeLike",
    "as_utc",
    "datetime_from_mjd",
    "iso_utc",
    "jd_from_mjd",
    "mjd_from_jd",
    "mjd_of",
    "parse_utc",
    "to_datetime",
    "to_mjd",
]

#: The Julian Date of MJD 0 (1858-11-17T00:00 UTC): JD = MJD + this, in days.
MJD_ZERO_JD = 2_400_000.5

#: An MJD above this is almost surely a JD passed by mistake (MJD 2,400,000 is in 8429 AD).
JD_GUARD = 2_400_000.0

#: What the time arguments accept: ISO-8601 text (or a number in text), a
#: ``datetime``/``date`` (naive = UTC), an astropy ``Time``, or an MJD number.
TimeLike: TypeAlias = "str | datetime | date | Time | float | int"

_Days = TypeVar("_Days", float, npt.NDArray[np.float64])


def as_utc(when: datetime) -> datetime:
    """Return ``when`` as an aware UTC datetime (a naive one is taken as UTC).

    >>> as_utc(datetime(2026, 11, 24, 3, 0))
    datetime.datetime(2026, 11, 24, 3, 0, tzinfo=datetime.timezone.utc)
    """
    if when.tzinfo is None or when.utcoffset() is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def mjd_of(when: datetime) -> float:
    """Return the MJD (UTC, days) of ``when`` (naive = UTC).

    Parameters
    ----------
    when
        The time; an aware datetime in any zone, or a naive one meaning UTC.

    Returns
    -------
    float
        UTC MJD in days, as ``astropy.time.Time(when).mjd`` (the same ERFA call,
        ``dtf2d``, that astropy makes, leap seconds included; without importing
        astropy.time, which costs ~0.2 s of a short command's start-up).
    """
    import erfa

    t = as_utc(when)
    with warnings.catch_warnings():
        # "dubious year": a date past the leap-second table (astropy passes it too)
        warnings.simplefilter("ignore", erfa.ErfaWarning)
        jd1, jd2 = erfa.dtf2d(
            "UTC", t.year, t.month, t.day, t.hour, t.minute, t.second + t.microsecond / 1e6
        )
    return float((jd1 - MJD_ZERO_JD) + jd2)


def datetime_from_mjd(mjd: float) -> datetime:
    """Return the aware UTC datetime of a UTC MJD (days), to the microsecond.

    A time inside a leap second (``23:59:60.x``, which ``datetime`` cannot hold)
    comes back as the same fraction of the next second, ``00:00:00.x``.

    >>> datetime_from_mjd(61368.5).isoformat()
    '2026-11-24T12:00:00+00:00'
    """
    from astropy.time import Time

    when: datetime = Time(float(mjd), format="mjd", scale="utc").to_datetime(
        UTC, leap_second_strict="silent"
    )
    return when


def jd_from_mjd(mjd: _Days) -> _Days:
    """Return the JD (days) of an MJD, for a number or an array.

    >>> jd_from_mjd(np.array([0.0, 1.5]))
    array([2400000.5, 2400002. ])
    """
    return mjd + MJD_ZERO_JD


def mjd_from_jd(jd: _Days) -> _Days:
    """Return the MJD (days) of a JD, for a number or an array.

    >>> mjd_from_jd(2461368.625)
    61368.125
    """
    return jd - MJD_ZERO_JD


def parse_utc(text: str) -> datetime:
    """Return ISO-8601 text as an aware UTC datetime (no offset = UTC; ``Z``/``z`` allowed).

    Raise ValueError when the text is not ISO-8601.

    >>> parse_utc("2026-11-24T03:00:00z")
    datetime.datetime(2026, 11, 24, 3, 0, tzinfo=datetime.timezone.utc)
    """
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    return as_utc(datetime.fromisoformat(text))


def iso_utc(when: datetime, *, timespec: str = "auto") -> str:
    """Return ``when`` (naive = UTC) as naive ISO-8601 text in UTC, the Skynet API's form.

    ``timespec`` is that of :meth:`datetime.isoformat`.

    >>> from datetime import timedelta, timezone
    >>> iso_utc(datetime(2026, 11, 24, 5, 0, tzinfo=timezone(timedelta(hours=2))))
    '2026-11-24T03:00:00'
    """
    return as_utc(when).replace(tzinfo=None).isoformat(timespec=timespec)


def to_mjd(value: TimeLike) -> float:
    """Return ``value`` as a UTC MJD (days).

    Parameters
    ----------
    value
        ISO-8601 text (``"2026-11-24T03:00:00"``, ``"...Z"``, ``"...+02:00"``) or a
        number in text, a ``datetime``/``date`` (naive values are taken as UTC), an
        astropy ``Time``, or an MJD number.

    Raises
    ------
    ValueError
        If the text cannot be read as a time, a number is not finite, or a number
        looks like a JD (above :data:`JD_GUARD`).
    TypeError
        For anything else (``bool`` included).

    Examples
    --------
    >>> to_mjd(61368.125)
    61368.125
    >>> to_mjd("61368.125")
    61368.125
    >>> to_mjd(2461368.625)
    Traceback (most recent call last):
    ...
    ValueError: 2461368.625 looks like a JD; pass an MJD (JD - 2400000.5)
    """
    from astropy.time import Time

    if isinstance(value, bool):
        raise TypeError("a time must be ISO text, a datetime, an astropy Time or an MJD number")
    if isinstance(value, Time):
        return float(value.utc.mjd)
    if isinstance(value, int | float | np.integer | np.floating):
        mjd = float(value)
        if not math.isfinite(mjd):
            raise ValueError(f"time {value!r} is not finite")
        if mjd > JD_GUARD:
            raise ValueError(f"{mjd} looks like a JD; pass an MJD (JD - {MJD_ZERO_JD})")
        return mjd
    if isinstance(value, datetime):
        return mjd_of(value)
    if isinstance(value, date):
        return mjd_of(datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, str):
        text = value.strip()
        try:
            return to_mjd(float(text))
        except ValueError as exc:
            if "JD" in str(exc):
                raise
        try:
            return mjd_of(parse_utc(text))
        except ValueError:
            raise ValueError(
                f"cannot read {value!r} as a time; use ISO-8601 such as "
                "'2026-11-24T03:00:00Z' or an MJD number"
            ) from None
    raise TypeError(f"cannot use {type(value).__name__} as a time")


def to_datetime(value: TimeLike) -> datetime:
    """Return ``value`` (any :data:`TimeLike`) as an aware UTC datetime.

    A ``datetime`` is only put in UTC (naive = UTC); anything else goes through
    :func:`to_mjd` (same errors) and :func:`datetime_from_mjd`.

    >>> to_datetime("2026-11-24")
    datetime.datetime(2026, 11, 24, 0, 0, tzinfo=datetime.timezone.utc)
    """
    if isinstance(value, datetime):
        return as_utc(value)
    return datetime_from_mjd(to_mjd(value))
