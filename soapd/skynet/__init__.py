"""Skynet API v2 intake: the :class:`SkynetClient` and the :class:`ExposureSource` interface.

The rest of soapd codes against :class:`ExposureSource` and :class:`Exposure`
only, so another archive API can replace Skynet's.
"""

from soapd.skynet.client import ObservationInfo, SkynetClient
from soapd.skynet.records import Exposure
from soapd.skynet.source import DownloadedFile, ExposureSource

__all__ = [
    "DownloadedFile",
    "Exposure",
    "ExposureSource",
    "ObservationInfo",
    "SkynetClient",
]
