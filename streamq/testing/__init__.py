"""Test helpers: a private Redis/Valkey server on a free port, and bounded condition waits."""

from streamq.testing.server import RedisServer, find_server, free_port, wait_until

__all__ = ["RedisServer", "find_server", "free_port", "wait_until"]
