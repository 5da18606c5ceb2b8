"""The streamq demo: the example app end to end in a few seconds, checking every outcome.

It uses ``--redis-url`` / ``$STREAMQ_REDIS_URL`` when given, else a private server of its own,
starts a 2-process pool for ``examples/tasks.py``, enqueues jobs three ways, and shows a retry,
a dead letter, a delayed job and a graceful shutdown. Exit 1 if an expected outcome is missing.
``--raw`` prints the pool's JSON log lines as they are instead of a one-line summary of each.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import streamq
from streamq.pool.process import die_with_parent
from streamq.testing import RedisServer, wait_until

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # examples/ sits at the repository root, next to scripts/
from examples import tasks  # noqa: E402 - importable only once the line above ran

QUEUE = tasks.app.settings.default_queue
WORKER_ARGV = ["worker", "--app", "examples.tasks:app", "--processes", "2", "--grace-s", "10"]
FLAKY = "flaky/sunset.jpg"


class Console:
    """Output a person can follow: each pool event on one line, stamped with the demo's clock."""

    def __init__(self, raw: bool) -> None:
        self.t0 = time.monotonic()
        self.raw = raw
        self.jobs: dict[str, str] = {}  # job id -> call as written, e.g. send_email('a@b', 'Hi')

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def step(self, text: str) -> None:
        print(f"\n== {text}", flush=True)

    def track(self, job: streamq.Job[Any]) -> streamq.Job[Any]:
        """Remember how a job was called, to name it in the pool's events."""
        args = ", ".join(repr(a) for a in job.envelope.args) if job.envelope else "..."
        self.jobs[job.id] = f"{job.task}({args})"
        return job

    def event(self, ev: dict[str, Any]) -> None:
        if self.raw:
            self.say(ev["_line"])
            return
        stamp = f"+{ev['_seen'] - self.t0:.2f}s"
        self.say(f"  {stamp:>7}  {self._who(ev):4}  {self._summary(ev)}")

    @staticmethod
    def _who(ev: dict[str, Any]) -> str:
        consumer = ev.get("consumer")
        return "w" + str(consumer).rsplit(":", 1)[-1] if consumer else "pool"

    def _summary(self, ev: dict[str, Any]) -> str:
        name = ev.get("event", "?")
        job = self.jobs.get(ev.get("job_id", ""), f"{ev.get('task')} job {ev.get('job_id')}")
        err = f"{ev.get('error_type')}: {ev.get('error_message')}"
        match name:
            case "job.succeeded":
                return f"ok     {job:50} attempt {ev['attempt']}, {ev['duration_ms']:.0f} ms"
            case "job.failed":
                wait = ev["retry_in_ms"]
                return f"retry  {job:50} attempt {ev['attempt']}: {err}, next try in {wait} ms"
            case "job.dead_lettered":
                why = ev["reason"]
                return f"dead   {job:50} attempt {ev['attempt']}: {err} -> dead letters ({why})"
        skip = {"event", "ts", "level", "_line", "_seen", "group", "consumer", "traceback"}
        if "child_pid" in ev:
            skip.add("pid")  # the supervisor's own pid, bound to its lines: noise here
        rest = " ".join(f"{k}={v}" for k, v in ev.items() if k not in skip)
        return f"{name}  {rest}"


class Pool:
    """The ``streamq worker`` subprocess, in its own process group; its log lines are collected."""

    def __init__(self, url: str) -> None:
        argv = [sys.executable, "-m", "streamq", "--log-format", "json", *WORKER_ARGV]
        env = {**os.environ, "STREAMQ_REDIS_URL": url, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group, so kill() takes the workers too
            # If the demo dies without its finally (SIGKILL), the pool drains and exits.
            preexec_fn=functools.partial(die_with_parent, signal.SIGTERM),  # noqa: PLW1509
        )
        self.events: list[dict[str, Any]] = []
        self._shown = 0
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"event": "output", "text": line}  # a traceback, or a print in a task
            if not isinstance(ev, dict):
                ev = {"event": "output", "text": line}
            ev.update(_line=line, _seen=time.monotonic())
            with self._lock:
                self.events.append(ev)

    def pump(self, con: Console) -> None:
        """Show the events that arrived since the last call."""
        with self._lock:
            events = self.events[self._shown :]
            self._shown = len(self.events)
        for ev in events:
            con.event(ev)

    def wait(self, con: Console, done: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Show events as they come until ``done()``; raise TimeoutError past ``timeout_s``."""

        def check() -> bool:
            self.pump(con)
            return done()

        wait_until(check, timeout_s, what=what)

    def named(self, name: str, job_id: str | None = None) -> list[dict[str, Any]]:
        """Events called ``name`` (of one job, if given)."""
        with self._lock:
            return [
                e
                for e in self.events
                if e.get("event") == name and (job_id is None or e.get("job_id") == job_id)
            ]

    def stop(self, con: Console, timeout_s: float) -> int | None:
        """SIGTERM the supervisor (it drains its workers); return its exit code, None if stuck."""
        self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            self.wait(con, lambda: self.proc.poll() is not None, timeout_s, "pool exited")
        self._reader.join(timeout=5)
        self.pump(con)
        return self.proc.poll()

    def kill(self) -> None:
        """SIGKILL whatever is left of the process group: the demo never leaves processes."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


@dataclass(frozen=True)
class Plan:
    """The jobs the demo enqueued, by the outcome each one should have."""

    succeed: list[streamq.Job[Any]]  # every job but the doomed one, flaky and reminder included
    flaky: streamq.Job[Any]
    doomed: streamq.Job[Any]
    reminder: streamq.Job[Any]
    reminder_sent: float  # time.monotonic() just before enqueue_in


def produce(con: Console) -> Plan:
    """Enqueue jobs the three ways a producer can, plus a doomed job and a delayed one."""
    con.say('producer  send_email.enqueue(to, "Welcome!") for 3 addresses   (typed, per job)')
    succeed = [
        con.track(tasks.send_email.enqueue(to, "Welcome!"))
        for to in ("alice@example.com", "bob@example.com", "carol@example.com")
    ]
    con.say(f'producer  app.enqueue("resize_image", args=["{FLAKY}", 800])  (by name)')
    flaky = con.track(tasks.app.enqueue("resize_image", args=[FLAKY, 800]))
    batch = [tasks.resize_image.prepare(f"photos/{n}.jpg", 800) for n in range(1, 5)]
    batch += [tasks.generate_report.prepare(c, "2024-05") for c in ("acme", "globex")]
    con.say(f"producer  app.enqueue_many([...{len(batch)} prepared jobs...])  (one round trip)")
    succeed += [con.track(j) for j in tasks.app.enqueue_many(batch)]
    con.say('producer  generate_report.with_options(max_retries=1).enqueue("umbrella", ...)')
    doomed = tasks.generate_report.with_options(max_retries=1).enqueue("umbrella", "2024-05")
    con.say('producer  send_email.enqueue_in(2, "dave@example.com", ...)  (delayed 2 s)')
    sent = time.monotonic()
    reminder = tasks.send_email.enqueue_in(2, "dave@example.com", "Trial ends soon")
    return Plan([*succeed, flaky, reminder], flaky, con.track(doomed), con.track(reminder), sent)


def settled(pool: Pool, plan: Plan) -> bool:
    """Every job has reached its final outcome."""
    done = {e.get("job_id") for e in pool.named("job.succeeded")}
    return all(j.id in done for j in plan.succeed) and bool(
        pool.named("job.dead_lettered", plan.doomed.id)
    )


def attempts(pool: Pool, name: str, job: streamq.Job[Any]) -> list[int]:
    """The attempt numbers of ``job``'s events called ``name``."""
    return [int(e["attempt"]) for e in pool.named(name, job.id)]


def outcome_checks(pool: Pool, plan: Plan, dead: list[streamq.DeadJob]) -> list[tuple[bool, str]]:
    """What the pool's events and the dead-letter stream must show for this plan."""
    ok_ids = [str(e.get("job_id")) for e in pool.named("job.succeeded")]
    expected = sorted(j.id for j in plan.succeed)
    ran = pool.named("job.succeeded", plan.reminder.id)
    after = ran[0]["_seen"] - plan.reminder_sent if ran else 0.0
    dead_ids = [d.job_id for d in dead if d.reason == "max_retries" and d.attempts == 2]
    return [
        (sorted(ok_ids) == expected, f"{len(expected)} jobs succeeded, each one once"),
        (
            attempts(pool, "job.failed", plan.flaky) == [1]
            and attempts(pool, "job.succeeded", plan.flaky) == [2],
            f"{FLAKY} failed on attempt 1 and succeeded on attempt 2",
        ),
        (
            attempts(pool, "job.failed", plan.doomed) == [1]
            and attempts(pool, "job.dead_lettered", plan.doomed) == [2]
            and dead_ids == [plan.doomed.id],
            "the report for 'umbrella' ran 2 times (max_retries=1), then went to dead letters",
        ),
        (after >= 2.0, f"the reminder ran {after:.2f} s after enqueue_in(2, ...)"),
    ]


def show_dead(con: Console) -> list[streamq.DeadJob]:
    """List the dead letters through the library, as an operator's script would."""
    con.step(f'dead letters: streamq.DeadLetters(app.store, "{QUEUE}").list()')
    dead = streamq.DeadLetters(tasks.app.store, QUEUE).list()
    for d in dead:
        con.say(f"  {d.id}  {d.task}  reason={d.reason}  attempts={d.attempts}")
        con.say(f"      {d.error_type}: {d.error_message}")
    con.say(f"  (shell: streamq dead list --queue {QUEUE}; fix the cause, then `dead replay`)")
    return dead


def show_info(con: Console, url: str) -> tuple[bool, str]:
    """Run the real ``streamq info`` and check the queue is drained but for one dead letter."""
    argv = ["info", "--app", "examples.tasks:app"]
    con.step("queue depth: streamq " + " ".join(argv))
    out = subprocess.run(
        [sys.executable, "-m", "streamq", "--redis-url", url, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    for line in (out.stdout + out.stderr).splitlines():
        con.say("  " + line)
    try:
        info = json.loads(out.stdout)
    except ValueError:
        return False, "streamq info printed JSON"
    depth = {k: info.get(k) for k in ("queued", "pending", "delayed", "dead")}
    want = {"queued": 0, "pending": 0, "delayed": 0, "dead": 1}
    return depth == want, "streamq info: " + ", ".join(f"{k} {v}" for k, v in depth.items())


def shutdown_checks(pool: Pool, code: int | None) -> list[tuple[bool, str]]:
    """A SIGTERM must drain both workers and end the pool with exit code 0."""
    stopped = pool.named("worker.stopped")
    return [
        (len(stopped) == 2, f"{len(stopped)} of 2 workers stopped after finishing their jobs"),
        (code == 0, f"the pool exited with code {code} after SIGTERM"),
    ]


def scenario(con: Console, url: str) -> list[tuple[bool, str]]:
    """Run the pool through the whole story; return the checks, passed or not."""
    con.step("start a 2-process pool: streamq --log-format json " + " ".join(WORKER_ARGV))
    pool = Pool(url)
    try:
        with contextlib.suppress(TimeoutError):
            pool.wait(
                con,
                lambda: len(pool.named("worker.started")) == 2 or pool.proc.poll() is not None,
                15,
                "two workers started",
            )
        if len(pool.named("worker.started")) < 2:
            return [(False, "the pool started 2 workers within 15 s")]
        return story(con, pool, url)
    finally:
        pool.kill()


def story(con: Console, pool: Pool, url: str) -> list[tuple[bool, str]]:
    """Enqueue, watch every outcome, inspect the queue, then stop the pool gracefully."""
    checks: list[tuple[bool, str]] = []
    con.step("enqueue")
    plan = produce(con)
    con.step("the pool at work (ok / retry / dead, by worker process)")
    try:
        pool.wait(con, lambda: settled(pool, plan), 15, "every job reached its outcome")
    except TimeoutError as e:
        checks.append((False, str(e)))
    pool.pump(con)
    dead = show_dead(con)
    checks += outcome_checks(pool, plan, dead)
    checks.append(show_info(con, url))
    con.step("graceful shutdown: SIGTERM to the supervisor")
    return checks + shutdown_checks(pool, pool.stop(con, 15))


@contextlib.contextmanager
def redis_url(given: str | None, con: Console) -> Iterator[str]:
    """The URL to use: the given server (the demo cleans up its queue), or a private one."""
    if given:
        tasks.app.redis_url = given
        store = tasks.app.store
        keys = streamq.QueueKeys(QUEUE)
        stats = store.stats(keys, "default")
        if stats.queued or stats.pending or stats.delayed or stats.dead or stats.consumers:
            raise SystemExit(
                f"demo: queue {QUEUE!r} on {_redacted(given)} holds jobs or workers ({stats}); "
                "the demo needs it to itself: point it at an empty database, e.g. .../15"
            )
        con.say(f"server    {_describe(store.server_info())} at {_redacted(given)} (yours)")
        # Only the demo's own keys, which it just found empty: a shared server is never flushed.
        mine = [keys.stream, keys.delayed, keys.dead, tasks.tried_key(FLAKY)]
        tasks.app.client().delete(tasks.tried_key(FLAKY))
        try:
            yield given
        finally:
            tasks.app.client().delete(*mine)
        return
    with RedisServer() as server:
        tasks.app.redis_url = server.url
        info = tasks.app.store.server_info()
        con.say(f"server    {_describe(info)} at {server.url} (private, stopped at the end)")
        yield server.url


def _redacted(url: str) -> str:
    """``url`` without its password, fit to print."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _describe(info: dict[str, Any]) -> str:
    name = str(info.get("server_name", "redis"))
    version = info.get(f"{name}_version", info.get("redis_version"))
    return f"{name} {version}"


def main() -> int:
    """Run the demo; return 0 when every expected outcome happened."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--redis-url", default=os.environ.get("STREAMQ_REDIS_URL"))
    p.add_argument("--raw", action="store_true", help="print the pool's JSON log lines")
    args = p.parse_args()
    # A SIGTERM unwinds like Ctrl-C, so the finally blocks stop the pool and the server.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    con = Console(args.raw)
    con.say("streamq demo: examples/tasks.py on a 2-process pool, every outcome checked")
    started = time.monotonic()
    try:
        with redis_url(args.redis_url, con) as url:
            checks = scenario(con, url)
    except streamq.StreamqError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 2
    con.step(f"checks ({time.monotonic() - started:.1f} s)")
    for ok, text in checks:
        con.say(f"  {'PASS' if ok else 'FAIL'}  {text}")
    return 0 if checks and all(ok for ok, _ in checks) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted: the pool and the server were stopped", file=sys.stderr)
        sys.exit(130)
