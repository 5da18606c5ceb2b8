"""The entry point of a forked worker process: signals, the worker loop, its exit code."""

from __future__ import annotations

import os
import signal

import structlog

from streamq.errors import RedisSetupError, WorkerStartFailed
from streamq.logging import capture_prints
from streamq.ops.metrics import JobMetrics
from streamq.pool.codes import EXIT_ERROR, EXIT_REDIS_REFUSED, EXIT_START_FAILED
from streamq.pool.process import die_with_parent
from streamq.producer.app import App
from streamq.settings import WorkerSettings
from streamq.worker.loop import Worker
from streamq.worker.slots import Slots

log = structlog.get_logger("streamq.supervisor")


def child_main(
    app: App,
    settings: WorkerSettings,
    consumer: str,
    slots: Slots,
    slot: int,
    metrics: bool = False,
) -> int:
    """Entry point of a forked worker process; returns its exit code.

    ``metrics``: count jobs for the pool's ``/metrics`` (the outermost middleware).
    """
    code = EXIT_ERROR
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # Ctrl-C reaches the whole process group; the supervisor drains us with SIGTERM.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        die_with_parent(signal.SIGTERM)
        parent = os.getppid()
        capture = capture_prints()
        if metrics:
            app.middleware.insert(0, JobMetrics())
        worker = Worker(app, settings, consumer, slots, slot)
        signal.signal(signal.SIGTERM, lambda *_: worker.stop())
        signal.signal(signal.SIGUSR1, lambda *_: worker.on_cancel_signal())
        code = worker.run(lambda: os.getppid() == parent)
        if capture is not None:
            capture.release()
    except RedisSetupError as e:
        # A mistake to fix, not a crash: one line, no traceback, and a code the supervisor
        # knows not to restart on.
        log.error(
            "worker.redis_refused",
            consumer=consumer,
            pid=os.getpid(),
            cause=e.cause,
            error_message=str(e),
        )
        code = EXIT_REDIS_REFUSED
    except WorkerStartFailed as e:
        cause = e.__cause__
        log.error(
            "worker.start_failed",
            consumer=consumer,
            pid=os.getpid(),
            hook=e.hook,
            error_type=type(cause).__name__,
            error_message=str(cause),
            exc_info=cause,
        )
        code = EXIT_START_FAILED
    except BaseException:
        log.exception("worker.crashed", consumer=consumer)
    return code
