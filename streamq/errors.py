"""Every exception streamq raises, under one root so callers can catch them all.

    StreamqError
    ├── ConfigError            a setting or option that cannot work (also per enqueue)
    ├── EnqueueError           a job that was not accepted (Redis, arguments, encoding)
    │   └── PayloadTooLarge    its encoded size is over the limit
    ├── DecodeError            bytes in Redis that are not a job we can run
    ├── StreamqConnectionError Redis could not be reached, or the connection dropped
    │                          (also a builtin ConnectionError, so retry_on=(ConnectionError,)
    │                          covers it)
    ├── RedisSetupError        wrong credentials or permissions, or a URL that is not Redis:
    │                          a mistake to fix, never waited out like an outage
    ├── RedisCommandError      Redis refused a command (a bug, or keys changed under us)
    ├── JobFailed              a job whose result was asked for ended dead or cancelled
    │   └── JobNotFound        it has no record: never enqueued, expired, or untracked
    ├── ResultTimeout          its result did not come in time (also a TimeoutError)
    └── WorkerStartFailed      an @app.on_worker_start hook raised: the worker runs no job

Raised inside a running task, as BaseException so ``except Exception`` does not swallow them:
``Cancelled`` (job.cancel() was called) and ``TimeLimitExceeded`` (its timeout_s ran out).

Foreign exceptions (redis-py, msgpack) are wrapped at the boundary with ``from``, so the
original stays attached for debugging.
"""

from __future__ import annotations


class StreamqError(Exception):
    """Root of every streamq exception."""


class ConfigError(StreamqError):
    """A setting or argument that cannot work; raised early, never silently ignored."""


class EnqueueError(StreamqError):
    """A job was not accepted: its arguments do not fit the task's signature or cannot be
    encoded, or Redis did not confirm it after streamq's own resends (tracked jobs only).

    After a Redis failure the job may still exist: an attempt can time out after Redis ran it.
    Enqueue again with the same ``job_id`` to be safe: a live job with that id is not
    duplicated.
    """


class PayloadTooLarge(EnqueueError):
    """The encoded job is larger than the configured ``max_payload_bytes``."""


class DecodeError(StreamqError):
    """Bytes that are not a job we can run; ``raw`` keeps them for the dead-letter stream.

    ``job_id`` and ``task`` are set ('' otherwise) when the bytes still name the job, e.g. an
    envelope with an out-of-range option: its record can then be marked dead too.
    """

    def __init__(
        self, reason: str, message: str, raw: bytes, job_id: str = "", task: str = ""
    ) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.raw = raw
        self.job_id = job_id
        self.task = task


class StreamqConnectionError(StreamqError, ConnectionError):
    """Redis could not be reached, or the connection dropped mid-command.

    Also a builtin :class:`ConnectionError`, so a task with
    ``retry_on=(ConnectionError, TimeoutError)`` retries a job that failed on a Redis blip.
    """


class RedisSetupError(StreamqError):
    """Redis refused our credentials or permissions, or the server does not speak Redis.

    Waiting does not fix these (WRONGPASS, NOAUTH, NOPERM, a protocol error), so nothing
    resends or reconnects on them: enqueue raises :class:`EnqueueError` at once and a worker
    pool stops with its own exit code. ``cause`` is ``"auth"``, ``"permission"`` or
    ``"protocol"``.
    """

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


class RedisCommandError(StreamqError):
    """Redis answered a command with an error; the message carries Redis's words."""


class Retry(Exception):
    """Raise inside a task to ask for another attempt after ``delay_s`` seconds.

    It counts against ``max_retries`` like any failure, so a task cannot loop forever.

    Raises:
        ConfigError: ``delay_s`` is negative, NaN or infinite (the task then fails with it,
            as with any error, instead of handing the worker a delay it cannot schedule).
    """

    def __init__(self, delay_s: float | None = None, reason: str = "") -> None:
        # NaN fails both comparisons; infinity fails the second.
        if delay_s is not None and not 0 <= delay_s < float("inf"):
            raise ConfigError(f"Retry(delay_s={delay_s!r}): give a finite delay >= 0")
        super().__init__(reason or "retry requested")
        self.delay_s = delay_s


class JobFailed(StreamqError):
    """The job ended without a result: dead (with the remote error) or cancelled."""

    def __init__(
        self,
        job_id: str,
        state: str,
        reason: str = "",
        error_type: str = "",
        error_message: str = "",
        traceback: str = "",
    ) -> None:
        detail = f"{error_type}: {error_message}" if error_type else reason or state
        super().__init__(f"job {job_id} is {state}: {detail}")
        self.job_id = job_id
        self.state = state
        self.reason = reason
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback


class JobNotFound(JobFailed):
    """``result()`` found no record: a wrong id or queue, an expired record, or an untracked
    job. A :class:`JobFailed` subclass, so code written before it existed still catches it."""

    def __init__(self, job_id: str, queue: str) -> None:
        reason = f"no record in queue {queue!r}: never enqueued there, expired, or untracked"
        super().__init__(job_id, "unknown", reason)
        self.queue = queue


class ResultTimeout(StreamqError, TimeoutError):
    """No final state within the time given to ``job.result()``; the job may still finish."""


class Cancelled(BaseException):
    """Raised inside a task whose job was cancelled; catch it only to clean up, then re-raise."""


class TimeLimitExceeded(BaseException):
    """Raised inside a task that ran past its ``timeout_s``; it counts as a failure."""


class WorkerStartFailed(StreamqError):
    """An ``@app.on_worker_start`` hook raised, so this worker process runs no job.

    ``hook`` names it (``module.qualname``); the hook's exception is the ``__cause__``. In a
    pool the process exits with ``EXIT_START_FAILED`` and the supervisor stops the pool rather
    than restart a process that would fail the same way.
    """

    def __init__(self, hook: str, error: BaseException) -> None:
        super().__init__(f"worker start hook {hook} failed: {type(error).__name__}: {error}")
        self.hook = hook
