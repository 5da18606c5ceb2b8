"""Retry delays: exponential growth with full jitter and a cap.

Full jitter (a uniform draw between zero and the exponential bound) spreads the retries of many
jobs that failed together, so a backend that comes back is not hit by a synchronized storm.
"""

from __future__ import annotations

import random


def compute_backoff_ms(
    attempt: int,
    base_ms: int,
    cap_ms: int,
    rng: random.Random | None = None,
) -> int:
    """Return the delay before the next attempt.

    Args:
        attempt: the 1-based attempt that just failed.
        base_ms: the bound for the first retry.
        cap_ms: the largest bound, whatever the attempt.
        rng: source of randomness; tests pass a seeded one.

    Returns:
        A delay in milliseconds, uniform in ``[0, min(cap_ms, base_ms * 2**(attempt-1))]``.
    """
    if base_ms <= 0 or cap_ms <= 0:
        return 0
    exponent = min(max(attempt - 1, 0), 62)
    bound = min(cap_ms, base_ms * (1 << exponent))
    draw = (rng or random).random()
    return int(draw * bound)
