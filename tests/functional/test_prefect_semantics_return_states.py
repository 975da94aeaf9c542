"""A returned state decides the run's final state (issue 9, item 1).

Oracle: Prefect 3's ``return_value_to_state`` (src/prefect/states.py), the
engines' ``handle_success`` / ``result`` (src/prefect/flow_engine.py,
src/prefect/task_engine.py), the docs' "Flow return values"
(docs/snippets/final-flow-state.mdx, included by docs/v3/concepts/states.mdx)
and Prefect's tests/test_flows.py (``TestFlowCall``, the returned-state tests).
Flows run against moto in-process (the ``engine`` fixture); what the stores
recorded is checked as well as what the call returned.
"""

from __future__ import annotations

from typing import Any

import pytest

from runtime.engine.client import DirectEngineClient
from runtime.models import FlowRun, FlowRunFilter, TaskRun, TaskRunFilter
from runtime.states import State, StateType
from sdk import flow, task
from sdk.exceptions import CancelledRun, CrashedRun, FailedRun
from sdk.states import Cancelled, Completed, Crashed, Failed


class Boom(Exception):
    """The user's own exception."""


def only_flow_run(engine: DirectEngineClient) -> FlowRun:
    runs = list(engine.stores.runs.list_flow_runs(FlowRunFilter()).items)
    assert len(runs) == 1, runs
    return runs[0]


def task_runs(engine: DirectEngineClient) -> list[TaskRun]:
    return list(engine.stores.runs.list_task_runs(TaskRunFilter()).items)


class TestTaskReturnsState:
    def test_returned_failed_state_fails_the_task(self, engine: DirectEngineClient) -> None:
        """Was Completed before the fix. Prefect: the returned state is the final state."""

        @task
        def check() -> State:
            return Failed(message="bad input")

        @flow
        def f() -> State:
            return check(return_state=True)

        state = f(return_state=True).result(raise_on_failure=False)
        assert state.type is StateType.FAILED and state.message == "bad input"
        (run,) = task_runs(engine)
        assert run.state.type is StateType.FAILED and run.state.message == "bad input"
        with pytest.raises(FailedRun, match="bad input"):
            state.result()

    def test_direct_call_hands_back_the_returned_state(self, engine: DirectEngineClient) -> None:
        """Prefect's ``TaskRunEngine.result`` returns the function's return value as it is."""
        returned: list[State] = []

        @task
        def check() -> State:
            state = Failed(message="nope")
            returned.append(state)
            return state

        @flow
        def f() -> Any:
            value = check()
            assert isinstance(value, State) and value.type is StateType.FAILED
            assert value.message == "nope"
            return "done"

        assert f() == "done"
        (run,) = task_runs(engine)
        assert run.state.type is StateType.FAILED and run.state.message == "nope"

    def test_future_result_raises_for_a_returned_failed_state(
        self, engine: DirectEngineClient
    ) -> None:
        """A future's ``result()`` is its final state's result (src/prefect/futures.py)."""

        @task
        def check() -> State:
            return Failed(message="via future")

        @flow
        def f() -> None:
            future = check.submit()
            with pytest.raises(FailedRun, match="via future"):
                future.result()
            assert future.state.name == "Failed"

        f()

    def test_returned_failed_state_is_retried(self, engine: DirectEngineClient) -> None:
        """tests/test_task_engine.py::test_sync_task_retries_with_explicit_failed_state."""
        calls: list[int] = []

        @task(retries=3)
        def flaky() -> Any:
            calls.append(1)
            if len(calls) == 2:
                return True
            return Failed(message="oops").with_data(ValueError("oops"))

        @flow
        def f() -> Any:
            return flaky()

        assert f() is True
        assert len(calls) == 2

    def test_returned_failed_state_data_is_its_exception(self, engine: DirectEngineClient) -> None:
        error = Boom("carried")

        @task
        def check() -> State:
            return Failed(message="with data").with_data(error)

        @flow
        def f() -> Any:
            return check.submit().result()

        with pytest.raises(Boom) as info:
            f()
        assert info.value is error

    def test_returned_completed_state_keeps_its_name_and_persists_its_data(
        self, engine: DirectEngineClient
    ) -> None:
        @task(persist_result=True)
        def skip() -> State:
            return Completed(message="nothing to do", name="Skipped").with_data(7)

        @flow
        def f() -> None:
            skip.submit().wait()

        f()
        (run,) = task_runs(engine)
        assert (run.state.type, run.state.name, run.state.message) == (
            StateType.COMPLETED,
            "Skipped",
            "nothing to do",
        )
        assert run.state.details.result is not None
        assert run.state.result() == 7  # loaded from the persisted result


class TestFlowReturnsState:
    def test_returned_skipped_state_is_the_final_state(self, engine: DirectEngineClient) -> None:
        """Was Completed() before the fix (name and message dropped)."""

        @flow
        def f() -> State:
            return Completed(message="No work to do", name="Skipped")

        state = f(return_state=True)
        assert (state.type, state.name, state.message) == (
            StateType.COMPLETED,
            "Skipped",
            "No work to do",
        )
        run = only_flow_run(engine)
        assert (run.state.type, run.state.name, run.state.message) == (
            StateType.COMPLETED,
            "Skipped",
            "No work to do",
        )
        assert f() is None  # the state's data

    def test_returned_failed_state_fails_the_flow(self, engine: DirectEngineClient) -> None:
        failures: list[str] = []

        @flow(on_failure=[lambda fl, run, state: failures.append(state.message or "")])
        def f() -> State:
            return Failed(message="Test returned state").with_data("hello!")

        state = f(return_state=True)
        assert state.type is StateType.FAILED and state.message == "Test returned state"
        assert state.result(raise_on_failure=False) == "hello!"
        with pytest.raises(FailedRun, match="hello!"):
            f()
        assert only_flow_run_state_types(engine) == ["FAILED", "FAILED"]
        assert failures == ["Test returned state", "Test returned state"]

    def test_returned_failed_state_is_retried_by_flow_retries(
        self, engine: DirectEngineClient
    ) -> None:
        attempts: list[int] = []

        @flow(retries=1)
        def f() -> Any:
            attempts.append(1)
            return Failed(message="again") if len(attempts) == 1 else "second"

        assert f() == "second"
        assert len(attempts) == 2

    @pytest.mark.parametrize(
        ("make", "kind", "error"),
        [(Cancelled, StateType.CANCELLED, CancelledRun), (Crashed, StateType.CRASHED, CrashedRun)],
    )
    def test_returned_cancelled_or_crashed_state(
        self, engine: DirectEngineClient, make: Any, kind: StateType, error: type[Exception]
    ) -> None:
        """tests/test_flows.py::test_flow_can_end_in_cancelled_state."""

        @flow
        def f() -> State:
            return make(message="by hand")

        state = f(return_state=True)
        assert state.type is kind and state.message == "by hand"
        assert only_flow_run(engine).state.type is kind
        with pytest.raises(error, match="by hand"):
            state.result()

    def test_returned_futures_with_a_failure(self, engine: DirectEngineClient) -> None:
        """tests/test_flows.py::test_flow_state_reflects_returned_multiple_task_run_states."""

        @task
        def fail1() -> None:
            raise Boom("Test 1")

        @task
        def fail2() -> None:
            raise Boom("Test 2")

        @task
        def succeed() -> bool:
            return True

        @flow
        def f() -> Any:
            return fail1.submit(), fail2.submit(), succeed.submit()

        state = f(return_state=True)
        assert state.type is StateType.FAILED and state.message == "2/3 states failed."
        first, second, third = state.result(raise_on_failure=False)
        assert first.is_failed() and second.is_failed() and third.is_completed()
        with pytest.raises(Boom, match="Test 1"):
            state.result()
        assert only_flow_run_state_types(engine) == ["FAILED"]

    def test_direct_call_returns_the_states_even_when_failed(
        self, engine: DirectEngineClient
    ) -> None:
        """Prefect's ``FlowRunEngine.result`` returns a non-state return value as it is."""

        @task
        def bad() -> None:
            raise Boom("x")

        @flow
        def f() -> Any:
            return [bad.submit()]

        (state,) = f()
        assert isinstance(state, State) and state.is_failed()
        assert only_flow_run(engine).state.message == "1/1 states failed."

    def test_returned_cancelled_task_state_cancels_the_flow(
        self, engine: DirectEngineClient
    ) -> None:
        """tests/test_flows.py::test_flow_state_with_cancelled_tasks_has_cancelled_state."""

        @task
        def cancel() -> State:
            return Cancelled()

        @task
        def fail() -> None:
            raise Boom("Fail")

        @task
        def succeed() -> bool:
            return True

        @flow
        def f() -> Any:
            return cancel.submit(), succeed.submit(), fail.submit()

        state = f(return_state=True)
        assert state.is_cancelled() and state.message == "1/3 states cancelled."
        first, second, third = state.result(raise_on_failure=False)
        assert first.is_cancelled() and second.is_completed() and third.is_failed()
        with pytest.raises(CancelledRun):
            first.result()

    def test_cancelled_subflow_state_cancels_the_parent(self, engine: DirectEngineClient) -> None:
        """tests/test_flows.py::test_flow_with_cancelled_subflow_has_cancelled_state."""

        @task
        def cancel() -> State:
            return Cancelled()

        @flow
        def subflow() -> Any:
            return cancel.submit()

        @flow
        def parent() -> Any:
            return subflow(return_state=True)

        state = parent(return_state=True)
        assert state.is_cancelled() and state.message == "1/1 states cancelled."

    def test_all_completed_states(self, engine: DirectEngineClient) -> None:
        @task
        def one(x: int) -> int:
            return x

        @flow(persist_result=True)
        def f() -> Any:
            return [one(1, return_state=True), one(2, return_state=True)]

        state = f(return_state=True)
        assert state.type is StateType.COMPLETED and state.message == "All states completed."
        stored = only_flow_run(engine).state
        assert stored.details.result is not None
        loaded = stored.result()  # the persisted states (Prefect persists the return value)
        assert [s.result() for s in loaded] == [1, 2]

    def test_dict_of_states_is_plain_data(self, engine: DirectEngineClient) -> None:
        """``is_state_iterable`` accepts only lists, tuples and sets."""

        @task
        def bad() -> None:
            raise Boom("x")

        @flow
        def f() -> Any:
            return {"state": bad(return_state=True)}

        state = f(return_state=True)
        assert state.type is StateType.COMPLETED


def only_flow_run_state_types(engine: DirectEngineClient) -> list[str]:
    runs = engine.stores.runs.list_flow_runs(FlowRunFilter()).items
    return [run.state.type.value for run in runs]
