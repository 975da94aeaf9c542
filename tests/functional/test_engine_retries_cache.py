"""The engine's retries, caching and persisted results, end to end against moto in-process.

Every flow called here writes through the ``engine`` fixture (a DirectEngineClient on
a fresh installation); the assertions read back what was recorded, through the stores
or ``get_client``. Delays are tiny (10-50 ms) and waits are Events or deadlines.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runtime.engine.client import DirectEngineClient
from runtime.engine.context import current_flow_run
from runtime.models import TaskRun, TaskRunFilter
from runtime.states import State, StateType
from sdk import flow, get_client, task
from sdk.cache_policies import (
    DEFAULT,
    FLOW_PARAMETERS,
    INPUTS,
    NO_CACHE,
    RUN_ID,
    TASK_SOURCE,
    CacheKeyContext,
)
from sdk.exceptions import CacheKeyFailure, MissingResult
from sdk.tasks import exponential_backoff

# ---------------------------------------------------------------------- helpers


def flow_run_id() -> str:
    """The id of the flow run whose body calls this."""
    ctx = current_flow_run()
    assert ctx is not None
    return ctx.flow_run.id


def task_runs(engine: DirectEngineClient, flow_run: str) -> list[TaskRun]:
    """The recorded task runs of a flow run, oldest first."""
    page = engine.stores.runs.list_task_runs(TaskRunFilter(flow_run_id=flow_run))
    return sorted(page.items, key=lambda r: r.created)


def only_task_run(engine: DirectEngineClient, flow_run: str) -> TaskRun:
    runs = task_runs(engine, flow_run)
    assert len(runs) == 1, runs
    return runs[0]


def history(engine: DirectEngineClient, run_id: str) -> list[State]:
    return engine.stores.runs.read_state_history(run_id)


def names(states: list[State]) -> list[str]:
    return [s.name for s in states]


def retry_delays(states: list[State]) -> list[float]:
    """Seconds between each AwaitingRetry state and the time it schedules the retry for."""
    return [
        (s.details.scheduled_time - s.timestamp).total_seconds()
        for s in states
        if s.name == "AwaitingRetry" and s.details.scheduled_time is not None
    ]


def assert_delays(actual: list[float], expected: list[float]) -> None:
    """Measured retry delays match: the AwaitingRetry state is stamped a moment after the
    time its delay counts from, so a measured delay may be a little short, never long."""
    assert len(actual) == len(expected), (actual, expected)
    for got, want in zip(actual, expected, strict=True):
        assert want - 0.01 <= got <= want + 1e-6, (actual, expected)


def assert_retries_waited(states: list[State]) -> None:
    """Each Retrying state starts no earlier than the AwaitingRetry before it scheduled."""
    for before, after in itertools.pairwise(states):
        if before.name == "AwaitingRetry":
            assert after.name == "Retrying"
            assert before.details.scheduled_time is not None
            assert after.timestamp >= before.details.scheduled_time


class Counter:
    """A thread-safe call counter."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def bump(self) -> int:
        with self._lock:
            self.value += 1
            return self.value


# ====================================================================== retries


class TestTaskRetries:
    def test_number_delay_retries_until_success(self, engine: DirectEngineClient) -> None:
        calls = Counter()

        @task(retries=3, retry_delay_seconds=0.02)
        def flaky() -> str:
            if calls.bump() < 3:
                raise ValueError("not yet")
            return "done"

        @flow
        def run() -> tuple[str, str]:
            return flow_run_id(), flaky()

        fr, value = run()
        assert value == "done"
        assert calls.value == 3
        tr = only_task_run(engine, fr)
        states = history(engine, tr.id)
        assert names(states) == [
            "Pending",
            "Running",
            "AwaitingRetry",
            "Retrying",
            "AwaitingRetry",
            "Retrying",
            "Completed",
        ]
        assert [s.type for s in states if s.name == "AwaitingRetry"] == [StateType.SCHEDULED] * 2
        assert [s.details.retry_count for s in states if s.name == "AwaitingRetry"] == [1, 2]
        assert_delays(retry_delays(states), [0.02, 0.02])
        assert_retries_waited(states)
        assert tr.run_count == 3
        assert tr.state.name == "Completed"

    def test_list_of_delays_then_exhausted_raises_original(
        self, engine: DirectEngineClient
    ) -> None:
        raised: list[BaseException] = []

        @task(retries=2, retry_delay_seconds=[0.01, 0.03])
        def always_fails() -> None:
            exc = RuntimeError(f"boom {len(raised)}")
            raised.append(exc)
            raise exc

        ids: list[str] = []

        @flow
        def run() -> None:
            ids.append(flow_run_id())
            always_fails()

        with pytest.raises(RuntimeError, match="boom 2") as info:
            run()
        assert info.value is raised[-1]  # the original exception object, not a wrapper
        assert len(raised) == 3  # one run plus two retries
        tr = only_task_run(engine, ids[0])
        states = history(engine, tr.id)
        assert names(states) == [
            "Pending",
            "Running",
            "AwaitingRetry",
            "Retrying",
            "AwaitingRetry",
            "Retrying",
            "Failed",
        ]
        delays = retry_delays(states)
        assert_delays(delays, [0.01, 0.03])
        assert_retries_waited(states)
        assert tr.state.type is StateType.FAILED
        assert "boom 2" in (tr.state.message or "")
        # the flow run fails with the same error
        flow_states = engine.stores.runs.read_state_history(ids[0])
        assert names(flow_states)[-1] == "Failed"

    def test_exponential_backoff(self, engine: DirectEngineClient) -> None:
        calls = Counter()

        @task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=0.01))
        def flaky() -> int:
            n = calls.bump()
            if n <= 3:
                raise ValueError(f"attempt {n}")
            return n

        @flow
        def run() -> tuple[str, int]:
            return flow_run_id(), flaky()

        fr, value = run()
        assert value == 4
        states = history(engine, only_task_run(engine, fr).id)
        assert names(states).count("AwaitingRetry") == 3
        assert_delays(retry_delays(states), [0.01, 0.02, 0.04])
        assert_retries_waited(states)

    def test_exponential_backoff_rejects_negative_factor(self) -> None:
        with pytest.raises(ValueError, match="backoff_factor"):
            exponential_backoff(backoff_factor=-1)

    def test_retry_jitter_keeps_delays_within_bounds(self, engine: DirectEngineClient) -> None:
        calls = Counter()

        @task(retries=5, retry_delay_seconds=0.02, retry_jitter_factor=0.5)
        def flaky() -> int:
            n = calls.bump()
            if n <= 5:
                raise ValueError("again")
            return n

        @flow
        def run() -> tuple[str, int]:
            return flow_run_id(), flaky()

        fr, value = run()
        assert value == 6
        states = history(engine, only_task_run(engine, fr).id)
        delays = retry_delays(states)
        assert len(delays) == 5
        for delay in delays:  # 0.02 * (1 +/- 0.5), and a little clock slack
            assert 0.01 - 0.01 <= delay <= 0.03 + 1e-6
        assert_retries_waited(states)

    def test_bad_retry_options_are_rejected(self) -> None:
        with pytest.raises(ValueError, match="retries"):
            task(retries=-1)(lambda: None)
        with pytest.raises(ValueError, match="retry_delay_seconds"):
            task(retries=1, retry_delay_seconds=-0.1)(lambda: None)
        with pytest.raises(ValueError, match="retry_delay_seconds"):
            task(retries=1, retry_delay_seconds=[0.1, -1])(lambda: None)
        with pytest.raises(ValueError, match="retry_jitter_factor"):
            task(retries=1, retry_jitter_factor=-0.5)(lambda: None)

    def test_retry_condition_false_stops_retrying(self, engine: DirectEngineClient) -> None:
        calls = Counter()
        seen: list[tuple[str, str]] = []

        def only_value_errors(tsk: Any, task_run: TaskRun, state: State) -> bool:
            seen.append((task_run.name, state.name))
            try:
                state.result()
            except ValueError:
                return True
            except Exception:
                return False
            return False

        @task(retries=5, retry_delay_seconds=0.01, retry_condition_fn=only_value_errors)
        def picky() -> None:
            if calls.bump() == 1:
                raise ValueError("transient")
            raise TypeError("permanent")

        ids: list[str] = []

        @flow
        def run() -> None:
            ids.append(flow_run_id())
            picky()

        with pytest.raises(TypeError, match="permanent"):
            run()
        assert calls.value == 2  # the second failure was not retried, 4 retries were left
        assert len(seen) == 2
        states = history(engine, only_task_run(engine, ids[0]).id)
        assert names(states) == ["Pending", "Running", "AwaitingRetry", "Retrying", "Failed"]

    def test_retry_condition_that_raises_does_not_retry(self, engine: DirectEngineClient) -> None:
        calls = Counter()

        def broken(tsk: Any, task_run: TaskRun, state: State) -> bool:
            raise KeyError("bug in the condition")

        @task(retries=3, retry_delay_seconds=0.01, retry_condition_fn=broken)
        def failing() -> None:
            calls.bump()
            raise ValueError("original")

        ids: list[str] = []

        @flow
        def run() -> None:
            ids.append(flow_run_id())
            failing()

        with pytest.raises(ValueError, match="original"):
            run()
        assert calls.value == 1
        assert names(history(engine, only_task_run(engine, ids[0]).id)) == [
            "Pending",
            "Running",
            "Failed",
        ]

    def test_no_retries_fails_at_once(self, engine: DirectEngineClient) -> None:
        @task
        def failing() -> None:
            raise ValueError("once")

        @flow
        def run() -> tuple[str, State]:
            return flow_run_id(), failing(return_state=True)

        fr, state = run()
        assert state.type is StateType.FAILED
        assert isinstance(state.result(raise_on_failure=False), ValueError)
        assert names(history(engine, only_task_run(engine, fr).id)) == [
            "Pending",
            "Running",
            "Failed",
        ]


class TestFlowRetries:
    def test_flow_retries_rerun_the_body(self, engine: DirectEngineClient) -> None:
        calls = Counter()
        ids: list[str] = []

        @flow(retries=2, retry_delay_seconds=0.02)
        def flaky_flow() -> str:
            ids.append(flow_run_id())
            if calls.bump() < 2:
                raise ValueError("flow attempt failed")
            return "ok"

        assert flaky_flow() == "ok"
        assert calls.value == 2
        assert len(set(ids)) == 1  # the same flow run, run again
        states = engine.stores.runs.read_state_history(ids[0])
        assert names(states) == ["Pending", "Running", "AwaitingRetry", "Retrying", "Completed"]
        assert_delays(retry_delays(states), [0.02])
        assert_retries_waited(states)
        run = engine.stores.runs.read_flow_run(ids[0])
        assert run.run_count == 2
        assert run.state.type is StateType.COMPLETED

    def test_flow_retries_exhausted(self, engine: DirectEngineClient) -> None:
        calls = Counter()
        ids: list[str] = []

        @flow(retries=1, retry_delay_seconds=0.01)
        def broken_flow() -> None:
            ids.append(flow_run_id())
            raise LookupError(f"flow attempt {calls.bump()}")

        with pytest.raises(LookupError, match="flow attempt 2"):
            broken_flow()
        assert calls.value == 2
        states = engine.stores.runs.read_state_history(ids[0])
        assert names(states) == ["Pending", "Running", "AwaitingRetry", "Retrying", "Failed"]
        assert engine.stores.runs.read_flow_run(ids[0]).state.type is StateType.FAILED

    def test_flow_retry_reruns_its_tasks(self, engine: DirectEngineClient) -> None:
        task_calls = Counter()
        flow_calls = Counter()
        ids: list[str] = []

        @task
        def step() -> int:
            return task_calls.bump()

        @flow(retries=1, retry_delay_seconds=0.01)
        def run() -> int:
            ids.append(flow_run_id())
            value = step()
            if flow_calls.bump() == 1:
                raise ValueError("after the task")
            return value

        assert run() == 2
        runs = task_runs(engine, ids[0])
        assert len(runs) == 2
        assert all(r.state.name == "Completed" for r in runs)


# ====================================================================== caching


def cached_flow(tsk: Any) -> Any:
    """A flow that calls ``tsk(x)`` and returns (flow run id, task state)."""

    @flow
    def run(x: Any = 1, other: Any = None) -> tuple[str, State]:
        return flow_run_id(), tsk(x, return_state=True)

    return run


class TestCachePolicies:
    def test_inputs_second_run_is_cached_without_running(self, engine: DirectEngineClient) -> None:
        calls = Counter()

        @task(cache_policy=INPUTS)
        def compute(x: int) -> dict[str, int]:
            calls.bump()
            return {"x": x, "squared": x * x}

        run = cached_flow(compute)
        _, first = run(3)
        fr2, second = run(3)
        assert calls.value == 1
        assert first.name == "Completed"
        assert second.name == "Cached"
        assert second.type is StateType.COMPLETED
        assert second.result() == first.result() == {"x": 3, "squared": 9}
        assert second.details.cache_key == first.details.cache_key is not None
        # the recorded run says Cached too, and never ran
        tr = only_task_run(engine, fr2)
        assert tr.state.name == "Cached"
        assert names(history(engine, tr.id)) == ["Pending", "Cached"]
        assert tr.run_count == 0
        # a different input is a miss
        _, third = run(4)
        assert third.name == "Completed"
        assert calls.value == 2

    def test_task_source_ignores_inputs(self, engine: DirectEngineClient) -> None:
        calls = Counter()

        @task(cache_policy=TASK_SOURCE)
        def compute(x: int) -> int:
            return calls.bump()

        run = cached_flow(compute)
        _, first = run(1)
        _, second = run(2)
        assert second.name == "Cached"
        assert second.result() == first.result() == 1
        assert calls.value == 1

    def test_flow_parameters(self, engine: DirectEngineClient) -> None:
        calls = Counter()

        @task(cache_policy=FLOW_PARAMETERS)
        def compute(x: int) -> int:
            return calls.bump()

        run = cached_flow(compute)
        _, first = run(1, other="a")
        _, same_params = run(1, other="a")
        _, other_params = run(1, other="b")
        assert first.name == "Completed"
        assert same_params.name == "Cached"
        assert other_params.name == "Completed"
        assert calls.value == 2

    def test_run_id_caches_within_one_flow_run_only(self, engine: DirectEngineClient) -> None:
        calls = Counter()

        @task(cache_policy=RUN_ID)
        def compute(x: int) -> int:
            return calls.bump()

        @flow
        def run() -> list[str]:
            return [compute(1, return_state=True).name, compute(2, return_state=True).name]

        assert run() == ["Completed", "Cached"]
        assert run() == ["Completed", "Cached"]
        assert calls.value == 2

    def test_default_policy(self, engine: DirectEngineClient) -> None:
        calls = Counter()

        @task(cache_policy=DEFAULT)
        def compute(x: int) -> int:
            return calls.bump()

        @flow
        def run() -> list[str]:
            return [
                compute(1, return_state=True).name,
                compute(1, return_state=True).name,
                compute(2, return_state=True).name,
            ]

        assert run() == ["Completed", "Cached", "Completed"]
        assert run() == ["Completed", "Cached", "Completed"]  # RUN_ID: a new flow run misses
        assert calls.value == 4

    def test_persist_result_alone_caches_with_default(self, engine: DirectEngineClient) -> None:
        calls = Counter()

        @task(persist_result=True)
        def compute(x: int) -> int:
            return calls.bump()

        @flow
        def run() -> list[str]:
            return [compute(1, return_state=True).name, compute(1, return_state=True).name]

        assert run() == ["Completed", "Cached"]
        assert calls.value == 1

    def test_no_cache_never_caches_nor_persists(self, engine: DirectEngineClient) -> None:
        calls = Counter()

        @task(cache_policy=NO_CACHE)
        def compute(x: int) -> int:
            return calls.bump()

        run = cached_flow(compute)
        _, first = run(1)
        _, second = run(1)
        assert (first.name, second.name) == ("Completed", "Completed")
        assert calls.value == 2
        assert second.details.result is None
        with get_client(sync_client=True) as client:
            assert client.read_cache_entries() == []

    def test_combined_policies(self, engine: DirectEngineClient) -> None:
        calls = Counter()

        @task(cache_policy=INPUTS + TASK_SOURCE)
        def compute(x: int) -> int:
            return calls.bump()

        run = cached_flow(compute)
        assert [run(1)[1].name, run(1)[1].name, run(2)[1].name] == [
            "Completed",
            "Cached",
            "Completed",
        ]
        assert calls.value == 2

    def test_inputs_minus_parameter(self, engine: DirectEngineClient) -> None:
        calls = Counter()

        @task(cache_policy=INPUTS - "debug")
        def compute(x: int, debug: bool = False) -> int:
            calls.bump()
            return x * 10

        @flow
        def run() -> list[tuple[str, int]]:
            states = [
                compute(1, debug=False, return_state=True),
                compute(1, debug=True, return_state=True),
                compute(2, debug=True, return_state=True),
            ]
            return [(s.name, s.result()) for s in states]

        assert run() == [("Completed", 10), ("Cached", 10), ("Completed", 20)]
        assert calls.value == 2

    def test_unhashable_input_fails_loudly(self, engine: DirectEngineClient) -> None:
        calls = Counter()

        @task(cache_policy=INPUTS)
        def compute(lock: Any) -> int:
            return calls.bump()

        @flow
        def run() -> State:
            return compute(threading.Lock(), return_state=True)

        # a returned run state is the flow state's data (Prefect's return_value_to_state)
        state = run(return_state=True).result(raise_on_failure=False)
        assert state.type is StateType.FAILED
        assert "lock" in (state.message or "")
        assert isinstance(state.result(raise_on_failure=False), CacheKeyFailure)
        assert calls.value == 0


class TestCacheKeyFn:
    def test_cache_key_fn_receives_context_and_parameters(self, engine: DirectEngineClient) -> None:
        calls = Counter()
        contexts: list[CacheKeyContext] = []

        def key_fn(context: CacheKeyContext, parameters: dict[str, Any]) -> str:
            contexts.append(context)
            return f"n-{parameters['n'] % 10}"

        @task(cache_key_fn=key_fn)
        def compute(n: int) -> int:
            calls.bump()
            return n

        run = cached_flow(compute)
        _, first = run(3)
        _, second = run(13)  # same key: 13 % 10 == 3
        assert second.name == "Cached"
        assert second.result() == 3
        assert calls.value == 1
        assert first.details.cache_key == "n-3"
        assert contexts[0].parameters == {"n": 3}
        assert contexts[0].task_key == compute.task_key
        assert contexts[0].flow_run_id is not None
        with get_client(sync_client=True) as client:
            assert [e.key for e in client.read_cache_entries()] == ["n-3"]

    def test_cache_key_fn_returning_none_skips_the_cache(self, engine: DirectEngineClient) -> None:
        calls = Counter()

        @task(cache_key_fn=lambda ctx, params: None)
        def compute(n: int) -> int:
            return calls.bump()

        run = cached_flow(compute)
        assert [run(1)[1].name, run(1)[1].name] == ["Completed", "Completed"]
        assert calls.value == 2

    def test_raising_cache_key_fn_fails_the_task_and_writes_nothing(
        self, engine: DirectEngineClient
    ) -> None:
        calls = Counter()

        def key_fn(context: CacheKeyContext, parameters: dict[str, Any]) -> str:
            raise KeyError("no such field")

        @task(cache_key_fn=key_fn, retries=2, retry_delay_seconds=0.01)
        def compute(n: int) -> int:
            return calls.bump()

        ids: list[str] = []

        @flow
        def run() -> int:
            ids.append(flow_run_id())
            return compute(1)

        with pytest.raises(CacheKeyFailure, match="no such field") as info:
            run()
        assert isinstance(info.value.__cause__, KeyError)
        assert calls.value == 0  # the task never ran, and was not retried
        tr = only_task_run(engine, ids[0])
        assert tr.state.type is StateType.FAILED
        assert "no such field" in (tr.state.message or "")
        assert names(history(engine, tr.id)) == ["Pending", "Failed"]
        assert engine.stores.runs.read_flow_run(ids[0]).state.type is StateType.FAILED
        with get_client(sync_client=True) as client:
            assert client.read_cache_entries() == []

    def test_cache_key_fn_returning_a_non_string_fails(self, engine: DirectEngineClient) -> None:
        @task(cache_key_fn=lambda ctx, params: 42)
        def compute(n: int) -> int:
            return n

        @flow
        def run() -> State:
            return compute(1, return_state=True)

        # a returned run state is the flow state's data (Prefect's return_value_to_state)
        state = run(return_state=True).result(raise_on_failure=False)
        assert state.type is StateType.FAILED
        assert isinstance(state.result(raise_on_failure=False), CacheKeyFailure)
        assert "must be a str" in (state.message or "")

    def test_cache_key_fn_and_cache_policy_are_exclusive(self) -> None:
        with pytest.raises(ValueError, match="not both"):
            task(cache_key_fn=lambda c, p: "k", cache_policy=INPUTS)(lambda: None)


class TestCacheLifecycle:
    def test_expired_entry_is_recomputed(self, engine: DirectEngineClient) -> None:
        calls = Counter()

        @task(cache_policy=INPUTS, cache_expiration=timedelta(milliseconds=30))
        def compute(x: int) -> int:
            return calls.bump()

        run = cached_flow(compute)
        before = datetime.now(UTC)
        _, first = run(1)
        after = datetime.now(UTC)
        expires = first.details.cache_expiration
        assert expires is not None
        ttl = timedelta(milliseconds=30)
        assert before + ttl < expires <= after + ttl
        deadline = time.monotonic() + 5
        while datetime.now(UTC) <= expires:  # wait until the entry has expired
            assert time.monotonic() < deadline
            time.sleep(0.005)
        _, second = run(1)
        assert second.name == "Completed"
        assert second.result() == 2
        assert calls.value == 2

    def test_entry_expired_through_the_store_is_recomputed(
        self, engine: DirectEngineClient
    ) -> None:
        calls = Counter()

        @task(cache_policy=INPUTS, cache_expiration=timedelta(hours=1))
        def compute(x: int) -> int:
            return calls.bump()

        run = cached_flow(compute)
        _, first = run(1)
        assert run(1)[1].name == "Cached"  # not expired yet
        key = first.details.cache_key
        assert key is not None
        cache = engine.stores.cache
        record = cache.read(key)
        assert record is not None
        assert record.expires_at == first.details.cache_expiration
        cache.clear(key=key)
        past = datetime.now(UTC) - timedelta(seconds=1)
        assert cache.lock(key, "test", 60)  # only a lock's owner writes a record
        cache.write(key, record.model_copy(update={"expires_at": past}), owner="test")
        assert cache.read(key) is None
        _, third = run(1)
        assert third.name == "Completed"
        assert third.result() == 2
        assert run(1)[1].name == "Cached"  # the new entry is live again
        assert calls.value == 2

    def test_refresh_cache_recomputes_and_replaces_the_entry(
        self, engine: DirectEngineClient
    ) -> None:
        calls = Counter()

        @task(cache_policy=INPUTS)
        def compute(x: int) -> int:
            return calls.bump()

        run = cached_flow(compute)
        refreshing = cached_flow(compute.with_options(refresh_cache=True))
        assert run(1)[1].result() == 1
        _, refreshed = refreshing(1)
        assert refreshed.name == "Completed"
        assert refreshed.result() == 2
        _, again = run(1)
        assert again.name == "Cached"
        assert again.result() == 2  # the refreshed value replaced the old entry
        assert calls.value == 2

    def test_failed_run_writes_no_entry_and_frees_the_key(self, engine: DirectEngineClient) -> None:
        calls = Counter()

        @task(cache_policy=INPUTS)
        def compute(x: int) -> int:
            if calls.bump() == 1:
                raise ValueError("first call fails")
            return 7

        run = cached_flow(compute)
        _, failed = run(1)
        assert failed.type is StateType.FAILED
        with get_client(sync_client=True) as client:
            assert client.read_cache_entries() == []
        _, ok = run(1)  # not blocked by a lock left behind
        assert ok.name == "Completed"
        assert ok.result() == 7

    def test_read_and_clear_cache_entries(self, engine: DirectEngineClient) -> None:
        calls = Counter()

        @task(cache_policy=INPUTS)
        def compute(x: int) -> int:
            calls.bump()
            return x

        @task(cache_policy=INPUTS)
        def other(x: str) -> str:
            return x

        run = cached_flow(compute)
        _, state = run(5)
        cached_flow(other)("a")
        with get_client(sync_client=True) as client:
            entries = client.read_cache_entries()
            assert len(entries) == 2
            mine = client.read_cache_entries(task_key=compute.task_key)
            assert len(mine) == 1
            entry = mine[0]
            assert entry.key == state.details.cache_key
            assert entry.task_key == compute.task_key
            assert entry.result == state.details.result
            assert client.clear_cache(key=entry.key) == 1
            assert client.clear_cache(key=entry.key) == 0
            assert [e.task_key for e in client.read_cache_entries()] == [other.task_key]
        _, after_clear = run(5)
        assert after_clear.name == "Completed"
        assert calls.value == 2
        with get_client(sync_client=True) as client:
            assert client.clear_cache(task_key=compute.task_key) == 1
            assert client.clear_cache() == 1  # everything left: the other task's entry
            assert client.read_cache_entries() == []

    def test_caching_turns_persistence_on(self, engine: DirectEngineClient) -> None:
        @task(cache_policy=INPUTS)
        def compute(x: int) -> list[int]:
            return [x, x]

        fr, state = cached_flow(compute)(2)
        assert state.details.result is not None
        stored = only_task_run(engine, fr).state
        assert stored.details.result == state.details.result
        assert stored.details.cache_key == state.details.cache_key
        assert stored.result() == [2, 2]

    def test_cached_result_survives_another_task_with_same_inputs_only_by_key(
        self, engine: DirectEngineClient
    ) -> None:
        """Cache records are shared across flows: another flow gets the entry by key."""
        calls = Counter()

        @task(cache_key_fn=lambda ctx, p: f"shared-{p['x']}")
        def compute(x: int) -> int:
            calls.bump()
            return x + 100

        @flow
        def flow_a() -> int:
            return compute(1)

        @flow
        def flow_b() -> State:
            return compute(1, return_state=True)

        assert flow_a() == 101
        state = flow_b()
        assert state.name == "Cached"
        assert state.result() == 101
        assert calls.value == 1


class TestConcurrentCaching:
    def _spy_waiting(self, engine: DirectEngineClient, monkeypatch: pytest.MonkeyPatch) -> Any:
        """An Event set when a run starts waiting for another run's cache lock."""
        waiting = threading.Event()
        cache = engine.stores.cache
        original = cache.wait_for

        def wait_for(key: str, timeout: float, poll: float = 0.05) -> Any:
            waiting.set()
            return original(key, timeout, poll=0.005)

        monkeypatch.setattr(cache, "wait_for", wait_for)
        return waiting

    def test_two_flows_in_threads_compute_once(
        self, engine: DirectEngineClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        waiting = self._spy_waiting(engine, monkeypatch)
        entered = threading.Event()
        release = threading.Event()
        calls = Counter()

        @task(cache_policy=INPUTS)
        def slow(x: int) -> str:
            calls.bump()
            entered.set()
            assert release.wait(10)
            return f"value-{x}"

        run = cached_flow(slow)
        results: dict[str, tuple[str, State]] = {}
        errors: list[BaseException] = []

        def call(name: str) -> None:
            try:
                results[name] = run(1)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        first = threading.Thread(target=call, args=("first",))
        first.start()
        assert entered.wait(10)  # the first run holds the key and is computing
        second = threading.Thread(target=call, args=("second",))
        second.start()
        assert waiting.wait(10)  # the second run found the key locked and waits
        release.set()
        first.join(10)
        second.join(10)
        assert not errors
        assert calls.value == 1
        assert results["first"][1].name == "Completed"
        assert results["second"][1].name == "Cached"
        assert results["first"][1].result() == results["second"][1].result() == "value-1"
        tr = only_task_run(engine, results["second"][0])
        assert tr.state.name == "Cached"

    def test_two_submits_in_one_flow_compute_once(
        self, engine: DirectEngineClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        waiting = self._spy_waiting(engine, monkeypatch)
        release = threading.Event()
        calls = Counter()

        @task(cache_policy=INPUTS)
        def slow(x: int) -> int:
            calls.bump()
            assert release.wait(10)
            return x * 2

        @flow
        def run() -> list[State]:
            futures = [slow.submit(21), slow.submit(21)]
            assert waiting.wait(10)  # one computes, the other waits for its record
            release.set()
            for future in futures:
                future.wait(10)
            return [f.state for f in futures]

        states = run()
        assert sorted(s.name for s in states) == ["Cached", "Completed"]
        assert [s.result() for s in states] == [42, 42]
        assert calls.value == 1

    def test_waiter_takes_over_when_the_computing_run_fails(
        self, engine: DirectEngineClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        waiting = self._spy_waiting(engine, monkeypatch)
        entered = threading.Event()
        release = threading.Event()
        calls = Counter()

        @task(cache_policy=INPUTS)
        def slow(x: int) -> int:
            n = calls.bump()
            if n == 1:
                entered.set()
                assert release.wait(10)
                raise ValueError("the first computation fails")
            return n

        @flow
        def run() -> list[State]:
            first = slow.submit(1)
            assert entered.wait(10)
            second = slow.submit(1)
            assert waiting.wait(10)
            release.set()
            first.wait(10)
            second.wait(10)
            return [first.state, second.state]

        first, second = run()
        assert first.type is StateType.FAILED
        assert second.name == "Completed"
        assert second.result() == 2
        assert calls.value == 2


# ====================================================================== results


@dataclass(frozen=True)
class Point:
    x: int
    y: int


class TestPersistedResults:
    def _stored_state(self, engine: DirectEngineClient, fr: str) -> State:
        """The task run's final state as read back from the store: no in-memory data."""
        tr = only_task_run(engine, fr)
        state = engine.stores.runs.read_task_run(tr.id).state
        assert not state.has_data
        return state

    def test_json_result_inline(self, engine: DirectEngineClient) -> None:
        @task(persist_result=True, result_serializer="json", cache_policy=NO_CACHE)
        def compute(x: int) -> dict[str, Any]:
            return {"x": x, "items": [1, 2, 3]}

        fr, state = cached_flow(compute)(5)
        ref = state.details.result
        assert ref is not None
        assert ref.serializer == "json"
        assert ref.storage_key is None
        assert ref.inline is not None and '"items"' in ref.inline
        stored = self._stored_state(engine, fr)
        assert stored.details.result == ref
        assert stored.result() == {"x": 5, "items": [1, 2, 3]}

    def test_pickle_result_inline(self, engine: DirectEngineClient) -> None:
        @task(persist_result=True, result_serializer="pickle")
        def compute(x: int) -> Point:
            return Point(x, x + 1)

        fr, state = cached_flow(compute)(5)
        ref = state.details.result
        assert ref is not None and ref.serializer == "pickle" and ref.inline is not None
        assert self._stored_state(engine, fr).result() == Point(5, 6)

    @pytest.mark.parametrize("serializer", ["json", "pickle"])
    def test_large_result_goes_to_s3(self, engine: DirectEngineClient, serializer: str) -> None:
        limit = engine.stores.results.inline_max_bytes
        big = "x" * (limit + 1000)

        @task(persist_result=True, result_serializer=serializer)
        def compute(x: int) -> str:
            return big

        fr, state = cached_flow(compute)(1)
        ref = state.details.result
        assert ref is not None
        assert ref.inline is None
        assert ref.storage_key is not None
        bucket = engine.stores.specs.results.name
        assert ref.storage_key.startswith(f"s3://{bucket}/results/")
        assert engine.stores.results.exists(ref.storage_key)
        assert self._stored_state(engine, fr).result() == big

    def test_result_storage_key_is_predictable(self, engine: DirectEngineClient) -> None:
        @task(
            persist_result=True,
            result_serializer="json",
            result_storage_key="fixed-{parameters[x]}",
        )
        def compute(x: int) -> int:
            return x * 3

        fr, state = cached_flow(compute)(7)
        bucket = engine.stores.specs.results.name
        assert state.details.result is not None
        assert state.details.result.storage_key == f"s3://{bucket}/results/fixed-7"
        s3 = engine.stores.results.s3
        body = s3.get_object(Bucket=bucket, Key="results/fixed-7")["Body"].read()
        assert body == b"21"
        assert self._stored_state(engine, fr).result() == 21

    def test_bad_result_storage_key_fails_the_task(self, engine: DirectEngineClient) -> None:
        @task(persist_result=True, result_storage_key="fixed-{parameters[missing]}")
        def compute(x: int) -> int:
            return x

        fr, state = cached_flow(compute)(1)
        assert state.type is StateType.FAILED
        assert "result_storage_key" in (state.message or "")
        assert only_task_run(engine, fr).state.type is StateType.FAILED

    def test_unserializable_result_fails_the_task(self, engine: DirectEngineClient) -> None:
        @task(persist_result=True, result_serializer="json")
        def compute(x: int) -> Any:
            return threading.Lock()

        fr, state = cached_flow(compute)(1)
        assert state.type is StateType.FAILED
        assert "json" in (state.message or "").lower()
        stored = only_task_run(engine, fr).state
        assert stored.type is StateType.FAILED
        with get_client(sync_client=True) as client:
            assert client.read_cache_entries() == []

    def test_unpersisted_result_read_from_the_store(self, engine: DirectEngineClient) -> None:
        @task
        def compute(x: int) -> int:
            return x

        fr, state = cached_flow(compute)(1)
        assert state.result() == 1  # in memory, in the process that ran it
        assert state.details.result is None
        stored = self._stored_state(engine, fr)
        assert stored.type is StateType.COMPLETED
        with pytest.raises(MissingResult, match="persist_result=True"):
            stored.result()

    def test_failed_state_read_from_the_store_raises_its_message(
        self, engine: DirectEngineClient
    ) -> None:
        @task
        def compute(x: int) -> int:
            raise ValueError("stored failure")

        fr, _ = cached_flow(compute)(1)
        stored = self._stored_state(engine, fr)
        with pytest.raises(Exception, match="stored failure"):
            stored.result()

    def test_persist_false_with_caching_is_rejected_at_decoration(self) -> None:
        with pytest.raises(ValueError, match="persist_result=False"):
            task(persist_result=False, cache_policy=INPUTS)(lambda x: x)
        with pytest.raises(ValueError, match="persist_result=False"):
            task(persist_result=False, cache_key_fn=lambda c, p: "k")(lambda x: x)
        # explicitly not caching is fine
        t = task(persist_result=False, cache_policy=NO_CACHE)(lambda x: x)
        assert t.cache_policy is None and not t.should_persist

    def test_unknown_serializer_is_rejected(self) -> None:
        with pytest.raises(ValueError, match="result_serializer"):
            task(result_serializer="yaml")(lambda: None)

    def test_flow_result_persisted(self, engine: DirectEngineClient) -> None:
        ids: list[str] = []

        @flow(persist_result=True, result_serializer="json")
        def run() -> list[int]:
            ids.append(flow_run_id())
            return [1, 2]

        assert run() == [1, 2]
        stored = engine.stores.runs.read_flow_run(ids[0]).state
        assert not stored.has_data
        assert stored.details.result is not None
        assert stored.result() == [1, 2]

    def test_unserializable_flow_result_fails_the_flow(self, engine: DirectEngineClient) -> None:
        ids: list[str] = []

        @flow(persist_result=True, result_serializer="json")
        def run() -> Any:
            ids.append(flow_run_id())
            return threading.Lock()

        state = run(return_state=True)
        assert state.type is StateType.FAILED
        assert "json" in (state.message or "").lower()
        stored = engine.stores.runs.read_flow_run(ids[0]).state
        assert stored.type is StateType.FAILED  # not left Running
