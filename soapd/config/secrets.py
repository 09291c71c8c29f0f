"""Secrets: the Skynet and web tokens, read from systemd credentials, the environment or a file.

The Skynet token never lives in the TOML; the web token may (``[web] token``,
for a quick set-up) but is better kept in a file or a systemd credential.
:class:`Token` never shows its value in ``repr()``, ``str()`` or logs.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path

from soapd.config.schema import SkynetConfig, WebConfig
from soapd.errors import ConfigError

__all__ = ["REDACTED", "Token", "read_token", "read_web_token", "redact", "redact_url"]


class Token:
    """A secret token (Skynet API, web access): never shows itself in repr(), str() or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        """Wrap ``value`` (leading and trailing white space removed)."""
        self._value = value.strip()

    def reveal(self) -> str:
        """Return the token itself, for the HTTP header only."""
        return self._value

    def __repr__(self) -> str:
        """Return a redacted form."""
        return "Token('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        """Return True when the token is not empty."""
        return bool(self._value)


def read_token(cfg: SkynetConfig, env: typing.Mapping[str, str] | None = None) -> Token | None:
    """Return the Skynet token, or None when there is none.

    Sources in order: $CREDENTIALS_DIRECTORY/skynet-token, $SOAPD_SKYNET_TOKEN,
    $SKYNET_API_TOKEN, ``cfg.token_file``.

    Raise ConfigError if a named token file cannot be read (the message names the
    file, never its content).
    """
    env = os.environ if env is None else env
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / "skynet-token").is_file():
        return Token((Path(cred_dir) / "skynet-token").read_text(encoding="utf-8"))
    for name in ("SOAPD_SKYNET_TOKEN", "SKYNET_API_TOKEN"):
        if env.get(name, "").strip():
            return Token(env[name])
    if cfg.token_file is not None:
        try:
            return Token(cfg.token_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(
                f"skynet.token_file {cfg.token_file}: cannot read it ({exc.strerror}); "
                "check the path and that the soapd user may read it"
            ) from None
    return None


#: Config field names whose value is a credential in itself: printed as "<redacted>".
SECRET_FIELDS = frozenset({"token", "password", "secret", "api_key"})
#: Fields holding URLs that may carry credentials in user info, path or query.
URL_FIELDS = frozenset({"url", "vizier_server"})
#: Fields holding apprise URLs, whose host and path are tokens (``slack://A/B/C``).
APPRISE_FIELDS = frozenset({"apprise_urls"})
REDACTED = "<redacted>"


def redact_url(url: str, *, keep_host: bool = True, keep_path: bool = False) -> str:
    """Return ``url`` with every part that may hold a credential replaced by ``<redacted>``.

    User info, path and query go (webhook tokens live in all three); the scheme
    stays, and the host and port when ``keep_host`` (apprise URLs put tokens in the
    host, so they are called with ``keep_host=False``); ``keep_path`` keeps the path
    (for service base URLs, whose path is an API prefix, not a credential).

    >>> redact_url("https://user:pw@hooks.example.org:8443/services/T0/B1?key=s3cr3t")
    'https://hooks.example.org:8443/<redacted>'
    >>> redact_url("slack://TokenA/TokenB/TokenC", keep_host=False)
    'slack://<redacted>'
    >>> redact_url("https://example.org")
    'https://example.org'
    >>> redact_url("https://u:p@api.example.org/2.0?token=x", keep_path=True)
    'https://api.example.org/2.0?<redacted>'
    """
    from urllib.parse import urlsplit

    if not url:
        return url
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return REDACTED
    if not parts.scheme:
        return REDACTED
    if not keep_host:
        return f"{parts.scheme}://{REDACTED}"
    host = parts.hostname or ""
    netloc = f"{host}:{port}" if port is not None else host
    if keep_path:
        tail = f"?{REDACTED}" if parts.query or parts.fragment else ""
        return f"{parts.scheme}://{netloc}{parts.path}{tail}"
    secret_part = bool(parts.path.strip("/") or parts.query or parts.fragment)
    return f"{parts.scheme}://{netloc}" + (f"/{REDACTED}" if secret_part else "")


def redact(data: typing.Any, key: str = "") -> typing.Any:
    """Return plain config data (``to_dict`` output) with every credential redacted.

    Fields named in :data:`SECRET_FIELDS` (and any ``*_token``/``*_password``) lose
    their value; webhook URL fields keep only scheme, host and port; apprise URLs
    only the scheme; any other URL loses its user info and query. Paths to secret
    files (``token_file``, ``password_file``) are kept: they name where the secret
    is, not the secret.
    """
    if isinstance(data, dict):
        return {k: redact(v, str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [redact(v, key) for v in data]
    if not isinstance(data, str) or not data:
        return data
    if key in SECRET_FIELDS or key.endswith(("_token", "_password", "_secret")):
        return REDACTED
    if key in APPRISE_FIELDS:
        return redact_url(data, keep_host=False)
    if key in URL_FIELDS:
        return redact_url(data)
    if "://" in data:
        return redact_url(data, keep_path=True)
    return data


def read_web_token(cfg: WebConfig, env: typing.Mapping[str, str] | None = None) -> Token | None:
    """Return the access token of ``soapd web``, or None when there is none.

    Sources in order: $CREDENTIALS_DIRECTORY/web-token (systemd ``LoadCredential=``),
    $SOAPD_WEB_TOKEN, ``cfg.token_file``, ``cfg.token``. An empty token counts as
    none. Raise ConfigError if a named token file cannot be read (the message
    names the file, never its content).
    """
    env = os.environ if env is None else env
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    token: Token | None = None
    if cred_dir and (Path(cred_dir) / "web-token").is_file():
        token = Token((Path(cred_dir) / "web-token").read_text(encoding="utf-8"))
    elif env.get("SOAPD_WEB_TOKEN", "").strip():
        token = Token(env["SOAPD_WEB_TOKEN"])
    elif cfg.token_file is not None:
        try:
            token = Token(cfg.token_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(
                f"web.token_file {cfg.token_file}: cannot read it ({exc.strerror}); "
                "check the path and that the user running `soapd web` may read it"
            ) from None
    elif cfg.token:
        token = Token(cfg.token)
    return token or None
