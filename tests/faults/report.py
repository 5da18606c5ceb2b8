"""The summary row each scenario records, and the table the suite prints at the end."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Row:
    """One scenario run: where every job ended up, and how long recovery took.

    ``rejected`` counts enqueues that raised EnqueueError (never counted as lost). Times run
    from the end of the (last) fault: ``resume_s`` until some job finished again, ``settle_s``
    until every job accepted before it was finished or dead-lettered; None: not applicable,
    or (``settle_s``, where loss is tolerated) never.
    """

    scenario: str
    server: str
    jobs: int
    once: int
    dups: int
    dead: int
    lost: int
    rejected: int = 0
    resume_s: float | None = None
    settle_s: float | None = None
    wall_s: float = 0.0
    notes: str = ""


_COLUMNS = ("scenario", "server", "jobs", "once", "dups", "dead", "lost", "rejected")


def format_table(rows: list[Row]) -> list[str]:
    """The rows as an aligned text table, notes on continuation lines."""
    head = [*_COLUMNS, "resume_s", "settle_s", "wall_s"]
    cells = [
        [
            *(str(getattr(r, c)) for c in _COLUMNS),
            _seconds(r.resume_s),
            _seconds(r.settle_s),
            f"{r.wall_s:.1f}",
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *cells, strict=True)]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.ljust(w) if i < 2 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    out = [line(head), line(["-" * w for w in widths])]
    for r, c in zip(rows, cells, strict=True):
        out.append(line(c))
        if r.notes:
            out.append("    " + r.notes)
    return out


LEGEND = (
    "once/dups: finished exactly once / more than once; dead: dead-lettered; lost: accepted,"
    " never finished nor dead-lettered; rejected: enqueue raised EnqueueError (not accepted).",
    "resume_s: end of the fault -> a job finished again; settle_s: end of the fault -> every job"
    " accepted before it accounted for; wall_s: whole scenario.",
)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def save(rows: list[Row]) -> None:
    """Also write the rows as JSON lines to ``$SQ_FAULTS_JSON`` when it is set."""
    path = os.environ.get("SQ_FAULTS_JSON")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(asdict(r)) + "\n")
