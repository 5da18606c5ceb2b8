"""Exit codes of a worker pool (and of its worker processes), named so scripts can rely on them."""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_FORCED = 3  # the grace period ran out, or a second signal: in-flight jobs were killed
# Redis refused the credentials or a permission, or the URL is not Redis: waiting will not
# fix it, so the pool stops instead of restarting workers.
EXIT_REDIS_REFUSED = 4
# An @app.on_worker_start hook raised: the next process would fail the same way, so the pool
# stops with one line instead of restarting workers in a loop.
EXIT_START_FAILED = 5
