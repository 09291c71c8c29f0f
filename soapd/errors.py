"""The soapd exception tree: every error soapd raises on purpose is one of these.

::

    SoapdError
    ├── ConfigError            (also ValueError)   bad TOML, unknown key, out-of-range value
    ├── SkynetError                                the archive API failed
    │   ├── SkynetAuthError                        401/403: bad or expired token; no retry
    │   ├── SkynetNotFound     (also LookupError)  404: no such observation/exposure
    │   ├── SkynetUnavailable                      transport errors and 5xx after retries
    │   └── SkynetBadAnswer                        a 200 that is not the file (HTML page, truncated
    │                                              or unreadable body, too slow): transient
    ├── FrameError                                 a FITS frame cannot be used
    │   ├── FrameUnreadable                        not FITS, truncated, no image HDU, no data
    │   └── FrameRejected                          readable but unusable (e.g. all NaN)
    ├── ExtractionError                            sep failed (wrapped from its bare Exception)
    ├── CatalogError                               VizieR, network, VOTable or local catalog failure
    ├── CalibrationError                           too few stars, no band, fit failed
    ├── StoreError                                 SQLite problems
    ├── NotifyError                                a notifier could not deliver an alert
    └── CircularError                              no GCN circular can be drafted (event name,
                                                   nothing observed) or its JSON is invalid

This module must not import anything from soapd: it sits at the bottom of the
dependency graph. Messages say what went wrong and what to do next; they never
contain the Skynet token.
"""

from __future__ import annotations

__all__ = [
    "CalibrationError",
    "CatalogError",
    "CircularError",
    "ConfigError",
    "ExtractionError",
    "FrameError",
    "FrameRejected",
    "FrameUnreadable",
    "NotifyError",
    "SkynetAuthError",
    "SkynetBadAnswer",
    "SkynetError",
    "SkynetNotFound",
    "SkynetUnavailable",
    "SoapdError",
    "StoreError",
    "UsageError",
]


class SoapdError(Exception):
    """Base class of every error soapd raises on purpose."""


class ConfigError(SoapdError, ValueError):
    """The configuration file or a command-line option is invalid."""


class UsageError(ConfigError):
    """A command-line argument is invalid (printed as a usage error, not a config error)."""


class SkynetError(SoapdError):
    """The Skynet API call failed."""


class SkynetAuthError(SkynetError):
    """The Skynet API refused the token (HTTP 401 or 403). Never retried quickly."""


class SkynetNotFound(SkynetError, LookupError):
    """The Skynet API has no such observation or exposure (HTTP 404)."""


class SkynetUnavailable(SkynetError):
    """The Skynet API could not be reached or answered 5xx, after retries."""


class SkynetBadAnswer(SkynetError):
    """A download answered 200 but not with the file: transient, retried with backoff.

    An HTML page (a proxy or maintenance page), a truncated or unreadable body, or a
    transfer past ``skynet.download_deadline_s``. No try is counted until
    ``skynet.download_budget_s`` has passed since the frame's first such answer.
    """


class FrameError(SoapdError):
    """A FITS frame cannot be used."""


class FrameUnreadable(FrameError):
    """The file is not a readable FITS image (truncated, not FITS, no image data)."""


class FrameRejected(FrameError):
    """The frame is readable but unusable for photometry; retrying will not help."""


class ExtractionError(SoapdError):
    """Background estimation or source extraction failed inside sep."""


class CatalogError(SoapdError):
    """A reference catalog could not be queried, read or parsed."""


class CalibrationError(SoapdError):
    """A zero point could not be fitted (too few stars, band missing, fit failed)."""


class StoreError(SoapdError):
    """The SQLite store could not be read or written."""


class NotifyError(SoapdError):
    """A notifier could not deliver an alert; the outbox retries later."""


class CircularError(SoapdError):
    """A GCN circular cannot be drafted as asked (event name, no data, invalid sidecar)."""
