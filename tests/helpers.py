"""Helpers for tests that run real worker pools as subprocesses."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent


class Pool:
    """A ``streamq worker`` subprocess whose JSON log lines are collected as they come."""

    def __init__(self, env: dict[str, str], args: Sequence[str] = (), processes: int = 2) -> None:
        argv = [
            sys.executable,
            "-m",
            "streamq",
            "worker",
            "--app",
            "tests.apps.sample:app",
            "--processes",
            str(processes),
            *args,
        ]
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._lock:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Parsed JSON log lines (all of them must parse), optionally of one event."""
        with self._lock:
            lines = list(self.lines)
        out = []
        for line in lines:
            doc = json.loads(line)
            if name is None or doc.get("event") == name:
                out.append(doc)
        return out

    def children(self) -> list[int]:
        """Pids of the worker processes alive now (from the supervisor's spawn/exit events)."""
        alive: dict[int, bool] = {}
        for e in self.events():
            if e["event"] == "worker.spawned":
                alive[e["child_pid"]] = True
            elif e["event"] == "worker.exited":
                alive[e["child_pid"]] = False
        return [pid for pid, up in alive.items() if up]

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the supervisor only."""
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        """Wait for the supervisor to exit; return its exit code."""
        code = self.proc.wait(timeout=timeout_s)
        self._reader.join(timeout=5)
        return code

    def _release(self) -> None:
        self._reader.join(timeout=5)
        if self.proc.stdout is not None and not self._reader.is_alive():
            self.proc.stdout.close()

    def close(self) -> None:
        """Stop everything this pool started, whatever state it is in."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        # Children die with the supervisor; the process group kill covers any straggler.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._release()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def runs(client: redis.Redis, queue: str) -> dict[str, int]:
    """Run counts recorded by ``tests.apps.sample`` tasks, by tag."""
    raw: Any = client.hgetall(f"sqtest:{queue}:runs")
    return {k.decode(): int(v) for k, v in raw.items()}


def entries(client: redis.Redis, key: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Every entry of the stream ``key``, typed (redis-py's reply type is loose)."""
    raw: Any = client.xrange(key)
    return [(eid, dict(fields)) for eid, fields in raw]
