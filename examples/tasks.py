"""The seed example app: three background tasks of a small web shop.

Run a pool for it with ``streamq worker --app examples.tasks:app`` (the Redis URL comes from
``$STREAMQ_REDIS_URL``); ``scripts/demo`` does that and enqueues a few jobs of each task.
"""

from __future__ import annotations

import time

import streamq

# A queue of its own, so trying the example on a Redis you already use never touches your jobs.
app = streamq.App(settings=streamq.AppSettings(default_queue="demo"))

CUSTOMERS = {"acme": "Acme Corp", "globex": "Globex", "initech": "Initech"}


@app.task
def send_email(to: str, subject: str) -> str:
    """Send one email (here: pretend to talk to a mail server for 100 ms)."""
    time.sleep(0.1)
    return f"sent {subject!r} to {to}"


@app.task(max_retries=3, backoff_base_s=0.5, backoff_cap_s=5.0)
def resize_image(path: str, width: int) -> str:
    """Resize one image; images under ``flaky/`` time out on their first try, as storage does."""
    if path.startswith("flaky/") and first_try(path):
        raise TimeoutError(f"image store timed out on {path}")
    time.sleep(0.05)
    return f"{path} resized to {width}px"


@app.task(backoff_base_s=0.5)
def generate_report(customer: str, month: str) -> str:
    """Build a customer's monthly report; an unknown customer fails every time."""
    if customer not in CUSTOMERS:
        raise LookupError(f"no customer {customer!r}")
    time.sleep(0.2)
    return f"report {month} for {CUSTOMERS[customer]}"


def tried_key(path: str) -> str:
    """The Redis key that remembers a first try of ``path`` (shared by all worker processes)."""
    return f"examples:tried:{path}"


def first_try(path: str) -> bool:
    """True the first time it is called for ``path`` within an hour, in any process."""
    return bool(app.client().set(tried_key(path), 1, nx=True, ex=3600))
