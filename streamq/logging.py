"""The only place that configures logging (global state, by nature of structlog).

Library modules call ``structlog.get_logger()`` and never configure anything; the CLI, the
demo and the tests call :func:`configure` once per process.
"""

from __future__ import annotations

import json
import logging as std_logging
import sys
from typing import Any, TextIO

import structlog

FORMATS = ("json", "console")


def _dumps(obj: Any, **_kw: Any) -> str:
    # default=repr: a log line never fails because a value is not JSON (bytes, exceptions).
    return json.dumps(obj, default=repr, separators=(",", ":"))


def configure(fmt: str = "json", level: str = "info", stream: TextIO | None = None) -> None:
    """Send one event per line to ``stream`` (stdout): JSON for machines, or console text."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {FORMATS}, got {fmt!r}")
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,  # log.exception() carries the traceback
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            std_logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.WriteLoggerFactory(file=stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
