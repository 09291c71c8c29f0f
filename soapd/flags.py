"""Bit flags for measurements and frames: the only place bits are defined.

sep's own extraction and aperture flags keep their values (``sep.OBJ_MERGED`` = 1,
``sep.OBJ_TRUNC`` = 2, ``sep.OBJ_DOVERFLOW`` = 4, ``sep.OBJ_SINGU`` = 8,
``sep.APER_TRUNC`` = 16, ``sep.APER_HASMASKED`` = 32, ``sep.APER_ALLMASKED`` = 64,
``sep.APER_NONPOSITIVE`` = 128) so that a sep flag word can be OR-ed in directly.
soapd's own bits start at 256. The coverage bits (``NOT_COVERED``,
``MASKED_APERTURE``) are 2**17 and 2**18; the morphology and contamination bits
(``COSMIC_RAY``, ``EXTENDED``, ``CONTAMINATED``) sit at 2**24-2**26, clear of the
low bits that other flags grow into. The README's flags table is checked against
this module by a test.

Coverage is a state, not a limit: a forced row is a detection, an upper limit, or
*not covered* (``NOT_COVERED`` plus the bit that says why: ``NO_WCS``, ``OFF_FRAME``,
``NEAR_EDGE`` or ``MASKED_APERTURE``; :func:`coverage_of` names it). A not-covered
row carries no flux, no limit and never ``UPPER_LIMIT``. :func:`flag_words` turns a
flag word into the words printed next to a number ("saturated", "not covered (off
frame)"); the CLI summary, text lightcurves and GCN drafts all use it.

>>> Flag.SATURATED in Flag(Flag.SATURATED | Flag.NEAR_EDGE)
True
>>> describe(Flag.UPPER_LIMIT | Flag.APER_TRUNC)
['APER_TRUNC', 'UPPER_LIMIT']
>>> flag_words(Flag.NOT_COVERED | Flag.OFF_FRAME)
['not covered (off frame)']
>>> flag_text(Flag.SATURATED | Flag.BLENDED | Flag.UPPER_LIMIT)
'saturated, blended'
"""

from __future__ import annotations

from enum import IntFlag

__all__ = [
    "COVERAGE_REASONS",
    "SPURIOUS",
    "SUSPECT",
    "UNMEASURED",
    "Flag",
    "coverage_of",
    "describe",
    "flag_text",
    "flag_words",
    "has_any",
    "is_covered",
]


class Flag(IntFlag):
    """Quality bits of one measurement row (and, for the ``FRAME_*`` bits, of a frame)."""

    #: sep: the object was deblended from a larger one (blended).
    OBJ_MERGED = 1
    #: sep: the object's pixels touch the image edge.
    OBJ_TRUNC = 2
    #: sep: a deblending overflow happened.
    OBJ_DOVERFLOW = 4
    #: sep: singular moments (a line or a single pixel).
    OBJ_SINGU = 8
    #: sep: the aperture is cut by the image edge.
    APER_TRUNC = 16
    #: sep: the aperture contains masked pixels (NaN, saturated, bad).
    APER_HASMASKED = 32
    #: sep: every pixel in the aperture is masked.
    APER_ALLMASKED = 64
    #: sep: the aperture sum is not positive.
    APER_NONPOSITIVE = 128
    #: soapd: a pixel in the aperture is at or above the saturation level.
    SATURATED = 256
    #: soapd: the position lies closer to the edge than the configured margin.
    NEAR_EDGE = 512
    #: soapd: the requested sky position falls outside the frame; no flux is measured.
    OFF_FRAME = 1024
    #: soapd: not a detection (S/N below the threshold); the magnitude is an upper limit.
    UPPER_LIMIT = 2048
    #: soapd: the frame has no usable zero point; magnitudes are instrumental only.
    NO_CALIBRATION = 4096
    #: soapd: a forced position was re-centred onto a nearby peak.
    RECENTERED = 8192
    #: soapd: another detection lies within the aperture plus a FWHM (crowded).
    BLENDED = 16384
    #: soapd: the frame has no WCS, so sky positions are unknown.
    NO_WCS = 32768
    #: soapd: an unfiltered (Open/Clear/Lum) frame calibrated against a substitute band
    #: (``calibration.unfiltered_band``); magnitudes are on that band's scale, not a
    #: standard system.
    CAL_UNFILTERED = 65536
    #: soapd: the target position was not measured in this frame (no WCS, off the frame, in
    #: the edge buffer, or too many masked pixels); the row has no flux and no limit. The
    #: reason is one of NO_WCS, OFF_FRAME, NEAR_EDGE, MASKED_APERTURE.
    NOT_COVERED = 1 << 17
    #: soapd: too few valid (finite, not bad) pixels in the aperture or its sky annulus
    #: for a measurement; set with NOT_COVERED.
    MASKED_APERTURE = 1 << 18
    #: soapd: a cosmic ray, not a star: sharper than the frame's PSF (peak over aperture flux
    #: well above the stars'). On a forced row: a cosmic-ray detection in the aperture holds
    #: at least half of the flux, or the flux without it is below the detection threshold.
    COSMIC_RAY = 1 << 24
    #: soapd: an extended source (galaxy, blend): significantly less concentrated than the
    #: frame's stars. Never used for the FWHM or as a calibrator.
    EXTENDED = 1 << 25
    #: soapd: light from neighbouring detections (their flux times the PSF's enclosed fraction
    #: at that distance) exceeds ``photometry.contamination_max_sigma`` of the aperture noise.
    CONTAMINATED = 1 << 26


def describe(value: int) -> list[str]:
    """Return the names of the bits set in ``value``, lowest bit first."""
    return [f.name for f in Flag if f.name is not None and value & f.value]


#: Coverage reason codes (the result table's ``coverage`` column), in the order they are
#: decided: a frame without WCS places nothing, a position off the frame has no pixels,
#: one in the edge buffer has a cut aperture, one under masked pixels has too few valid ones.
COVERAGE_REASONS: dict[str, str] = {
    "covered": "measured (a detection or an upper limit)",
    "no_wcs": "the frame has no WCS",
    "off_frame": "the position is off the frame",
    "edge": "the position is within the edge buffer",
    "masked": "too many masked (NaN, bad) pixels in the aperture or sky annulus",
}

_REASON_BITS: tuple[tuple[str, Flag], ...] = (
    ("no_wcs", Flag.NO_WCS),
    ("off_frame", Flag.OFF_FRAME),
    ("edge", Flag.NEAR_EDGE),
    ("masked", Flag.MASKED_APERTURE),
)


#: A row with any of these bits measured nothing: NOT_COVERED, or OFF_FRAME alone in
#: tables written before coverage was a state. ``(flags & UNMEASURED) == 0`` selects the
#: covered rows of a flag column.
UNMEASURED = int(Flag.NOT_COVERED | Flag.OFF_FRAME)


def is_covered(value: int) -> bool:
    """Return True unless ``value`` has a bit of :data:`UNMEASURED`."""
    return not int(value) & UNMEASURED


def coverage_of(value: int) -> str:
    """Return the coverage code of a row's flag word (a key of :data:`COVERAGE_REASONS`).

    >>> coverage_of(Flag.NOT_COVERED | Flag.NEAR_EDGE)
    'edge'
    >>> coverage_of(Flag.NEAR_EDGE)
    'covered'
    """
    value = int(value)
    if not value & Flag.NOT_COVERED:
        return "covered"
    for code, bit in _REASON_BITS:
        if value & bit:
            return code
    return "masked"


#: Bits that make a point unfit to raise a new-detection or brightening alert.
SUSPECT = frozenset(
    {"SATURATED", "BLENDED", "COSMIC_RAY", "CONTAMINATED", "NOT_COVERED", "APER_ALLMASKED"}
)
#: Bits that make a "detection" not a detection of the target (an artefact or no data).
SPURIOUS = frozenset({"COSMIC_RAY", "CONTAMINATED", "NOT_COVERED", "APER_ALLMASKED"})

#: Words for quality bits, in the order they are printed. Bits not listed (UPPER_LIMIT,
#: NO_CALIBRATION, the sep bits of extraction) say nothing next to a number: a limit is
#: shown as ``> m`` and instrumental magnitudes are labelled by their system.
_WORDS: tuple[tuple[str, str], ...] = (
    ("SATURATED", "saturated"),
    ("COSMIC_RAY", "cosmic ray"),
    ("BLENDED", "blended"),
    ("CONTAMINATED", "contaminated by a neighbour"),
    ("EXTENDED", "extended"),
    ("NEAR_EDGE", "near the edge"),
    ("APER_TRUNC", "aperture cut by the edge"),
    ("APER_HASMASKED", "masked pixels in the aperture"),
    ("RECENTERED", "re-centred"),
    ("CAL_UNFILTERED", "unfiltered"),
)

_NOT_COVERED_WORDS = {
    "no_wcs": "not covered (no WCS)",
    "off_frame": "not covered (off frame)",
    "edge": "not covered (edge of frame)",
    "masked": "not covered (masked pixels)",
}


def _bit(name: str) -> int:
    """Return the value of the bit called ``name``, 0 when this version has no such bit."""
    member = Flag.__members__.get(name)
    return 0 if member is None else int(member)


def flag_words(value: int) -> list[str]:
    """Return the human words for the quality bits of ``value`` ([] for a clean row).

    A not-covered row gives only its coverage, e.g. ``["not covered (off frame)"]``
    (the reason bits are not repeated); saturated pixels under masked ones
    (APER_HASMASKED with SATURATED) say "saturated" only.
    """
    value = int(value)
    if value & Flag.NOT_COVERED:
        return [_NOT_COVERED_WORDS[coverage_of(value)]]
    if value & Flag.SATURATED:
        value &= ~int(Flag.APER_HASMASKED)
    return [word for name, word in _WORDS if value & _bit(name)]


def flag_text(value: int, *, sep: str = ", ") -> str:
    """Return :func:`flag_words` of ``value`` joined by ``sep`` ("" for a clean row)."""
    return sep.join(flag_words(value))


def has_any(value: int, names: frozenset[str]) -> bool:
    """Return True if ``value`` has any of the bits called ``names`` (unknown names: no bit)."""
    mask = 0
    for name in names:
        mask |= _bit(name)
    return bool(int(value) & mask)
