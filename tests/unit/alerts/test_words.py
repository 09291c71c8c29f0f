"""Words for flags next to the numbers (issue 10): GCN drafts, text lightcurves and the
`soapd process` summary say "saturated", "blended", "not covered (off frame)"; GCN drafts
and the API's lightcurves leave frames that did not cover the position out."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table, vstack

from soapd.alerts.gcn import circular, covered_rows, epochs, gcn_json
from soapd.api.results import PhotometryResult
from soapd.cli.lightcurve import text_table
from soapd.cli.process import summarise, target_line
from soapd.columns import covered_mask
from soapd.config import Config
from soapd.flags import Flag
from soapd.pipeline import process_frame
from soapd.pipeline.table import build_table
from soapd.testing.lightcurves import target_result
from soapd.testing.synth import make_frame, write_frame
from soapd.timeutil import mjd_of

T0 = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)


def _point(i: int, mag: float | None, *, telescope: str, flag: int = 0, **kw) -> Table:
    mid = T0 + timedelta(hours=i + 1)
    t = target_result({"GRB": mag}, mid_time_utc=mid, telescope=telescope, **kw).table
    t["mjd"] = mjd_of(mid)
    t["frame_id"] = i + 1
    t["mid_time_utc"] = mid.isoformat()
    t["flag"] = np.asarray(t["flag"]) | flag
    return t


def _not_covered(t: Table, bits: Flag) -> Table:
    t = t.copy()
    for col in ("flux", "snr", "calibrated_mag", "calibrated_mag_err", "limiting_mag"):
        t[col] = np.nan
    t["is_detection"] = False
    t["flag"] = int(Flag.NOT_COVERED | bits)
    return t


def test_gcn_lists_only_covered_frames_and_names_flags_in_words() -> None:
    lc = vstack(
        [
            _point(0, 14.0, telescope="Prompt5", flag=int(Flag.SATURATED)),
            _not_covered(_point(1, None, telescope="FEDER"), Flag.OFF_FRAME),
            _not_covered(_point(2, None, telescope="SAAO 1.0m"), Flag.NO_WCS | Flag.OFF_FRAME),
            _not_covered(_point(3, None, telescope="Prompt5", lim_mag=20.3), Flag.NEAR_EDGE),
        ]
    )
    assert len(covered_rows(lc)) == 1
    rows = epochs(lc, trigger_time_utc=T0, epoch_frac=0.0)
    assert len(rows) == 1
    assert rows[0]["notes"] == "saturated"
    text = circular(lc, target_name="GRB", trigger_time_utc=T0, epoch_frac=0.0)
    assert "with Prompt5 of" in text
    for other in ("FEDER", "SAAO", "> 20.3", "No source is detected"):
        assert other not in text, other
    assert "14.00 +/- 0.01 (saturated)" in text
    assert "first detection is R = 14.00 +/- 0.01 (saturated)" in text
    doc = gcn_json(lc, target_name="GRB", trigger_time_utc=T0, epoch_frac=0.0)
    assert [r["notes"] for r in doc["rows"]] == ["saturated"]
    json.dumps(doc, allow_nan=False)


def test_text_lightcurve_has_a_notes_column_in_words() -> None:
    lc = vstack(
        [
            _point(0, 17.0, telescope="P5"),
            _point(1, 16.0, telescope="P5", flag=int(Flag.BLENDED | Flag.SATURATED)),
            _point(2, None, telescope="P5"),
        ]
    )
    lines = text_table(lc, None).splitlines()
    assert lines[0].split()[-1] == "notes"
    assert lines[1].endswith("-")
    assert lines[2].endswith("saturated, blended")
    assert "> 19.50" in lines[3]


def test_text_lightcurve_labels_instrumental_points() -> None:
    t = _point(0, 17.0, telescope="P5")
    t["calibrated_mag"] = np.nan
    t["limiting_mag"] = np.nan
    t["limiting_ins_mag"] = -3.25
    t2 = t.copy()
    t2["is_detection"] = False
    body = text_table(vstack([t, t2]), None).splitlines()
    assert "(instrumental)" in body[1]
    assert "> -3.25 (instrumental)" in body[2]


def _forced(**values) -> Table.Row:
    base = {
        "target_name": "T",
        "is_forced": True,
        "aperture_radius": 4.0,
        "snr": 40.0,
        "calibrated_mag": 12.554,
        "calibrated_mag_err": 0.01,
        "ins_mag": -10.4,
        "ins_mag_err": 0.01,
        "is_detection": True,
        "limiting_mag": 20.29,
        "flag": 0,
    }
    base.update(values)
    return build_table({k: np.array([v]) for k, v in base.items()}, 1, {})[0]


def test_process_summary_says_flags_next_to_the_number() -> None:
    sat = target_line(_forced(flag=int(Flag.SATURATED | Flag.APER_HASMASKED)))
    assert sat == "  T r=4: 12.554 ± 0.010 (saturated), S/N 40.0"
    blended = target_line(_forced(flag=int(Flag.BLENDED)))
    assert "14" not in blended
    assert "(blended)" in blended
    limit = target_line(
        _forced(is_detection=False, snr=1.0, calibrated_mag=math.nan, flag=int(Flag.UPPER_LIMIT))
    )
    assert limit == "  T r=4: > 20.29 (upper limit), S/N 1.0"
    gone = target_line(
        _forced(
            is_detection=False,
            snr=math.nan,
            calibrated_mag=math.nan,
            limiting_mag=math.nan,
            flag=int(Flag.NOT_COVERED | Flag.MASKED_APERTURE),
        )
    )
    assert gone == "  T: not covered (masked pixels) (no flux, no limit)"
    assert "> " not in gone
    ins = target_line(_forced(calibrated_mag=math.nan, flag=int(Flag.NO_CALIBRATION)))
    assert "-10.400 ± 0.010 (instrumental)" in ins
    ins_lim = target_line(
        _forced(
            is_detection=False,
            calibrated_mag=math.nan,
            limiting_mag=math.nan,
            limiting_ins_mag=-3.5,
            flag=int(Flag.UPPER_LIMIT | Flag.NO_CALIBRATION),
        )
    )
    assert "> -3.50 (instrumental upper limit)" in ins_lim
    assert "nan" not in ins_lim


def test_api_target_lightcurve_keeps_not_covered_rows_apart() -> None:
    """A position asked for explicitly has one row per frame; frames that did not cover it
    are `not_covered` (NaN limit), never among the limits, the GCN draft or the plot."""
    frames = [
        _point(0, 17.0, telescope="P5"),
        _point(1, None, telescope="P5"),
        _not_covered(_point(2, None, telescope="FEDER"), Flag.OFF_FRAME),
    ]
    for k, t in enumerate(frames):
        t["image_file"] = f"f{k}.fits"
    field = vstack(frames)
    lc = PhotometryResult(field).extract_target(
        SkyCoord(150.0, -30.0, unit="deg"), forced_photometry=True
    )
    assert len(lc) == 3
    assert len(lc.detections) == 1
    assert len(lc.upper_limits) == 1
    gone = lc.table[~covered_mask(lc.table)]
    assert len(gone) == 1
    assert int(gone["flag"][0]) & Flag.NOT_COVERED
    assert np.isnan(gone["limiting_mag"][0])
    assert "1 detections, 1 limits, 1 not covered" in repr(lc)
    text = lc.to_gcn(name="GRB")
    assert "FEDER" not in text
    assert text.count("P5") >= 2


def test_process_first_line_gives_instrumental_limits_without_a_zero_point(tmp_path) -> None:
    f = make_frame((256, 256), stars=20, seed=3)
    path = write_frame(tmp_path / "f.fits", f.data_adu, f.header)
    config = Config()
    first = summarise(process_frame(path, config=config))[0]
    assert "no ZP (instrumental)" in first
    assert "instrumental limit -" in first
    assert "nan" not in first
    first = summarise(process_frame(path, zeropoint=23.0, config=config))[0]
    assert "instrumental" not in first
    assert "limit 2" in first
