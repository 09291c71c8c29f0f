"""The circular's text in Skynet's layout, and GCN's prefilled submission link."""

from __future__ import annotations

import math
import re
import textwrap
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlencode

from soapd.alerts.circular.names import canonical_event_name, subject_is_valid
from soapd.alerts.circular.rows import CircularRow
from soapd.alerts.texttable import stacked_table
from soapd.errors import CircularError

__all__ = ["GCN_NEW_CIRCULAR_URL", "MAX_URL_BYTES", "Circular", "compose", "submission_url"]

#: GCN's web form for a new circular (prefilled by the query string).
GCN_NEW_CIRCULAR_URL = "https://gcn.nasa.gov/circulars/new"
#: URLs longer than this (bytes) may be refused by the GCN site's front end (CloudFront
#: limits a request line to 8192 bytes); the draft warns.
MAX_URL_BYTES = 8000


@dataclass(frozen=True, slots=True, kw_only=True)
class Circular:
    """A drafted circular: subject, body, the canonical event name and any warnings."""

    subject: str
    body: str
    event_name: str
    rows: tuple[CircularRow, ...]
    rows_omitted: int = 0
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def url(self) -> str:
        """GCN's new-circular form prefilled with this subject and body."""
        return submission_url(self.subject, self.body)

    @property
    def text(self) -> str:
        """Subject line, blank line, body: what ``soapd lightcurve --format gcn`` writes."""
        return f"SUBJECT: {self.subject}\n\n{self.body}"


def submission_url(subject: str, body: str, *, fmt: str = "text/plain") -> str:
    """Return GCN's prefilled form URL; ``urllib.parse.parse_qs`` decodes it back exactly.

    Spaces are encoded as ``+`` (the form reads the query with ``URLSearchParams``,
    which decodes ``+`` as a space; literal ``+`` becomes ``%2B``), which keeps the
    space-aligned table short.
    """
    query = urlencode({"subject": subject, "body": body, "format": fmt})
    return f"{GCN_NEW_CIRCULAR_URL}?{query}"


def _ascii(text: str) -> str:
    """Return ``text`` as plain ASCII (accents dropped, tabs to spaces), as GCN asks."""
    text = text.replace("\t", "    ")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}f}" if math.isfinite(value) else "-"


def _hours(value: float) -> str:
    """Time since trigger in h: to 0.1 h (GCN 9916) from 0.1 h on, finer in the first 6 min."""
    if not math.isfinite(value):
        return "-"
    if abs(value) >= 0.095:
        return f"{value:.1f}"
    if abs(value) >= 0.0095:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _mjd(when: datetime) -> float:
    return (when.astimezone(UTC) - datetime(1858, 11, 17, tzinfo=UTC)).total_seconds() / 86400.0


def _since_h(when: datetime, trigger: datetime) -> float:
    return (when - trigger).total_seconds() / 3600.0


def _exposure(row: CircularRow) -> str:
    if math.isfinite(row.exptime_s):
        return f"{row.n_exp} x {row.exptime_s:g}"
    return f"{row.n_exp} ({row.total_exptime_s:g} s)"


def _cells(row: CircularRow, trigger: datetime | None) -> list[str]:
    if row.shows_detection:
        mag = f"{row.mag:.2f} +/- {_fmt(row.mag_err, 2)}"
    else:
        mag = f"> {_fmt(row.lim_mag, 1)}"
    stars = f"{row.n_cal_stars} {row.cal_catalog}".strip() if row.n_cal_stars else row.cal_catalog
    when = (
        _hours(_since_h(row.mid_time_utc, trigger))
        if trigger is not None
        else f"{_mjd(row.mid_time_utc):.4f}"
    )
    return [
        when,
        row.telescope or "-",
        _exposure(row),
        row.band or "-",
        mag,
        stars or "-",
        _fmt(row.cal_sys_unc_mag, 3),
        _fmt(row.cal_stat_unc_mag, 3),
    ]


def _table(rows: Sequence[CircularRow], trigger: datetime | None, n_sigma: float) -> list[str]:
    when = ["mean", "time", "since", "trig.", "(h)"] if trigger else ["mean", "time", "(MJD)"]
    heads = [
        when,
        ["telescope"],
        ["exp.", "(# x s)"],
        ["filter"],
        ["mag. or", f"{n_sigma:g}-sigma", "limit", "(mag)"],
        ["cal.", "stars"],
        ["1-sigma", "sys.", "cal.", "unc.", "(mag)"],
        ["1-sigma", "stat.", "cal.", "unc.", "(mag)"],
    ]  # fmt: skip
    body = [[_ascii(c) for c in _cells(r, trigger)] for r in rows]
    return stacked_table(heads, body)


_BAND_ORDER = ("U", "B", "V", "R", "I", "u", "g", "r", "i", "z", "y", "G", "Open")


def _bands(names: Iterable[str]) -> list[str]:
    """Return the distinct bands in photometric order (UBVRI, ugrizy, then the rest)."""
    order = {b: i for i, b in enumerate(_BAND_ORDER)}
    return sorted({n for n in names if n}, key=lambda b: (order.get(b, len(order)), b))


def _join(words: Sequence[str]) -> str:
    items = list(words)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _scopes_label(telescopes: Iterable[str]) -> str:
    """Return the subject's telescope label: one name, or the families (PROMPT-2, -5 -> PROMPT)."""
    names = sorted({t for t in telescopes if t})
    if len(names) <= 1:
        return names[0] if names else "telescopes"
    families = sorted({re.sub(r"[-_ ]?\d+$", "", n) or n for n in names})
    return "/".join(families)


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(_ascii(text), width=78, break_on_hyphens=False) or [""]


def _calibration_sentence(rows: Sequence[CircularRow]) -> str:
    systems = sorted({r.mag_system for r in rows if r.mag_system in ("AB", "Vega")})
    if not systems:
        return "Magnitudes are instrumental: no photometric calibration was possible."
    by = {s: _bands(r.band for r in rows if r.mag_system == s) for s in systems}
    parts = [f"{s} ({', '.join(by[s])})" for s in systems]
    cats = Counter(r.cal_catalog for r in rows if r.cal_catalog)
    stars = [r.n_cal_stars for r in rows if r.n_cal_stars]
    cal = ""
    if cats:
        median = sorted(stars)[len(stars) // 2] if stars else 0
        count = f" (median {median} per epoch)" if median else ""
        cal = f", calibrated to field stars from {_join(sorted(cats))}{count}"
    plural = "s" if len(parts) > 1 else ""
    return (
        f"Magnitudes are in the {_join(parts)} system{plural}{cal}, and are not corrected "
        "for Galactic extinction. The systematic uncertainty is the scatter of the "
        "calibration stars; the statistical one, the error of the zero point."
    )


def compose(
    rows: Sequence[CircularRow],
    *,
    target_name: str,
    trigger_time_utc: datetime | None = None,
    team: str = "Skynet",
    authors: str = "",
    event_name_check: str = "warn",
    max_lines: int = 59,
    more_planned: bool | None = None,
    stacked: bool = True,
) -> Circular:
    """Draft the circular for one target from its rows (stacked epochs, see the module).

    Parameters
    ----------
    rows
        One per epoch and filter (:meth:`CircularRow.from_stack`); shown in time order.
    target_name
        The event (e.g. "GRB 261124A"); its canonical GCN spelling leads the subject.
    trigger_time_utc
        T0; times are then hours since it, else MJD.
    team
        Named in the subject ("Skynet") and the lead.
    authors
        Author line opening the body ("A. B, C. D (UNC)"); empty: none.
    event_name_check
        "warn" or "refuse" when ``target_name`` matches no GCN event pattern.
    max_lines
        Most lines in the body; later rows are dropped (and counted) to fit.
    more_planned
        True/False adds "Further observations are planned." / "are not planned.".
    stacked
        True: the rows are stacked images (Skynet's "Stacking only images that
        increase the limiting magnitude yields:"); False: epochs that combine the
        single images' forced photometry (no pixels co-added), and the text says so.

    Raises
    ------
    CircularError
        No rows, or (with ``event_name_check = "refuse"``) no GCN event name.
    """
    if not rows:
        raise CircularError(f"{target_name}: nothing to report: no epochs are stored yet")
    warnings: list[str] = []
    event = canonical_event_name(target_name)
    if event is None:
        message = (
            f"{target_name!r} matches no GCN event name pattern (e.g. 'GRB 261124A', "
            "'EP250101a', 'AT2026abc'); GCN would file the circular under 'Misc'"
        )
        if event_name_check == "refuse":
            raise CircularError(message + ": rename the target or set circular.event_name_check")
        warnings.append(message)
        event = _ascii(target_name)
    ordered = sorted(rows, key=lambda r: (r.mid_time_utc, r.telescope, r.band))
    trigger = trigger_time_utc.astimezone(UTC) if trigger_time_utc is not None else None
    detected = [r for r in ordered if r.shows_detection]
    kind = "detection" if detected else "upper limits"
    if not any(math.isfinite(r.lim_mag) or r.shows_detection for r in ordered):
        kind = "observations"
    scopes = sorted({r.telescope for r in ordered if r.telescope})
    subject = _ascii(f"{event}: {team}/{_scopes_label(scopes)} optical {kind}")
    if not subject_is_valid(subject):
        warnings.append(f"GCN would refuse the subject {subject!r}: it holds no allowed keyword")
    n_sigma = Counter(r.lim_nsigma for r in ordered).most_common(1)[0][0]

    bands = _bands(r.band for r in ordered)
    first = min(ordered, key=lambda r: r.start_utc)
    start = first.start_utc.astimezone(UTC)
    if trigger is not None:
        when = (
            f"starting {start:%Y-%m-%d %H:%M} UT, {_hours(_since_h(start, trigger))} h after "
            f"the trigger ({trigger:%Y-%m-%d %H:%M:%S} UT)"
        )
    else:
        when = f"starting {start:%Y-%m-%d %H:%M} UT"
    lead = (
        f"We observed the position of {event} with {_join(scopes) or 'the telescopes'} of the "
        f"{team} robotic telescope network in {_join(bands)}, {when}."
    )
    if detected:
        d = detected[0]
        at = (
            f"{_hours(_since_h(d.mid_time_utc, trigger))} h after the trigger"
            if trigger is not None
            else f"MJD {_mjd(d.mid_time_utc):.4f}"
        )
        result = (
            f"We detect an optical source at the position of {event}; its first detection is "
            f"{d.band} = {d.mag:.2f} +/- {_fmt(d.mag_err, 2)} mag at {at}."
        )
    else:
        result = f"No source is detected at the position of {event}."
    times = (
        "Times are weighted mean mid-exposure times since the trigger"
        if trigger is not None
        else "Times are weighted mean mid-exposure times (MJD, UTC)"
    )
    notes = (
        f"{times}; 'N x S' gives the number and length (s) of the exposures "
        f"{'stacked' if stacked else 'combined'}; limits are {n_sigma:g}-sigma."
    )
    head: list[str] = []
    if authors.strip():
        head += [*_wrap(f"{authors.strip()} report on behalf of the {team} collaboration:"), ""]
    head += [*_wrap(lead), *_wrap(result), ""]
    if stacked:
        head += ["Stacking only images that increase the limiting magnitude yields:", ""]
    else:
        head += [
            *_wrap("Combining, per epoch, the forced photometry of the single images yields:"),
            "",
        ]
    tail = ["", *_wrap(notes), *_wrap(_calibration_sentence(ordered))]
    if more_planned is not None:
        tail += ["", "Further observations are planned." if more_planned else
                 "No further observations are planned."]  # fmt: skip

    shown = list(ordered)
    omitted = 0
    while True:
        table = _table(shown, trigger, n_sigma)
        extra = [f"({omitted} later epoch(s) are not listed here.)"] if omitted else []
        lines = head + table + extra + tail
        if len(lines) <= max_lines or len(shown) <= 1:
            break
        shown = shown[:-1]
        omitted += 1
    if omitted:
        warnings.append(f"{omitted} epoch(s) left out of the text to stay within {max_lines} lines")
    if len(lines) > max_lines:
        warnings.append(f"the body has {len(lines)} lines (GCN asks for fewer than 60)")
    body = "\n".join(_ascii(line).rstrip() for line in lines) + "\n"
    url_bytes = len(submission_url(subject, body))
    if url_bytes > MAX_URL_BYTES:
        warnings.append(
            f"the prefilled link is {url_bytes} bytes long and may be refused by the GCN site; "
            "paste the text into the form instead"
        )
    return Circular(
        subject=subject,
        body=body,
        event_name=event,
        rows=tuple(shown),
        rows_omitted=omitted,
        warnings=tuple(warnings),
    )
