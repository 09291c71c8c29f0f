"""The ``[[notifiers]]`` section: where alerts are sent (log, file, email, webhook, apprise).

Part of the configuration schema (:mod:`soapd.config.schema`), kept in its own
module; the same rules apply (defaults only here, a ``#:`` comment per field).
Secrets are never values here: the SMTP password is read from ``password_file``,
and ``soapd check-config`` redacts URL credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from soapd.config.fields import _FROZEN, _opt

__all__ = ["NotifierConfig"]


@dataclass(**_FROZEN)
class NotifierConfig:
    """One notifier (``[[notifiers]]``)."""

    #: "log", "file", "email", "webhook" or "apprise".
    kind: str = _opt("log", choices=("log", "file", "email", "webhook", "apprise"))
    #: file: folder where each alert is written as GCN text and JSON.
    directory: Path | None = None
    #: email: SMTP host.
    smtp_host: str = "localhost"
    #: email: SMTP port.
    smtp_port: int = _opt(25, lo=1, hi=65535)
    #: email: use STARTTLS.
    starttls: bool = False
    #: email: user name for SMTP AUTH (empty: no login).
    username: str = ""
    #: email: file holding the SMTP password (never the password itself).
    password_file: Path | None = None
    #: email: sender address.
    sender: str = "soapd@localhost"
    #: email: recipients.
    recipients: list[str] = _opt(list, factory=True)
    #: webhook: URL the alert JSON is POSTed to.
    url: str = ""
    #: webhook: allow plain http:// URLs (otherwise HTTPS only).
    allow_http: bool = False
    #: apprise: notification URLs (Slack, Matrix, ntfy, ...).
    apprise_urls: list[str] = _opt(list, factory=True)
    #: Seconds before one delivery attempt is abandoned.
    timeout_s: float = _opt(10.0, lo=0.1, hi=600.0)
