"""The dashboard's pages and actions: each reads its parameters, calls :mod:`streamq.web.pages`
or an ops function, and renders a template or redirects back with what it did.

Actions reach these methods only through the checks in :mod:`streamq.web.app` (read-only
mode, CSRF); the templates hide them in read-only mode too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import structlog
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from streamq.errors import StreamqError
from streamq.keys import PRIORITY_LEVELS, check_queue_name, keys_of
from streamq.ops import schedules as ops_schedules
from streamq.ops.dead import DeadLetters
from streamq.producer import schedule as sched
from streamq.producer.app import App
from streamq.web import pages

log = structlog.get_logger()
PRIORITY_NAMES = {2: "high", 1: "normal", 0: "low"}


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


class Site:
    """Every page and action of one dashboard."""

    def __init__(
        self,
        app: App,
        read_only: bool,
        show_args: bool,
        group: str,
        queues: Sequence[str],
        templates: Jinja2Templates,
    ) -> None:
        self.app = app
        self.read_only = read_only
        self.show_args = show_args
        self.group = group
        self._queues = tuple(queues)
        self.templates = templates

    def queues(self) -> list[str]:
        """The queues shown: those given, else those of the App's tasks."""
        return list(self._queues) or self.app.task_queues()

    def _queue(self, name: str) -> str:
        """A queue from a request, which must be one of the dashboard's (404 otherwise)."""
        if name not in self.queues():
            raise HTTPException(404, f"no queue {name!r} on this dashboard")
        return check_queue_name(name)

    def render(
        self, request: Request, name: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        """A page with the context every template uses."""
        common = {
            "read_only": self.read_only,
            "show_args": self.show_args,
            "csrf": request.scope.get("state", {}).get("csrf", ""),
            "queues": self.queues(),
            "priority_names": PRIORITY_NAMES,
            "message": request.query_params.get("done", ""),
        }
        return self.templates.TemplateResponse(
            request, name, {**common, **context}, status_code=status
        )

    # -- pages -------------------------------------------------------------------------------
    def overview(self, request: Request) -> Response:
        """Every queue: depth per priority, pending, delayed, dead, oldest, throughput."""
        rows = pages.overview(self.app, self.queues(), self.group)
        return self.render(request, "overview.html", {"rows": rows, "page": "overview"})

    def queue(self, request: Request) -> Response:
        """One queue: consumers with idle times, held entries, delayed jobs with due times."""
        q = self._queue(request.path_params["queue"])
        keys = keys_of(q)
        offsets = {p: _int(request.query_params.get(f"d{p}"), 0) for p in PRIORITY_LEVELS}
        context = {
            "page": "queue",
            "queue": q,
            "depth": self.app.store.depth(keys, self.group),
            "held": pages.held(self.app, keys, self.group, self.show_args),
            "delayed": pages.delayed(self.app, keys, offsets, self.show_args),
            "offsets": offsets,
        }
        return self.render(request, "queue.html", context)

    def workers(self, request: Request) -> Response:
        """Consumers grouped by host, and the job each runs, for how long."""
        pools = pages.workers(self.app, self.queues(), self.group, self.show_args)
        return self.render(request, "workers.html", {"pools": pools, "page": "workers"})

    def dead(self, request: Request) -> Response:
        """A page of dead letters, filtered by task and reason, newest first."""
        params = request.query_params
        q = self._queue(params.get("queue") or self.queues()[0])
        task, reason = params.get("task") or None, params.get("reason") or None
        page = pages.dead_page(self.app, q, params.get("before") or None, task, reason)
        depth = self.app.store.depth(keys_of(q), self.group)
        context = {
            "page": "dead",
            "queue": q,
            "task": task or "",
            "reason": reason or "",
            "result": page,
            "total": depth.dead,
            "next_query": urlencode(
                {k: v for k, v in (("queue", q), ("task", task), ("reason", reason)) if v}
                | ({"before": page.next} if page.next else {})
            ),
        }
        return self.render(request, "dead.html", context)

    def dead_letter(self, request: Request) -> Response:
        """One dead letter: fields, error, traceback, and the job (arguments if shown)."""
        q = self._queue(request.path_params["queue"])
        found = pages.dead_one(self.app, q, request.path_params["dead_id"], self.show_args)
        if found is None:
            return self.render(request, "error.html", {"error": "no such dead letter"}, 404)
        letter, job = found
        context = {"page": "dead", "queue": q, "letter": letter, "job": job}
        return self.render(request, "dead_letter.html", context)

    def job(self, request: Request) -> Response:
        """Look a job up by id: record, result, error, progress, and cancel."""
        job_id = (request.query_params.get("id") or "").strip()
        found = pages.find_job(self.app, job_id, self.queues(), self.show_args) if job_id else None
        context = {"page": "job", "job_id": job_id, "found": found}
        return self.render(
            request, "job.html", context, status=404 if job_id and not found else 200
        )

    def schedules(self, request: Request) -> Response:
        """Every periodic schedule: next and last fire, pause, resume, run now."""
        found = pages.schedules(self.app, self.queues())
        return self.render(request, "schedules.html", {"page": "schedules", "found": found})

    # -- actions (POST only, after the read-only and CSRF checks) ----------------------------
    def dead_replay(self, request: Request, form: FormData) -> Response:
        """Replay the selected dead letters, or every one matching the filter."""
        return self._dead_action(request, form, "replay")

    def dead_purge(self, request: Request, form: FormData) -> Response:
        """Delete dead letters, after a confirmation page."""
        if _text(form, "confirm") != "yes":
            context = {
                "page": "dead",
                "queue": _text(form, "queue"),
                "ids": form.getlist("id"),
                "all": _text(form, "all"),
                "task": _text(form, "task"),
                "reason": _text(form, "reason"),
            }
            return self.render(request, "confirm_purge.html", context)
        return self._dead_action(request, form, "purge")

    def _dead_action(self, request: Request, form: FormData, action: str) -> Response:
        q = self._queue(_text(form, "queue"))
        ids = [i for i in form.getlist("id") if isinstance(i, str) and i]
        task, reason = _text(form, "task") or None, _text(form, "reason") or None
        if not ids and _text(form, "all") != "yes":
            return self._back(request, "dead", "nothing selected", queue=q)
        dead = DeadLetters(self.app.store, q)
        chosen = ids or None
        if action == "replay":
            n = dead.replay(chosen, task, reason=reason)
        else:
            n = dead.purge(chosen, task, reason)
        log.info(
            "dashboard.dead_letters_changed",
            action=action,
            queue=q,
            count=n,
            task=task,
            reason=reason,
        )
        return self._back(request, "dead", f"{action}: {n} dead letter(s)", queue=q)

    def job_cancel(self, request: Request, form: FormData) -> Response:
        """Cancel a job: it never runs, or its worker stops it."""
        job_id, q = _text(form, "id"), self._queue(_text(form, "queue"))
        outcome = self.app.job(job_id, q).cancel()
        log.info("dashboard.job_cancelled", job_id=job_id, queue=q, outcome=outcome)
        return self._back(request, "job", f"cancel: {outcome}", id=job_id)

    def schedule_action(self, request: Request, form: FormData) -> Response:
        """Pause, resume or run now one schedule."""
        action, q, schedule_id = _text(form, "action"), _text(form, "queue"), _text(form, "id")
        try:
            info = ops_schedules.find(self.app.store, schedule_id, check_queue_name(q))
        except StreamqError as e:
            return self._back(request, "schedules", str(e))
        if action == "pause":
            done = str(sched.pause(self.app.store, info.queue, info.id))
        elif action == "resume":
            done = str(sched.resume(self.app.store, info.queue, info.id))
        elif action == "run-now":
            max_bytes = self.app.settings.max_payload_bytes
            done = sched.run_now(self.app.store, info.queue, info.id, max_bytes) or "not fired"
        else:
            return self._back(request, "schedules", f"unknown action {action!r}")
        log.info("dashboard.schedule_changed", schedule_id=info.id, queue=q, action=action)
        return self._back(request, "schedules", f"{action} {info.id}: {done}")

    @staticmethod
    def _back(request: Request, route: str, done: str, **params: str) -> Response:
        url = request.url_for(route).path + "?" + urlencode({**params, "done": done})
        return RedirectResponse(url, status_code=303)


def _int(raw: str | None, default: int) -> int:
    try:
        return max(0, int(raw)) if raw else default
    except ValueError:
        return default
