"""Bit flags for measurements and frames: the only place bits are defined.

sep's own extraction and aperture flags keep their values (``sep.OBJ_MERGED`` = 1,
``sep.OBJ_TRUNC`` = 2, ``sep.OBJ_DOVERFLOW`` = 4, ``sep.OBJ_SINGU`` = 8,
``sep.APER_TRUNC`` = 16, ``sep.APER_HASMASKED`` = 32, ``sep.APER_ALLMASKED`` = 64,
``sep.APER_NONPOSITIVE`` = 128) so that a sep flag word can be OR-ed in directly.
soapd's own bits start at 256. The morphology and contamination bits
(``COSMIC_RAY``, ``EXTENDED``, ``CONTAMINATED``) sit at 2**24-2**26, clear of the
low bits that other flags grow into. The README's flags table is checked against
this module by a test.

>>> Flag.SATURATED in Flag(Flag.SATURATED | Flag.NEAR_EDGE)
True
>>> describe(Flag.UPPER_LIMIT | Flag.APER_TRUNC)
['APER_TRUNC', 'UPPER_LIMIT']
"""

from __future__ import annotations

from enum import IntFlag

__all__ = ["Flag", "describe"]


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
