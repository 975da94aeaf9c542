"""Futures of submitted task runs, ``map``, ``wait``/``as_completed`` and upstream failures.

Flows run against a fresh moto in-process installation (the ``engine``
fixture); the tests check both what the futures report and what the stores
recorded. Ordering is forced with ``threading.Event``: a task that must
finish last waits on an event the test (or another task) sets, with a long
timeout so a bug shows as a failure rather than a hang.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from runtime.engine.client import DirectEngineClient
from runtime.models import FlowRun, FlowRunFilter, TaskRun, TaskRunFilter
from runtime.states import StateType
from sdk import PrefectFuture, PrefectFutureList, allow_failure, flow, task, unmapped
from sdk.exceptions import UpstreamTaskError
from sdk.futures import DoneAndNotDoneFutures, as_completed, wait

BLOCK_SECONDS = 30.0
"""How long a deliberately blocked task would wait if nothing released it."""


class Boom(Exception):
    """The user's own exception."""


def only_flow_run(engine: DirectEngineClient) -> FlowRun:
    runs = list(engine.stores.runs.list_flow_runs(FlowRunFilter()).items)
    assert len(runs) == 1, runs
    return runs[0]


def task_runs(engine: DirectEngineClient, flow_run_id: str | None = None) -> dict[str, TaskRun]:
    """Task runs by id."""
    page = engine.stores.runs.list_task_runs(TaskRunFilter(flow_run_id=flow_run_id))
    return {r.id: r for r in page.items}


def history(engine: DirectEngineClient, run_id: str) -> list[str]:
    return [s.name for s in engine.stores.runs.read_state_history(run_id)]


# ---------------------------------------------------------------------- submit


class TestSubmit:
    def test_submit_returns_a_future(self, engine: DirectEngineClient) -> None:
        @task
        def double(x: int) -> int:
            return 2 * x

        @flow
        def f() -> tuple[Any, ...]:
            future = double.submit(21)
            assert isinstance(future, PrefectFuture)
            future.wait()
            assert future.done()
            return future.task_run_id, future.result(timeout=BLOCK_SECONDS), future.state

        run_id, value, state = f()
        assert value == 42
        assert state.type is StateType.COMPLETED and state.result() == 42
        run = task_runs(engine, only_flow_run(engine).id)[run_id]
        assert run.name == "double-0"
        assert history(engine, run.id) == ["Pending", "Running", "Completed"]

    def test_state_is_live_before_the_run_finishes(self, engine: DirectEngineClient) -> None:
        started = threading.Event()
        release = threading.Event()

        @task
        def blocked() -> str:
            started.set()
            assert release.wait(BLOCK_SECONDS)
            return "done"

        @flow
        def f() -> list[str]:
            future = blocked.submit()
            assert started.wait(BLOCK_SECONDS)
            seen = [future.state.name, str(future.done())]
            future.wait(timeout=0.01)  # returns without the run being final
            seen.append(str(future.done()))
            release.set()
            seen.append(future.result(timeout=BLOCK_SECONDS))
            seen.append(future.state.name)
            return seen

        assert f() == ["Running", "False", "False", "done", "Completed"]

    def test_result_timeout_on_a_blocked_task_raises_timeout_error(
        self, engine: DirectEngineClient
    ) -> None:
        release = threading.Event()

        @task
        def blocked() -> int:
            assert release.wait(BLOCK_SECONDS)
            return 1

        @flow
        def f() -> int:
            future = blocked.submit()
            try:
                with pytest.raises(TimeoutError, match="blocked"):
                    future.result(timeout=0.01)
                assert not future.done()
            finally:
                release.set()
            return future.result(timeout=BLOCK_SECONDS)

        assert f() == 1
        assert only_flow_run(engine).state.type is StateType.COMPLETED

    def test_failed_future_raises_original_exception(self, engine: DirectEngineClient) -> None:
        error = Boom("submitted")

        @task
        def bad() -> None:
            raise error

        @flow
        def f() -> tuple[Any, ...]:
            future = bad.submit()
            with pytest.raises(Boom) as info:
                future.result()
            assert info.value is error
            return future.state, future.result(raise_on_failure=False)

        state, returned = f()  # the flow handled it: completes
        assert state.type is StateType.FAILED
        assert returned is error
        assert only_flow_run(engine).state.type is StateType.COMPLETED

    def test_unwaited_failed_future_does_not_fail_the_flow(
        self, engine: DirectEngineClient
    ) -> None:
        @task
        def bad() -> None:
            raise Boom("ignored")

        @flow
        def f() -> str:
            bad.submit()
            return "ok"

        assert f() == "ok"
        run = only_flow_run(engine)
        (tr,) = task_runs(engine, run.id).values()
        assert tr.state.type is StateType.FAILED  # finished before the flow's final state

    def test_returning_a_future_gives_its_final_state(self, engine: DirectEngineClient) -> None:
        """A returned future becomes its final state (Prefect's ``FlowRunEngine.handle_success``
        calls ``resolve_futures_to_states``, src/prefect/flow_engine.py); its value is the
        state's result."""

        @task
        def one() -> int:
            return 1

        @flow
        def f() -> Any:
            return {"value": one.submit()}

        returned = f()
        assert set(returned) == {"value"}
        assert returned["value"].type is StateType.COMPLETED
        assert returned["value"].result() == 1

    def test_returning_a_failed_future_fails_the_flow(self, engine: DirectEngineClient) -> None:
        @task
        def bad() -> None:
            raise Boom("returned")

        @flow
        def f() -> Any:
            return bad.submit()

        state = f(return_state=True)
        assert state.type is StateType.FAILED
        assert only_flow_run(engine).state.type is StateType.FAILED

    def test_submit_rejects_return_state_and_bad_arguments(
        self, engine: DirectEngineClient
    ) -> None:
        @task
        def t(x: int) -> int:
            return x

        @flow
        def f() -> None:
            with pytest.raises(TypeError, match=r"future\.state"):
                t.submit(1, return_state=True)
            with pytest.raises(TypeError, match="too many"):
                t.submit(1, 2)

        f()
        assert task_runs(engine, only_flow_run(engine).id) == {}

    def test_submit_outside_a_flow(self, engine: DirectEngineClient) -> None:
        @task
        def lonely(x: int) -> int:
            return x + 1

        future = lonely.submit(1)
        assert future.result(timeout=BLOCK_SECONDS) == 2
        (run,) = task_runs(engine).values()
        assert run.id == future.task_run_id and run.flow_run_id is None


# ---------------------------------------------------------------------- map


class TestMap:
    def test_map_over_lists_with_unmapped(self, engine: DirectEngineClient) -> None:
        @task
        def scale(x: int, factors: list[int], offset: int = 0) -> list[int]:
            return [x * f + offset for f in factors]

        @flow
        def f() -> list[list[int]]:
            futures = scale.map([1, 2, 3], unmapped([10, 100]), offset=unmapped(5))
            assert isinstance(futures, PrefectFutureList)
            assert len(futures) == 3
            return futures.result()

        assert f() == [[15, 105], [25, 205], [35, 305]]
        runs = task_runs(engine, only_flow_run(engine).id).values()
        assert sorted(r.name for r in runs) == ["scale-0", "scale-1", "scale-2"]
        assert all(r.state.type is StateType.COMPLETED for r in runs)

    def test_map_over_several_iterables_and_a_static_scalar(
        self, engine: DirectEngineClient
    ) -> None:
        @task
        def add(a: int, b: int, c: int) -> int:
            return a + b + c

        @flow
        def f() -> list[int]:
            return add.map([1, 2], (10, 20), 100).result()

        assert f() == [111, 122]

    def test_map_strings_are_not_iterated(self, engine: DirectEngineClient) -> None:
        @task
        def tag(x: int, label: str) -> str:
            return f"{label}{x}"

        @flow
        def f() -> list[str]:
            return tag.map(range(3), "n").result()

        assert f() == ["n0", "n1", "n2"]

    def test_map_over_futures_resolves_them_in_order(self, engine: DirectEngineClient) -> None:
        """The first upstream finishes last; results still come back in input order."""
        last_done = threading.Event()

        @task
        def produce(i: int) -> int:
            if i == 0:
                assert last_done.wait(BLOCK_SECONDS)
            if i == 2:
                last_done.set()
            return i * 10

        @task
        def consume(x: int, plus: int) -> int:
            return x + plus

        @flow
        def f() -> tuple[list[int], list[str], list[str]]:
            upstream = produce.map([0, 1, 2])
            downstream = consume.map(upstream, unmapped(1))
            values = downstream.result(timeout=BLOCK_SECONDS)
            return values, [u.task_run_id for u in upstream], [d.task_run_id for d in downstream]

        values, upstream_ids, downstream_ids = f()
        assert values == [1, 11, 21]
        runs = task_runs(engine, only_flow_run(engine).id)
        for up_id, down_id in zip(upstream_ids, downstream_ids, strict=True):
            assert runs[down_id].task_inputs == {"x": [up_id]}

    def test_map_with_different_lengths_is_a_value_error(self, engine: DirectEngineClient) -> None:
        @task
        def add(a: int, b: int) -> int:
            return a + b

        @flow
        def f() -> None:
            add.map([1, 2, 3], [1, 2])

        with pytest.raises(ValueError, match="different lengths"):
            f()
        run = only_flow_run(engine)
        assert run.state.type is StateType.FAILED
        assert task_runs(engine, run.id) == {}  # nothing was submitted

    def test_map_with_nothing_to_iterate_is_a_value_error(self, engine: DirectEngineClient) -> None:
        @task
        def t(x: int) -> int:
            return x

        @flow
        def f() -> None:
            t.map(unmapped([1, 2]))

        with pytest.raises(ValueError, match="iterable"):
            f()

    def test_map_over_empty_list(self, engine: DirectEngineClient) -> None:
        @task
        def t(x: int) -> int:
            return x

        @flow
        def f() -> list[int]:
            return t.map([]).result()

        assert f() == []

    def test_map_with_a_failing_element(self, engine: DirectEngineClient) -> None:
        @task
        def inverse(x: int) -> float:
            return 1 / x

        @flow
        def f() -> tuple[list[str], list[Any]]:
            futures = inverse.map([1, 0, 2])
            futures.wait()
            return [fut.state.name for fut in futures], futures.result(raise_on_failure=False)

        names, values = f()
        assert names == ["Completed", "Failed", "Completed"]
        assert values[0] == 1.0 and values[2] == 0.5
        assert isinstance(values[1], ZeroDivisionError)


# ---------------------------------------------------------------------- wait / as_completed


class TestWaitAndAsCompleted:
    def test_as_completed_yields_in_completion_order(self, engine: DirectEngineClient) -> None:
        release_slow = threading.Event()

        @task
        def slow() -> str:
            assert release_slow.wait(BLOCK_SECONDS)
            return "slow"

        @task
        def fast() -> str:
            return "fast"

        @flow
        def f() -> list[str]:
            futures = [slow.submit(), fast.submit()]
            order = []
            for future in as_completed(futures, timeout=BLOCK_SECONDS):
                order.append(future.result())
                release_slow.set()  # only once the fast one has come out
            return order

        assert f() == ["fast", "slow"]

    def test_as_completed_timeout(self, engine: DirectEngineClient) -> None:
        release = threading.Event()

        @task
        def blocked() -> None:
            assert release.wait(BLOCK_SECONDS)

        @flow
        def f() -> None:
            future = blocked.submit()
            try:
                with pytest.raises(TimeoutError):
                    list(as_completed([future], timeout=0.01))
            finally:
                release.set()

        f()

    def test_wait_splits_done_and_not_done(self, engine: DirectEngineClient) -> None:
        release_slow = threading.Event()

        @task
        def slow() -> str:
            assert release_slow.wait(BLOCK_SECONDS)
            return "slow"

        @task
        def fast() -> str:
            return "fast"

        @flow
        def f() -> None:
            s, q = slow.submit(), fast.submit()
            q.wait()
            try:
                partial = wait([s, q], timeout=0.01)
                assert isinstance(partial, DoneAndNotDoneFutures)
                assert partial.done == {q} and partial.not_done == {s}
            finally:
                release_slow.set()
            complete = wait([s, q])
            assert complete.done == {s, q} and complete.not_done == set()

        f()

    def test_future_list_wait(self, engine: DirectEngineClient) -> None:
        @task
        def t(x: int) -> int:
            return x

        @flow
        def f() -> bool:
            futures = t.map([1, 2, 3])
            futures.wait()
            return all(fut.done() for fut in futures)

        assert f() is True


# ---------------------------------------------------------------------- dependencies


class TestWaitFor:
    def test_wait_for_orders_runs_without_passing_data(self, engine: DirectEngineClient) -> None:
        release_first = threading.Event()
        order: list[str] = []

        @task
        def first() -> None:
            assert release_first.wait(BLOCK_SECONDS)
            order.append("first")

        @task
        def second() -> None:
            order.append("second")

        @flow
        def f() -> tuple[str, str]:
            up = first.submit()
            down = second.submit(wait_for=[up])
            try:
                down.wait(timeout=0.05)
                assert not down.done()  # cannot finish while its upstream is blocked
            finally:
                release_first.set()
            down.result(timeout=BLOCK_SECONDS)
            return up.task_run_id, down.task_run_id

        up_id, down_id = f()
        assert order == ["first", "second"]
        runs = task_runs(engine, only_flow_run(engine).id)
        assert runs[down_id].task_inputs == {"wait_for": [up_id]}

    def test_wait_for_on_a_direct_call(self, engine: DirectEngineClient) -> None:
        order: list[str] = []

        @task
        def first() -> None:
            order.append("first")

        @task
        def second() -> None:
            order.append("second")

        @flow
        def f() -> None:
            up = first.submit()
            second(wait_for=[up])

        f()
        assert order == ["first", "second"]

    def test_wait_for_a_failed_upstream_does_not_run(self, engine: DirectEngineClient) -> None:
        ran: list[int] = []

        @task
        def bad() -> None:
            raise Boom("upstream")

        @task
        def after() -> None:
            ran.append(1)

        @flow
        def f() -> str:
            up = bad.submit()
            down = after.submit(wait_for=[up])
            with pytest.raises(UpstreamTaskError, match="bad-0"):
                down.result()
            assert down.state.type is StateType.FAILED
            return down.task_run_id

        down_id = f()
        assert ran == []
        runs = task_runs(engine)
        assert runs[down_id].state.type is StateType.FAILED
        assert history(engine, down_id) == ["Pending", "Failed"]


class TestUpstreamFailure:
    def test_downstream_of_a_failed_task_does_not_run(self, engine: DirectEngineClient) -> None:
        calls = {"downstream": 0}

        @task(task_run_name="broken-upstream")
        def bad() -> int:
            raise Boom("upstream broke")

        @task
        def downstream(x: int) -> int:
            calls["downstream"] += 1
            return x

        @flow
        def f() -> tuple[str, str, str]:
            up = bad.submit()
            down = downstream.submit(up)
            down.wait()
            assert down.state.type is StateType.FAILED
            with pytest.raises(UpstreamTaskError, match="broken-upstream"):
                down.result()
            return up.task_run_id, down.task_run_id, down.state.message or ""

        up_id, down_id, message = f()
        assert calls["downstream"] == 0
        assert "broken-upstream" in message  # names the upstream task run
        assert "Failed" in message
        runs = task_runs(engine, only_flow_run(engine).id)
        assert runs[down_id].state.type is StateType.FAILED
        assert runs[down_id].state.message == message
        assert runs[down_id].task_inputs == {"x": [up_id]}
        assert history(engine, down_id) == ["Pending", "Failed"]

    def test_message_names_the_upstream_run_by_default_name(
        self, engine: DirectEngineClient
    ) -> None:
        @task
        def bad() -> int:
            raise Boom("x")

        @task
        def downstream(x: int) -> int:
            return x

        @flow
        def f() -> str:
            bad.submit()  # bad-0
            down = downstream.submit(bad.submit())  # upstream is bad-1
            down.wait()
            return down.state.message or ""

        assert "bad-1" in f()

    def test_upstream_failure_propagates_through_a_chain(self, engine: DirectEngineClient) -> None:
        calls: list[str] = []

        @task
        def bad() -> int:
            raise Boom("root")

        @task
        def middle(x: int) -> int:
            calls.append("middle")
            return x

        @task
        def last(x: int) -> int:
            calls.append("last")
            return x

        @flow
        def f() -> int:
            return last.submit(middle.submit(bad.submit())).result()

        with pytest.raises(UpstreamTaskError, match="middle"):
            f()
        assert calls == []
        run = only_flow_run(engine)
        assert run.state.type is StateType.FAILED
        states = sorted(r.state.type.value for r in task_runs(engine, run.id).values())
        assert states == ["FAILED"] * 3

    def test_upstream_failure_in_a_direct_call(self, engine: DirectEngineClient) -> None:
        calls = {"n": 0}

        @task
        def bad() -> int:
            raise Boom("x")

        @task
        def downstream(values: list[int]) -> int:
            calls["n"] += 1
            return sum(values)

        @flow
        def f() -> int:
            return downstream([1, bad.submit()])  # futures nested in a list are resolved too

        with pytest.raises(UpstreamTaskError, match="bad-0"):
            f()
        assert calls["n"] == 0

    def test_allow_failure_lets_downstream_run_with_the_exception(
        self, engine: DirectEngineClient
    ) -> None:
        error = Boom("tolerated")
        received: list[Any] = []

        @task
        def bad() -> int:
            raise error

        @task
        def good() -> int:
            return 3

        @task
        def tolerant(x: Any, y: int) -> str:
            received.append((x, y))
            return "ran"

        @flow
        def f() -> str:
            return tolerant(allow_failure(bad.submit()), good.submit())

        assert f() == "ran"
        ((x, y),) = received
        assert x is error and y == 3
        run = only_flow_run(engine)
        assert run.state.type is StateType.COMPLETED
        by_name = {r.name: r for r in task_runs(engine, run.id).values()}
        assert by_name["tolerant-0"].state.type is StateType.COMPLETED
        assert set(by_name["tolerant-0"].task_inputs) == {"x", "y"}

    def test_allow_failure_with_wait_for(self, engine: DirectEngineClient) -> None:
        ran: list[str] = []

        @task
        def bad() -> None:
            raise Boom("x")

        @task
        def cleanup() -> None:
            ran.append("cleanup")

        @flow
        def f() -> None:
            cleanup(wait_for=[allow_failure(bad.submit())])

        f()
        assert ran == ["cleanup"]

    def test_allow_failure_of_a_completed_future_gives_its_value(
        self, engine: DirectEngineClient
    ) -> None:
        @task
        def good() -> int:
            return 9

        @task
        def use(x: int) -> int:
            return x + 1

        @flow
        def f() -> int:
            return use(allow_failure(good.submit()))

        assert f() == 10
