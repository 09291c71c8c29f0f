"""GCN circulars from stacked epochs: text, one-click submission link, schema-valid JSON.

**Text** (Skynet's layout, GCN 9916 and 9989; GCN style rules in the team's
``reference/gcn.md``): the subject ``<event>: <team>/<telescopes> optical
<detection|upper limits|observations>`` starts with the canonical event name, so
GCN files the circular under the event; a short lead (trigger, telescopes,
filters, start after T0); "Stacking only images that increase the limiting
magnitude yields:"; the table, one row per stacked epoch: (weighted) mean
mid-exposure time since trigger (h), telescope, ``N x S``, filter, ``mag +/- err``
or ``> limit``, calibration stars and catalogue, 1-sigma systematic and statistical
calibration uncertainty, under five stacked heading lines whose last holds the
units; then the calibration sentence (catalogue, AB/Vega system, no extinction
correction). Plain ASCII, no tabs, at most ``max_lines`` lines (GCN asks for fewer
than 60). Rounding follows GCN 9916: limits to 0.1 mag, calibration uncertainties
to 0.001 mag, times to 0.1 h (finer below 10 h), detections to 0.01 mag.

**Event names** are checked with GCN's own subject patterns (``parseEventFromSubject``
and ``validSubjectKeywords`` of nasa-gcn/gcn.nasa.gov at commit 11d32bd4,
``app/routes/circulars/circulars.lib.ts``): a name that matches none would land in
"Misc"; depending on ``event_name_check`` the draft is refused or carries a warning.

**Link**: :func:`submission_url` is GCN's web form prefilled by URL
(``https://gcn.nasa.gov/circulars/new?subject=...&body=...&format=text/plain``); the
observer reviews and submits under their own account. soapd never submits.

**JSON**: :func:`sidecar` follows the GCN unified schema v7.2.1 (vendored in
``gcn_schema/``): the ``boom/alert`` envelope with one ``core/Photometry`` item per
row (a detection has ``mag``/``mag_error``; an upper limit only ``limiting_mag``),
observation start/stop/livetime and the trigger time; soapd's own numbers go in
each item's ``soapd`` object, the only place the schema admits extra keys.
:func:`validate_sidecar` checks a document with ``jsonschema``.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from soapd.errors import CircularError

__all__ = [
    "BOOM_SCHEMA_ID",
    "GCN_NEW_CIRCULAR_URL",
    "Circular",
    "CircularRow",
    "canonical_event_name",
    "compose",
    "sidecar",
    "subject_is_valid",
    "submission_url",
    "validate_sidecar",
]

#: GCN's web form for a new circular (prefilled by the query string).
GCN_NEW_CIRCULAR_URL = "https://gcn.nasa.gov/circulars/new"
#: ``$id`` of the envelope schema the sidecar follows.
BOOM_SCHEMA_ID = "https://gcn.nasa.gov/schema/main/gcn/notices/boom/alert.schema.json"
#: URLs longer than this (bytes) may be refused by the GCN site's front end (CloudFront
#: limits a request line to 8192 bytes); the draft warns.
MAX_URL_BYTES = 8000

# GCN's subject patterns (circulars.lib.ts @ 11d32bd4), in its order, with the
# canonical spelling each produces.
_EVENT_PATTERNS: tuple[tuple[str, Any], ...] = (
    (r"GRB[.\s_-]*(\d{6}(?:[a-z]|\.[0-9]+)?)", lambda m: f"GRB {m[1].upper()}"),
    (r"SGR[.\s_-]*(J*\d{4}\.?\d*\+\d{4})", lambda m: f"SGR {m[1].upper()}"),
    (r"SGR[.\s_-]*Swift[.\s_-]*(J*\d{4}\.?\d*\+\d{4})", lambda m: f"SGR Swift {m[1].upper()}"),
    (r"IceCube[.\s_-]*(\d{6}[a-z])", lambda m: f"IceCube-{m[1].upper()}"),
    (r"IceCube[.\s_-]*Cascade[.\s_-]*(\d{6}[a-z])", lambda m: f"IceCube-Cascade {m[1].upper()}"),
    (r"ZTF[.\s_-]*(\d{2}[a-z]*)", lambda m: f"ZTF{m[1].lower()}"),
    (r"HAWC[.\s_-]*(\d{6}A)", lambda m: f"HAWC-{m[1].upper()}"),
    (
        r"((?:LIGO|Virgo|KAGRA)(?:[/-](?:LIGO|Virgo|KAGRA))*)[-_ \s]?(S|G|GW)(\d{5,}[a-z]*)",
        lambda m: f"{m[1].upper().replace('VIRGO', 'Virgo')} {m[2].upper()}{m[3].lower()}",
    ),
    (r"ANTARES[.\s_-]*(\d{6}[a-z])", lambda m: f"ANTARES {m[1]}".upper()),
    (
        r"Baksan\sNeutrino\sObservatory\sAlert[.\s_-]*(\d{6}.\d{2})",
        lambda m: f"Baksan Neutrino Observatory Alert {m[1]}",
    ),
    (r"EP[.\s_-]*(\d{6}[a-z])", lambda m: f"EP{m[1].lower()}"),
    (
        r"SN[.\s_-]*(\d{4}[a-z]*)",
        lambda m: f"SN {m[1].upper() if len(m[1]) == 5 else m[1].lower()}",
    ),
    (r"GW[.\s_-]*(\d{6})", lambda m: f"GW{m[1]}"),
    (r"FRB[.\s_-]*(\d{8}[a-z]|\d{6}[a-z]?)", lambda m: f"FRB {m[1]}".upper()),
    (r"sb[.\s_-]*(\d{8})", lambda m: f"sb{m[1]}"),
    (r"XRF[.\s_-]*(\d{6}[a-z]?)", lambda m: f"XRF {m[1].upper()}"),
    (r"AT[.\s_-]*(\d{4}[a-z]+)", lambda m: f"AT{m[1].lower()}"),
)

#: Words of which GCN requires one in a subject (case-insensitive substring match).
VALID_SUBJECT_KEYWORDS = (
    "AGILE", "ALMA", "AMON", "ANTARES", "AXP", "Baksan Neutrino Observatory Alert", "CALET",
    "Chandra", "COLIBRI", "EP", "Fermi", "FRB", "FXT", "GOTO", "GRANDMA", "GRB", "GW", "HAWC",
    "HST", "IBAS", "IceCube", "INTEGRAL", "IPN", "JCMT", "KAGRA", "KamLAND", "KONUS", "LIGO",
    "LOFAR", "LVC", "LVK", "LXT", "MAGIC", "MASTER", "MAXI", "Nova", "NuEM", "Pan-STARRS",
    "POLAR", "RATIR", "SDSS", "SFXT", "SGR", "SN", "Super-Kamiokande", "Supernova", "Suzaku",
    "SVOM", "Swift", "transient", "VLA", "VLBI", "XRB", "XRF", "XRT", "XTR", "Virgo", "ZTF",
)  # fmt: skip

#: Subjects GCN takes for auto-replies (a subset that a generated subject could hit).
_AUTO_REPLY = ("re: ", "fwd: ", " r: ", " ris: ", "subject:", "auto reply", "autoreply")


def canonical_event_name(name: str) -> str | None:
    """Return GCN's canonical event name found in ``name`` (as GCN parses subjects), or None.

    A match at the start of ``name`` wins over one inside it, as on GCN.

    >>> canonical_event_name("GRB261124a"), canonical_event_name("EP 250101A")
    ('GRB 261124A', 'EP250101a')
    >>> canonical_event_name("DEMO-RISER") is None
    True
    """
    for anchored in (True, False):
        for pattern, normalise in _EVENT_PATTERNS:
            rx = re.compile(("^" if anchored else "") + pattern, re.IGNORECASE)
            m = rx.match(name) if anchored else rx.search(name)
            if m:
                return str(normalise(m))
    return None


def subject_is_valid(subject: str) -> bool:
    """Return True when GCN would accept ``subject`` (an allowed keyword, not an auto-reply)."""
    low = subject.lower()
    if any(a in low for a in _AUTO_REPLY):
        return False
    return any(k.lower() in low for k in VALID_SUBJECT_KEYWORDS)


@dataclass(frozen=True, slots=True, kw_only=True)
class CircularRow:
    """One table row: a stacked epoch (or a single frame) of one telescope and filter.

    Times are aware UTC datetimes (``mid_time_utc`` is the weighted mean mid-exposure
    time); magnitudes in mag on ``mag_system``; ``lim_mag`` is ``lim_nsigma``-sigma.
    """

    telescope: str
    band: str
    mid_time_utc: datetime
    start_utc: datetime
    stop_utc: datetime
    n_exp: int
    exptime_s: float
    total_exptime_s: float
    is_detection: bool
    mag: float = math.nan
    mag_err: float = math.nan
    lim_mag: float = math.nan
    lim_nsigma: float = 5.0
    n_cal_stars: int = 0
    cal_catalog: str = ""
    cal_sys_unc_mag: float = math.nan
    cal_stat_unc_mag: float = math.nan
    mag_system: str = "none"
    frame_ids: tuple[int, ...] = ()

    @classmethod
    def from_stack(cls, stack: Any) -> CircularRow:
        """Return the row of a :class:`soapd.stacks.StackResult` (or a record with its fields)."""
        return cls(
            telescope=stack.telescope,
            band=stack.band,
            mid_time_utc=stack.mid_time_utc,
            start_utc=stack.start_utc,
            stop_utc=stack.stop_utc,
            n_exp=len(stack.members),
            exptime_s=stack.exptime_s,
            total_exptime_s=stack.total_exptime_s,
            is_detection=bool(stack.is_detection),
            mag=stack.mag,
            mag_err=stack.mag_err,
            lim_mag=stack.lim_mag,
            lim_nsigma=stack.lim_nsigma,
            n_cal_stars=stack.n_cal_stars,
            cal_catalog=stack.cal_catalog,
            cal_sys_unc_mag=stack.zp_scatter_mag,
            cal_stat_unc_mag=stack.zp_err_mag,
            mag_system=stack.mag_system,
            frame_ids=tuple(stack.members),
        )

    @property
    def shows_detection(self) -> bool:
        """True when the row prints a magnitude (a detection with a finite magnitude)."""
        return self.is_detection and math.isfinite(self.mag)


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
    """Time since trigger in h: 0.1 h from 10 h on (GCN 9916), finer below."""
    if not math.isfinite(value):
        return "-"
    if abs(value) >= 9.95:
        return f"{value:.1f}"
    if abs(value) >= 0.995:
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
    widths = [max([len(w) for w in h] + [len(b[j]) for b in body]) for j, h in enumerate(heads)]
    lines = []
    for k in range(5):
        cells = []
        for h, w in zip(heads, widths, strict=True):
            pad = 5 - len(h)
            cells.append((h[k - pad] if k >= pad else "").ljust(w))
        lines.append("  ".join(cells).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(
        "  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip() for b in body
    )
    return lines


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
        f"{times}; 'N x S' gives the number and length (s) of the exposures stacked; "
        f"limits are {n_sigma:g}-sigma."
    )
    head: list[str] = []
    if authors.strip():
        head += [*_wrap(f"{authors.strip()} report on behalf of the {team} collaboration:"), ""]
    head += [*_wrap(lead), *_wrap(result), ""]
    head += ["Stacking only images that increase the limiting magnitude yields:", ""]
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


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _finite(items: Mapping[str, Any]) -> dict[str, Any]:
    """Drop None and non-finite numbers (the schema's numbers admit neither null nor NaN)."""
    out: dict[str, Any] = {}
    for k, v in items.items():
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            continue
        out[k] = v
    return out


def sidecar(
    rows: Sequence[CircularRow],
    *,
    event_name: str,
    team: str = "Skynet",
    trigger_time_utc: datetime | None = None,
    ra_deg: float | None = None,
    dec_deg: float | None = None,
    created_utc: datetime | None = None,
) -> dict[str, Any]:
    """Return the circular's numbers as a GCN ``boom/alert`` document (see the module).

    ``event_name`` should be the circular's canonical name (:attr:`Circular.event_name`).
    Items are in time order; times ISO 8601 UTC with a ``Z``; NaN values are left out.
    """
    created = (created_utc or datetime.now(UTC)).astimezone(UTC)
    trigger = _iso(trigger_time_utc) if trigger_time_utc is not None else None
    photometry = []
    for r in sorted(rows, key=lambda r: (r.mid_time_utc, r.telescope, r.band)):
        item: dict[str, Any] = {
            "event_name": event_name,
            "mission": team,
            "telescope": r.telescope,
            "filter": r.band,
            "mag_system": r.mag_system if r.mag_system in ("AB", "Vega") else "instrumental",
            "limiting_mag": r.lim_mag,
            "limiting_mag_sigma": r.lim_nsigma,
            "observation_start": _iso(r.start_utc),
            "observation_stop": _iso(r.stop_utc),
            "observation_livetime": r.total_exptime_s,
            "trigger_time": trigger,
        }
        if r.shows_detection:
            item["mag"] = r.mag
            item["mag_error"] = r.mag_err
        since = _since_h(r.mid_time_utc, trigger_time_utc) if trigger_time_utc else None
        item["soapd"] = _finite(
            {
                "mid_time": _iso(r.mid_time_utc),
                "time_since_trigger_h": since,
                "n_exposures": r.n_exp,
                "exposure_s": r.exptime_s,
                "stacked": r.n_exp > 1,
                "calibration_catalog": r.cal_catalog or None,
                "n_calibration_stars": r.n_cal_stars,
                "calibration_sys_unc_mag": r.cal_sys_unc_mag,
                "calibration_stat_unc_mag": r.cal_stat_unc_mag,
                "frame_ids": list(r.frame_ids),
            }
        )
        photometry.append(_finite(item))
    target = _finite({"event_name": event_name, "ra": ra_deg, "dec": dec_deg})
    return {
        "$schema": BOOM_SCHEMA_ID,
        "alert_datetime": _iso(created),
        "alert_tense": "current",
        "mission": team,
        "instrument": ", ".join(sorted({r.telescope for r in rows if r.telescope})) or team,
        "messenger": "EM",
        "data": {"targets": [target], "photometry": photometry},
    }


@cache
def _validator() -> Any:
    """Build the Draft 2020-12 validator of the vendored envelope, with a local registry."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    root = resources.files("soapd.alerts").joinpath("gcn_schema")
    resources_: list[tuple[str, Resource[Any]]] = []
    envelope: dict[str, Any] | None = None
    for sub in ("gcn/notices/boom", "gcn/notices/core"):
        folder = root.joinpath(sub)
        for entry in sorted(folder.iterdir(), key=lambda p: p.name):
            if not entry.name.endswith(".schema.json"):
                continue
            contents = json.loads(entry.read_text(encoding="utf-8"))
            resources_.append((contents["$id"], Resource.from_contents(contents)))
            if contents["$id"] == BOOM_SCHEMA_ID:
                envelope = contents
    if envelope is None:  # pragma: no cover - the package data is incomplete
        raise CircularError("the vendored GCN schema (boom/alert.schema.json) is missing")
    registry: Registry[Any] = Registry().with_resources(resources_)
    return Draft202012Validator(envelope, registry=registry)


def validate_sidecar(doc: Mapping[str, Any]) -> None:
    """Raise CircularError listing every way ``doc`` breaks the GCN ``boom/alert`` schema."""
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors]
        raise CircularError("the JSON does not follow the GCN schema: " + "; ".join(lines))
