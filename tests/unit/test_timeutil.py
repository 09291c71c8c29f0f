"""soapd.timeutil: the one copy of the UTC / ISO / MJD / JD conversions."""

from __future__ import annotations

import doctest
import math
from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pytest
from astropy.time import Time

from soapd import timeutil
from soapd.timeutil import (
    MJD_ZERO_JD,
    as_utc,
    datetime_from_mjd,
    iso_utc,
    jd_from_mjd,
    mjd_from_jd,
    mjd_of,
    parse_utc,
    to_datetime,
    to_mjd,
)

EAST = timezone(timedelta(hours=5, minutes=30))


def test_doctests_pass() -> None:
    result = doctest.testmod(timeutil, raise_on_error=False)
    assert result.attempted >= 15
    assert result.failed == 0


def test_mjd_of_known_values() -> None:
    assert mjd_of(datetime(1970, 1, 1, tzinfo=UTC)) == 40587.0  # the Unix epoch
    assert mjd_of(datetime(2000, 1, 1, 12, tzinfo=UTC)) == 51544.5  # J2000.0 in UTC
    assert mjd_of(datetime(2026, 11, 24, 3, 0, 30, tzinfo=UTC)) == pytest.approx(
        61368.125 + 30 / 86400, abs=1e-11
    )


def test_mjd_of_naive_is_utc_and_zones_agree() -> None:
    aware = datetime(2024, 7, 5, 2, 24, tzinfo=UTC)
    assert mjd_of(aware.replace(tzinfo=None)) == mjd_of(aware)
    assert mjd_of(aware.astimezone(EAST)) == mjd_of(aware)


def test_mjd_of_is_astropys_utc_mjd_also_on_a_leap_second_day() -> None:
    # 2016-12-31 had 86401 s: 12:00 UTC is not MJD x.5 there, and soapd follows astropy.
    noon = datetime(2016, 12, 31, 12, tzinfo=UTC)
    want = Time("2016-12-31T12:00:00", scale="utc").mjd
    assert mjd_of(noon) == want
    assert mjd_of(noon) != 57753.5


def test_mjd_of_equals_astropys_mjd_bit_for_bit(rng: np.random.Generator) -> None:
    """``mjd_of`` calls ERFA itself (no astropy.time import): the same float as astropy's.

    5,000 random UTC times, 1962-2060 (past the leap-second table too, where ERFA
    says "dubious year"), to the microsecond; and every leap second's last second.
    """
    import warnings

    from erfa import ErfaWarning

    start = datetime(1962, 1, 1, tzinfo=UTC)
    offsets_s = rng.uniform(0.0, 98 * 365.25 * 86400, 5000)
    times = [start + timedelta(seconds=float(s)) for s in offsets_s]
    times += [
        datetime(y, m, d, 23, 59, 59, 999_999, tzinfo=UTC)
        for y, m, d in (
            (1972, 6, 30),
            (1998, 12, 31),
            (2005, 12, 31),
            (2015, 6, 30),
            (2016, 12, 31),
        )
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ErfaWarning)
        want = Time([t.replace(tzinfo=None) for t in times], scale="utc").mjd
    got = np.array([mjd_of(t) for t in times])
    assert np.array_equal(got, want)


@pytest.mark.parametrize(
    "when",
    [
        datetime(1990, 1, 1, tzinfo=UTC),
        datetime(2024, 2, 29, 23, 59, 59, 999_000, tzinfo=UTC),
        datetime(2026, 11, 24, 3, 0, 30, 123_456, tzinfo=UTC),
        datetime(2028, 6, 30, 0, 0, 0, 1_000, tzinfo=UTC),
    ],
)
def test_datetime_mjd_round_trip_within_a_microsecond(when: datetime) -> None:
    back = datetime_from_mjd(mjd_of(when))
    assert back.tzinfo is not None
    assert back.utcoffset() == timedelta(0)
    assert abs(back - when) <= timedelta(microseconds=1)


def test_round_trip_of_many_random_times(rng: np.random.Generator) -> None:
    # 1972-2025: UTC years that erfa's leap-second table covers (no "dubious year" warning).
    start = datetime(1972, 1, 1, tzinfo=UTC)
    for s in rng.uniform(0.0, 1.7e9, 200):
        when = start + timedelta(seconds=float(s))
        assert abs(datetime_from_mjd(mjd_of(when)) - when) <= timedelta(microseconds=1)
        assert abs(to_datetime(to_mjd(iso_utc(when))) - when) <= timedelta(microseconds=1)


def test_datetime_from_mjd_inside_a_leap_second_gives_the_next_second() -> None:
    in_leap = Time("2016-12-31T23:59:60.5", scale="utc").mjd
    assert datetime_from_mjd(in_leap) == datetime(2017, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC)


def test_jd_and_mjd_are_inverse_for_numbers_and_arrays() -> None:
    assert jd_from_mjd(0.0) == MJD_ZERO_JD == 2400000.5
    assert mjd_from_jd(jd_from_mjd(61368.125)) == 61368.125
    arr = np.array([0.0, 51544.5, 61368.125])
    assert np.array_equal(mjd_from_jd(jd_from_mjd(arr)), arr)
    assert np.array_equal(jd_from_mjd(arr), [2400000.5, 2451545.0, 2461368.625])


def test_to_mjd_every_input_kind_agrees() -> None:
    ref = Time("2024-07-05T02:24:00", scale="utc").mjd
    for value in (
        "2024-07-05T02:24:00",
        "2024-07-05T02:24:00Z",
        " 2024-07-05T02:24:00z ",
        "2024-07-05T07:54:00+05:30",
        datetime(2024, 7, 5, 2, 24),
        datetime(2024, 7, 5, 7, 54, tzinfo=EAST),
        Time(ref, format="mjd"),
        Time("2024-07-05T02:24:37", scale="tai"),  # TAI - UTC = 37 s since 2017
        str(ref),
        ref,
        np.float64(ref),
    ):
        assert to_mjd(value) == pytest.approx(ref, abs=1e-9), value
    assert to_mjd(date(2024, 7, 5)) == math.floor(ref)
    assert to_mjd(61000) == 61000.0


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [
        (2460500.5, ValueError, "looks like a JD"),
        ("2460500.5", ValueError, "looks like a JD"),
        (math.nan, ValueError, "not finite"),
        ("yesterday", ValueError, "cannot read 'yesterday'"),
        ("nan", ValueError, "cannot read"),
        (True, TypeError, "a time must be"),
        ([61000.0], TypeError, "cannot use list"),
    ],
)
def test_to_mjd_rejects_with_a_specific_error(value: object, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        to_mjd(value)  # type: ignore[arg-type]


def test_as_utc_converts_aware_and_labels_naive() -> None:
    assert as_utc(datetime(2026, 1, 1, 5, 30, tzinfo=EAST)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert as_utc(datetime(2026, 1, 1, 5, 30, tzinfo=EAST)).tzinfo is UTC
    assert as_utc(datetime(2026, 1, 1)).tzinfo is UTC


def test_parse_utc_and_iso_utc_round_trip() -> None:
    when = datetime(2025, 1, 12, 3, 4, 5, 250_000, tzinfo=UTC)
    assert iso_utc(when) == "2025-01-12T03:04:05.250000"
    assert iso_utc(when, timespec="seconds") == "2025-01-12T03:04:05"
    assert parse_utc(iso_utc(when)) == when
    assert parse_utc("2025-01-12T08:34:05.25+05:30") == when
    assert parse_utc("2025-01-12") == datetime(2025, 1, 12, tzinfo=UTC)
    assert iso_utc(datetime(2025, 1, 12, 3, 4, 5)) == "2025-01-12T03:04:05"  # naive = UTC
    with pytest.raises(ValueError):
        parse_utc("12/01/2025")


def test_to_datetime_keeps_datetimes_and_converts_the_rest() -> None:
    aware = datetime(2026, 11, 24, 8, 30, tzinfo=EAST)
    assert to_datetime(aware) == aware
    assert to_datetime(aware).tzinfo is UTC
    assert to_datetime(61368.125) == datetime(2026, 11, 24, 3, tzinfo=UTC)
    assert to_datetime("2026-11-24T03:00:00") == datetime(2026, 11, 24, 3, tzinfo=UTC)
    with pytest.raises(ValueError, match="looks like a JD"):
        to_datetime(2461368.625)
