"""The dashboard in-process (Starlette's TestClient): pages, actions, token, read-only, CSRF,
escaping, and the throughput counters the workers write."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import streamq
from streamq.clock import now_ms
from streamq.job import PRIORITY_NORMAL
from streamq.keys import MINUTE_MS, STATS_TTL_MS, QueueKeys
from streamq.settings import WorkerSettings
from streamq.upkeep.reaper import Reaper
from streamq.web import create_app
from streamq.web.security import CSRF_COOKIE

XSS = "<script>alert(1)</script>"
HTML = {"accept": "text/html"}


def _client(app: streamq.App, **options: object) -> Iterator[TestClient]:
    with TestClient(create_app(app, **options)) as client:  # type: ignore[arg-type]
        client.get("/", headers=HTML)  # receives its CSRF cookie
        yield client


@pytest.fixture
def client(app: streamq.App) -> Iterator[TestClient]:
    """A browser-like client of a dashboard with every action allowed."""
    yield from _client(app)


def _csrf(client: TestClient) -> str:
    value = client.cookies.get(CSRF_COOKIE)
    assert value
    return value


def _bury(app: streamq.App, queue: str, n: int, arg: str = "x") -> streamq.Task[..., None]:
    """``n`` jobs of a task that always fails, run by an in-process worker until dead."""

    @app.task(max_retries=0)
    def broken(value: str) -> None:
        raise ValueError(f"broken by {value}")

    for _ in range(n):
        broken.enqueue(arg)
    _drain(app, queue)
    return broken


def _drain(app: streamq.App, queue: str) -> None:
    w = streamq.Worker(app, WorkerSettings(queues=(queue,), block_ms=10))
    w.start()
    while w.run_once():
        pass
    w.shutdown()


def test_overview_shows_depth_per_priority(
    app: streamq.App, queue: str, client: TestClient
) -> None:
    """Jobs waiting at two priorities and one delayed job show up in the overview's table."""

    @app.task
    def t() -> None: ...

    for _ in range(3):
        t.enqueue()
    t.with_options(priority="high").enqueue()
    t.enqueue_in(60)
    page = client.get("/", headers=HTML).text
    rows = dict(re.findall(r'data-priority="(\w+)"><td>\w+</td><td class="waiting">(\d+)', page))
    assert rows == {"high": "1", "normal": "3", "low": "0"}
    assert re.search(r'<tfoot>.*?class="delayed">1<', page, re.S)
    assert f'id="queue-{queue}"' in page


def test_throughput_counts_every_outcome_in_the_minute_hash(app: streamq.App, queue: str) -> None:
    """Workers count succeeded, retried, dead and cancelled jobs in the minute's hash (with
    an expiry), and the reaper counts what it buries as dead."""
    seen: list[str] = []

    @app.task(max_retries=1, backoff_base_s=0, backoff_cap_s=0)
    def job(kind: str) -> None:
        seen.append(kind)
        if kind == "fail" or (kind == "retry" and seen.count("retry") == 1):
            raise RuntimeError(kind)

    for kind in ("ok", "ok", "retry", "fail"):
        job.enqueue(kind)
    job.enqueue("cancelled-first").cancel()
    _drain(app, queue)
    keys = QueueKeys(queue)
    # An entry whose consumer died with max_deliveries 3 reached: the reaper buries it.
    job.enqueue("held")
    app.store.ensure_group(keys, "default")
    app.store.read([(keys, PRIORITY_NORMAL)], "default", "gone", 1, None)
    for _ in range(3):
        Reaper(app.store, [keys], "default", app.settings).abandon("gone", now_ms())
        app.store.read([(keys, PRIORITY_NORMAL)], "default", "gone", 1, None)
    now = now_ms()
    totals: dict[str, int] = {}
    for m in app.store.throughput(keys, now - 2 * MINUTE_MS, now):
        for k, v in m.counts.items():
            totals[k] = totals.get(k, 0) + v
    # ok, ok, retry (2nd run); retry (1st) and fail (1st) retried; fail (2nd) and held dead.
    assert totals == {"succeeded": 3, "retried": 2, "dead": 2}
    ttl = app.client().pttl(keys.stats_at(now))
    assert STATS_TTL_MS - 60_000 < int(ttl) <= STATS_TTL_MS


def test_throughput_is_one_entry_per_minute_and_bounded(app: streamq.App, queue: str) -> None:
    """The history has one entry per minute, oldest first, never more than the 48 h kept."""
    keys = QueueKeys(queue)
    now = now_ms()
    app.client().hset(keys.stats_at(now - 5 * MINUTE_MS), "succeeded", 7)
    minutes = app.store.throughput(keys, now - 10 * MINUTE_MS, now)
    assert len(minutes) == 11
    assert [m.start_ms for m in minutes] == sorted(m.start_ms for m in minutes)
    assert minutes[5].counts == {"succeeded": 7}
    assert len(app.store.throughput(keys, 0, now)) == STATS_TTL_MS // MINUTE_MS + 1


def test_every_page_renders(app: streamq.App, queue: str, client: TestClient) -> None:
    """Each page answers 200 with data in Redis (dead letters, a delayed retry, a schedule)."""
    _bury(app, queue, 2)
    dead_id = app.store.dead_list(QueueKeys(queue))[0].id
    job_id = app.store.dead_list(QueueKeys(queue))[0].fields["job_id"].decode()
    app.schedule("broken", every_s=60, args=["x"]).save()
    for path in (
        "/",
        f"/queues/{queue}",
        "/workers",
        f"/dead?queue={queue}",
        f"/dead/{queue}/{dead_id}",
        f"/job?id={job_id}",
        "/schedules",
    ):
        r = client.get(path, headers=HTML)
        assert r.status_code == 200, path
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert "broken by x" in client.get(f"/dead/{queue}/{dead_id}").text
    assert client.get("/queues/not-ours").status_code == 404


def test_token_is_required(app: streamq.App, queue: str) -> None:
    """With a token, pages need it (login form or bearer header); a wrong one is refused."""
    with TestClient(create_app(app, token="s3cret-token")) as c:
        r = c.get("/", headers=HTML)
        assert r.status_code == 401
        assert 'id="login"' in r.text
        assert f"queue-{queue}" not in r.text
        assert c.get("/workers").status_code == 401
        assert c.get("/", headers={"authorization": "Bearer s3cret-token"}).status_code == 200
        csrf = _csrf(c)
        bad = c.post("/login", data={"token": "wrong", "csrf": csrf}, headers=HTML)
        assert bad.status_code == 401
        ok = c.post("/login", data={"token": "s3cret-token", "csrf": csrf}, follow_redirects=False)
        assert ok.status_code == 303
        assert "s3cret-token" not in ok.headers["set-cookie"]  # the cookie is an HMAC of it
        assert c.get("/", headers=HTML).status_code == 200
        assert f"queue-{queue}" in c.get("/", headers=HTML).text


def test_read_only_hides_and_refuses_actions(app: streamq.App, queue: str) -> None:
    """Read-only mode shows no action and refuses a well-formed POST (nothing changes)."""
    _bury(app, queue, 1)
    dead_id = app.store.dead_list(QueueKeys(queue))[0].id
    for c in _client(app, read_only=True):
        for path in (f"/dead?queue={queue}", f"/dead/{queue}/{dead_id}", "/schedules"):
            page = c.get(path, headers=HTML).text
            assert 'method="post"' not in page, path
        form = {"csrf": _csrf(c), "queue": queue, "id": dead_id, "confirm": "yes"}
        for action in ("/dead/replay", "/dead/purge"):
            assert c.post(action, data=form).status_code == 403
        assert c.post("/job/cancel", data={**form, "id": "x"}).status_code == 403
    assert app.store.stats(QueueKeys(queue), "default").dead == 1


def test_posts_need_the_csrf_value(app: streamq.App, queue: str, client: TestClient) -> None:
    """A POST without the CSRF value, or with another one, is refused."""
    _bury(app, queue, 1)
    dead_id = app.store.dead_list(QueueKeys(queue))[0].id
    form = {"queue": queue, "id": dead_id}
    assert client.post("/dead/replay", data=form).status_code == 403
    assert client.post("/dead/replay", data={**form, "csrf": "forged"}).status_code == 403
    assert app.store.stats(QueueKeys(queue), "default").dead == 1


def test_replay_and_purge_from_the_dead_letter_page(
    app: streamq.App, queue: str, client: TestClient
) -> None:
    """Replay moves a letter back to the stream; purge asks first and deletes only then."""
    _bury(app, queue, 3)
    keys = QueueKeys(queue)
    first, second, third = (d.id for d in app.store.dead_list(keys))
    csrf = _csrf(client)
    r = client.post("/dead/replay", data={"csrf": csrf, "queue": queue, "id": first})
    assert r.status_code == 200
    assert "replay: 1 dead letter" in r.text
    assert app.store.stats(keys, "default").queued == 1
    asked = client.post("/dead/purge", data={"csrf": csrf, "queue": queue, "id": second})
    assert 'id="confirm-purge"' in asked.text
    assert app.store.stats(keys, "default").dead == 2
    form = {"csrf": csrf, "queue": queue, "all": "yes", "task": "broken", "confirm": "yes"}
    assert "purge: 2 dead letter" in client.post("/dead/purge", data=form).text
    assert app.store.stats(keys, "default").dead == 0
    assert third


def test_dead_letters_page_and_filter(app: streamq.App, queue: str, client: TestClient) -> None:
    """The list pages newest first with an 'older' cursor; a filter shows only its task."""
    _bury(app, queue, 60)
    page = client.get(f"/dead?queue={queue}", headers=HTML).text
    assert page.count('<tr data-id="') == 50
    assert 'id="older"' in page
    older = re.search(r'id="older" href="([^"]+)"', page)
    assert older
    rest = client.get(older.group(1).replace("&amp;", "&"), headers=HTML).text
    assert rest.count('<tr data-id="') == 10
    assert 'id="older"' not in rest
    none = client.get(f"/dead?queue={queue}&task=other", headers=HTML).text
    assert '<tr data-id="' not in none


def test_values_are_escaped_and_arguments_hidden(app: streamq.App, queue: str) -> None:
    """A script tag in an argument or an error renders as text; arguments only with
    show_args."""
    _bury(app, queue, 1, arg=XSS)
    dead_id = app.store.dead_list(QueueKeys(queue))[0].id
    for c in _client(app, show_args=True):
        page = c.get(f"/dead/{queue}/{dead_id}", headers=HTML).text
        assert XSS not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "args" in page
        assert "hidden (start" not in page
    for c in _client(app):
        page = c.get(f"/dead/{queue}/{dead_id}", headers=HTML).text
        assert XSS not in page
        assert "hidden (start the dashboard with --show-args)" in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # in the error message


def test_schedule_pause_resume_and_run_now(
    app: streamq.App, queue: str, client: TestClient
) -> None:
    """The schedules page pauses, resumes and runs a schedule now."""

    @app.task
    def tick() -> None: ...

    app.schedule(tick, every_s=3600).save()
    csrf = _csrf(client)
    form = {"csrf": csrf, "queue": queue, "id": "tick"}
    assert "paused" in client.post("/schedules/action", data={**form, "action": "pause"}).text
    assert app.store.schedule_record(QueueKeys(queue), "tick")
    assert "Resume" in client.get("/schedules", headers=HTML).text
    client.post("/schedules/action", data={**form, "action": "resume"})
    assert "Pause" in client.get("/schedules", headers=HTML).text
    client.post("/schedules/action", data={**form, "action": "run-now"})
    assert app.store.stats(QueueKeys(queue), "default").queued == 1


def test_mounted_under_a_prefix(app: streamq.App, queue: str) -> None:
    """Mounted at /ops/queues in another app, links and the static files carry the prefix."""
    host = Starlette(routes=[Mount("/ops/queues", create_app(app))])
    with TestClient(host) as c:
        page = c.get("/ops/queues/", headers=HTML).text
        assert 'href="/ops/queues/workers"' in page
        assert 'href="/ops/queues/static/app.css"' in page
        assert c.get("/ops/queues/static/app.css").status_code == 200
        assert c.cookies.get(CSRF_COOKIE)


def test_cli_refuses_a_public_host_without_a_token() -> None:
    """`streamq dashboard --host 0.0.0.0` without a token exits with an error, serving
    nothing; loopback hosts are the only ones allowed without one."""
    from streamq.web.serve import is_loopback

    # A real process: the CLI configures logging for its whole process.
    argv = ["dashboard", "--host", "0.0.0.0", "--redis-url", "redis://127.0.0.1:1/0"]
    done = subprocess.run(
        [sys.executable, "-m", "streamq", *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "without a token" in done.stderr
    assert is_loopback("127.0.0.1")
    assert is_loopback("::1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
