"""The shared backoff policy: caps, growth, jitter bounds."""

from __future__ import annotations

import pytest

from runtime.backoff import Backoff


def test_the_ceiling_doubles_until_the_cap() -> None:
    policy = Backoff(base=0.1, cap=1.0, jitter=False)
    assert [policy.delay(n) for n in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_full_jitter_stays_between_zero_and_the_ceiling() -> None:
    samples = iter([0.0, 0.5, 0.999])
    policy = Backoff(base=1.0, cap=8.0, rng=lambda: next(samples))
    assert policy.delay(0) == 0.0
    assert policy.delay(1) == pytest.approx(1.0)
    assert policy.delay(3) == pytest.approx(7.992)


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert Backoff(base=0.5, cap=3.0, jitter=False).delay(10_000) == 3.0


def test_sleep_is_bounded_by_the_limit_and_reports_the_wait() -> None:
    waited: list[float] = []
    policy = Backoff(base=2.0, cap=2.0, jitter=False)
    assert policy.sleep(0, sleep=waited.append, limit=0.5) == 0.5
    assert policy.sleep(0, sleep=waited.append, limit=-1.0) == 0.0
    assert waited == [0.5]


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="factor"):
        Backoff(factor=0.5)
    with pytest.raises(ValueError, match="base and cap"):
        Backoff(base=-1.0)
    with pytest.raises(ValueError, match="attempt"):
        Backoff().delay(-1)
