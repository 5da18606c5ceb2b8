"""The dashboard in a real browser: Debian's chromium, headless, driven by Selenium through
Debian's chromedriver (Selenium Manager never downloads anything), against a live
``streamq dashboard`` and a live worker pool. Screenshots of each page go to
``test-artifacts/dashboard/``.

Skipped, saying so, when chromium or chromedriver is not installed (``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import streamq
from streamq.keys import QueueKeys
from streamq.testing import RedisServer, find_server, free_port, wait_until
from tests.helpers import ROOT, Pool, runs

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
XSS = "<script>alert(1)</script>"
TOKEN = "browser-test-token"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
        reason="browser tests skipped: no chromium/chromedriver "
        "(apt-get install chromium chromium-driver)",
    ),
]


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """One Redis for this module (the browser scenarios need not run on both servers)."""
    with RedisServer(find_server("redis")) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless chromium with a fresh profile, no network chatter, no downloads."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch a driver or browser
    profile = tempfile.mkdtemp(prefix="sq-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Live:
    """A ``streamq dashboard`` subprocess on the sample app, with its own queue."""

    def __init__(self, server: RedisServer, tmp: Path, *flags: str) -> None:
        self.queue = f"b{uuid.uuid4().hex[:10]}"
        self.env = dict(os.environ)
        self.env.update(
            STREAMQ_REDIS_URL=server.url, SQ_TEST_QUEUE=self.queue, PYTHONUNBUFFERED="1"
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = streamq.App(server.url, streamq.AppSettings(default_queue=self.queue))
        self.log = (tmp / "dashboard.log").open("wb")
        argv = [sys.executable, "-m", "streamq", "dashboard", "--app", "tests.apps.sample:app"]
        self.proc = subprocess.Popen(
            [*argv, "--port", str(self.port), *flags],
            env=self.env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._up, 20, 0.1, "dashboard answers")

    def _up(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/static/app.css", timeout=1):
                return True
        except (urllib.error.URLError, ConnectionError):
            return False

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.log.close()
        self.app.close()


@pytest.fixture
def live(server: RedisServer, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Live]:
    """A dashboard started with the flags the test's ``dashboard_flags`` mark gives."""
    mark = request.node.get_closest_marker("dashboard_flags")
    d = Live(server, tmp_path, *(mark.args if mark else ()))
    try:
        yield d
    finally:
        d.close()


def _shot(driver: Any, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def _text(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def _has(driver: Any, css: str) -> bool:
    from selenium.webdriver.common.by import By

    return bool(driver.find_elements(By.CSS_SELECTOR, css))


def _click(driver: Any, css: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, css).click()


def test_overview_shows_the_depths_created(live: Live, browser: Any) -> None:
    """Jobs queued at two priorities and one delayed job appear in the overview's table."""
    for i in range(3):
        live.app.enqueue("record", [f"n{i}"])
    live.app.enqueue("record", ["h"], priority="high")
    live.app.enqueue("record", ["later"], delay=3600)
    browser.get(live.url + "/")
    row = f"#queue-{live.queue} "
    assert _text(browser, row + 'tr[data-priority="normal"] td.waiting') == "3"
    assert _text(browser, row + 'tr[data-priority="high"] td.waiting') == "1"
    assert _text(browser, row + "tfoot td.delayed") == "1"
    _shot(browser, "overview")
    browser.get(f"{live.url}/queues/{live.queue}")
    assert "scheduled" in _text(browser, 'table.delayed[data-priority="normal"]')
    _shot(browser, "queue")


def test_replaying_a_dead_letter_runs_the_job(live: Live, browser: Any) -> None:
    """A job that died is replayed from the dead-letter page and then succeeds."""
    client = live.app.client()
    job = live.app.enqueue("fail_times", ["r", 6])  # 6 runs fail: it dies after retries
    with Pool(live.env, processes=1):
        wait_until(lambda: job.status() == "dead", 30, 0.1, "the job died")
        browser.get(f"{live.url}/dead?queue={live.queue}")
        _shot(browser, "dead_letters")
        _click(browser, "#dead tbody tr a")
        assert "planned failure of r" in _text(browser, "table.record")
        _shot(browser, "dead_letter")
        browser.back()
        _click(browser, '#dead tbody input[name="id"]')
        _click(browser, "#replay-selected")
        assert "replay: 1 dead letter" in _text(browser, "#message")
        wait_until(lambda: job.status() == "succeeded", 30, 0.1, "the replayed job ran")
        browser.get(live.url + "/")
        _shot(browser, "overview_after_work")  # docs/_static/dashboard-overview.png
    assert runs(client, live.queue)["r"] == 7
    assert live.app.store.stats(QueueKeys(live.queue), "default").dead == 0


def test_cancelling_a_running_job_stops_it(live: Live, browser: Any) -> None:
    """The job page's cancel button stops a running job: it ends cancelled, never finished."""
    client = live.app.client()
    job = live.app.enqueue("sleep_then_record", ["c", 60])
    with Pool(live.env, processes=1):
        wait_until(lambda: runs(client, live.queue).get("c:started"), 30, 0.1, "job started")
        browser.get(f"{live.url}/workers")
        assert job.id in _text(browser, "table.running")
        _shot(browser, "workers")
        browser.get(f"{live.url}/job?id={job.id}")
        assert _text(browser, "#status").startswith("running")
        _click(browser, "#cancel")
        browser.switch_to.alert.accept()  # the button asks first
        assert "cancel: cancelling" in _text(browser, "#message")
        wait_until(lambda: job.status() == "cancelled", 30, 0.1, "the job was stopped")
        browser.get(f"{live.url}/job?id={job.id}")
        assert _text(browser, "#status") == "cancelled"
        _shot(browser, "job")
    assert "c" not in runs(client, live.queue)


@pytest.mark.dashboard_flags("--read-only")
def test_read_only_shows_no_action_and_refuses_a_forged_post(live: Live, browser: Any) -> None:
    """Read-only: no button or form that changes anything, and a POST carrying the browser's
    own cookies and a valid CSRF value is refused."""
    job = live.app.enqueue("always_fail", ["x"])
    with Pool(live.env, processes=1):
        wait_until(lambda: job.status() == "dead", 30, 0.1, "the job died")
    live.app.schedule("record", every_s=3600, args=["s"]).save()
    for path in (
        f"/dead?queue={live.queue}",
        f"/job?id={job.id}",
        "/schedules",
        f"/queues/{live.queue}",
    ):
        browser.get(live.url + path)
        assert _has(browser, "#read-only")
        assert not _has(browser, 'form[method="post"]'), path
        assert not _has(browser, "#replay-selected, #cancel, #purge-all"), path
    _shot(browser, "schedules_read_only")
    cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
    dead_id = live.app.store.dead_list(QueueKeys(live.queue))[0].id
    form = {"csrf": cookies["streamq_csrf"], "queue": live.queue, "id": dead_id}
    request = urllib.request.Request(
        live.url + "/dead/replay",
        data=urllib.parse.urlencode(form).encode(),
        headers={"cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    refused.value.close()  # it holds the response's socket
    assert live.app.store.stats(QueueKeys(live.queue), "default").dead == 1


@pytest.mark.dashboard_flags("--show-args")
def test_a_script_in_an_argument_renders_as_text(live: Live, browser: Any) -> None:
    """An argument holding a script tag is shown as text and never runs."""
    from selenium.common.exceptions import NoAlertPresentException

    live.app.enqueue("record", [XSS], delay=3600)
    browser.get(f"{live.url}/queues/{live.queue}")
    assert XSS in _text(browser, 'table.delayed[data-priority="normal"] td.args')
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.accept()
    _shot(browser, "xss_as_text")


@pytest.mark.dashboard_flags("--token", TOKEN)
def test_the_token_is_required(live: Live, browser: Any) -> None:
    """With --token, the browser sees a sign-in form and no data until it gives the token."""
    live.app.enqueue("record", ["t"])
    browser.delete_all_cookies()
    browser.get(live.url + "/")
    assert _has(browser, "#login")
    assert not _has(browser, f"#queue-{live.queue}")
    _shot(browser, "login")
    browser.find_element("id", "token").send_keys("wrong")
    _click(browser, '#login button[type="submit"]')
    # The click starts a navigation: wait for the next page rather than read the old one.
    wait_until(lambda: _has(browser, "#login-failed"), 10, what="sign-in refused")
    browser.find_element("id", "token").send_keys(TOKEN)
    _click(browser, '#login button[type="submit"]')
    wait_until(lambda: _has(browser, f"#queue-{live.queue}"), 10, what="signed in")
