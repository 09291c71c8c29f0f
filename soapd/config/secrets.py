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

__all__ = ["Token", "read_token", "read_web_token"]


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
