"""GCN circulars from stacked epochs: Skynet's layout, event names, the link, the schema JSON.

Reference layouts: tests/data/gcn/gcn_circulars_structured.json (transcriptions of
GCN 9916 and 9989): columns mean time since trigger (h, 0.1 h), telescope,
``N x S``, filter, limit (0.1 mag), ``<count> <catalog>``, systematic and
statistical calibration uncertainty (0.001 mag), under five stacked heading lines.
"""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from soapd.alerts.circular import (
    BOOM_SCHEMA_ID,
    CircularRow,
    canonical_event_name,
    compose,
    sidecar,
    subject_is_valid,
    submission_url,
    validate_sidecar,
)
from soapd.errors import CircularError

DATA = Path(__file__).parents[2] / "data" / "gcn" / "gcn_circulars_structured.json"
TRIGGER_9916 = datetime(2009, 9, 2, 11, 5, 8, tzinfo=UTC)  # GRB 090902B (Fermi)
TRIGGER_9989 = datetime(2009, 10, 3, 4, 35, 45, tzinfo=UTC)  # GRB 091003 (Fermi)


def _circ(number: int) -> dict:
    doc = json.loads(DATA.read_text())
    return next(c for c in doc["circulars"] if c["circular"] == number)


def _row_from_transcription(row: list, trigger: datetime, system: str = "Vega") -> CircularRow:
    t_h, scope, n, exp_s, band, limit, ncal, catalog, sys_unc, stat_unc = row
    mid = trigger + timedelta(hours=t_h)
    half = timedelta(seconds=n * 90 / 2)
    return CircularRow(
        telescope=scope,
        band=band,
        mid_time_utc=mid,
        start_utc=mid - half,
        stop_utc=mid + half,
        n_exp=n,
        exptime_s=float(exp_s),
        total_exptime_s=float(n * exp_s),
        is_detection=False,
        lim_mag=limit,
        lim_nsigma=3.0,
        n_cal_stars=ncal,
        cal_catalog=catalog,
        cal_sys_unc_mag=sys_unc,
        cal_stat_unc_mag=stat_unc,
        mag_system=system,
    )


def _table_body(body: str, n_rows: int) -> tuple[list[str], list[str]]:
    lines = body.splitlines()
    dash = next(i for i, line in enumerate(lines) if line and set(line.replace(" ", "")) == {"-"})
    return lines[dash - 5 : dash], lines[dash + 1 : dash + 1 + n_rows]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.split("  ") if c.strip()]


@pytest.mark.parametrize(("number", "trigger"), [(9916, TRIGGER_9916), (9989, TRIGGER_9989)])
def test_reproduces_skynet_table_layout_and_rounding(number: int, trigger: datetime) -> None:
    """GCN 9916 / 9989: every cell as the circular prints it, under 5 stacked heading lines."""
    circ = _circ(number)
    rows = [_row_from_transcription(r, trigger) for r in circ["rows"]]
    c = compose(rows, target_name=circ["subject_event"], trigger_time_utc=trigger)
    header, body = _table_body(c.body, len(rows))
    assert header[0].split()[0] == "mean"
    assert header[-1].split()[0] == "(h)"
    assert "(# x s)" in header[-1]
    assert header[-1].count("(mag)") == 3
    assert "3-sigma" in " ".join(header)
    assert "1-sigma" in header[0]
    for expected in circ["rows"]:
        t_h, scope, n, exp_s, band, limit, ncal, catalog, sys_unc, stat_unc = expected
        line = next(b for b in body if f" {band} " in f" {b} " and scope in b)
        assert _cells(line) == [
            f"{t_h:.1f}",
            scope,
            f"{n} x {exp_s}",
            band,
            f"> {limit:.1f}",
            f"{ncal} {catalog}",
            f"{sys_unc:.3f}",
            f"{stat_unc:.3f}",
        ]
    event = circ["subject_event"]
    assert c.event_name == event
    assert c.subject.startswith(f"{event}: Skynet/")
    assert c.subject.endswith("optical upper limits")
    assert subject_is_valid(c.subject)
    text = c.body.replace("\n", " ")
    assert "Stacking only images that increase the limiting magnitude yields:" in c.body
    assert f"No source is detected at the position of {event}." in text
    assert "weighted mean mid-exposure times since the trigger" in text
    assert "Vega" in text
    assert "not corrected for Galactic extinction" in text
    assert c.warnings == ()


def test_9916_subject_names_the_telescope_family() -> None:
    circ = _circ(9916)
    rows = [_row_from_transcription(r, TRIGGER_9916) for r in circ["rows"]]
    c = compose(rows, target_name="GRB 090902B", trigger_time_utc=TRIGGER_9916)
    assert c.subject == "GRB 090902B: Skynet/PROMPT optical upper limits"
    assert "PROMPT-2, PROMPT-3, PROMPT-4 and PROMPT-5" in c.body.replace("\n", " ")


def test_style_rules_lines_tabs_ascii() -> None:
    """Under 60 lines, no tabs, ASCII only; a long table is cut and the cut is said."""
    start = TRIGGER_9916 + timedelta(hours=1)
    rows = [
        CircularRow(
            telescope="PROMPT-5\t",
            band="R",
            mid_time_utc=start + timedelta(minutes=10 * k),
            start_utc=start + timedelta(minutes=10 * k - 2),
            stop_utc=start + timedelta(minutes=10 * k + 2),
            n_exp=4,
            exptime_s=60.0,
            total_exptime_s=240.0,
            is_detection=False,
            lim_mag=19.5,
            n_cal_stars=12,
            cal_catalog="APASS DR9",
            cal_sys_unc_mag=0.05,
            cal_stat_unc_mag=0.01,
            mag_system="Vega",
        )
        for k in range(80)
    ]
    c = compose(
        rows, target_name="GRB 090902B", trigger_time_utc=TRIGGER_9916, authors="J. Doé (UNC)"
    )
    lines = c.body.splitlines()
    assert len(lines) < 60
    assert "\t" not in c.body
    assert "\t" not in c.subject
    c.body.encode("ascii")
    assert c.rows_omitted > 0
    assert len(c.rows) + c.rows_omitted == 80
    assert f"({c.rows_omitted} later epoch(s) are not listed here.)" in c.body
    assert any("left out of the text" in w for w in c.warnings)
    assert lines[0].startswith("J. Doe (UNC) report on behalf of the Skynet collaboration")


def _detection_rows() -> list[CircularRow]:
    t0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)

    def row(h: float, mag: float | None, lim: float) -> CircularRow:
        mid = t0 + timedelta(hours=h)
        return CircularRow(
            telescope="PROMPT-8",
            band="r",
            mid_time_utc=mid,
            start_utc=mid - timedelta(minutes=5),
            stop_utc=mid + timedelta(minutes=5),
            n_exp=8,
            exptime_s=60.0,
            total_exptime_s=480.0,
            is_detection=mag is not None,
            mag=math.nan if mag is None else mag,
            mag_err=math.nan if mag is None else 0.043,
            lim_mag=lim,
            n_cal_stars=35,
            cal_catalog="ATLAS-RefCat2",
            cal_sys_unc_mag=0.031,
            cal_stat_unc_mag=0.004,
            mag_system="AB",
            frame_ids=(1, 2, 3, 4, 5, 6, 7, 8),
        )

    return [row(0.2, 17.418, 20.1), row(2.0, 19.6, 21.0), row(20.0, None, 21.3)]


def test_detection_circular_and_time_rounding() -> None:
    t0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    c = compose(_detection_rows(), target_name="GRB261124a", trigger_time_utc=t0)
    assert c.subject == "GRB 261124A: Skynet/PROMPT-8 optical detection"
    text = c.body.replace("\n", " ")
    assert "first detection is r = 17.42 +/- 0.04 mag at 0.2 h after the trigger" in text
    _, body = _table_body(c.body, 3)
    assert _cells(body[0])[:5] == ["0.2", "PROMPT-8", "8 x 60", "r", "17.42 +/- 0.04"]
    assert _cells(body[1])[0] == "2.0"
    assert _cells(body[2])[:5] == ["20.0", "PROMPT-8", "8 x 60", "r", "> 21.3"]
    assert "AB (r) system, calibrated to field stars from ATLAS-RefCat2" in text
    assert c.text.startswith(f"SUBJECT: {c.subject}\n\n")


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("GRB 261124A", "GRB 261124A"),
        ("grb261124a", "GRB 261124A"),
        ("GRB_090902.5", "GRB 090902.5"),
        ("EP 250101A", "EP250101a"),
        ("EP250101a", "EP250101a"),
        ("AT 2026abc", "AT2026abc"),
        ("SN 2026xy", "SN 2026xy"),
        ("LIGO/Virgo/KAGRA S250206dm", "LIGO/Virgo/KAGRA S250206dm"),
        ("IceCube-261124A", "IceCube-261124A"),
        ("ZTF26aabcdef", "ZTF26aabcdef"),
        ("FRB 20261124A", "FRB 20261124A"),
        ("sb26112401", "sb26112401"),
        ("DEMO-RISER", None),
        ("Skynet target 7", None),
    ],
)
def test_event_names_follow_gcn_patterns(name: str, canonical: str | None) -> None:
    assert canonical_event_name(name) == canonical


def test_unknown_event_name_refused_or_warned() -> None:
    rows = _detection_rows()
    with pytest.raises(CircularError, match="matches no GCN event name pattern"):
        compose(rows, target_name="DEMO-RISER", event_name_check="refuse")
    c = compose(rows, target_name="DEMO-RISER", event_name_check="warn")
    assert c.subject.startswith("DEMO-RISER: Skynet/PROMPT-8 optical")
    assert any("Misc" in w for w in c.warnings)
    with pytest.raises(CircularError, match="nothing to report"):
        compose([], target_name="GRB 261124A")


def test_subject_keyword_check() -> None:
    assert subject_is_valid("GRB 261124A: Skynet/PROMPT optical detection")
    assert not subject_is_valid("Target 7: Skynet/PROMPT optical detection")
    assert not subject_is_valid("Re: GRB 261124A: Skynet/PROMPT optical detection")


def test_submission_link_decodes_back_exactly() -> None:
    t0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    c = compose(_detection_rows(), target_name="GRB 261124A", trigger_time_utc=t0)
    parts = urlsplit(c.url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://gcn.nasa.gov/circulars/new"
    q = parse_qs(parts.query, keep_blank_values=True, strict_parsing=True)
    assert q["subject"] == [c.subject]
    assert q["body"] == [c.body]
    assert q["format"] == ["text/plain"]
    # A literal "+" (in "+/-") survives; spaces travel as "+".
    assert "%2B%2F-" in c.url
    assert submission_url("a b", "x+y\n") == (
        "https://gcn.nasa.gov/circulars/new?subject=a+b&body=x%2By%0A&format=text%2Fplain"
    )


def test_sidecar_validates_against_the_gcn_schema() -> None:
    t0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    rows = _detection_rows()
    c = compose(rows, target_name="GRB 261124A", trigger_time_utc=t0)
    doc = sidecar(
        c.rows,
        event_name=c.event_name,
        trigger_time_utc=t0,
        ra_deg=10.5,
        dec_deg=-20.25,
        created_utc=t0 + timedelta(days=1),
    )
    validate_sidecar(doc)
    json.dumps(doc, allow_nan=False)
    assert doc["$schema"] == BOOM_SCHEMA_ID
    assert doc["alert_datetime"] == "2026-11-25T03:00:00.000Z"
    phot = doc["data"]["photometry"]
    assert [p.get("mag") for p in phot] == [17.418, 19.6, None]
    assert phot[0]["mag_error"] == 0.043
    assert "mag" not in phot[2]
    assert "mag_error" not in phot[2]
    assert [p["limiting_mag"] for p in phot] == [20.1, 21.0, 21.3]
    assert all(p["limiting_mag_sigma"] == 5.0 for p in phot)
    assert all(p["trigger_time"] == "2026-11-24T03:00:00.000Z" for p in phot)
    assert phot[0]["observation_start"] == "2026-11-24T03:07:00.000Z"
    assert phot[0]["observation_livetime"] == 480.0
    assert phot[0]["soapd"]["n_exposures"] == 8
    assert phot[0]["soapd"]["time_since_trigger_h"] == pytest.approx(0.2)
    assert doc["data"]["targets"] == [{"event_name": "GRB 261124A", "ra": 10.5, "dec": -20.25}]


def test_sidecar_schema_violations_are_reported() -> None:
    t0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    doc = sidecar(_detection_rows(), event_name="GRB 261124A", trigger_time_utc=t0)
    extra = copy.deepcopy(doc)
    extra["soapd_version"] = "1"
    with pytest.raises(CircularError, match="Unevaluated properties"):
        validate_sidecar(extra)
    wrong = copy.deepcopy(doc)
    wrong["data"]["photometry"][0]["mag"] = "17.4"
    with pytest.raises(CircularError, match="data/photometry/0/mag"):
        validate_sidecar(wrong)
    bad_tense = copy.deepcopy(doc)
    bad_tense["alert_tense"] = "now"
    with pytest.raises(CircularError, match="alert_tense"):
        validate_sidecar(bad_tense)
