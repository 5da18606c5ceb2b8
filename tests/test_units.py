"""Pure pieces: key names, backoff, settings validation and the public API."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

import streamq
from streamq.backoff import compute_backoff_ms
from streamq.errors import ConfigError
from streamq.keys import QueueKeys, queue_of_stream
from streamq.settings import QueueSettings, WorkerSettings, priority_value

PKG = Path(streamq.__file__).parent


def test_all_keys_of_a_queue_share_one_hash_tag() -> None:
    """Every key of a queue carries the {queue} tag, so a script's keys share a Cluster slot."""
    k = QueueKeys("emails")
    names = [k.stream, k.delayed, k.dead]
    assert all("{emails}" in n for n in names)
    assert len(set(names)) == 3
    assert queue_of_stream(k.stream) == "emails"


def test_shards_get_their_own_tag() -> None:
    """A sharded queue's keys differ per shard but map back to the logical queue."""
    a, b = QueueKeys("q", shard=0), QueueKeys("q", shard=1)
    assert a.tag != b.tag
    assert queue_of_stream(b.stream) == "q"


@pytest.mark.parametrize("name", ["", "a{b}", "a:b", "x" * 101, "sp ace"])
def test_bad_queue_names_are_refused(name: str) -> None:
    """Names that would break the hash tag or the key layout fail loudly."""
    with pytest.raises(ConfigError):
        QueueKeys(name)


def test_key_strings_are_spelled_only_in_keys_module() -> None:
    """No module other than keys.py (and Lua, which gets keys in KEYS) spells a key name."""
    offenders = [
        p.name
        for p in PKG.rglob("*.py")
        if p.name != "keys.py" and re.search(r"[\"']streamq:\S", p.read_text())
    ]
    assert offenders == []


def test_lua_never_builds_key_names() -> None:
    """Scripts touch only keys passed in KEYS (Cluster rejects keys built inside Lua)."""
    for script in (PKG / "lua").glob("*.lua"):
        assert "streamq:" not in script.read_text(), script.name


def test_backoff_grows_exponentially_within_cap() -> None:
    """Full jitter: each delay lies in [0, min(cap, base * 2**(attempt-1))]."""
    rng = random.Random(7)
    for attempt in range(1, 20):
        bound = min(10_000, 100 * 2 ** (attempt - 1))
        draws = [compute_backoff_ms(attempt, 100, 10_000, rng) for _ in range(200)]
        assert all(0 <= d <= bound for d in draws)
        assert max(draws) > bound * 0.8  # the range is actually used


def test_backoff_zero_base_means_immediate_retry() -> None:
    """A zero base disables backoff (used by benchmarks and tests)."""
    assert compute_backoff_ms(5, 0, 1000) == 0


def test_settings_fail_loudly() -> None:
    """Invalid settings raise at construction, not at first use."""
    with pytest.raises(ConfigError):
        QueueSettings(visibility_timeout_s=0)
    with pytest.raises(ConfigError):
        QueueSettings(max_deliveries=0)
    with pytest.raises(ConfigError):
        WorkerSettings(queues=())
    with pytest.raises(ConfigError):
        priority_value("urgent")
    assert priority_value("high") > priority_value("normal") > priority_value("low")


def test_public_api_is_sorted_and_importable() -> None:
    """__all__ is sorted, and every name in it exists."""
    assert streamq.__all__ == sorted(streamq.__all__)
    for name in streamq.__all__:
        assert hasattr(streamq, name), name


def test_py_typed_ships() -> None:
    """The package declares itself typed."""
    assert (PKG / "py.typed").exists()


@pytest.mark.parametrize("delay_s", [float("nan"), float("inf"), -1.0])
def test_retry_refuses_a_delay_no_worker_can_schedule(delay_s: float) -> None:
    """Retry(delay_s=nan/inf/negative) is a clear ConfigError in the task, never a worker crash."""
    with pytest.raises(ConfigError, match="finite delay"):
        streamq.Retry(delay_s=delay_s)
    assert streamq.Retry(delay_s=0.0).delay_s == 0.0
