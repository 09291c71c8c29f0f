"""Local intake: the watched inbox folder and registering FITS files into the frames folder.

The handler side (:mod:`soapd.ingest.inbox`) only enqueues paths; the drain job
calls :func:`register_file` and records the result in the ledger (identity by
SHA-256). :mod:`soapd.ingest.fitscheck` is the one FITS-readability check,
shared with Skynet downloads.
"""

from soapd.fileio import sha256_file
from soapd.ingest.files import RegisteredFile, register_file
from soapd.ingest.fitscheck import FitsCheck, check_fits, has_fits_suffix
from soapd.ingest.inbox import InboxWatcher, scan_dir

__all__ = [
    "FitsCheck",
    "InboxWatcher",
    "RegisteredFile",
    "check_fits",
    "has_fits_suffix",
    "register_file",
    "scan_dir",
    "sha256_file",
]
