"""The one validation of per-job options: a task's defaults, overrides and what a worker reads.

The decorator, ``with_options``, ``prepare``, ``app.enqueue`` and the decoder all call these
functions, so a value refused at one door is refused at every door. Pure: no Redis, no clock,
no I/O, so a synchronous and an asyncio producer share them. Each returns the normalized value
(seconds become the milliseconds stored in the envelope) or raises :class:`ConfigError`.

``None`` means "not given": the task's default applies. A time limit of ``0`` is refused
everywhere; a task without a limit says ``timeout_s=None``.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from streamq.errors import ConfigError
from streamq.job import PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NORMAL

PRIORITIES = {"high": PRIORITY_HIGH, "normal": PRIORITY_NORMAL, "low": PRIORITY_LOW}
MAX_COUNT = 2**31  # attempts and retries beyond this are hostile input, not real jobs
# Ten years: longer durations are typos, and far beyond this setitimer overflows time_t.
MAX_DURATION_MS = 10 * 365 * 86_400_000
MAX_JOB_ID_CHARS = 200


def _seconds(name: str, value: object) -> float:
    """``value`` as a finite float of seconds, or ConfigError naming ``name``."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    if seconds * 1000 > MAX_DURATION_MS:
        raise ConfigError(f"{name} must be at most ten years, got {value!r}")
    return seconds


def timeout_ms(timeout_s: float | None) -> int | None:
    """A task's time limit in ms; None (no limit, or the task's) stays None; 0 is refused."""
    if timeout_s is None:
        return None
    seconds = _seconds("timeout_s", timeout_s)
    if seconds <= 0:
        raise ConfigError(f"timeout_s must be positive (None for no limit), got {timeout_s!r}")
    return max(1, round(seconds * 1000))


def max_retries(value: int) -> int:
    """A retry count: an integer from 0 (run once) up."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"max_retries must be an integer, got {value!r}")
    if not 0 <= value < MAX_COUNT:
        raise ConfigError(f"max_retries must be >= 0, got {value}")
    return value


def backoff_ms(name: str, value_s: float) -> int:
    """``backoff_base_s`` or ``backoff_cap_s`` in ms: 0 (retry at once) or more."""
    seconds = _seconds(name, value_s)
    if seconds < 0:
        raise ConfigError(f"{name} must be >= 0, got {value_s!r}")
    return round(seconds * 1000)


def priority(value: str | int) -> int:
    """Map ``"high" | "normal" | "low"`` (or 0..2) to the integer stored in the envelope."""
    if isinstance(value, str):
        if value not in PRIORITIES:
            raise ConfigError(f"unknown priority {value!r}: use one of {sorted(PRIORITIES)}")
        return PRIORITIES[value]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"priority must be 'high', 'normal', 'low' or 0..2, got {value!r}")
    if not PRIORITY_LOW <= value <= PRIORITY_HIGH:
        raise ConfigError(f"priority {value} is outside {PRIORITY_LOW}..{PRIORITY_HIGH}")
    return value


def job_id(value: str) -> str:
    """A caller's job id: 1 to 200 characters of text."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_JOB_ID_CHARS:
        raise ConfigError(f"job_id must be 1 to {MAX_JOB_ID_CHARS} characters, got {value!r}")
    return value


def unique_ms(unique_for_s: float | None) -> int:
    """The dedup window after a job finished, in ms; None and 0 mean none."""
    if unique_for_s is None:
        return 0
    seconds = _seconds("unique_for_s", unique_for_s)
    if seconds < 0:
        raise ConfigError(f"unique_for_s must be >= 0, got {unique_for_s!r}")
    return round(seconds * 1000)


def delay_ms(delay: float | timedelta) -> int:
    """A delay before the job runs, in ms: 0 or more."""
    seconds = _seconds("delay", delay)
    if seconds < 0:
        raise ConfigError(f"delay must be >= 0, got {seconds}s")
    return round(seconds * 1000)


def at_ms(when: datetime) -> int:
    """A run time as epoch ms; naive datetimes are refused (their zone is a guess)."""
    if not isinstance(when, datetime):
        raise ConfigError(f"at must be a datetime, got {when!r}")
    if when.tzinfo is None:
        raise ConfigError("enqueue_at needs a timezone-aware datetime (naive times are ambiguous)")
    return int(when.timestamp() * 1000)


def envelope_ms(name: str, value: int | None, minimum: int) -> int | None:
    """An ms value given to ``App.envelope`` directly: an int in the range above, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer of ms, got {value!r}")
    if not minimum <= value <= MAX_DURATION_MS:
        raise ConfigError(f"{name} must be {minimum}..{MAX_DURATION_MS}, got {value}")
    return value
