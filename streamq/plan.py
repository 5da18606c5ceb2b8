"""What a store verb sends and how it reads the replies, with no I/O (a sans-I/O plan).

A plan is a generator: it yields a :class:`Batch` of commands, is sent back their replies in
order, and returns the verb's typed result. A verb that needs several round trips yields
several batches. Executors (:mod:`streamq.store.node` today; an asyncio and a cluster executor
next) only send batches and hand back replies, so every verb's rules exist once whatever the
client. Plans never import ``redis``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from streamq.errors import RedisCommandError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Op:
    """One command: a registered script (``script`` names ``lua/<script>.lua``, ``keys`` are
    its KEYS and ``args`` its ARGV) or, with ``script`` empty, a plain command in ``args``.

    ``options`` are handed to the client's reply parser, for the commands whose reply shape
    depends on their arguments (``parse_detail`` for the extended form of XPENDING).
    """

    args: tuple[Any, ...]
    script: str = ""
    keys: tuple[Any, ...] = ()
    options: tuple[tuple[str, Any], ...] = ()


def cmd(*args: Any, **options: Any) -> Op:
    """A plain command, e.g. ``cmd("XLEN", key)``; a two-word name is one string."""
    return Op(args, options=tuple(options.items()))


def lua(name: str, keys: Sequence[Any], args: Sequence[Any]) -> Op:
    """A call of the registered script ``name``."""
    return Op(tuple(args), name, tuple(keys))


@dataclass(frozen=True, slots=True)
class Batch:
    """Commands sent together (pipelined when more than one).

    With ``tolerant`` a command Redis refuses comes back as a :class:`RedisCommandError`
    value in its place, for the plan to judge (e.g. NOGROUP); otherwise the executor raises.
    """

    ops: Sequence[Op]
    tolerant: bool = False


Plan = Generator[Batch, list[Any], T]


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One command and the function that narrows its reply."""

    op: Op
    parse: Callable[[Any], T]


def one(call: Call[T]) -> Plan[T]:
    """The plan of a single command."""
    (reply,) = yield Batch([call.op])
    return call.parse(reply)


def each(calls: Sequence[Call[T]]) -> Plan[list[T]]:
    """The plan of independent commands sent in one round trip."""
    if not calls:
        return []
    replies = yield Batch([c.op for c in calls])
    return [c.parse(r) for c, r in zip(calls, replies, strict=True)]


def refused(reply: Any) -> bool:
    """True for a reply that is a refused command (tolerant batches only)."""
    return isinstance(reply, RedisCommandError)


def no_group(reply: Any) -> bool:
    """True for the refusal of a stream or group that does not exist (yet, or any more)."""
    return refused(reply) and "NOGROUP" in str(reply)


def check(reply: Any) -> Any:
    """The reply, or raise it if it is a refusal the plan did not expect."""
    if refused(reply):
        raise reply
    return reply


def drive(plan: Plan[T], send: Callable[[Batch], list[Any]]) -> T:
    """Run ``plan`` to its result, sending each batch with ``send`` (a blocking executor's
    loop; the asyncio executor has the same loop with ``await``)."""
    try:
        batch = next(plan)
        while True:
            batch = plan.send(send(batch))
    except StopIteration as stop:
        result: T = stop.value
        return result
