"""Skynet JSON -> Exposure, and the UTC handling of the API's naive timestamps."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from soapd.errors import SkynetError
from soapd.models import ExposureMeta
from soapd.skynet.records import (
    exposure_from_json,
    format_api_time,
    parse_api_time,
    with_extra,
)
from soapd.store.ledger import meta_from_json as ledger_meta_from_json
from soapd.store.ledger import meta_to_json as ledger_meta_to_json


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-12T03:04:05", datetime(2025, 1, 12, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-12T03:04:05.123456", datetime(2025, 1, 12, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2025-01-12 03:04:05", datetime(2025, 1, 12, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-12T03:04:05Z", datetime(2025, 1, 12, 3, 4, 5, tzinfo=UTC)),
        ("2025-01-12T05:04:05+02:00", datetime(2025, 1, 12, 3, 4, 5, tzinfo=UTC)),
    ],
)
def test_parse_api_time_known_forms_give_utc(text: str, expected: datetime) -> None:
    parsed = parse_api_time(text)
    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("value", [None, "", "   "])
def test_parse_api_time_empty_gives_none(value: str | None) -> None:
    assert parse_api_time(value) is None


def test_parse_api_time_garbage_raises_valueerror() -> None:
    with pytest.raises(ValueError):
        parse_api_time("yesterday at noon")


def test_parse_api_time_non_string_raises_typeerror() -> None:
    with pytest.raises(TypeError):
        parse_api_time(12345)  # type: ignore[arg-type]


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)))
def test_parse_api_time_naive_roundtrip_is_utc_aware(naive: datetime) -> None:
    parsed = parse_api_time(naive.isoformat())
    assert parsed is not None
    assert parsed.tzinfo is not None
    assert parsed.utcoffset() == timedelta(0)
    assert parsed.replace(tzinfo=None) == naive
    assert format_api_time(parsed) == naive.isoformat()


@given(
    st.datetimes(
        min_value=datetime(1900, 1, 2),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=9, minutes=30))]
        ),
    )
)
def test_format_api_time_aware_roundtrip_keeps_instant(aware: datetime) -> None:
    text = format_api_time(aware)
    assert "+" not in text
    assert not text.endswith("Z")
    assert parse_api_time(text) == aware


def test_format_api_time_naive_raises() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_api_time(datetime(2025, 1, 1))


def test_exposure_from_json_full_record_maps_fields(load_json: Callable[[str], Any]) -> None:
    exp = exposure_from_json(load_json("exps_page.json")[0])
    assert exp.exp_id == 123456789
    assert exp.obs_id == 11920699
    assert exp.image_id == "r123456789"
    assert exp.is_archived
    meta = exp.meta
    assert meta.telescope == "Prompt5"
    assert meta.filter == "rprime"
    assert meta.exptime_s == 58.5  # expLengthUsed wins over the requested expLength
    assert meta.extra["exptime_requested_s"] == 60.0
    assert meta.mid_time_utc == datetime(2025, 1, 12, 3, 4, 35, tzinfo=UTC)
    assert meta.extra["mid_time_source"] == "centerTime"
    assert meta.gain_e_per_adu == 1.5  # the record's own gain wins over the camera's
    assert meta.read_noise_e == 9.0
    assert exp.time_taken_utc == datetime(2025, 1, 12, 3, 4, 5, tzinfo=UTC)
    assert exp.time_archived_utc == datetime(2025, 1, 12, 3, 7, 10, tzinfo=UTC)
    assert meta.extra["skynet_fwhm"] == 2.1
    assert meta.extra["site_lat_deg"] == -30.17
    assert exp.remote_filename == "Prompt5_obs11920699_r123456789.fits"


def test_exposure_from_json_no_centertime_derives_mid_time_from_start(
    load_json: Callable[[str], Any],
) -> None:
    exp = exposure_from_json(load_json("exps_page.json")[1])
    # timeTaken 03:06:05.25 + expLength 60 s / 2 (expLengthUsed is null)
    assert exp.meta.mid_time_utc == datetime(2025, 1, 12, 3, 6, 35, 250000, tzinfo=UTC)
    assert exp.meta.extra["mid_time_source"] == "timeTaken+exptime/2"
    assert exp.meta.exptime_s == 60.0
    # gain and read noise fall back to the camera's
    assert exp.meta.gain_e_per_adu == 1.4
    assert exp.meta.read_noise_e == 8.5
    assert exp.time_archived_utc == datetime(2025, 1, 12, 3, 9, 11, 123456, tzinfo=UTC)


def test_exposure_from_json_bad_fields_become_none_and_warn(
    caplog: pytest.LogCaptureFixture, load_json: Callable[[str], Any]
) -> None:
    with caplog.at_level(logging.WARNING, logger="soapd.skynet.records"):
        exp = exposure_from_json(load_json("exps_page.json")[2])
    assert exp.time_taken_utc is None
    assert "timeTaken" in caplog.text
    assert exp.meta.filter == "Open"  # from filterUsed when filterName is null
    assert exp.meta.telescope is None
    assert exp.meta.gain_e_per_adu is None
    assert exp.meta.mid_time_utc == datetime(2025, 1, 12, 3, 8, 20, tzinfo=UTC)


def test_exposure_from_json_ids_only_record_is_usable(load_json: Callable[[str], Any]) -> None:
    exp = exposure_from_json(load_json("exps_ids_only.json")[0])
    assert exp.exp_id == 123456789
    assert exp.state == "unknown"
    assert not exp.is_archived
    assert exp.meta.mid_time_utc is None


@pytest.mark.parametrize("record", [{}, {"id": None}, {"id": "abc"}, {"id": 1.5}, {"id": True}])
def test_exposure_from_json_without_integer_id_raises(record: dict[str, object]) -> None:
    with pytest.raises(SkynetError, match="integer id"):
        exposure_from_json(record)


def test_exposure_meta_roundtrips_through_the_ledger_json(
    load_json: Callable[[str], Any],
) -> None:
    """The ledger stores ExposureMeta as JSON: every extra must survive the round trip."""
    for record in load_json("exps_page.json"):
        meta = exposure_from_json(record).meta
        text = ledger_meta_to_json(meta)
        assert ledger_meta_from_json(text) == meta
        json.loads(text)


def test_with_extra_adds_without_mutating() -> None:
    meta = ExposureMeta(extra={"a": 1})
    new = with_extra(meta, reduction="reduced")
    assert new.extra == {"a": 1, "reduction": "reduced"}
    assert meta.extra == {"a": 1}


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"id": 2**64, "state": "archived"}, "id"),
        ({"id": 2**63, "state": "archived"}, "id"),
        ({"id": str(2**64), "state": "archived"}, "id"),
        ({"id": 0, "state": "archived"}, "id"),
        ({"id": -5, "state": "archived"}, "id"),
        ({"id": 7, "obsId": 2**64, "state": "archived"}, "obsId"),
        ({"id": 7, "obsId": "x", "state": "archived"}, "obsId"),
    ],
)
def test_ids_must_fit_the_ledger(record: dict[str, object], field: str) -> None:
    """Ids are SQLite INTEGERs: 2**64 used to raise OverflowError when the ledger stored it."""
    with pytest.raises(SkynetError, match=field):
        exposure_from_json(record)


def test_largest_id_and_missing_obs_id_are_fine() -> None:
    exp = exposure_from_json({"id": 2**63 - 1, "state": "archived"})
    assert exp.exp_id == 2**63 - 1
    assert exp.obs_id is None
