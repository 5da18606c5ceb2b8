"""What a run's outcome becomes: retry or bury a failure, and the stored form of a result.

Pure rules, no Redis and no clock: the worker and eager mode both call them, so a job retried,
buried or given a result in a test is treated exactly as a worker would treat it.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from streamq import codec
from streamq.backoff import compute_backoff_ms
from streamq.errors import PayloadTooLarge, Retry, TimeLimitExceeded
from streamq.job import Envelope
from streamq.settings import TaskOptions


class RetryLater(NamedTuple):
    """Run the job again after ``delay_ms``; ``payload`` is the next attempt, encoded."""

    delay_ms: int
    payload: bytes
    reason: str  # "timeout" or "error", as logged


class Bury(NamedTuple):
    """Dead-letter the job with ``reason``; ``error`` is what to record as its cause."""

    reason: str  # "timeout", "max_retries", "not_retryable" or "unencodable_retry"
    error: BaseException


def on_failure(
    env: Envelope,
    options: TaskOptions,
    exc: BaseException,
    max_payload_bytes: int,
    rng: random.Random,
) -> RetryLater | Bury:
    """Decide what a run that raised ``exc`` becomes.

    Args:
        env: the attempt that failed (its overrides win over ``options``).
        options: the task's registered options.
        exc: what the run raised; a ``TimeLimitExceeded`` is a timeout.
        max_payload_bytes: the limit the next attempt's encoding must fit.
        rng: jitter source for the backoff.

    Returns:
        :class:`RetryLater` while attempts remain and ``exc`` is retryable, else :class:`Bury`.
    """
    max_retries = options.max_retries if env.max_retries is None else env.max_retries
    timed_out = isinstance(exc, TimeLimitExceeded)
    retryable = timed_out or isinstance(exc, (Retry, *options.retry_on))
    if not retryable or env.attempt > max_retries:
        reason = "timeout" if timed_out else "max_retries" if retryable else "not_retryable"
        return Bury(reason, exc)
    if isinstance(exc, Retry) and exc.delay_s is not None:
        delay_ms = int(exc.delay_s * 1000)
    else:
        base, cap = env.backoff_base_ms, env.backoff_cap_ms
        delay_ms = compute_backoff_ms(
            env.attempt,
            int(options.backoff_base_s * 1000) if base is None else base,
            int(options.backoff_cap_s * 1000) if cap is None else cap,
            rng,
        )
    try:
        payload = codec.encode(env.next_attempt(), max_payload_bytes)
    except (PayloadTooLarge, TypeError, ValueError, OverflowError) as e:
        # The next attempt cannot be written (e.g. grown past the size limit): bury it now.
        # Raising would kill the worker, and each next one, until max_deliveries.
        return Bury("unencodable_retry", e)
    return RetryLater(delay_ms, payload, "timeout" if timed_out else "error")


def result_bytes(value: object, options: TaskOptions, tracked: bool) -> tuple[bytes, str]:
    """The bytes to store for a task's return value, and why there are none ('' if fine).

    Nothing is stored for ``None``, for untracked jobs or with ``result_ttl_s=0``; a value
    msgpack cannot carry is dropped (the job still succeeded) with the reason returned.
    """
    if value is None or options.result_ttl_s <= 0 or not tracked:
        return b"", ""
    try:
        return codec.encode_result(value), ""
    except (TypeError, ValueError, OverflowError) as e:
        return b"", str(e)
