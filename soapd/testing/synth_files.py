"""The file side of :mod:`soapd.testing.synth`: writing frames to FITS, reading their WCS.

Containers: plain, gzip, bzip2 and tile-compressed (``.fz``). :mod:`soapd.testing.synth`
re-exports both functions.
"""

from __future__ import annotations

import bz2
import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

__all__ = ["wcs_of", "write_frame"]


def write_frame(
    path: str | Path,
    data: npt.ArrayLike,
    header: fits.Header | None = None,
    *,
    overwrite: bool = True,
) -> Path:
    """Write ``data`` with ``header`` to ``path`` and return the path.

    The suffix decides the container: ``.fits``/``.fit``/``.fts`` plain,
    ``.gz`` gzip, ``.bz2`` bzip2, ``.fz`` a tile-compressed image extension
    (lossless: RICE for integers, GZIP_2 without quantisation for floats) behind an
    empty primary HDU.
    """
    path = Path(path)
    array = np.asarray(data)
    hdr = header.copy() if header is not None else fits.Header()
    if path.suffix == ".fz":
        lossless = {"compression_type": "GZIP_2", "quantize_level": 0.0}
        if np.issubdtype(array.dtype, np.integer):
            lossless = {"compression_type": "RICE_1"}
        comp = fits.CompImageHDU(array, header=hdr, **lossless)
        fits.HDUList([fits.PrimaryHDU(), comp]).writeto(path, overwrite=overwrite)
    elif path.suffix == ".bz2":
        if path.exists() and not overwrite:
            raise FileExistsError(path)
        hdul = fits.HDUList([fits.PrimaryHDU(array, header=hdr)])
        tmp = path.with_suffix(".tmp")
        hdul.writeto(tmp, overwrite=True)
        path.write_bytes(bz2.compress(tmp.read_bytes()))
        tmp.unlink()
    else:
        fits.PrimaryHDU(array, header=hdr).writeto(path, overwrite=overwrite)
    return path


def wcs_of(header: fits.Header) -> WCS:
    """Return the celestial WCS of a synthetic header (astropy's FITSFixedWarning silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header)
