"""Notifiers: deliver one alert message by log, file, email, webhook or apprise.

Every notifier has ``key`` (a stable name used by the outbox to remember who
already delivered an alert) and ``send(message)``, which either returns after a
complete delivery or raises :class:`~soapd.errors.NotifyError`. Each attempt is
bounded by the notifier's ``timeout_s``. apprise is imported only when an apprise
notifier is configured (it is an optional extra: ``pip install soapd[apprise]``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import smtplib
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from soapd.config import NotifierConfig
from soapd.errors import ConfigError, NotifyError
from soapd.fileio import atomic_write_text

__all__ = [
    "AlertMessage",
    "AppriseNotifier",
    "EmailNotifier",
    "FileNotifier",
    "LogNotifier",
    "Notifier",
    "WebhookNotifier",
    "build_notifiers",
    "check_webhook_url",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertMessage:
    """One message: the alerts of one target from one observation (a batch)."""

    target_name: str
    batch_key: str
    alert_ids: tuple[int, ...]
    subject: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        """A file-name stem unique to this batch of alerts (same on every retry)."""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.target_name).strip("_") or "target"
        digest = hashlib.sha256(",".join(map(str, self.alert_ids)).encode()).hexdigest()[:8]
        return f"alert-{min(self.alert_ids, default=0):06d}-{safe}-{digest}"


class Notifier(Protocol):
    """What the outbox needs of a notifier."""

    key: str

    def send(self, message: AlertMessage) -> None:
        """Deliver ``message`` or raise NotifyError."""


class LogNotifier:
    """Write each message to the soapd log (journald under systemd)."""

    def __init__(self, key: str = "log") -> None:
        self.key = key

    def send(self, message: AlertMessage) -> None:
        """Log the subject and text at WARNING level (alerts should stand out)."""
        logger.warning("ALERT %s\n%s", message.subject, message.text)


class FileNotifier:
    """Write each message as ``<stem>.txt`` (GCN-style text) and ``<stem>.json`` in a folder."""

    def __init__(self, directory: Path, key: str | None = None) -> None:
        self.directory = Path(directory)
        self.key = key or f"file:{self.directory}"

    def send(self, message: AlertMessage) -> None:
        """Write both files atomically and durably (:func:`soapd.fileio.atomic_write_text`)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for suffix, body in (
                (".txt", message.text),
                (".json", json.dumps(message.data, indent=2, allow_nan=False) + "\n"),
            ):
                atomic_write_text(self.directory / f"{message.stem}{suffix}", body)
        except (OSError, ValueError) as exc:
            raise NotifyError(f"file notifier {self.directory}: cannot write: {exc}") from None


class EmailNotifier:
    """Send each message by SMTP (optional STARTTLS and login)."""

    def __init__(self, cfg: NotifierConfig, key: str | None = None) -> None:
        self.cfg = cfg
        self.key = key or f"email:{cfg.smtp_host}:{cfg.smtp_port}:{','.join(cfg.recipients)}"

    def _password(self) -> str:
        if self.cfg.password_file is None:
            return ""
        try:
            return self.cfg.password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise NotifyError(
                f"email notifier: cannot read password_file {self.cfg.password_file}: "
                f"{exc.strerror}"
            ) from None

    def send(self, message: AlertMessage) -> None:
        """Send one e-mail to every recipient; raise NotifyError on any SMTP or network error."""
        cfg = self.cfg
        mail = EmailMessage()
        mail["Subject"] = message.subject
        mail["From"] = cfg.sender
        mail["To"] = ", ".join(cfg.recipients)
        mail["X-Soapd-Alerts"] = ",".join(map(str, message.alert_ids))
        mail.set_content(message.text)
        mail.add_attachment(
            json.dumps(message.data, indent=2, allow_nan=False).encode(),
            maintype="application",
            subtype="json",
            filename=f"{message.stem}.json",
        )
        try:
            with smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout_s) as smtp:
                if cfg.starttls:
                    smtp.starttls()
                if cfg.username:
                    smtp.login(cfg.username, self._password())
                refused = smtp.send_message(mail)
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifyError(
                f"email notifier {cfg.smtp_host}:{cfg.smtp_port}: {type(exc).__name__}: {exc}"
            ) from None
        if refused:
            raise NotifyError(f"email notifier: recipients refused: {sorted(refused)}")


def check_webhook_url(url: str, *, allow_http: bool) -> str:
    """Return ``url`` if it is an absolute HTTPS URL (or HTTP when allowed); else ConfigError."""
    parts = urlsplit(url)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        hint = "" if allow_http else " (set allow_http = true to permit plain http)"
        raise ConfigError(f"webhook url must use {' or '.join(schemes)}{hint}: {parts.scheme}://…")
    if not parts.hostname:
        raise ConfigError("webhook url has no host name")
    return url


class WebhookNotifier:
    """POST each message as JSON to a URL with httpx."""

    def __init__(
        self,
        cfg: NotifierConfig,
        key: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.cfg = cfg
        self.url = check_webhook_url(cfg.url, allow_http=cfg.allow_http)
        host = urlsplit(cfg.url).hostname
        self.key = key or f"webhook:{host}:{hashlib.sha256(cfg.url.encode()).hexdigest()[:8]}"
        self._transport = transport

    def send(self, message: AlertMessage) -> None:
        """POST ``{"subject", "text", "alerts": ...}``; a non-2xx answer is a failure."""
        try:
            check_webhook_url(self.url, allow_http=self.cfg.allow_http)
        except ConfigError as exc:
            raise NotifyError(f"webhook notifier: {exc}") from None
        body = {"subject": message.subject, "text": message.text, **message.data}
        try:
            with httpx.Client(
                timeout=self.cfg.timeout_s, transport=self._transport, follow_redirects=False
            ) as client:
                response = client.post(self.url, json=body)
        except httpx.HTTPError as exc:
            host = urlsplit(self.url).hostname
            raise NotifyError(f"webhook notifier {host}: {type(exc).__name__}") from None
        if not response.is_success:
            raise NotifyError(
                f"webhook notifier {urlsplit(self.url).hostname}: HTTP {response.status_code}"
            )


class AppriseNotifier:
    """Send through apprise (Slack, Matrix, ntfy, ...); needs the optional apprise extra."""

    def __init__(self, cfg: NotifierConfig, key: str | None = None) -> None:
        try:
            import apprise
        except ImportError:
            raise ConfigError(
                "an apprise notifier is configured but apprise is not installed; "
                "run `pip install 'soapd[apprise]'`"
            ) from None
        self._apprise = apprise.Apprise()
        for url in cfg.apprise_urls:
            if not self._apprise.add(url):
                raise ConfigError("apprise notifier: an apprise URL was not understood")
        digest = hashlib.sha256("|".join(cfg.apprise_urls).encode()).hexdigest()[:8]
        self.key = key or f"apprise:{digest}"

    def send(self, message: AlertMessage) -> None:
        """Notify every apprise URL; raise NotifyError if apprise reports a failure."""
        if not self._apprise.notify(title=message.subject, body=message.text):
            raise NotifyError("apprise notifier: delivery failed (see apprise's log)")


def build_notifiers(
    configs: Sequence[NotifierConfig], *, transport: httpx.BaseTransport | None = None
) -> list[Notifier]:
    """Return the notifiers of ``[[notifiers]]`` (a log notifier when none is configured).

    Raise ConfigError for a bad webhook URL or a missing apprise, at start-up.
    """
    out: list[Notifier] = []
    for cfg in configs:
        if cfg.kind == "log":
            out.append(LogNotifier())
        elif cfg.kind == "file":
            if cfg.directory is None:
                raise ConfigError("a file notifier needs directory")
            out.append(FileNotifier(cfg.directory))
        elif cfg.kind == "email":
            out.append(EmailNotifier(cfg))
        elif cfg.kind == "webhook":
            out.append(WebhookNotifier(cfg, transport=transport))
        else:
            out.append(AppriseNotifier(cfg))
    keys = [n.key for n in out]
    if len(set(keys)) != len(keys):
        raise ConfigError("two [[notifiers]] entries deliver to the same place")
    return out or [LogNotifier()]
