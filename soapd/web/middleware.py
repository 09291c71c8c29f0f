"""ASGI middleware of the web app: access token, security headers, access log.

* :class:`TokenGate` checks the ``[web]`` token on **every** request. Tools send
  ``Authorization: Bearer <token>``; a browser opens any page once with
  ``?token=<token>``, gets a session cookie (an HMAC of the token, never the
  token itself; HttpOnly, SameSite=Strict) and is redirected to the same URL
  without the token, so it leaves neither the address bar nor the history.
* :class:`SecurityHeaders` adds a strict Content-Security-Policy (scripts only
  from soapd itself, no inline scripts), ``nosniff``, no referrer, no framing,
  and ``no-store`` on everything but the static files.
* :class:`AccessLog` logs one line per request with the path only: query strings
  (which may hold the token) never reach a log. uvicorn's own access log is off.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["COOKIE_NAME", "AccessLog", "SecurityHeaders", "TokenGate", "session_value"]

logger = logging.getLogger("soapd.web")

COOKIE_NAME = "soapd_session"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def session_value(token: str) -> str:
    """Return the session-cookie value for ``token`` (HMAC-SHA256, hex); not reversible."""
    return hmac.new(token.encode(), b"soapd-web-session", hashlib.sha256).hexdigest()


async def _plain(send: Send, status: int, text: str, headers: dict[str, str]) -> None:
    body = text.encode()
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw += [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class TokenGate:
    """Refuse every HTTP request that does not carry the access token (401)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()
        self._session = session_value(token)

    def __repr__(self) -> str:
        """Return a form without the token."""
        return "TokenGate(token='***')"

    def _ok(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass authorised requests on; answer the others with 401 (or a login redirect)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer " and self._ok(auth[7:].strip()):
            await self.app(scope, receive, send)
            return
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is just no session
            cookie = SimpleCookie()
        morsel = cookie.get(COOKIE_NAME)
        if morsel is not None and hmac.compare_digest(morsel.value, self._session):
            await self.app(scope, receive, send)
            return
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [v for k, v in query if k == "token"]
        if given and self._ok(given[-1]):
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else "")
            secure = "; Secure" if scope.get("scheme") == "https" else ""
            await _plain(
                send,
                303,
                "signed in\n",
                {
                    "Location": location,
                    "Set-Cookie": f"{COOKIE_NAME}={self._session}; Path=/; HttpOnly; "
                    f"SameSite=Strict{secure}",
                    "Cache-Control": "no-store",
                },
            )
            return
        await _plain(
            send,
            401,
            "soapd web: this instance needs its access token.\n"
            "Tools: send 'Authorization: Bearer <token>'. Browsers: open any page once "
            "with ?token=<token> appended to the address.\n",
            {"WWW-Authenticate": 'Bearer realm="soapd"', "Cache-Control": "no-store"},
        )


class SecurityHeaders:
    """Add CSP and other protective headers to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers at response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                h = MutableHeaders(scope=message)
                h.setdefault("Content-Security-Policy", CSP)
                h.setdefault("X-Content-Type-Options", "nosniff")
                h.setdefault("Referrer-Policy", "no-referrer")
                h.setdefault("X-Frame-Options", "DENY")
                if not static:
                    h.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, wrapped)


class AccessLog:
    """Log ``METHOD /path STATUS duration`` per request (never the query string)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request and log it when the response starts."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            logger.info(
                "%s %s %d %.0f ms",
                scope.get("method", "?"),
                scope["path"],
                status["code"],
                (time.perf_counter() - start) * 1000.0,
            )
