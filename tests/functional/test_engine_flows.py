"""Flows and tasks called in a test, checked against what the stores recorded (moto in-process).

The ``engine`` fixture (tests/conftest.py) makes every flow called in the test
write to a fresh installation; each test then reads the flow runs, task runs
and state histories back from ``engine.stores.runs``. Covered here: the
decorators (bare and with keywords, sync and async), ``with_options``, run
name templates, the recorded state sequence, ``return_state``, parameter
validation, standalone tasks, subflows, state hooks and timeouts. Futures,
``map``, ``wait``/``as_completed`` and upstream failures are in
``test_engine_futures.py``.

Nothing here sleeps to order events: tasks that must block wait on a
``threading.Event`` with a long timeout, and the test releases them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from typing import Any

import pytest

from runtime.engine.client import DirectEngineClient
from runtime.models import FlowRun, FlowRunFilter, TaskRun, TaskRunFilter
from runtime.states import State, StateType
from sdk import Flow, Task, flow, task
from sdk.exceptions import ParameterTypeError

BLOCK_SECONDS = 30.0
"""How long a deliberately blocked task would wait if nothing stopped it."""

PROMPT_SECONDS = 10.0
"""A generous bound for "returned promptly" (far below BLOCK_SECONDS)."""


class Boom(Exception):
    """The user's own exception: what a failing run must raise back, unchanged."""


# ---------------------------------------------------------------------- helpers


def flow_runs(engine: DirectEngineClient, **filters: Any) -> list[FlowRun]:
    return list(engine.stores.runs.list_flow_runs(FlowRunFilter(**filters)).items)


def only_flow_run(engine: DirectEngineClient) -> FlowRun:
    runs = flow_runs(engine)
    assert len(runs) == 1, runs
    return runs[0]


def task_runs(engine: DirectEngineClient, flow_run_id: str | None = None) -> list[TaskRun]:
    flt = TaskRunFilter(flow_run_id=flow_run_id)
    runs = list(engine.stores.runs.list_task_runs(flt).items)
    return sorted(runs, key=lambda r: (r.task_key, int(r.dynamic_key)))


def history(engine: DirectEngineClient, run_id: str) -> list[str]:
    return [s.name for s in engine.stores.runs.read_state_history(run_id)]


def history_types(engine: DirectEngineClient, run_id: str) -> list[StateType]:
    return [s.type for s in engine.stores.runs.read_state_history(run_id)]


def join_abandoned_calls() -> None:
    """Let timed-out calls' helper threads finish once released (so they record nothing late)."""
    for thread in threading.enumerate():
        if thread.name == "stratoflow-timed-call":
            thread.join(PROMPT_SECONDS)


async def wait_async(event: threading.Event, seconds: float) -> bool:
    """Wait on a threading.Event without blocking the loop (so it can be cancelled)."""
    deadline = time.monotonic() + seconds
    while not event.is_set() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return event.is_set()


# ---------------------------------------------------------------------- decorators


class TestDecorators:
    def test_bare_and_keyword_decorators_preserve_name_doc_and_signature(self) -> None:
        @task
        def bare_task(x: int, y: str = "a") -> str:
            """Bare task doc."""
            return f"{x}{y}"

        @task(name="custom-task", retries=2, tags=["t1"])
        async def kw_task(x: int) -> int:
            """Keyword task doc."""
            return x

        @flow
        def bare_flow(n: int = 1) -> int:
            """Bare flow doc."""
            return n

        @flow(name="custom-flow", retries=1, log_prints=True)
        async def kw_flow(n: int, *, m: float = 2.0) -> float:
            """Keyword flow doc."""
            return n * m

        assert isinstance(bare_task, Task) and isinstance(kw_task, Task)
        assert isinstance(bare_flow, Flow) and isinstance(kw_flow, Flow)
        for obj, fn_name, doc in [
            (bare_task, "bare_task", "Bare task doc."),
            (kw_task, "kw_task", "Keyword task doc."),
            (bare_flow, "bare_flow", "Bare flow doc."),
            (kw_flow, "kw_flow", "Keyword flow doc."),
        ]:
            assert obj.__name__ == fn_name
            assert obj.__doc__ == doc
            assert inspect.signature(obj) == inspect.signature(obj.fn)
        assert str(inspect.signature(bare_task)) == "(x: 'int', y: 'str' = 'a') -> 'str'"
        assert list(inspect.signature(kw_flow).parameters) == ["n", "m"]
        assert bare_task.name == "bare_task" and kw_task.name == "custom-task"
        assert bare_flow.name == "bare-flow" and kw_flow.name == "custom-flow"
        assert kw_task.retries == 2 and kw_task.tags == ["t1"]
        assert kw_flow.retries == 1 and kw_flow.log_prints is True
        assert not bare_task.isasync and kw_task.isasync
        assert not bare_flow.isasync and kw_flow.isasync

    def test_decorating_something_not_callable_is_a_type_error(self) -> None:
        with pytest.raises(TypeError, match="@task must decorate a function"):
            task(42)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="@flow must decorate a function"):
            flow(42)  # type: ignore[call-overload]

    def test_bad_keyword_values_are_rejected_at_decoration(self) -> None:
        def fn() -> None:
            return None

        with pytest.raises(ValueError, match="retries"):
            task(retries=-1)(fn)
        with pytest.raises(ValueError, match="timeout_seconds"):
            task(timeout_seconds=0)(fn)
        with pytest.raises(ValueError, match="timeout_seconds"):
            flow(timeout_seconds=-1)(fn)
        with pytest.raises(TypeError):
            task(no_such_keyword=True)(fn)
        with pytest.raises(TypeError):
            flow(no_such_keyword=True)(fn)

    def test_calling_with_wrong_arguments_is_a_type_error_naming_the_function(
        self, engine: DirectEngineClient
    ) -> None:
        @flow
        def needs_two(a: int, b: int) -> int:
            return a + b

        with pytest.raises(TypeError, match="needs_two"):
            needs_two(1)  # type: ignore[call-overload]
        assert flow_runs(engine) == []


class TestWithOptions:
    def test_task_with_options_copies_and_overrides(self, engine: DirectEngineClient) -> None:
        @task(name="original", tags=["a"])
        def double(x: int) -> int:
            """Doubles."""
            return 2 * x

        renamed = double.with_options(name="renamed", retries=3, tags=["b"])
        assert renamed is not double
        assert (renamed.name, renamed.retries, renamed.tags) == ("renamed", 3, ["b"])
        assert (double.name, double.retries, double.tags) == ("original", 0, ["a"])
        assert renamed.__name__ == "double" and renamed.__doc__ == "Doubles."
        assert inspect.signature(renamed) == inspect.signature(double)

        @flow
        def uses_renamed() -> int:
            return renamed(4)

        assert uses_renamed() == 8
        (run,) = task_runs(engine, only_flow_run(engine).id)
        assert run.name == "renamed-0"
        assert run.tags == ["b"]

    def test_flow_with_options_copies_and_overrides(self, engine: DirectEngineClient) -> None:
        @flow(name="base-flow")
        def base(x: int) -> int:
            return x + 1

        other = base.with_options(name="other-flow", flow_run_name="run-{x}", tags=["t"])
        assert other is not base and base.name == "base-flow"
        assert other(1) == 2
        run = only_flow_run(engine)
        assert (run.flow_name, run.name, run.tags) == ("other-flow", "run-1", ["t"])

    def test_unknown_option_is_a_type_error(self) -> None:
        @task
        def t() -> None:
            return None

        @flow
        def f() -> None:
            return None

        with pytest.raises(TypeError, match="no_such_option"):
            t.with_options(no_such_option=1)
        with pytest.raises(TypeError, match="no_such_option"):
            f.with_options(no_such_option=1)

    def test_invalid_option_value_is_rejected(self) -> None:
        @task
        def t() -> None:
            return None

        with pytest.raises(ValueError, match="retries"):
            t.with_options(retries=-2)


# ---------------------------------------------------------------------- run names


class TestRunNames:
    def test_templates_are_formatted_with_parameters(self, engine: DirectEngineClient) -> None:
        @task(task_run_name="load-{table}-{n}")
        def load(table: str, n: int) -> int:
            return n

        @flow(flow_run_name="etl-{env}")
        def etl(env: str, count: int = 2) -> int:
            return sum(load("users", i) for i in range(count))

        assert etl("prod") == 1
        run = only_flow_run(engine)
        assert run.name == "etl-prod"
        assert [r.name for r in task_runs(engine, run.id)] == ["load-users-0", "load-users-1"]

    def test_callable_run_names(self, engine: DirectEngineClient) -> None:
        @task(task_run_name=lambda: "from-callable")
        def t() -> None:
            return None

        @flow(flow_run_name=lambda: "flow-from-callable")
        def f() -> None:
            t()

        f()
        run = only_flow_run(engine)
        assert run.name == "flow-from-callable"
        assert [r.name for r in task_runs(engine, run.id)] == ["from-callable"]

    def test_default_names(self, engine: DirectEngineClient) -> None:
        @task
        def step() -> None:
            return None

        @flow
        def default_named() -> None:
            step()
            step()

        default_named()
        run = only_flow_run(engine)
        assert run.flow_name == "default-named"
        assert run.name  # a generated name
        assert [r.name for r in task_runs(engine, run.id)] == ["step-0", "step-1"]

    def test_template_naming_a_missing_parameter_fails_before_any_run(
        self, engine: DirectEngineClient
    ) -> None:
        @flow(flow_run_name="run-{nope}")
        def f(x: int) -> int:
            return x

        with pytest.raises(ValueError, match="flow_run_name"):
            f(1)
        assert flow_runs(engine) == []

    def test_task_template_naming_a_missing_parameter_fails_the_call(
        self, engine: DirectEngineClient
    ) -> None:
        @task(task_run_name="t-{nope}")
        def t(x: int) -> int:
            return x

        @flow
        def f() -> int:
            return t(1)

        with pytest.raises(ValueError, match="task_run_name"):
            f()
        run = only_flow_run(engine)
        assert run.state.type is StateType.FAILED


# ---------------------------------------------------------------------- recorded runs


class TestRecordedRuns:
    def test_flow_run_and_task_runs_are_recorded(self, engine: DirectEngineClient) -> None:
        @task
        def add(a: int, b: int) -> int:
            return a + b

        @flow
        def adder(x: int, y: int) -> int:
            return add(add(x, y), 10)

        assert adder(1, 2) == 13
        run = only_flow_run(engine)
        assert run.flow_name == "adder"
        assert run.parameters == {"x": 1, "y": 2}
        assert run.parent_flow_run_id is None
        assert run.state.type is StateType.COMPLETED
        assert history(engine, run.id) == ["Pending", "Running", "Completed"]
        runs = task_runs(engine, run.id)
        assert [r.name for r in runs] == ["add-0", "add-1"]
        for tr in runs:
            assert tr.flow_run_id == run.id
            assert tr.state.type is StateType.COMPLETED
            assert history(engine, tr.id) == ["Pending", "Running", "Completed"]

    def test_failing_flow_raises_the_original_exception_and_records_failed(
        self, engine: DirectEngineClient
    ) -> None:
        error = Boom("flow broke")

        @task
        def fine() -> int:
            return 1

        @flow
        def broken() -> None:
            fine()
            raise error

        with pytest.raises(Boom) as info:
            broken()
        assert info.value is error
        run = only_flow_run(engine)
        assert run.state.type is StateType.FAILED
        assert "Boom" in (run.state.message or "") and "flow broke" in (run.state.message or "")
        assert history(engine, run.id) == ["Pending", "Running", "Failed"]
        (tr,) = task_runs(engine, run.id)
        assert tr.state.type is StateType.COMPLETED

    def test_failing_task_fails_the_flow_with_the_tasks_exception(
        self, engine: DirectEngineClient
    ) -> None:
        error = Boom("task broke")

        @task
        def bad() -> None:
            raise error

        @flow
        def f() -> None:
            bad()

        with pytest.raises(Boom) as info:
            f()
        assert info.value is error
        run = only_flow_run(engine)
        assert run.state.type is StateType.FAILED
        (tr,) = task_runs(engine, run.id)
        assert history(engine, tr.id) == ["Pending", "Running", "Failed"]
        assert "task broke" in (tr.state.message or "")

    def test_flow_catching_a_task_failure_completes(self, engine: DirectEngineClient) -> None:
        @task
        def bad() -> None:
            raise Boom("caught")

        @flow
        def tolerant() -> str:
            try:
                bad()
            except Boom as exc:
                return f"handled {exc}"
            return "unreachable"

        assert tolerant() == "handled caught"
        run = only_flow_run(engine)
        assert run.state.type is StateType.COMPLETED
        (tr,) = task_runs(engine, run.id)
        assert tr.state.type is StateType.FAILED


class TestReturnState:
    def test_completed_state_result_is_the_value(self, engine: DirectEngineClient) -> None:
        @flow
        def f(x: int) -> dict[str, int]:
            return {"x": x}

        state = f(3, return_state=True)
        assert isinstance(state, State)
        assert state.type is StateType.COMPLETED and state.name == "Completed"
        assert state.is_completed()
        assert state.result() == {"x": 3}
        assert only_flow_run(engine).state.type is StateType.COMPLETED

    def test_failed_state_result_raises_the_original_exception(
        self, engine: DirectEngineClient
    ) -> None:
        error = Boom("original")

        @flow
        def f() -> None:
            raise error

        state = f(return_state=True)  # does not raise
        assert state.type is StateType.FAILED and state.is_failed()
        with pytest.raises(Boom) as info:
            state.result()
        assert info.value is error
        assert state.result(raise_on_failure=False) is error
        assert only_flow_run(engine).state.type is StateType.FAILED

    def test_task_return_state(self, engine: DirectEngineClient) -> None:
        error = Boom("task original")

        @task
        def ok() -> int:
            return 5

        @task
        def bad() -> None:
            raise error

        @flow
        def f() -> tuple[State, State]:
            return ok(return_state=True), bad(return_state=True)

        good, failed = f()  # a direct call hands back what was returned (Prefect's result())
        assert good.type is StateType.COMPLETED and good.result() == 5
        assert failed.type is StateType.FAILED
        with pytest.raises(Boom) as info:
            failed.result()
        assert info.value is error
        # returned states decide (Prefect's return_value_to_state, src/prefect/states.py)
        run = only_flow_run(engine)
        assert run.state.type is StateType.FAILED
        assert run.state.message == "1/2 states failed."

    def test_async_flow_return_state(self, engine: DirectEngineClient) -> None:
        error = Boom("async original")

        @flow
        async def ok() -> str:
            return "async value"

        @flow
        async def bad() -> None:
            raise error

        assert asyncio.run(ok(return_state=True)).result() == "async value"
        state = asyncio.run(bad(return_state=True))
        assert state.type is StateType.FAILED
        with pytest.raises(Boom) as info:
            state.result()
        assert info.value is error


# ---------------------------------------------------------------------- async


class TestAsync:
    def test_async_flow_awaiting_async_task(self, engine: DirectEngineClient) -> None:
        @task
        async def fetch(x: int) -> int:
            await asyncio.sleep(0)
            return x * 10

        @task
        def sync_step(x: int) -> int:
            return x + 1

        @flow
        async def pipeline(x: int) -> int:
            value = await fetch(x)
            return sync_step(value)

        coro = pipeline(2)
        assert inspect.iscoroutine(coro)
        assert asyncio.run(coro) == 21
        run = only_flow_run(engine)
        assert history(engine, run.id) == ["Pending", "Running", "Completed"]
        runs = task_runs(engine, run.id)
        assert sorted(r.name for r in runs) == ["fetch-0", "sync_step-0"]
        assert all(r.state.type is StateType.COMPLETED for r in runs)

    def test_async_flow_gathering_async_tasks(self, engine: DirectEngineClient) -> None:
        @task
        async def square(x: int) -> int:
            await asyncio.sleep(0)
            return x * x

        @flow
        async def gather_flow() -> list[int]:
            return list(await asyncio.gather(*(square(i) for i in range(4))))

        assert asyncio.run(gather_flow()) == [0, 1, 4, 9]
        run = only_flow_run(engine)
        runs = task_runs(engine, run.id)
        assert [r.name for r in runs] == [f"square-{i}" for i in range(4)]

    def test_async_task_failure_raises_original_in_async_flow(
        self, engine: DirectEngineClient
    ) -> None:
        error = Boom("async task broke")

        @task
        async def bad() -> None:
            raise error

        @flow
        async def f() -> None:
            await bad()

        with pytest.raises(Boom) as info:
            asyncio.run(f())
        assert info.value is error
        run = only_flow_run(engine)
        assert run.state.type is StateType.FAILED
        (tr,) = task_runs(engine, run.id)
        assert tr.state.type is StateType.FAILED

    def test_async_task_called_from_sync_flow(self, engine: DirectEngineClient) -> None:
        """As in Prefect 3, calling an async task returns a coroutine wherever it is called.

        A sync flow runs it with ``.submit()`` (the task runner drives it on its
        own event loop) or with ``asyncio.run(...)``.
        """

        @task
        async def fetch(x: int) -> int:
            await asyncio.sleep(0)
            return x + 100

        @flow
        def sync_flow() -> tuple[int, int]:
            submitted = fetch.submit(1).result()
            coro = fetch(2)
            assert inspect.iscoroutine(coro)
            return submitted, asyncio.run(coro)

        assert sync_flow() == (101, 102)
        run = only_flow_run(engine)
        runs = task_runs(engine, run.id)
        assert [r.name for r in runs] == ["fetch-0", "fetch-1"]
        assert all(r.state.type is StateType.COMPLETED for r in runs)

    def test_async_task_failure_from_sync_flow_submit(self, engine: DirectEngineClient) -> None:
        error = Boom("async in sync")

        @task
        async def bad() -> None:
            raise error

        @flow
        def sync_flow() -> None:
            bad.submit().result()

        with pytest.raises(Boom) as info:
            sync_flow()
        assert info.value is error
        (tr,) = task_runs(engine, only_flow_run(engine).id)
        assert tr.state.type is StateType.FAILED


# ---------------------------------------------------------------------- parameters


class TestParameterValidation:
    def test_values_are_coerced_to_the_type_hints(self, engine: DirectEngineClient) -> None:
        seen: list[Any] = []

        @flow
        def typed(n: int, ratio: float = 0.5, names: list[str] | None = None) -> int:
            seen.append((n, ratio, names))
            return n * 2

        assert typed("5", ratio="1.5") == 10  # type: ignore[call-overload]
        assert seen == [(5, 1.5, None)]
        assert isinstance(seen[0][0], int)
        run = only_flow_run(engine)
        assert run.parameters == {"n": 5, "ratio": 1.5, "names": None}

    def test_async_flow_parameters_are_coerced(self, engine: DirectEngineClient) -> None:
        @flow
        async def typed(n: int) -> int:
            return n + 1

        assert asyncio.run(typed("41")) == 42  # type: ignore[call-overload]

    def test_bad_value_raises_parameter_type_error_and_records_no_run(
        self, engine: DirectEngineClient
    ) -> None:
        ran: list[int] = []

        @flow
        def typed(count: int, label: str = "x") -> None:
            ran.append(count)

        with pytest.raises(ParameterTypeError, match="count") as info:
            typed("not a number")  # type: ignore[call-overload]
        assert isinstance(info.value, TypeError)  # catchable as a TypeError too
        assert "label" not in str(info.value)
        assert ran == []
        assert flow_runs(engine) == []

    def test_bad_value_in_async_flow_records_no_run(self, engine: DirectEngineClient) -> None:
        @flow
        async def typed(when: float) -> float:
            return when

        with pytest.raises(ParameterTypeError, match="when"):
            asyncio.run(typed([1, 2]))  # type: ignore[call-overload]
        assert flow_runs(engine) == []

    def test_validation_can_be_turned_off(self, engine: DirectEngineClient) -> None:
        @flow(validate_parameters=False)
        def loose(n: int) -> Any:
            return n

        assert loose("5") == "5"  # type: ignore[call-overload]

    def test_unannotated_parameters_pass_through(self, engine: DirectEngineClient) -> None:
        marker = object()

        @flow
        def untyped(thing, n: int = 1):  # type: ignore[no-untyped-def]
            return thing, n

        assert untyped(marker, n="2") == (marker, 2)


# ---------------------------------------------------------------------- standalone tasks


class TestTaskOutsideFlow:
    def test_task_called_outside_a_flow_is_a_recorded_task_run(
        self, engine: DirectEngineClient
    ) -> None:
        """Chosen behaviour: a task called outside any flow still runs through the engine.

        As in Prefect 3, it is orchestrated and recorded as a task run of its
        own, with no flow run (``flow_run_id`` is None), and no flow run is
        created for it. Its record is durable when the call returns.
        """

        @task
        def lonely(x: int) -> int:
            return x * 3

        assert lonely(4) == 12
        assert flow_runs(engine) == []
        (run,) = task_runs(engine)
        assert run.flow_run_id is None
        assert run.name == "lonely-0"
        assert run.state.type is StateType.COMPLETED
        assert history(engine, run.id) == ["Pending", "Running", "Completed"]

    def test_failing_task_outside_a_flow_raises_original_and_records_failed(
        self, engine: DirectEngineClient
    ) -> None:
        error = Boom("alone")

        @task
        def lonely() -> None:
            raise error

        with pytest.raises(Boom) as info:
            lonely()
        assert info.value is error
        state = lonely(return_state=True)
        assert state.type is StateType.FAILED
        assert flow_runs(engine) == []
        runs = task_runs(engine)
        assert len(runs) == 2
        assert all(r.flow_run_id is None and r.state.type is StateType.FAILED for r in runs)

    def test_async_task_outside_a_flow(self, engine: DirectEngineClient) -> None:
        @task
        async def lonely(x: int) -> int:
            return x - 1

        assert asyncio.run(lonely(10)) == 9
        (run,) = task_runs(engine)
        assert run.flow_run_id is None and run.state.type is StateType.COMPLETED


# ---------------------------------------------------------------------- subflows


class TestSubflows:
    def test_subflow_creates_child_run_and_parent_task_run(
        self, engine: DirectEngineClient
    ) -> None:
        @task
        def inner_step(x: int) -> int:
            return x + 1

        @flow
        def child(x: int) -> int:
            return inner_step(x)

        @flow
        def parent() -> int:
            return child(1) + child(10)

        assert parent() == 13
        (parent_run,) = flow_runs(engine, flow_name="parent")
        children = flow_runs(engine, parent_flow_run_id=parent_run.id)
        assert len(children) == 2
        for c in children:
            assert c.flow_name == "child"
            assert c.parent_flow_run_id == parent_run.id
            assert history(engine, c.id) == ["Pending", "Running", "Completed"]
            (step,) = task_runs(engine, c.id)  # the child's own task run
            assert step.name == "inner_step-0"
        mirrors = task_runs(engine, parent_run.id)
        assert len(mirrors) == 2
        assert {m.task_key for m in mirrors} == {"subflow:child"}
        child_ids = {c.id for c in children}
        for m in mirrors:
            assert m.task_key.startswith("subflow:")
            (child_id,) = m.task_inputs["__subflow_run_id"]
            assert child_id in child_ids
            assert m.state.type is StateType.COMPLETED
            assert history_types(engine, m.id) == history_types(engine, child_id)
        assert parent_run.state.type is StateType.COMPLETED

    def test_failing_subflow_fails_the_parent(self, engine: DirectEngineClient) -> None:
        error = Boom("child broke")

        @flow
        def child() -> None:
            raise error

        @flow
        def parent() -> None:
            child()

        with pytest.raises(Boom) as info:
            parent()
        assert info.value is error
        (parent_run,) = flow_runs(engine, flow_name="parent")
        (child_run,) = flow_runs(engine, parent_flow_run_id=parent_run.id)
        assert parent_run.state.type is StateType.FAILED
        assert child_run.state.type is StateType.FAILED
        (mirror,) = task_runs(engine, parent_run.id)
        assert mirror.task_key == "subflow:child"
        assert mirror.state.type is StateType.FAILED
        assert mirror.state.name == child_run.state.name

    def test_caught_subflow_failure_leaves_parent_completed(
        self, engine: DirectEngineClient
    ) -> None:
        @flow
        def child() -> None:
            raise Boom("child broke")

        @flow
        def parent() -> str:
            state = child(return_state=True)
            with contextlib.suppress(Boom):
                child()
            return state.name

        assert parent() == "Failed"
        (parent_run,) = flow_runs(engine, flow_name="parent")
        assert parent_run.state.type is StateType.COMPLETED
        children = flow_runs(engine, parent_flow_run_id=parent_run.id)
        assert [c.state.type for c in children] == [StateType.FAILED] * 2
        mirrors = task_runs(engine, parent_run.id)
        assert [m.state.type for m in mirrors] == [StateType.FAILED] * 2

    def test_subflow_with_bad_parameters_records_no_child_and_fails_parent(
        self, engine: DirectEngineClient
    ) -> None:
        @flow
        def child(n: int) -> int:
            return n

        @flow
        def parent() -> int:
            return child("many")  # type: ignore[call-overload]

        with pytest.raises(ParameterTypeError, match="n"):
            parent()
        (parent_run,) = flow_runs(engine)
        assert parent_run.flow_name == "parent"
        assert parent_run.state.type is StateType.FAILED
        assert "ParameterTypeError" in (parent_run.state.message or "")
        assert task_runs(engine, parent_run.id) == []

    def test_async_subflow_in_async_parent(self, engine: DirectEngineClient) -> None:
        @flow
        async def child(x: int) -> int:
            return x * 2

        @flow
        async def parent() -> int:
            return await child(21)

        assert asyncio.run(parent()) == 42
        (parent_run,) = flow_runs(engine, flow_name="parent")
        (child_run,) = flow_runs(engine, parent_flow_run_id=parent_run.id)
        assert child_run.state.type is StateType.COMPLETED
        (mirror,) = task_runs(engine, parent_run.id)
        assert mirror.task_key == "subflow:child"
        assert mirror.state.type is StateType.COMPLETED


# ---------------------------------------------------------------------- hooks


class TestStateHooks:
    def test_task_hooks_receive_task_run_and_state(self, engine: DirectEngineClient) -> None:
        calls: list[tuple[str, Any, Any, State]] = []

        def on_ok(tsk: Any, run: Any, state: State) -> None:
            calls.append(("completion", tsk, run, state))

        def on_bad(tsk: Any, run: Any, state: State) -> None:
            calls.append(("failure", tsk, run, state))

        @task(on_completion=[on_ok], on_failure=[on_bad])
        def maybe(fail: bool) -> str:
            if fail:
                raise Boom("hooked")
            return "fine"

        @flow
        def f() -> None:
            maybe(False)
            maybe(True, return_state=True)

        f()
        assert [c[0] for c in calls] == ["completion", "failure"]
        (_, t1, r1, s1), (_, t2, r2, s2) = calls
        assert t1 is maybe and t2 is maybe
        assert isinstance(r1, TaskRun) and isinstance(r2, TaskRun)
        assert r1.name == "maybe-0" and r2.name == "maybe-1"
        assert s1.type is StateType.COMPLETED and s1.result() == "fine"
        assert s2.type is StateType.FAILED and isinstance(s2.result(False), Boom)
        recorded = {r.id: r for r in task_runs(engine, only_flow_run(engine).id)}
        assert recorded[r1.id].state.type is StateType.COMPLETED
        assert recorded[r2.id].state.type is StateType.FAILED

    def test_flow_hooks_receive_flow_run_and_state(self, engine: DirectEngineClient) -> None:
        calls: list[tuple[str, Any, Any, State]] = []

        def on_ok(fl: Any, run: Any, state: State) -> None:
            calls.append(("completion", fl, run, state))

        def on_bad(fl: Any, run: Any, state: State) -> None:
            calls.append(("failure", fl, run, state))

        @flow(on_completion=[on_ok], on_failure=[on_bad])
        def hooked(fail: bool) -> int:
            if fail:
                raise Boom("flow hooked")
            return 7

        assert hooked(False) == 7
        with pytest.raises(Boom):
            hooked(True)
        assert [c[0] for c in calls] == ["completion", "failure"]
        (_, f1, r1, s1), (_, f2, r2, s2) = calls
        assert f1 is hooked and f2 is hooked
        assert isinstance(r1, FlowRun) and isinstance(r2, FlowRun)
        assert r1.id != r2.id
        assert s1.type is StateType.COMPLETED and s1.result() == 7
        assert s2.type is StateType.FAILED
        assert r1.state.type is StateType.COMPLETED and r2.state.type is StateType.FAILED

    def test_async_flow_and_task_hooks(self, engine: DirectEngineClient) -> None:
        calls: list[str] = []

        @task(on_completion=[lambda t, r, s: calls.append(f"task {s.name}")])
        async def t() -> int:
            return 1

        @flow(on_completion=[lambda f, r, s: calls.append(f"flow {s.name}")])
        async def f() -> int:
            return await t()

        assert asyncio.run(f()) == 1
        assert calls == ["task Completed", "flow Completed"]

    def test_raising_hooks_do_not_change_the_state(self, engine: DirectEngineClient) -> None:
        later: list[str] = []

        def broken_hook(obj: Any, run: Any, state: State) -> None:
            raise RuntimeError("hook broke")

        def later_hook(obj: Any, run: Any, state: State) -> None:
            later.append(f"{type(run).__name__} {state.name}")

        @task(on_completion=[broken_hook, later_hook], on_failure=[broken_hook, later_hook])
        def t(fail: bool) -> int:
            if fail:
                raise Boom("task")
            return 1

        @flow(on_completion=[broken_hook, later_hook])
        def ok_flow() -> int:
            t(True, return_state=True)
            return t(False)

        @flow(on_failure=[broken_hook, later_hook])
        def bad_flow() -> None:
            raise Boom("flow")

        assert ok_flow() == 1  # the hook's RuntimeError is not raised
        with pytest.raises(Boom):  # the original error, not the hook's
            bad_flow()
        assert later == [
            "TaskRun Failed",
            "TaskRun Completed",
            "FlowRun Completed",
            "FlowRun Failed",
        ]
        ok_run = flow_runs(engine, flow_name="ok-flow")[0]
        bad_run = flow_runs(engine, flow_name="bad-flow")[0]
        assert history(engine, ok_run.id) == ["Pending", "Running", "Completed"]
        assert history(engine, bad_run.id) == ["Pending", "Running", "Failed"]
        states = sorted(r.state.name for r in task_runs(engine, ok_run.id))
        assert states == ["Completed", "Failed"]

    def test_hooks_only_fire_for_their_state(self, engine: DirectEngineClient) -> None:
        calls: list[str] = []

        @flow(on_failure=[lambda f, r, s: calls.append("failure")])
        def ok() -> None:
            return None

        @flow(on_completion=[lambda f, r, s: calls.append("completion")])
        def bad() -> None:
            raise Boom()

        ok()
        bad(return_state=True)
        assert calls == []


# ---------------------------------------------------------------------- timeouts


def assert_timed_out(state: State) -> None:
    assert state.type is StateType.FAILED
    assert state.name == "TimedOut"
    assert "timeout" in (state.message or "").lower()
    with pytest.raises(TimeoutError):
        state.result()


class TestTimeouts:
    def test_sync_task_timeout(self, engine: DirectEngineClient) -> None:
        release = threading.Event()

        @task(timeout_seconds=0.2)
        def blocked() -> bool:
            return release.wait(BLOCK_SECONDS)

        @flow
        def f() -> State:
            return blocked(return_state=True)

        started = time.monotonic()
        try:  # a returned run state is the flow state's data (Prefect's return_value_to_state)
            state = f(return_state=True).result(raise_on_failure=False)
        finally:
            release.set()
        assert time.monotonic() - started < PROMPT_SECONDS
        assert_timed_out(state)
        (tr,) = task_runs(engine, only_flow_run(engine).id)
        assert tr.state.name == "TimedOut"
        assert history(engine, tr.id) == ["Pending", "Running", "TimedOut"]

    def test_sync_task_timeout_fails_the_flow_with_timeout_error(
        self, engine: DirectEngineClient
    ) -> None:
        release = threading.Event()

        @task(timeout_seconds=0.2)
        def blocked() -> bool:
            return release.wait(BLOCK_SECONDS)

        @flow
        def f() -> bool:
            return blocked()

        started = time.monotonic()
        try:
            with pytest.raises(TimeoutError):
                f()
        finally:
            release.set()
        assert time.monotonic() - started < PROMPT_SECONDS
        run = only_flow_run(engine)
        assert run.state.type is StateType.FAILED
        (tr,) = task_runs(engine, run.id)
        assert tr.state.name == "TimedOut"

    def test_async_task_timeout(self, engine: DirectEngineClient) -> None:
        release = threading.Event()

        @task(timeout_seconds=0.2)
        async def blocked() -> bool:
            return await wait_async(release, BLOCK_SECONDS)

        @flow
        async def f() -> State:
            return await blocked(return_state=True)

        started = time.monotonic()
        try:  # a returned run state is the flow state's data (Prefect's return_value_to_state)
            state = asyncio.run(f(return_state=True)).result(raise_on_failure=False)
        finally:
            release.set()
        assert time.monotonic() - started < PROMPT_SECONDS
        assert_timed_out(state)
        run = only_flow_run(engine)
        assert run.state.type is StateType.FAILED  # returning a failed state fails the flow
        assert run.state.message == "1/1 states failed."
        (tr,) = task_runs(engine, run.id)
        assert history(engine, tr.id) == ["Pending", "Running", "TimedOut"]

    def test_sync_flow_timeout(self, engine: DirectEngineClient) -> None:
        release = threading.Event()

        @flow(timeout_seconds=0.2)
        def slow() -> bool:
            return release.wait(BLOCK_SECONDS)

        started = time.monotonic()
        try:
            state = slow(return_state=True)
        finally:
            release.set()
        assert time.monotonic() - started < PROMPT_SECONDS
        assert_timed_out(state)
        run = only_flow_run(engine)
        assert run.state.name == "TimedOut"
        assert history(engine, run.id) == ["Pending", "Running", "TimedOut"]

    def test_sync_flow_timeout_while_a_task_blocks(self, engine: DirectEngineClient) -> None:
        release = threading.Event()

        @task
        def blocked() -> bool:
            return release.wait(BLOCK_SECONDS)

        @flow(timeout_seconds=0.2)
        def slow() -> bool:
            return blocked()

        started = time.monotonic()
        try:
            with pytest.raises(TimeoutError):
                slow()
        finally:
            release.set()
        assert time.monotonic() - started < PROMPT_SECONDS
        assert only_flow_run(engine).state.name == "TimedOut"
        join_abandoned_calls()

    def test_async_flow_timeout(self, engine: DirectEngineClient) -> None:
        release = threading.Event()

        @flow(timeout_seconds=0.2)
        async def slow() -> bool:
            return await wait_async(release, BLOCK_SECONDS)

        started = time.monotonic()
        try:
            state = asyncio.run(slow(return_state=True))
        finally:
            release.set()
        assert time.monotonic() - started < PROMPT_SECONDS
        assert_timed_out(state)
        run = only_flow_run(engine)
        assert history(engine, run.id) == ["Pending", "Running", "TimedOut"]

    def test_timeout_calls_failure_hooks(self, engine: DirectEngineClient) -> None:
        release = threading.Event()
        seen: list[str] = []

        @flow(timeout_seconds=0.2, on_failure=[lambda f, r, s: seen.append(s.name)])
        def slow() -> bool:
            return release.wait(BLOCK_SECONDS)

        try:
            slow(return_state=True)
        finally:
            release.set()
        assert seen == ["TimedOut"]

    def test_fast_calls_are_not_timed_out(self, engine: DirectEngineClient) -> None:
        @task(timeout_seconds=BLOCK_SECONDS)
        def quick() -> int:
            return 1

        @flow(timeout_seconds=BLOCK_SECONDS)
        def f() -> int:
            return quick()

        assert f() == 1
        assert only_flow_run(engine).state.name == "Completed"

    def test_timeout_error_raised_by_user_code_without_timeout_is_plain_failure(
        self, engine: DirectEngineClient
    ) -> None:
        @flow
        def f() -> None:
            raise TimeoutError("user's own")

        state = f(return_state=True)
        assert state.type is StateType.FAILED and state.name == "Failed"


def test_a_flow_timeout_ends_its_in_flight_task_runs_cancelled(engine: DirectEngineClient) -> None:
    """Task runs still running (or waiting on them) when the flow times out end Cancelled,
    and nothing they do afterwards is recorded: no late Failed, no retries, no hooks."""
    release = threading.Event()
    finished = threading.Event()
    hook_calls: list[str] = []

    @task(retries=2, on_failure=[lambda t, r, s: hook_calls.append(s.name)])
    def blocked() -> bool:
        release.wait(BLOCK_SECONDS)
        finished.set()
        raise RuntimeError("woke up after the flow ended")

    @task
    def downstream() -> None:
        hook_calls.append("downstream ran")

    @flow(timeout_seconds=0.3)
    def slow() -> bool:
        first = blocked.submit()
        downstream.submit(wait_for=[first])
        return first.result()

    with pytest.raises(TimeoutError):
        slow()
    release.set()
    assert finished.wait(PROMPT_SECONDS)
    join_abandoned_calls()
    engine.flush()
    runs = {r.name.split("-")[0]: r for r in engine.stores.runs.list_task_runs().items}
    assert runs["blocked"].state.name == "Cancelled"
    assert "timed out" in (runs["blocked"].state.message or "")
    assert runs["downstream"].state.name == "Cancelled"
    assert history(engine, runs["blocked"].id) == ["Pending", "Running", "Cancelled"]
    assert hook_calls == []
