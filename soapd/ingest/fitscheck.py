"""Is this file a complete, readable FITS image? One check shared by downloads and the inbox.

:func:`check_fits` opens the file with astropy (gzip, bzip2 and tile-compressed
``.fz`` included), reads the first image's pixels so that truncation shows,
and reports what the header says about calibration. It raises
:class:`~soapd.errors.FrameUnreadable` with the reason; it never modifies the
file. File-name suffixes soapd accepts are defined here too.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from astropy.io import fits

from soapd.errors import FrameUnreadable

__all__ = [
    "FITS_SUFFIXES",
    "REDUCTION_KEYWORDS",
    "FitsCheck",
    "check_fits",
    "has_fits_suffix",
    "safe_filename",
]

#: File-name endings accepted as FITS (case-insensitive).
FITS_SUFFIXES: tuple[str, ...] = tuple(
    base + comp for base in (".fits", ".fit", ".fts") for comp in ("", ".gz", ".bz2", ".fz")
)

#: Header keywords that mark bias/dark/flat calibration as done: Skynet's skylib
#: (BIASCORR, DARKCORR, FLATCORR), IRAF ccdproc (ZEROCOR, DARKCOR, FLATCOR) and
#: MaxIm DL (CALSTAT).
REDUCTION_KEYWORDS: tuple[str, ...] = (
    "BIASCORR",
    "DARKCORR",
    "FLATCORR",
    "ZEROCOR",
    "DARKCOR",
    "FLATCOR",
    "CALSTAT",
)


def has_fits_suffix(name: str) -> bool:
    """Return True when ``name`` ends in .fits/.fit/.fts, optionally .gz/.bz2/.fz."""
    return name.lower().endswith(FITS_SUFFIXES)


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")
_MAX_NAME = 150


def safe_filename(name: str) -> str:
    r"""Return ``name`` reduced to a safe local file name, or "" if nothing usable is left.

    Only the last path component is kept (``/`` and ``\`` both separate), other
    characters than ``A-Z a-z 0-9 . _ + -`` become ``_``, leading dots are
    dropped (no hidden files, no ``..``) and the result is cut to 150 characters.
    """
    base = re.split(r"[/\\]", name)[-1]
    safe = _UNSAFE.sub("_", base).lstrip(".")[:_MAX_NAME]
    return safe if safe.strip("_.") else ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FitsCheck:
    """What :func:`check_fits` found: the first image HDU, its shape, BITPIX, calibration marks."""

    hdu_index: int
    shape: tuple[int, ...]
    bitpix: int
    reduction_marks: tuple[str, ...]

    @property
    def integer_pixels(self) -> bool:
        """Return True when the stored pixels are integers (raw camera data usually are)."""
        return self.bitpix > 0


def _first_image(hdul: fits.HDUList) -> FitsCheck | None:
    """Return the check of the first HDU holding 2-D (or more) data, or None."""
    for index, hdu in enumerate(hdul):
        if not isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU):
            continue
        data = hdu.data
        if data is None or data.ndim < 2:
            continue
        header = hdu.header
        return FitsCheck(
            hdu_index=index,
            shape=tuple(int(n) for n in data.shape),
            bitpix=int(header.get("BITPIX", 0)),
            reduction_marks=tuple(k for k in REDUCTION_KEYWORDS if k in header),
        )
    return None


def check_fits(path: Path) -> FitsCheck:
    """Given a file, return a :class:`FitsCheck` for its first image HDU.

    Raise FrameUnreadable if the file cannot be opened as FITS, is truncated,
    or holds no image of at least two dimensions.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, memmap=False, lazy_load_hdus=False) as hdul:
                found = _first_image(hdul)
        except (OSError, ValueError, TypeError, EOFError, IndexError, KeyError) as exc:
            raise FrameUnreadable(f"{path.name}: not a readable FITS file ({exc})") from None
    truncated = [str(w.message) for w in caught if "truncated" in str(w.message)]
    if truncated:
        raise FrameUnreadable(f"{path.name}: FITS file is truncated ({truncated[0]})")
    if found is None:
        raise FrameUnreadable(f"{path.name}: FITS file holds no image (no HDU with 2-D data)")
    return found
