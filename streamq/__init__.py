"""streamq: a background job queue for Python on Redis Streams that loses no job."""

from streamq.app import App
from streamq.dead import DeadJob, DeadLetters
from streamq.errors import (
    ConfigError,
    DecodeError,
    EnqueueError,
    PayloadTooLarge,
    RedisCommandError,
    Retry,
    StreamqConnectionError,
    StreamqError,
    UnknownTask,
)
from streamq.handle import Job
from streamq.job import Envelope
from streamq.keys import QueueKeys
from streamq.settings import AppSettings, QueueSettings, TlsSettings, WorkerSettings
from streamq.supervisor import PoolSettings, Supervisor
from streamq.task import Task
from streamq.worker import Worker

__all__ = [
    "App",
    "AppSettings",
    "ConfigError",
    "DeadJob",
    "DeadLetters",
    "DecodeError",
    "EnqueueError",
    "Envelope",
    "Job",
    "PayloadTooLarge",
    "PoolSettings",
    "QueueKeys",
    "QueueSettings",
    "RedisCommandError",
    "Retry",
    "StreamqConnectionError",
    "StreamqError",
    "Supervisor",
    "Task",
    "TlsSettings",
    "UnknownTask",
    "Worker",
    "WorkerSettings",
]

__version__ = "0.1.0"
