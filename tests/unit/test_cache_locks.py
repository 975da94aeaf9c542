"""The cache-lock keeper (``runtime.engine.cache_locks``): renewals, a lost lock, stopping."""

from __future__ import annotations

import threading
import time
from typing import Any

from runtime.engine.cache_locks import CacheLockKeeper, LockRenewal


class FakeCache:
    """Records renewals; ``answers`` says what each ``lock`` call does (True, False, raise)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, str, float]] = []
        self.renewed = threading.Event()

    def lock(self, key: str, owner: str, lock_seconds: float) -> bool:
        self.calls.append((key, owner, lock_seconds))
        answer = self.answers.pop(0) if self.answers else True
        self.renewed.set()
        if isinstance(answer, Exception):
            raise answer
        return bool(answer)


def test_renews_only_when_a_third_of_the_lease_has_passed() -> None:
    cache = FakeCache()
    renewal = LockRenewal(cache, "k", "run-1", 30.0)
    start = time.monotonic()
    renewal.renew_if_due(start)
    assert cache.calls == []
    renewal.renew_if_due(start + 10.5)
    assert cache.calls == [("k", "run-1", 30.0)] and renewal.renewals == 1
    renewal.renew_if_due(start + 11)  # the next one is due 10 s after this renewal
    assert len(cache.calls) == 1


def test_a_refused_renewal_marks_the_lock_lost_and_tells_the_holder() -> None:
    told: list[str] = []
    renewal = LockRenewal(FakeCache(False), "k", "run-1", 3.0, lambda: told.append("lost"))
    renewal.renew_if_due(time.monotonic() + 5)
    assert renewal.lost and told == ["lost"]
    renewal.renew_if_due(time.monotonic() + 50)
    assert told == ["lost"]  # once


def test_a_failing_renewal_is_retried_soon_not_given_up() -> None:
    cache = FakeCache(ConnectionError("network down"), True)
    renewal = LockRenewal(cache, "k", "run-1", 30.0)
    now = time.monotonic() + 11
    renewal.renew_if_due(now)
    assert not renewal.lost and renewal.renewals == 0
    assert renewal.next_due <= now + 1.0
    renewal.renew_if_due(now + 1.0)
    assert renewal.renewals == 1


def test_a_stopped_renewal_never_renews() -> None:
    cache = FakeCache()
    renewal = LockRenewal(cache, "k", "run-1", 0.3)
    renewal.stop()
    renewal.renew_if_due(time.monotonic() + 10)
    assert cache.calls == []


def test_the_keeper_renews_in_the_background_until_released() -> None:
    keeper = CacheLockKeeper()
    cache = FakeCache()
    renewal = keeper.keep(cache, "k", "run-1", 0.3)
    assert cache.renewed.wait(10)
    keeper.release(renewal)
    calls = len(cache.calls)
    assert calls >= 1 and renewal.stopped
    cache.renewed.clear()
    assert not cache.renewed.wait(0.5)  # nothing after release
    assert len(cache.calls) == calls
