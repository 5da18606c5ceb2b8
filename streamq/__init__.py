"""A background job queue for Python on Redis Streams that loses no job."""

from streamq.errors import (
    Cancelled,
    ConfigError,
    DecodeError,
    EnqueueError,
    JobFailed,
    JobNotFound,
    PayloadTooLarge,
    RedisCommandError,
    RedisSetupError,
    ResultTimeout,
    Retry,
    StreamqConnectionError,
    StreamqError,
    TimeLimitExceeded,
    WorkerStartFailed,
)
from streamq.job import Envelope
from streamq.keys import QueueKeys
from streamq.ops.dead import DeadJob, DeadLetters, DeadPage
from streamq.pool.supervisor import PoolSettings, Supervisor
from streamq.producer.app import App
from streamq.producer.context import JobContext, current_job
from streamq.producer.handle import Job, JobInfo
from streamq.producer.schedule import Schedule, ScheduleInfo
from streamq.producer.task import AsyncTask, Task
from streamq.settings import AppSettings, QueueSettings, TlsSettings, WorkerSettings
from streamq.worker.loop import Worker
from streamq.worker.middleware import Outcome
from streamq.worker.tracing import Tracing

__all__ = [
    "App",
    "AppSettings",
    "AsyncTask",
    "Cancelled",
    "ConfigError",
    "DeadJob",
    "DeadLetters",
    "DeadPage",
    "DecodeError",
    "EnqueueError",
    "Envelope",
    "Job",
    "JobContext",
    "JobFailed",
    "JobInfo",
    "JobNotFound",
    "Outcome",
    "PayloadTooLarge",
    "PoolSettings",
    "QueueKeys",
    "QueueSettings",
    "RedisCommandError",
    "RedisSetupError",
    "ResultTimeout",
    "Retry",
    "Schedule",
    "ScheduleInfo",
    "StreamqConnectionError",
    "StreamqError",
    "Supervisor",
    "Task",
    "TimeLimitExceeded",
    "TlsSettings",
    "Tracing",
    "Worker",
    "WorkerSettings",
    "WorkerStartFailed",
    "current_job",
]

__version__ = "0.1.0"
