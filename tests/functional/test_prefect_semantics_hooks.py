"""State change hooks and ``Flow.parameters`` (issue 9, item 4).

Oracle: docs/v3/how-to-guides/workflows/state-change-hooks.mdx (the table of
hooks: on_completion, on_failure, on_running for flows and tasks;
on_cancellation, on_crashed for flows; the decorator form
``@my_task.on_running``; ``on_running`` fires on each attempt, before the
function), docs/v3/concepts/states.mdx (task hooks get ``(task, task_run,
state)``, flow hooks ``(flow, flow_run, state)``), and ``Flow.parameters``
= ``parameter_schema(fn)`` (src/prefect/flows.py,
src/prefect/utilities/callables/__init__.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from runtime.engine.client import DirectEngineClient
from runtime.engine.parameter_schema import ParameterSchema
from runtime.models import FlowRun, TaskRun
from runtime.states import State
from sdk import Flow, Task, flow, task
from sdk.states import Cancelled, Crashed

Calls = list[tuple[str, Any, Any, str]]


def recorder(calls: Calls, kind: str) -> Any:
    def hook(obj: Any, run: Any, state: State) -> None:
        calls.append((kind, obj, run, state.name))

    hook.__name__ = kind
    return hook


class Boom(Exception):
    """The user's own exception."""


def test_task_on_running_fires_each_attempt_before_the_function(
    engine: DirectEngineClient,
) -> None:
    """Was a TypeError (``on_running`` unknown). The docs: once per attempt, retries too."""
    calls: Calls = []
    order: list[str] = []

    def running(tsk: Task[..., Any], run: TaskRun, state: State) -> None:
        order.append("hook")
        calls.append(("running", tsk, run, state.name))

    @task(retries=2, on_running=[running])
    def flaky() -> int:
        order.append("body")
        if order.count("body") < 3:
            raise Boom("again")
        return 1

    @flow
    def f() -> int:
        return flaky()

    assert f() == 1
    assert order == ["hook", "body"] * 3
    assert [c[3] for c in calls] == ["Running", "Retrying", "Retrying"]
    assert all(c[1] is flaky and isinstance(c[2], TaskRun) for c in calls)


def test_task_hook_decorators(engine: DirectEngineClient) -> None:
    calls: Calls = []

    @task
    def ok() -> int:
        return 1

    @task
    def bad() -> None:
        raise Boom("x")

    for t in (ok, bad):
        t.on_running(recorder(calls, "running"))
        t.on_completion(recorder(calls, "completion"))
        t.on_failure(recorder(calls, "failure"))

    @ok.on_completion
    def also(tsk: Any, run: Any, state: State) -> None:
        calls.append(("also", tsk, run, state.name))

    @flow
    def f() -> None:
        ok()
        bad(return_state=True)

    f()
    assert [(c[0], c[1].name, c[3]) for c in calls] == [
        ("running", "ok", "Running"),
        ("completion", "ok", "Completed"),
        ("also", "ok", "Completed"),
        ("running", "bad", "Running"),
        ("failure", "bad", "Failed"),
    ]
    assert also.__name__ == "also"  # the decorator hands the function back


def test_task_failure_hook_for_a_returned_failed_state(engine: DirectEngineClient) -> None:
    from sdk.states import Failed

    calls: Calls = []

    @task(on_failure=[recorder(calls, "failure")])
    def check() -> State:
        return Failed(message="bad")

    @flow
    def f() -> None:
        check()

    f()
    assert [(c[0], c[3]) for c in calls] == [("failure", "Failed")]


def test_flow_hooks_and_decorators(engine: DirectEngineClient) -> None:
    calls: Calls = []

    @flow(on_running=[recorder(calls, "running")])
    def ok() -> int:
        return 1

    ok.on_completion(recorder(calls, "completion"))

    @flow(retries=1)
    def bad() -> None:
        raise Boom("x")

    bad.on_failure(recorder(calls, "failure"))
    bad.on_running(recorder(calls, "running"))

    @flow
    def cancels() -> State:
        return Cancelled(message="stop")

    cancels.on_cancellation(recorder(calls, "cancellation"))

    @flow
    def crashes() -> State:
        return Crashed(message="gone")

    crashes.on_crashed(recorder(calls, "crashed"))

    ok()
    with pytest.raises(Boom):
        bad()
    cancels(return_state=True)
    crashes(return_state=True)
    assert [(c[0], c[1].name, c[3]) for c in calls] == [
        ("running", "ok", "Running"),
        ("completion", "ok", "Completed"),
        ("running", "bad", "Running"),
        ("running", "bad", "Retrying"),  # the retry's attempt
        ("failure", "bad", "Failed"),
        ("cancellation", "cancels", "Cancelled"),
        ("crashed", "crashes", "Crashed"),
    ]
    assert all(isinstance(c[1], Flow) and isinstance(c[2], FlowRun) for c in calls)


def test_hook_decorator_rejects_a_non_callable() -> None:
    @task
    def t() -> None:
        pass

    with pytest.raises(TypeError, match="on_running"):
        t.on_running("not a hook")  # type: ignore[arg-type]


def test_flow_parameters_is_prefects_schema() -> None:
    @flow
    def etl(count: int, name: str = "x", *, dry_run: bool = False) -> None:
        """Move data.

        Args:
            count: how many rows
        """

    schema = etl.parameters
    assert isinstance(schema, ParameterSchema)
    assert schema.model_dump() == {
        "title": "Parameters",
        "type": "object",
        "properties": {
            "count": {
                "title": "count",
                "type": "integer",
                "description": "how many rows",
                "position": 0,
            },
            "name": {"title": "name", "type": "string", "default": "x", "position": 1},
            "dry_run": {"title": "dry_run", "type": "boolean", "default": False, "position": 2},
        },
        "required": ["count"],
        "definitions": {},
    }


def test_with_options_keeps_hooks_added_by_decorator(engine: DirectEngineClient) -> None:
    """Prefect's ``with_options`` copies the hooks (src/prefect/tasks.py, src/prefect/flows.py)."""
    calls: Calls = []

    @task
    def ok() -> int:
        return 1

    ok.on_completion(recorder(calls, "task-completion"))

    @flow
    def f() -> int:
        return ok.with_options(name="renamed")()

    f.on_running(recorder(calls, "flow-running"))
    f.with_options(name="renamed-flow")()
    assert [(c[0], c[1].name) for c in calls] == [
        ("flow-running", "renamed-flow"),
        ("task-completion", "renamed"),
    ]
