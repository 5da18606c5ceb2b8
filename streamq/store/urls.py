"""Where the queues live, from a URL: one server, a Sentinel-watched service, or a Cluster.

``redis://``, ``rediss://`` and ``unix://`` name one server (redis-py reads them); two more
schemes name several seeds, comma-separated:

- ``redis+sentinel://[user:password@]host:port[,host:port...]/<service>[/db]`` (and
  ``rediss+sentinel://``): the primary of ``service`` as the sentinels name it now; the
  credentials are the data nodes'.
- ``redis+cluster://[user:password@]host:port[,host:port...]`` (and ``rediss+cluster://``):
  a Redis Cluster, any of its nodes as seeds.

Pure parsing, no I/O, so a bad URL fails at once with :class:`ConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from streamq.errors import ConfigError

SCHEMES = {
    "redis": ("node", False),
    "rediss": ("node", True),
    "unix": ("node", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed URL: ``kind`` is node, sentinel or cluster."""

    kind: str
    tls: bool
    seeds: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_url(url: str) -> Target:
    """The target a URL names; ``redis://`` and ``rediss://`` are left to redis-py (no seeds).

    Raises:
        ConfigError: an unknown scheme, no seeds, a bad port, no service name, a bad db.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in SCHEMES)
        raise ConfigError(f"unsupported Redis URL {_redact(url)!r}: use one of {known}")
    kind, tls = SCHEMES[scheme]
    if kind == "node":
        return Target(kind, tls)
    netloc, _, path = rest.partition("/")
    username = password = None
    if "@" in netloc:
        auth, _, netloc = netloc.rpartition("@")
        user, colon, pw = auth.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    seeds = tuple(_seed(s, url) for s in netloc.split(",") if s)
    if not seeds:
        raise ConfigError(f"{_redact(url)!r} names no host:port seed")
    parts = [p for p in path.split("/") if p]
    if kind == "cluster":
        if parts:
            raise ConfigError(f"{_redact(url)!r}: a cluster URL has no path (Cluster has db 0)")
        return Target(kind, tls, seeds, username=username, password=password)
    if not parts or len(parts) > 2:
        raise ConfigError(f"{_redact(url)!r}: give the service name, /<service>[/db]")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ConfigError(f"{_redact(url)!r}: the db must be a number")
        db = int(parts[1])
    return Target(kind, tls, seeds, parts[0], db, username, password)


def _seed(text: str, url: str) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{_redact(url)!r}: seed {text!r} is not host:port")
    return host.strip("[]"), int(port)


def _redact(url: str) -> str:
    """The URL without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest.split("/", 1)[0]:
        return url
    auth, _, tail = rest.partition("@")
    user = auth.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{tail}"
