"""The dashboard as an ASGI app: routes, the token gate, read-only mode and CSRF checks.

Pages are sync endpoints (Starlette runs them in its thread pool) over the App's blocking
store, so they share the ops code the CLI runs (dead-letter replay and purge, schedules,
cancel) instead of an async copy of it. Actions are POSTs: refused outright in read-only
mode, and checked for their CSRF value before anything is read from Redis.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import structlog
from jinja2 import Environment, PackageLoader, pass_context, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamq.producer.app import App
from streamq.web import security
from streamq.web.pages import template_globals
from streamq.web.site import Site

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Options:
    """How the dashboard was started."""

    read_only: bool
    token: str | None
    show_args: bool
    group: str
    queues: tuple[str, ...]


def create_app(
    app: App,
    read_only: bool = False,
    token: str | None = None,
    *,
    show_args: bool = False,
    group: str = "default",
    queues: Sequence[str] = (),
) -> Starlette:
    """The dashboard of ``app``'s queues, as an ASGI app to serve or mount.

    Args:
        app: whose Redis and queues to show.
        read_only: hide every action, and refuse every POST that would change something.
        token: required of every request (login form, or ``Authorization: Bearer``);
            ``None`` turns authentication off (for localhost, or behind your own auth).
        show_args: show job arguments and results (off: they may hold personal data).
        group: the consumer group the workers use.
        queues: the queues to show; default: every queue ``app``'s tasks use.

    Returns:
        A Starlette application; mount it with ``Mount("/streamq", create_app(app))`` or
        FastAPI's ``api.mount("/streamq", create_app(app))``.
    """
    if token is not None and not token.strip():
        from streamq.errors import ConfigError  # noqa: PLC0415  # only on this mistake

        raise ConfigError("the dashboard token is empty: pass a real token, or None for none")
    opts = Options(read_only, token, show_args, group, tuple(queues))
    env = Environment(
        loader=PackageLoader("streamq.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.globals.update(template_globals(), url_for=_path_for)
    templates = Jinja2Templates(env=env)
    site = Site(app, opts.read_only, opts.show_args, opts.group, opts.queues, templates)

    def post(handler: Callable[[Request, FormData], Response]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> Response:
            form = await read_form(request)
            refusal = _refused(request, form, opts.read_only)
            if refusal is not None:
                return refusal
            return await run_in_threadpool(handler, request, form)

        return endpoint

    async def login(request: Request) -> Response:
        form = await read_form(request)
        if not security.same(
            _field(form, security.CSRF_FIELD), request.cookies.get(security.CSRF_COOKIE, "")
        ):
            return PlainTextResponse("CSRF check failed", status_code=403)
        given = _field(form, "token")
        if opts.token is None or not security.same(given, opts.token):
            log.warning("dashboard.login_failed", client=_client(request))
            return site.render(request, "login.html", {"failed": True}, status=401)
        response = RedirectResponse(request.url_for("overview").path, status_code=303)
        response.set_cookie(
            security.SESSION_COOKIE,
            security.session_value(opts.token),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=_cookie_path(request),
        )
        return response

    routes = [
        Route("/", site.overview, name="overview"),
        Route("/queues/{queue}", site.queue, name="queue"),
        Route("/workers", site.workers, name="workers"),
        Route("/dead", site.dead, name="dead"),
        Route("/dead/{queue}/{dead_id}", site.dead_letter, name="dead_letter"),
        Route("/job", site.job, name="job"),
        Route("/schedules", site.schedules, name="schedules"),
        Route("/login", login, methods=["POST"], name="login"),
        Route("/dead/replay", post(site.dead_replay), methods=["POST"], name="dead_replay"),
        Route("/dead/purge", post(site.dead_purge), methods=["POST"], name="dead_purge"),
        Route("/job/cancel", post(site.job_cancel), methods=["POST"], name="job_cancel"),
        Route(
            "/schedules/action",
            post(site.schedule_action),
            methods=["POST"],
            name="schedule_action",
        ),
        Mount("/static", StaticFiles(packages=[("streamq.web", "static")]), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(_Guard, token=opts.token, site=site)])


MAX_FORM_BYTES = 256 * 1024


async def read_form(request: Request) -> FormData:
    """The fields of a URL-encoded form post (every form here is one), at most 256 kB.

    Parsed here rather than by ``python-multipart``: no file uploads, no extra dependency.
    Anything else comes back empty, which then fails the CSRF check.
    """
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return FormData()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return FormData()
    fields: list[tuple[str, str | UploadFile]] = []
    fields += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return FormData(fields)


@pass_context
def _path_for(context: Any, name: str, /, **params: Any) -> str:
    """A route's path (with the mount prefix): links stay right behind a proxy that changes
    the scheme or host."""
    request: Request = context["request"]
    return request.url_for(name, **params).path


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _cookie_path(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/") + "/"


def _refused(request: Request, form: FormData, read_only: bool) -> Response | None:
    """Why a POST may not act: read-only mode, or a CSRF value that does not match."""
    if read_only:
        log.warning("dashboard.action_refused", path=request.url.path, why="read_only")
        return PlainTextResponse("read-only dashboard: actions are disabled", status_code=403)
    cookie = request.cookies.get(security.CSRF_COOKIE, "")
    if not security.same(_field(form, security.CSRF_FIELD), cookie):
        log.warning("dashboard.action_refused", path=request.url.path, why="csrf")
        return PlainTextResponse("CSRF check failed: reload the page", status_code=403)
    return None


class _Guard:
    """ASGI middleware: the token gate (a login page for browsers), a CSRF cookie for every
    browser, and the security headers on every response."""

    def __init__(self, app: ASGIApp, token: str | None, site: Site) -> None:
        self.inner = app
        self.token = token
        self.site = site

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        request = Request(scope, receive)
        csrf = request.cookies.get(security.CSRF_COOKIE) or None
        fresh = security.new_csrf() if csrf is None else None
        scope.setdefault("state", {})["csrf"] = csrf or fresh
        path = str(scope.get("path", ""))
        root = str(scope.get("root_path", ""))
        local = path[len(root) :] if root and path.startswith(root) else path
        open_path = local.startswith("/static/") or local == "/login"
        ok = security.authorized(
            self.token,
            request.cookies.get(security.SESSION_COOKIE),
            request.headers.get("authorization"),
        )

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in security.HEADERS.items()]
                if fresh is not None:
                    cookie = (
                        f"{security.CSRF_COOKIE}={fresh}; Path={_cookie_path(request)}; "
                        "HttpOnly; SameSite=Strict"
                    )
                    headers.append((b"set-cookie", cookie.encode()))
                message["headers"] = headers
            await send(message)

        if ok or open_path:
            await self.inner(scope, receive, send_with_headers)
            return
        if request.method != "GET" or "text/html" not in request.headers.get("accept", ""):
            response: Response = PlainTextResponse("token required", status_code=401)
        else:
            response = self.site.render(request, "login.html", {"failed": False}, status=401)
        await response(scope, receive, send_with_headers)
