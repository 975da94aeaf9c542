"""Which failures ApiTransport retries, for idempotent and other requests (no network).

The transport's connection pool is replaced by a script of outcomes: an exception
urllib3 would raise, or a response status. A request that may have been applied
(read timeout, dropped connection, a 5xx other than 503) is repeated only when it
is idempotent; one that surely was not applied (no connection, 429, 503) always.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from urllib3.exceptions import (
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from runtime.http.errors import ApiConnectionError, ApiError, ServerError, Throttled
from runtime.http.transport import ApiTransport

Outcome = BaseException | int


class FakeResponse:
    def __init__(self, status: int) -> None:
        self.status = status
        self.headers: dict[str, str] = {}
        body = {"ok": True} if status < 400 else {"error": {"type": "x", "message": "injected"}}
        self.data = json.dumps(body).encode()


class ScriptedPool:
    """Answers requests from a script of outcomes, then 200."""

    def __init__(self, script: Sequence[Outcome]) -> None:
        self.script = list(script)
        self.calls: list[tuple[str, str]] = []

    def request(self, method: str, url: str, **_: Any) -> FakeResponse:
        self.calls.append((method, url))
        outcome = self.script.pop(0) if self.script else 200
        if isinstance(outcome, BaseException):
            raise outcome
        return FakeResponse(outcome)

    def clear(self) -> None:
        return None


def transport(script: Sequence[Outcome]) -> tuple[ApiTransport, ScriptedPool]:
    t = ApiTransport("http://127.0.0.1:9", retries=3, backoff=0.01, max_backoff=0.02)
    pool = ScriptedPool(script)
    t._pool = pool  # type: ignore[assignment]
    t._sleep = lambda seconds: None
    return t, pool


def read_timeout() -> ReadTimeoutError:
    return ReadTimeoutError(None, "/x", "Read timed out. (read timeout=30)")  # type: ignore[arg-type]


def dropped() -> ProtocolError:
    return ProtocolError("Connection aborted.", ConnectionResetError("reset by peer"))


def refused() -> NewConnectionError:
    return NewConnectionError(None, "Failed to establish a new connection: refused")  # type: ignore[arg-type]


def unresolved() -> NameResolutionError:
    return NameResolutionError("api.invalid", None, OSError("no such host"))  # type: ignore[arg-type]


MAYBE_APPLIED: list[tuple[str, Callable[[], Outcome]]] = [
    ("read timeout", read_timeout),
    ("dropped connection", dropped),
    ("500", lambda: 500),
    ("502", lambda: 502),
    ("504", lambda: 504),
]
NOT_APPLIED: list[tuple[str, Callable[[], Outcome]]] = [
    ("connection refused", refused),
    ("name not resolved", unresolved),
    ("503", lambda: 503),
    ("429", lambda: 429),
]


@pytest.mark.parametrize(("what", "make"), MAYBE_APPLIED, ids=[w for w, _ in MAYBE_APPLIED])
def test_a_plain_post_is_not_repeated_when_it_may_have_been_applied(
    what: str, make: Callable[[], Outcome]
) -> None:
    t, pool = transport([make()])
    with pytest.raises(ApiError) as info:
        t.request("POST", "/flow_runs/x/cancel")
    assert len(pool.calls) == 1
    if isinstance(info.value, ApiConnectionError):
        assert "not retried" in str(info.value) and "may have applied" in str(info.value)
    else:
        assert isinstance(info.value, ServerError)


@pytest.mark.parametrize(("what", "make"), NOT_APPLIED, ids=[w for w, _ in NOT_APPLIED])
def test_a_plain_post_is_repeated_when_it_surely_was_not_applied(
    what: str, make: Callable[[], Outcome]
) -> None:
    t, pool = transport([make(), make()])
    assert t.request("POST", "/flow_runs/x/cancel").body == {"ok": True}
    assert len(pool.calls) == 3


@pytest.mark.parametrize(
    ("what", "make"), MAYBE_APPLIED + NOT_APPLIED, ids=[w for w, _ in MAYBE_APPLIED + NOT_APPLIED]
)
@pytest.mark.parametrize(
    "call",
    [
        {"method": "POST", "idempotent": True},
        {"method": "POST", "headers": {"Idempotency-Key": "k"}},
        {"method": "GET"},
        {"method": "PUT"},
        {"method": "DELETE"},
    ],
    ids=["post-with-client-id", "post-with-idempotency-key", "get", "put", "delete"],
)
def test_an_idempotent_request_is_repeated_after_any_transient_failure(
    what: str, make: Callable[[], Outcome], call: dict[str, Any]
) -> None:
    t, pool = transport([make(), make()])
    options = dict(call)
    method = options.pop("method")
    assert t.request(method, "/x", **options).body == {"ok": True}
    assert len(pool.calls) == 3


def test_idempotent_false_overrides_the_method() -> None:
    t, pool = transport([read_timeout()])
    with pytest.raises(ApiConnectionError):
        t.request("PUT", "/x", idempotent=False)
    assert len(pool.calls) == 1


def test_retries_still_run_out() -> None:
    t, pool = transport([read_timeout()] * 4 + [429] * 4)
    with pytest.raises(ApiConnectionError) as info:
        t.request("POST", "/x", idempotent=True)
    assert len(pool.calls) == 4 and "after 4 attempt(s)" in str(info.value)
    assert "not retried" not in str(info.value)
    with pytest.raises(Throttled):
        t.request("POST", "/x")
    assert len(pool.calls) == 8


def test_the_retry_delay_is_the_shared_backoff_policy_and_retry_after_wins() -> None:
    """Waits come from runtime.backoff.Backoff (full jitter under a doubling cap), or the
    server's Retry-After (at most max_retry_after) when it sent one."""
    t = ApiTransport(
        "http://127.0.0.1:9", backoff=0.1, max_backoff=0.5, max_retry_after=3.0, retries=6
    )
    assert (t.retry_backoff.base, t.retry_backoff.cap) == (0.1, 0.5)
    t._random.seed(7)
    for attempt, ceiling in enumerate([0.1, 0.2, 0.4, 0.5, 0.5]):
        assert t.retry_backoff.ceiling(attempt) == pytest.approx(ceiling)
        waits = [t.delay(attempt, None) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert min(waits) < ceiling / 2 < max(waits)  # full jitter: the whole range is used
    assert t.delay(0, 2.0) == 2.0
    assert t.delay(5, 60.0) == 3.0


def test_a_429_waits_the_retry_after_it_was_sent() -> None:
    t, pool = transport([429, 200])
    pool.script = []
    slept: list[float] = []
    t._sleep = slept.append

    def answer(method: str, url: str, **_: Any) -> FakeResponse:
        pool.calls.append((method, url))
        response = FakeResponse(429 if len(pool.calls) == 1 else 200)
        if response.status == 429:
            response.headers["Retry-After"] = "1.5"
        return response

    pool.request = answer  # type: ignore[method-assign]
    assert t.request("POST", "/flow_runs", json_body={}).body == {"ok": True}
    assert slept == [1.5] and len(pool.calls) == 2
