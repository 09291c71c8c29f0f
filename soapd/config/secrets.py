"""Secrets: the Skynet token, read from systemd credentials, the environment or a file.

Secrets never live in the TOML. :class:`Token` never shows its value in
``repr()``, ``str()`` or logs.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path

from soapd.config.schema import SkynetConfig
from soapd.errors import ConfigError

__all__ = ["Token", "read_token"]


class Token:
    """The Skynet API token: a string that never shows itself in repr(), str() or logs."""

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
