"""``sdk.tags``, ``sdk.context`` and ``sdk.runtime``: what runs get and see (moto in-process).

Oracle: Prefect 3 ``src/prefect/context.py`` (``tags``, ``get_run_context``,
``FlowRunContext.get``), ``docs/v3/concepts/runtime-context.mdx`` and
``src/prefect/runtime/{flow_run,task_run,deployment}.py``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import sdk
from runtime.engine.client import DirectEngineClient
from runtime.states import StateType
from sdk import flow, get_client, tags, task
from sdk.context import FlowRunContext, TaskRunContext, get_run_context
from sdk.exceptions import ConcurrencySlotAcquisitionError, MissingContextError
from sdk.runtime import deployment, flow_run, task_run


@pytest.fixture(autouse=True)
def _isolated_engine(engine: DirectEngineClient) -> DirectEngineClient:
    """Every test writes to its own installation."""
    return engine


def test_tags_apply_to_runs_created_inside_nested_and_with_decorator_tags() -> None:
    """context.py ``tags``: "Tags are always combined with any existing tags"; nested
    blocks union (a, b, c, d inside, a, b after); decorator tags are added."""
    ids: dict[str, Any] = {}

    @task(tags=["own"])
    def step(name: str) -> str:
        ids[name] = task_run.id
        return name

    @flow(tags=["flowtag"])
    def pipeline() -> str:
        with tags("a", "b") as current:
            assert current == {"caller", "a", "b"}  # the caller's block holds here too
            with tags("c", "d") as inner:
                assert inner == {"caller", "a", "b", "c", "d"}
                step("nested")
            step("outer")
        step("plain")
        return str(flow_run.id)

    with tags("caller"):
        flow_run_id = pipeline()
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(flow_run_id).tags == ["caller", "flowtag"]
        got = {name: client.read_task_run(i).tags for name, i in ids.items()}
    assert got == {
        "nested": ["a", "b", "c", "caller", "d", "flowtag", "own"],
        "outer": ["a", "b", "caller", "flowtag", "own"],
        "plain": ["caller", "flowtag", "own"],
    }


def test_tags_reach_submitted_tasks_and_standalone_tasks() -> None:
    """A submitted task's thread carries the caller's tags (Prefect copies the context)."""

    @task
    def step() -> list[str]:
        return list(task_run.tags)

    @flow
    def pipeline() -> list[str]:
        with tags("sub"):
            future = step.submit()
        return future.result()

    assert pipeline() == ["sub"]
    with tags("alone"):
        assert step() == ["alone"]


def test_a_tags_block_makes_the_tag_limit_apply() -> None:
    """task_engine.py acquires ``tag:<tag>`` limits for every tag of the task run, and
    the run's tags include the ``tags(...)`` context: a limit of 0 refuses the run."""
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="db", concurrency_limit=0)
    ran: list[int] = []

    @task
    def query() -> None:
        ran.append(1)

    @flow
    def pipeline() -> tuple[Any, Any]:
        free = query(return_state=True)
        with tags("db"):
            limited = query(return_state=True)
        return free, limited

    free, limited = pipeline()
    assert free.type is StateType.COMPLETED
    assert limited.type is StateType.FAILED and ran == [1]
    with pytest.raises(ConcurrencySlotAcquisitionError):
        limited.result()


def test_a_tags_block_limit_holds_under_contention() -> None:
    """With ``tag:db`` = 1, tasks tagged only by the block never overlap."""
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="db", concurrency_limit=1)
    lock = threading.Lock()
    inside = [0, 0]  # current, max

    @task
    def query(i: int) -> int:
        with lock:
            inside[0] += 1
            inside[1] = max(inside)
        time.sleep(0.01)
        with lock:
            inside[0] -= 1
        return i

    @flow
    def pipeline() -> list[int]:
        with tags("db"):
            return query.map(range(6)).result()

    assert pipeline() == list(range(6))
    assert inside[1] == 1


def test_get_run_context_in_flows_and_tasks_and_outside() -> None:
    """runtime-context.mdx: ``get_run_context`` returns the task run context when there
    is one, raises outside a run; ``FlowRunContext.get()``/``TaskRunContext.get()``
    return None instead of raising."""
    seen: dict[str, Any] = {}

    @task
    def step(x: int) -> None:
        ctx = get_run_context()
        assert isinstance(ctx, TaskRunContext)
        flow_ctx = FlowRunContext.get()
        assert flow_ctx is not None
        seen.update(
            task_name=ctx.task.name,
            task_run_flow=ctx.task_run.flow_run_id,
            task_params=ctx.parameters,
            flow_from_task=flow_ctx.flow_run.id,
            task_ctx=TaskRunContext.get() is ctx,
        )

    @flow
    def pipeline(n: int) -> str:
        ctx = get_run_context()
        assert isinstance(ctx, FlowRunContext) and TaskRunContext.get() is None
        seen.update(
            flow_name=ctx.flow.name,
            params=ctx.parameters,
            runner=type(ctx.task_runner).__name__,
            run_name=ctx.flow_run.name,
            run_tags=ctx.flow_run.tags,
            run_count=ctx.flow_run.run_count,
        )
        step(n)
        return ctx.flow_run.id

    run_id = pipeline(4)
    assert seen == {
        "flow_name": "pipeline",
        "params": {"n": 4},
        "runner": "ThreadPoolTaskRunner",
        "run_name": seen["run_name"],
        "run_tags": [],
        "run_count": 1,
        "task_name": "step",
        "task_run_flow": run_id,
        "task_params": {"x": 4},
        "flow_from_task": run_id,
        "task_ctx": True,
    }
    with pytest.raises(MissingContextError, match="No run context available"):
        get_run_context()
    assert FlowRunContext.get() is None and TaskRunContext.get() is None


def test_a_subflow_called_in_a_task_is_the_run_context() -> None:
    """context.py ``get_run_context``: a flow context whose run is not the task's flow
    run (a subflow called inside a task) wins over the task context."""

    @flow
    def child() -> str:
        ctx = get_run_context()
        return type(ctx).__name__

    @task
    def wrapper() -> str:
        return child()

    @flow
    def parent() -> str:
        return wrapper()

    assert parent() == "FlowRunContext"


def test_runtime_modules_in_and_outside_runs() -> None:
    """runtime-context.mdx: outside a deployment ``deployment.name`` is None ("I belong to
    deployment None"); outside a run the runtime returns empty values."""
    seen: dict[str, Any] = {}

    @task(tags=["t"])
    def step() -> None:
        seen.update(
            task_tags=task_run.tags,
            task_api=task_run.api_url,
            task_ui=task_run.ui_url,
            task_flow_params=flow_run.parameters,
        )

    @flow(tags=["f"], version="1.2")
    def pipeline(x: int) -> None:
        seen.update(
            dep=(deployment.id, deployment.name, deployment.version, deployment.parameters),
            dep_flow_run=deployment.flow_run_id == flow_run.id,
            tags=flow_run.tags,
            version=flow_run.flow_version,
            scheduled=flow_run.scheduled_start_time is not None,
            api=flow_run.api_url,
        )
        step()

    pipeline(7)
    assert seen == {
        "dep": (None, None, None, {}),
        "dep_flow_run": True,
        "tags": ["f"],
        "version": "1.2",
        "scheduled": True,
        "api": None,  # the embedded backend has no API address
        "task_tags": ["f", "t"],
        "task_api": None,
        "task_ui": None,
        "task_flow_params": {"x": 7},
    }
    assert (deployment.id, deployment.parameters, deployment.flow_run_id) == (None, {}, None)
    assert (flow_run.run_count, task_run.run_count, task_run.tags) == (0, 0, [])
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = flow_run.nope


def test_api_url_names_the_run_on_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """runtime/flow_run.py ``get_flow_run_api_url``: the run's address on the API."""
    from sdk.runtime._urls import run_api_url

    monkeypatch.setattr(
        "runtime.settings.get_settings",
        lambda: type("S", (), {"api_url": "http://127.0.0.1:4200/"})(),
    )
    assert run_api_url("flow_runs", "abc") == "http://127.0.0.1:4200/flow_runs/abc"


def test_bad_tags_are_refused_and_version_is_a_string() -> None:
    """``tags`` takes strings (Prefect's TagsContext is a set of str)."""
    with pytest.raises(TypeError, match="non-empty strings"), tags("ok", 3):  # type: ignore[arg-type]
        pass
    with pytest.raises(TypeError, match="non-empty strings"), tags(""):
        pass
    assert isinstance(sdk.__version__, str) and sdk.__version__
