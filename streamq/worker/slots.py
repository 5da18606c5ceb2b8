"""What each worker process is running, in shared memory its supervisor reads.

One fixed-size slot per child in an anonymous shared mapping made before forking. A child
writes its current job at start and clears it at the end; the supervisor reads the slots to
enforce time limits and cancellations. A sequence number (odd while writing) lets the reader
skip a torn record instead of locking: the child's hot path stays two memory writes.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass

import msgpack

_SLOT = 512
_HEAD = struct.Struct("<QI")  # sequence, record length
_CANCEL_AT = 384  # job id the supervisor wants cancelled, length-prefixed
_MAX_RECORD = _CANCEL_AT - _HEAD.size


@dataclass(frozen=True, slots=True)
class Running:
    """A job running in a child."""

    job_id: str
    queue: str
    priority: int
    entry_id: str
    started_ms: int
    deadline_ms: int  # 0: no time limit


class Slots:
    """A shared table of ``n`` slots; make it before forking."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._mm = mmap.mmap(-1, n * _SLOT)

    def set(self, i: int, run: Running) -> None:
        """Publish what slot ``i``'s child is running now."""
        data = msgpack.packb(
            (run.job_id, run.queue, run.priority, run.entry_id, run.started_ms, run.deadline_ms)
        )[:_MAX_RECORD]
        self._write(i, data)

    def clear(self, i: int) -> None:
        """Slot ``i``'s child runs nothing."""
        self._write(i, b"")

    def _write(self, i: int, data: bytes) -> None:
        base = i * _SLOT
        seq, _ = _HEAD.unpack_from(self._mm, base)
        _HEAD.pack_into(self._mm, base, seq + 1, len(data))
        self._mm[base + _HEAD.size : base + _HEAD.size + len(data)] = data
        _HEAD.pack_into(self._mm, base, seq + 2, len(data))

    def get(self, i: int) -> Running | None:
        """What slot ``i``'s child runs, or None (idle, or being written: look again later)."""
        base = i * _SLOT
        seq, length = _HEAD.unpack_from(self._mm, base)
        if seq % 2 or not length:
            return None
        data = bytes(self._mm[base + _HEAD.size : base + _HEAD.size + length])
        if _HEAD.unpack_from(self._mm, base)[0] != seq:
            return None
        job_id, queue, priority, entry_id, started, deadline = msgpack.unpackb(data)
        return Running(job_id, queue, priority, entry_id, started, deadline)

    def request_cancel(self, i: int, job_id: str) -> None:
        """Name the job slot ``i``'s child must stop (it checks on SIGUSR1)."""
        raw = job_id.encode()[:120]
        base = i * _SLOT + _CANCEL_AT
        self._mm[base : base + 1 + len(raw)] = bytes([len(raw)]) + raw

    def cancel_target(self, i: int) -> str:
        """The job id the supervisor asked slot ``i``'s child to stop ('' for none)."""
        base = i * _SLOT + _CANCEL_AT
        n = self._mm[base]
        return bytes(self._mm[base + 1 : base + 1 + n]).decode()
