"""Explicit, validated settings: an App's queues, a task's retry policy, a worker's loop."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamq import options
from streamq.errors import ConfigError
from streamq.job import PRIORITY_NORMAL

# Records of jobs whose task this process does not know (by-name producers, dead letters
# written for foreign tasks) live one day, the default result_ttl_s.
DEFAULT_RECORD_TTL_MS = 86_400_000

# One validation of job options for every door (see streamq.options); kept here by name too.
priority_value = options.priority
PRIORITIES = options.PRIORITIES


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """How the reaper treats one queue.

    ``visibility_timeout_s`` is how long an entry may sit unrefreshed in a consumer's pending
    list before the reaper takes it back. Live workers refresh their leases every third of it,
    so it bounds the recovery time after a crash, not the length of a job.
    """

    visibility_timeout_s: float = 30.0
    max_deliveries: int = 5
    prune_consumers_after_s: float = 600.0

    def __post_init__(self) -> None:
        _positive("visibility_timeout_s", self.visibility_timeout_s)
        _positive("prune_consumers_after_s", self.prune_consumers_after_s)
        if self.max_deliveries < 1:
            raise ConfigError("max_deliveries must be at least 1")

    @property
    def visibility_timeout_ms(self) -> int:
        """The visibility timeout in the unit Redis uses."""
        return int(self.visibility_timeout_s * 1000)


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Certificates for ``rediss://`` URLs (user and password go in the URL itself)."""

    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    check_hostname: bool = True


@dataclass(frozen=True, slots=True)
class AppSettings:
    """Settings shared by producers and workers of one App."""

    default_queue: str = "default"
    max_payload_bytes: int = 1024 * 1024
    socket_timeout_s: float = 10.0
    # Connections one process opens to Redis at most (redis-py's pool); a thread that finds
    # them all busy waits for one, up to socket_timeout_s. Result waiters share one.
    max_connections: int = 50
    queues: dict[str, QueueSettings] = field(default_factory=dict)
    default_queue_settings: QueueSettings = field(default_factory=QueueSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)

    def __post_init__(self) -> None:
        _positive("max_payload_bytes", self.max_payload_bytes)
        _positive("socket_timeout_s", self.socket_timeout_s)
        if self.max_connections < 1:
            raise ConfigError(f"max_connections must be at least 1, got {self.max_connections}")

    def for_queue(self, queue: str) -> QueueSettings:
        """The settings of ``queue``, falling back to the defaults."""
        return self.queues.get(queue, self.default_queue_settings)


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """A task's defaults; ``max_retries`` and backoff can be overridden per enqueue."""

    queue: str
    max_retries: int = 3
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    priority: int = PRIORITY_NORMAL
    timeout_s: float | None = None
    result_ttl_s: float = 86_400.0
    track: bool = True

    def __post_init__(self) -> None:
        # The same checks as per-enqueue overrides, so a default is never refused later.
        options.max_retries(self.max_retries)
        options.timeout_ms(self.timeout_s)
        options.backoff_ms("backoff_base_s", self.backoff_base_s)
        options.backoff_ms("backoff_cap_s", self.backoff_cap_s)
        options.priority(self.priority)
        if not self.result_ttl_s >= 0:  # also refuses NaN
            raise ConfigError("result_ttl_s must be >= 0")

    @property
    def record_ttl_ms(self) -> int:
        """How long a finished job's record lives: its result TTL, or an hour for status."""
        return int((self.result_ttl_s or 3600) * 1000)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """One worker process's loop.

    Batches adapt to job length: the worker reads about ``batch_target_ms`` worth of jobs at a
    time (at most ``max_batch``), so fast jobs are read in bulk while slow ones are read one by
    one and spread over the pool. Finished entries are acknowledged together, at the end of a
    batch or every ``ack_flush_ms``, whichever comes first: that bounds what a crash replays.
    """

    queues: tuple[str, ...] = ("default",)
    group: str = "default"
    block_ms: int = 1000
    max_batch: int = 256
    batch_target_ms: float = 20.0
    ack_flush_ms: float = 10.0
    burst: bool = False
    burst_horizon_ms: int = 5000
    log_jobs: str = "all"  # "all" | "failures": successes are the bulk of the log volume
    log_args: bool = False  # task arguments in job lines: opt-in, they may be personal data
    # None: strict priority (high first, always). Weights like (6, 3, 1) for high, normal,
    # low instead pick the level served first in proportion, so low work is never starved.
    priority_weights: tuple[int, int, int] | None = None
    cancel_grace_s: float = 2.0
    # Async tasks a process runs at once (apps with async tasks; see docs/async-workers.md),
    # and how many entries past its free slots it may hold (None: a tenth, at least one).
    concurrency: int = 10
    prefetch: int | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {self.concurrency}")
        if self.prefetch is not None and self.prefetch < 0:
            raise ConfigError(f"prefetch must be >= 0, got {self.prefetch}")
        if not self.queues:
            raise ConfigError("a worker needs at least one queue")
        if self.block_ms < 1 or self.max_batch < 1:
            raise ConfigError("block_ms and max_batch must be >= 1")
        if self.log_jobs not in ("all", "failures"):
            raise ConfigError("log_jobs must be 'all' or 'failures'")
        weights = self.priority_weights
        if weights is not None and (len(weights) != 3 or min(weights) < 1):
            raise ConfigError(
                "priority_weights must be three positive integers (high, normal, low)"
            )
        if self.cancel_grace_s <= 0:
            raise ConfigError("cancel_grace_s must be positive")

    @property
    def read_ahead(self) -> int:
        """Entries an asyncio worker may hold past its free slots (the prefetch)."""
        return self.prefetch if self.prefetch is not None else max(1, self.concurrency // 10)
