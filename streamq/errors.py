"""Every exception streamq raises, under one root so callers can catch them all.

    StreamqError
    ├── ConfigError            a setting or argument that cannot work
    ├── EnqueueError           a job that was not accepted
    │   └── PayloadTooLarge    its encoded size is over the limit
    ├── DecodeError            bytes in Redis that are not a job we can read
    ├── UnknownTask            a task name with no registered function
    ├── StreamqConnectionError Redis could not be reached, or the connection dropped
    └── RedisCommandError      Redis refused a command (a bug, or keys changed under us)

Foreign exceptions (redis-py, msgpack) are wrapped at the boundary with ``from``, so the
original stays attached for debugging.
"""

from __future__ import annotations


class StreamqError(Exception):
    """Root of every streamq exception."""


class ConfigError(StreamqError):
    """A setting or argument that cannot work; raised early, never silently ignored."""


class EnqueueError(StreamqError):
    """Redis did not confirm a job.

    After a refused connection it does not exist; after a timeout it may (the command can have
    run before the reply was lost), so blindly enqueueing again can duplicate it.
    """


class PayloadTooLarge(EnqueueError):
    """The encoded job is larger than the configured ``max_payload_bytes``."""


class DecodeError(StreamqError):
    """Bytes that do not decode to a job; ``raw`` keeps them for the dead-letter stream."""

    def __init__(self, reason: str, message: str, raw: bytes) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.raw = raw


class UnknownTask(StreamqError):
    """A job names a task no worker registered; it is dead-lettered, never imported."""


class StreamqConnectionError(StreamqError):
    """Redis could not be reached, or the connection dropped mid-command."""


class RedisCommandError(StreamqError):
    """Redis answered a command with an error; the message carries Redis's words."""


class Retry(Exception):
    """Raise inside a task to ask for another attempt after ``delay_s`` seconds.

    It counts against ``max_retries`` like any failure, so a task cannot loop forever.
    """

    def __init__(self, delay_s: float | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested")
        self.delay_s = delay_s
