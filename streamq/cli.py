"""``streamq`` command line: parse arguments, then call one library function."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict

from streamq import logging as sq_logging
from streamq.clock import now_ms
from streamq.errors import StreamqError
from streamq.keys import MINUTE_MS, QueueKeys
from streamq.ops.dead import DeadJob, DeadLetters
from streamq.ops.doctor import diagnose
from streamq.ops.metrics import serve_queue_metrics
from streamq.ops.schedules import ACTIONS as SCHEDULE_ACTIONS
from streamq.ops.schedules import command as schedules_command
from streamq.pool.supervisor import EXIT_ERROR, EXIT_USAGE, PoolSettings, Supervisor
from streamq.producer.app import App
from streamq.settings import WorkerSettings
from streamq.store.views import OUTCOMES
from streamq.upkeep.scheduler import Scheduler


def load_app(spec: str, redis_url: str | None) -> App:
    """Import ``module:attribute`` (from the current directory too) and return the App."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise StreamqError(f"--app must look like module:attribute, got {spec!r}")
    sys.path.insert(0, os.getcwd())
    app = getattr(importlib.import_module(module_name), attr)
    if not isinstance(app, App):
        raise StreamqError(f"{spec} is a {type(app).__name__}, not a streamq.App")
    if redis_url:
        app.redis_url = redis_url
    return app


def _app(args: argparse.Namespace) -> App:
    if args.app:
        return load_app(args.app, args.redis_url)
    return App(args.redis_url)


def _queues(app: App, given: list[str]) -> list[str]:
    """The queues named on the command line, else every queue the app's tasks use."""
    return given or app.task_queues()


def cmd_worker(args: argparse.Namespace) -> int:
    app = _app(args)
    settings = WorkerSettings(
        queues=tuple(_queues(app, args.queue)),
        group=args.group,
        burst=args.burst,
        log_jobs=args.log_jobs,
        log_args=args.log_args,
        concurrency=args.concurrency,
    )
    pool = PoolSettings(
        processes=args.processes, grace_s=args.grace_s, metrics_port=args.metrics_port
    )
    return Supervisor(app, settings, pool).run()


def cmd_metrics(args: argparse.Namespace) -> int:
    app = _app(args)
    serve_queue_metrics(app, _queues(app, args.queue), args.group, args.port)
    while True:  # the server thread serves; SIGTERM or Ctrl-C ends the process
        time.sleep(3600)


def cmd_scheduler(args: argparse.Namespace) -> int:
    app = _app(args)
    scheduler = Scheduler(app.store, [QueueKeys(q) for q in _queues(app, args.queue)])
    while True:
        wake = scheduler.run(now_ms())
        time.sleep(max(0.0, (wake - now_ms()) / 1000))


def cmd_info(args: argparse.Namespace) -> int:
    app = _app(args)
    queues = _queues(app, args.queue)
    out = []
    for q in queues:
        s = app.store.stats(QueueKeys(q), args.group)
        out.append(
            {
                "queue": s.queue,
                "group": args.group,
                "queued": s.queued,
                "pending": s.pending,
                "delayed": s.delayed,
                "dead": s.dead,
                "consumers": s.consumers,
                "last_hour": throughput_totals(app, q, 60),
            }
        )
    print(json.dumps(out if len(out) > 1 else out[0], indent=2))
    return 0


def throughput_totals(app: App, queue: str, minutes: int) -> dict[str, int]:
    """Jobs finished in the last ``minutes``, by outcome (from the workers' counters)."""
    now = now_ms()
    totals = dict.fromkeys(OUTCOMES, 0)
    for m in app.store.throughput(QueueKeys(queue), now - (minutes - 1) * MINUTE_MS, now):
        for outcome, n in m.counts.items():
            totals[outcome] = totals.get(outcome, 0) + n
    return totals


def cmd_dashboard(args: argparse.Namespace) -> int:
    try:
        from streamq.web.serve import serve  # noqa: PLC0415  # the optional `web` extra
    except ImportError as e:
        raise StreamqError(
            f"the dashboard needs the web extra: pip install 'streamq[web]' ({e})"
        ) from e
    app = _app(args)
    token = args.token or os.environ.get("STREAMQ_DASHBOARD_TOKEN") or None
    serve(
        app,
        args.host,
        args.port,
        args.read_only,
        token,
        show_args=args.show_args,
        group=args.group,
        queues=args.queue,
    )
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    app = _app(args)
    outcome = app.job(args.job_id, args.queue).cancel()
    print(json.dumps({"job_id": args.job_id, "outcome": outcome}))
    return 0 if outcome in ("cancelled", "cancelling") else EXIT_ERROR


def cmd_job(args: argparse.Namespace) -> int:
    info = _app(args).job(args.job_id, args.queue).info()
    print(json.dumps(asdict(info), indent=2))
    return 0 if info.status != "unknown" else EXIT_ERROR


def cmd_doctor(args: argparse.Namespace) -> int:
    app = _app(args)
    findings = diagnose(app.store, app.settings)
    for f in findings:
        print(f"{f.level.upper():5} {f.check:17} {f.message}")
    return 0 if all(f.level == "ok" for f in findings) else EXIT_ERROR


def _dead_row(j: DeadJob, full: bool = False) -> dict[str, object]:
    row: dict[str, object] = {
        "id": j.id,
        "reason": j.reason,
        "task": j.task,
        "job_id": j.job_id,
        "attempts": j.attempts,
        "error": f"{j.error_type}: {j.error_message}".strip(": "),
    }
    if full:
        row["fields"] = j.fields
        row["traceback"] = j.traceback
        row["payload_bytes"] = len(j.payload)
    return row


def cmd_dead(args: argparse.Namespace) -> int:
    app = _app(args)
    dead = DeadLetters(app.store, args.queue or app.settings.default_queue)
    ids = args.id or None
    if args.action == "list":
        for job in dead.list(args.task, args.limit):
            print(json.dumps(_dead_row(job)))
        return 0
    if args.action == "show":
        for i in args.id:
            found = dead.get(i)
            print(
                json.dumps(_dead_row(found, full=True), indent=2)
                if found
                else json.dumps({"id": i, "error": "not found"})
            )
        return 0
    if ids is None and not args.all and args.task is None:
        print("refusing to touch every dead letter: pass --id, --task or --all", file=sys.stderr)
        return EXIT_USAGE
    if args.action == "replay":
        n = dead.replay(ids, args.task, progress=lambda d: print(f"replayed {d}", file=sys.stderr))
    else:
        n = dead.purge(ids, args.task)
    print(json.dumps({args.action: n}))
    return 0


def cmd_schedules(args: argparse.Namespace) -> int:
    app = _app(args)
    rows = schedules_command(
        app.store, args.action, args.schedule_id, args.queue, app.settings.max_payload_bytes
    )
    for row in rows:
        print(json.dumps(row, indent=2 if args.action == "show" else None, default=str))
    return 0 if all(r.get("ok", True) for r in rows) else EXIT_ERROR


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _global_options(p: argparse.ArgumentParser, defaults: bool) -> None:
    """The options every command takes, before or after its name.

    The main parser holds the defaults; each subcommand's copy uses SUPPRESS, so it sets a
    value only when given there and never resets one given before the command name.
    """

    def default(value: str | None) -> str | None:
        return value if defaults else argparse.SUPPRESS

    p.add_argument("--redis-url", default=default(None), help="overrides the app's URL")
    p.add_argument("--log-format", choices=sq_logging.FORMATS, default=default("json"))
    p.add_argument("--log-level", type=str.lower, choices=LOG_LEVELS, default=default("info"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamq", description="Job queue on Redis Streams.")
    _global_options(p, defaults=True)
    shared = argparse.ArgumentParser(add_help=False)
    _global_options(shared, defaults=False)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[shared])

    _add_worker(add)
    _add_metrics(add)

    s = add("scheduler", help="promote delayed jobs (workers run one too)")
    s.add_argument("--app", default=None)
    s.add_argument("--queue", action="append", default=[])
    s.set_defaults(func=cmd_scheduler)

    i = add("info", help="queue depth, pending per consumer, delayed, dead")
    i.add_argument("--app", default=None)
    i.add_argument("--queue", action="append", default=[])
    i.add_argument("--group", default="default")
    i.set_defaults(func=cmd_info)

    c = add("cancel", help="cancel a job: it never runs, or is stopped if running")
    c.add_argument("job_id")
    c.add_argument("--app", default=None)
    c.add_argument("--queue", default=None, help="default: the app's default queue")
    c.set_defaults(func=cmd_cancel)

    j = add("job", help="a job's status, attempts, timestamps, error, progress")
    j.add_argument("job_id")
    j.add_argument("--app", default=None)
    j.add_argument("--queue", default=None, help="default: the app's default queue")
    j.set_defaults(func=cmd_job)

    doc = add("doctor", help="check Redis settings that decide what survives a crash")
    doc.add_argument("--app", default=None)
    doc.set_defaults(func=cmd_doctor)

    d = add("dead", help="list, show, replay or purge dead letters")
    d.add_argument("action", choices=("list", "show", "replay", "purge"))
    d.add_argument("--app", default=None)
    d.add_argument("--queue", default=None, help="default: the app's default queue")
    d.add_argument("--id", action="append", default=[])
    d.add_argument("--task", default=None)
    d.add_argument("--all", action="store_true")
    d.add_argument("--limit", type=int, default=100)
    d.set_defaults(func=cmd_dead)
    _add_schedules(sub)
    _add_dashboard(sub, shared)
    return p


def _add_worker(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    w = add("worker", "run a supervised pool of worker processes")
    w.add_argument("--app", required=True, help="module:attribute of your streamq.App")
    w.add_argument("--group", default="default", help="consumer group name")
    w.add_argument("--queue", action="append", default=[], help="repeatable; default: all")
    w.add_argument("--processes", type=int, default=os.cpu_count() or 2)
    w.add_argument("--grace-s", type=float, default=30.0, help="drain time on SIGTERM")
    w.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    w.add_argument(
        "--concurrency",
        type=int,
        default=WorkerSettings().concurrency,
        help="async tasks each process runs at once (apps with async tasks)",
    )
    w.add_argument("--log-jobs", choices=("all", "failures"), default="all")
    w.add_argument(
        "--log-args", action="store_true", help="include task arguments in job lines (off: PII)"
    )
    w.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port"
    )
    w.set_defaults(func=cmd_worker)


def _add_dashboard(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], shared: argparse.ArgumentParser
) -> None:
    w = sub.add_parser("dashboard", help="serve the web dashboard", parents=[shared])
    w.add_argument("--app", default=None, help="module:attribute of your streamq.App")
    w.add_argument("--host", default="127.0.0.1", help="without a token: loopback only")
    w.add_argument("--port", type=int, default=8080)
    w.add_argument("--read-only", action="store_true", help="hide and refuse every action")
    w.add_argument(
        "--token", default=None, help="required of every visitor (or $STREAMQ_DASHBOARD_TOKEN)"
    )
    w.add_argument(
        "--show-args", action="store_true", help="show job arguments and results (off: PII)"
    )
    w.add_argument("--group", default="default", help="consumer group name")
    w.add_argument("--queue", action="append", default=[], help="repeatable; default: all")
    w.set_defaults(func=cmd_dashboard)


def _add_metrics(add: Callable[[str, str], argparse.ArgumentParser]) -> None:
    m = add("metrics", "serve the queue gauges on /metrics (Prometheus), no workers")
    m.add_argument("--port", type=int, required=True)
    m.add_argument("--app", default=None)
    m.add_argument("--queue", action="append", default=[], help="repeatable; default: all")
    m.add_argument("--group", default="default")
    m.set_defaults(func=cmd_metrics)


def _add_schedules(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sc = sub.add_parser("schedules", help="list, show, pause, resume, remove or run-now schedules")
    sc.add_argument("action", choices=SCHEDULE_ACTIONS)
    sc.add_argument("schedule_id", nargs="?", help="needed by every action but list")
    sc.add_argument("--app", default=None, help="optional: schedules are read from Redis")
    sc.add_argument("--queue", default=None, help="default: every queue with schedules")
    sc.set_defaults(func=cmd_schedules)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamq`` command."""
    args = build_parser().parse_args(argv)
    sq_logging.configure(args.log_format, args.log_level, sys.stdout)
    try:
        code: int = args.func(args)
    except StreamqError as e:
        print(f"streamq error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
