"""A running flow run cancelled from outside (``stratoflow flow-run cancel``) ends Cancelled.

The flow runs in a thread of the test against moto in-process; the test cancels
it through the store's real cancel path (``RunStore.cancel_flow_run``: RUNNING ->
CANCELLING) while its first task blocks. Nothing is timed: the test waits for
the engine's own log line saying it saw the request before it lets the task go.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from runtime.engine.client import DirectEngineClient
from runtime.engine.exceptions import CancelledRun
from runtime.engine.task_runners import ThreadPoolTaskRunner
from runtime.models import FlowRun, FlowRunFilter, TaskRun, TaskRunFilter
from runtime.states import State, StateType
from sdk import flow, task

WAIT = 30.0
"""Upper bound for anything the test waits on (a hang fails instead of blocking forever)."""


class _Seen(logging.Handler):
    """Sets ``event`` once flow engines logged ``needed`` times that they saw a cancellation."""

    def __init__(self, needed: int = 1) -> None:
        super().__init__()
        self.event = threading.Event()
        self.needed = needed

    def emit(self, record: logging.LogRecord) -> None:
        if "no new task runs start" in record.getMessage():
            self.needed -= 1
            if self.needed <= 0:
                self.event.set()


@pytest.fixture
def seen() -> Iterator[threading.Event]:
    handler = _Seen()
    log = logging.getLogger("stratoflow.flow_runs")
    log.addHandler(handler)
    try:
        yield handler.event
    finally:
        log.removeHandler(handler)


def running_flow_run(engine: DirectEngineClient, started: threading.Event) -> FlowRun:
    assert started.wait(WAIT), "the first task never started"
    (run,) = engine.stores.runs.list_flow_runs(FlowRunFilter()).items
    assert run.state.type is StateType.RUNNING
    found: FlowRun = run
    return found


def task_runs(engine: DirectEngineClient, flow_run_id: str) -> list[TaskRun]:
    engine.flush()
    runs = engine.stores.runs.list_task_runs(TaskRunFilter(flow_run_id=flow_run_id)).items
    return sorted(runs, key=lambda r: int(r.dynamic_key))


def run_in_thread(fn: object) -> tuple[threading.Thread, list[State]]:
    out: list[State] = []
    thread = threading.Thread(target=lambda: out.append(fn(return_state=True)))  # type: ignore[operator]
    thread.start()
    return thread, out


def test_cancelling_a_flow_of_sequential_tasks_stops_it(
    engine: DirectEngineClient, seen: threading.Event
) -> None:
    started, release = threading.Event(), threading.Event()

    @task
    def step(i: int) -> int:
        if i == 0:
            started.set()
            assert release.wait(WAIT)
        return i

    @flow
    def twelve_steps() -> list[int]:
        return [step(i) for i in range(12)]

    thread, out = run_in_thread(twelve_steps)
    run = running_flow_run(engine, started)
    result = engine.stores.runs.cancel_flow_run(run.id)
    assert result.accepted and result.state.type is StateType.CANCELLING
    assert seen.wait(WAIT), "the engine never noticed the cancellation"
    release.set()
    thread.join(WAIT)
    assert not thread.is_alive()

    (state,) = out
    assert state.type is StateType.CANCELLED
    with pytest.raises(CancelledRun):
        state.result()
    final = engine.stores.runs.read_flow_run(run.id)
    assert final.state.type is StateType.CANCELLED
    assert [s.name for s in engine.stores.runs.read_state_history(run.id)] == [
        "Pending",
        "Running",
        "Cancelling",
        "Cancelled",
    ]
    runs = task_runs(engine, run.id)
    # the running task finished; the next one was cancelled instead of started; no more ran
    assert [(r.name, r.state.type) for r in runs] == [
        ("step-0", StateType.COMPLETED),
        ("step-1", StateType.CANCELLED),
    ]
    assert runs[1].run_count == 0  # never started


def test_cancelling_a_mapped_flow_cancels_the_pending_task_runs(
    engine: DirectEngineClient, seen: threading.Event
) -> None:
    started, release = threading.Event(), threading.Event()
    ran: list[int] = []

    @task
    def step(i: int) -> int:
        ran.append(i)
        if i == 0:
            started.set()
            assert release.wait(WAIT)
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def twelve_mapped() -> list[int]:
        return step.map(range(12)).result()

    thread, out = run_in_thread(twelve_mapped)
    run = running_flow_run(engine, started)
    engine.stores.runs.cancel_flow_run(run.id)
    assert seen.wait(WAIT), "the engine never noticed the cancellation"
    release.set()
    thread.join(WAIT)
    assert not thread.is_alive()

    assert out[0].type is StateType.CANCELLED
    assert engine.stores.runs.read_flow_run(run.id).state.type is StateType.CANCELLED
    assert ran == [0]
    states = [r.state.type for r in task_runs(engine, run.id)]
    assert states == [StateType.COMPLETED] + [StateType.CANCELLED] * 11


def test_cancelling_a_parent_flow_run_cancels_its_running_subflow(
    engine: DirectEngineClient,
) -> None:
    started, release = threading.Event(), threading.Event()
    seen = _Seen(needed=2)  # the parent notices, then the subflow
    log = logging.getLogger("stratoflow.flow_runs")
    log.addHandler(seen)

    @task
    def step(i: int) -> int:
        if i == 0:
            started.set()
            assert release.wait(WAIT)
        return i

    @flow
    def child() -> list[int]:
        return [step(i) for i in range(12)]

    @flow
    def parent() -> list[int]:
        return child()

    try:
        thread, out = run_in_thread(parent)
        assert started.wait(WAIT)
        runs = engine.stores.runs.list_flow_runs(FlowRunFilter()).items
        (parent_run,) = [r for r in runs if r.parent_flow_run_id is None]
        (child_run,) = [r for r in runs if r.parent_flow_run_id == parent_run.id]
        engine.stores.runs.cancel_flow_run(parent_run.id)
        assert seen.event.wait(WAIT), "the subflow never noticed its parent's cancellation"
    finally:
        release.set()
        log.removeHandler(seen)
    thread.join(WAIT)
    assert not thread.is_alive()

    assert out[0].type is StateType.CANCELLED
    assert engine.stores.runs.read_flow_run(parent_run.id).state.type is StateType.CANCELLED
    assert engine.stores.runs.read_flow_run(child_run.id).state.type is StateType.CANCELLED
    steps = [(r.name, r.state.type) for r in task_runs(engine, child_run.id)]
    assert steps == [("step-0", StateType.COMPLETED), ("step-1", StateType.CANCELLED)]
