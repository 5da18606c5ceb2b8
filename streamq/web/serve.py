"""``streamq dashboard``: serve :func:`streamq.web.create_app` with uvicorn.

Without a token the dashboard binds to loopback addresses only: anyone who can reach it can
replay, purge and cancel, so leaving it open is an explicit, local-only choice.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import structlog
import uvicorn

from streamq.errors import ConfigError
from streamq.producer.app import App
from streamq.web.app import create_app

log = structlog.get_logger()


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    app: App,
    host: str,
    port: int,
    read_only: bool,
    token: str | None,
    show_args: bool = False,
    group: str = "default",
    queues: Sequence[str] = (),
) -> None:
    """Run the dashboard until interrupted.

    Raises:
        ConfigError: no token and a host that is not a loopback address.
    """
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve the dashboard on {host} without a token: pass --token "
            "(or set STREAMQ_DASHBOARD_TOKEN), or bind to 127.0.0.1"
        )
    web = create_app(app, read_only, token, show_args=show_args, group=group, queues=tuple(queues))
    log.info(
        "dashboard.started",
        url=f"http://{host}:{port}/",
        read_only=read_only,
        token_required=token is not None,
        show_args=show_args,
    )
    uvicorn.run(web, host=host, port=port, log_level="warning", access_log=False)
