"""Who waits on which pub/sub channel: the bookkeeping of a shared result listener.

No I/O and no threads here, so the thread-based listener (:mod:`streamq.store.listener`) and
an asyncio twin share one implementation: the caller does the SUBSCRIBE/UNSUBSCRIBE this
returns and wakes waiters the way its world wakes things (threading or asyncio events).
"""

from __future__ import annotations

from typing import Generic, TypeVar

W = TypeVar("W")


class Waiters(Generic[W]):
    """Channel -> its waiters; a channel is subscribed while it has at least one."""

    def __init__(self) -> None:
        self._by_channel: dict[bytes, set[W]] = {}

    def add(self, channel: bytes, waiter: W) -> bool:
        """Register ``waiter`` on ``channel``; True if the channel is new (subscribe it)."""
        waiters = self._by_channel.setdefault(channel, set())
        waiters.add(waiter)
        return len(waiters) == 1

    def remove(self, channel: bytes, waiter: W) -> bool:
        """Forget ``waiter``; True if ``channel`` has nobody left (unsubscribe it)."""
        waiters = self._by_channel.get(channel)
        if waiters is None:
            return False
        waiters.discard(waiter)
        if waiters:
            return False
        del self._by_channel[channel]
        return True

    def of(self, channel: bytes) -> list[W]:
        """The waiters of ``channel`` (a message or a fresh subscription wakes them)."""
        return list(self._by_channel.get(channel, ()))

    def channels(self) -> list[bytes]:
        """Every channel someone waits on (what to subscribe after a reconnect)."""
        return list(self._by_channel)

    def everyone(self) -> list[W]:
        """Every waiter, once each."""
        return list({w for ws in self._by_channel.values() for w in ws})

    def __len__(self) -> int:
        return len(self._by_channel)
