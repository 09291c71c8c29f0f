"""``soapd web``: serve the read-only status and lightcurve pages (uvicorn + :mod:`soapd.web`).

Binds 127.0.0.1:8788 by default (``[web] host``/``port``, or ``--host``/``--port``).
Any other address needs an access token (``[web] token``/``token_file``,
``$SOAPD_WEB_TOKEN`` or the systemd credential ``web-token``), which is then
checked on every request; ``soapd web`` refuses to start without one. The token
never appears in logs: uvicorn's access log is off and soapd logs paths only.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from typing import Any

from soapd.cli import HelpFormatter, add_config_option
from soapd.config import load_config, read_web_token
from soapd.errors import ConfigError, SoapdError
from soapd.logs import setup_logging

__all__ = ["is_loopback", "register"]

logger = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Return True when ``host`` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def register(sub: Any) -> None:
    """Add the ``web`` subcommand."""
    p = sub.add_parser(
        "web",
        help="serve the read-only status and lightcurve web pages",
        description="Serve soapd's status, targets, target (interactive lightcurve, alerts, "
        "GCN draft, downloads) and frame pages, and their JSON endpoints under /api, from "
        "the database opened read-only: safe while the daemon runs. Binding anything but "
        "a loopback address needs an access token ([web] token or token_file, "
        "$SOAPD_WEB_TOKEN, or the systemd credential web-token).",
        formatter_class=HelpFormatter,
    )
    add_config_option(p)
    p.add_argument("--host", default=None, help="address to listen on (default: [web] host)")
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="TCP port (default: [web] port; 0: any free port, printed at start)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve the pages until SIGINT/SIGTERM. Return the exit code."""
    cfg = load_config(args.config)
    host = args.host or cfg.web.host
    port = cfg.web.port if args.port is None else int(args.port)
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port")
    token = read_web_token(cfg.web)
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"binding {host} (not a loopback address) needs an access token: set [web] "
            "token_file (or token), $SOAPD_WEB_TOKEN, or the systemd credential web-token"
        )
    try:
        import uvicorn

        from soapd.web import create_app
    except ModuleNotFoundError as exc:
        raise SoapdError(
            f"`soapd web` needs the web extra ({exc.name} is missing): pip install 'soapd[web]'"
        ) from None
    setup_logging(cfg.logging.level, cfg.logging.style)
    logging.getLogger("uvicorn.access").disabled = True
    app = create_app(cfg, token=token)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            for server in getattr(self, "servers", []):
                for sock in server.sockets:
                    addr, bound = sock.getsockname()[:2]
                    shown = f"[{addr}]" if ":" in str(addr) else addr
                    print(
                        f"soapd web: serving {cfg.paths.db_path} (read-only) at "
                        f"http://{shown}:{bound}/" + (" (access token required)" if token else ""),
                        flush=True,
                    )

    server = Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            access_log=False,
            log_config=None,
            server_header=False,
            proxy_headers=False,
            lifespan="off",
        )
    )
    server.run()
    return 0 if server.started else 1


if __name__ == "__main__":  # pragma: no cover
    from soapd.cli import main

    sys.exit(main(["web", *sys.argv[1:]]))
