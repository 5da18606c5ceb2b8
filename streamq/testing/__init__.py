"""Test helpers: a private Redis/Valkey server on a free port, bounded condition waits, and
:func:`drain` to run an App's jobs in-process. The pytest plugin is :mod:`streamq.testing.plugin`.
"""

from streamq.testing.drain import DrainResult, drain
from streamq.testing.server import RedisServer, find_server, free_port, wait_until

__all__ = ["DrainResult", "RedisServer", "drain", "find_server", "free_port", "wait_until"]
