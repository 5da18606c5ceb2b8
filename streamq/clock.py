"""The one clock streamq stores timestamps from: wall-clock milliseconds."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of every timestamp streamq stores."""
    return time.time_ns() // 1_000_000


def monotonic_ms() -> int:
    """Milliseconds of a clock that never jumps, for measuring durations (outages, waits)."""
    return time.monotonic_ns() // 1_000_000
