"""Fixtures of the fault suite: a ledger server no fault touches, and the summary table."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from streamq.testing import RedisServer
from tests.faults.report import LEGEND, Row, format_table, save

ROWS = pytest.StashKey[list[Row]]()

# Scenarios 1-3 run against both servers; a difference between them is handled, never skipped.
SERVER_KINDS = ("redis", "valkey")


def pytest_configure(config: pytest.Config) -> None:
    """Start the list of summary rows."""
    config.stash[ROWS] = []


@pytest.fixture(scope="session")
def ledger_server() -> Iterator[RedisServer]:
    """Where tasks record their runs: a server of its own that no scenario faults."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def ledger_client(ledger_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the ledger server."""
    client = redis.Redis.from_url(ledger_server.url, socket_timeout=10)
    yield client
    client.close()


@pytest.fixture(params=SERVER_KINDS)
def server_kind(request: pytest.FixtureRequest) -> str:
    """Which server binary the system under test runs on (``find_server`` kind)."""
    kind: str = request.param
    return kind


@pytest.fixture(params=("sync", "async"))
def app_kind(request: pytest.FixtureRequest) -> str:
    """Which fault app the pools run: sync tasks, or async tasks on asyncio workers."""
    kind: str = request.param
    return kind


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[Row], None]:
    """Record a scenario's summary row for the table printed at the end of the run."""
    return request.config.stash[ROWS].append


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """Print every recorded row as one table (and save it as JSON if asked)."""
    recorded: list[Row] = config.stash.get(ROWS, [])
    if not recorded:
        return
    rows = sorted(recorded, key=lambda r: (r.scenario, r.server))
    terminalreporter.write_sep("=", "fault scenarios: where every job ended up")
    for line in [*format_table(rows), "", *LEGEND]:
        terminalreporter.write_line(line)
    save(rows)
