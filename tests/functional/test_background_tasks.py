"""Background tasks against moto in-process: ``task.delay()`` and a task worker.

Prefect 3 is the oracle: ``src/prefect/tasks.py`` (``apply_async``/``delay`` create a
deferred task run and return a ``PrefectDistributedFuture``), ``src/prefect/task_worker.py``
(the worker reads the run's persisted parameters, runs it through the engine with
``persist_result`` on, one run per claim) and docs/v3/advanced/background-tasks.mdx.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.engine.background.futures import PrefectDistributedFuture
from runtime.engine.background.queue import task_run_queue
from runtime.engine.background.submit import PARAMETERS_KEY
from runtime.engine.background.worker import TaskWorker, claim_task_run
from runtime.engine.client import DirectEngineClient
from runtime.engine.exceptions import FailedRun
from runtime.states import ResultRef, StateType
from sdk import flow, task

WAIT = 30.0


@task
def add(x: int, y: int = 1) -> int:
    return x + y


@task
def boom(message: str) -> None:
    raise ValueError(message)


@pytest.fixture
def worker(engine: DirectEngineClient) -> Iterator[TaskWorker]:
    w = TaskWorker(add, boom, limit=2, client=engine, poll_seconds=1)
    thread = threading.Thread(target=w.start)
    thread.start()
    yield w
    w.stop()
    thread.join(WAIT)
    assert not thread.is_alive()


def test_delay_is_run_by_a_task_worker_and_result_loads(
    engine: DirectEngineClient, worker: TaskWorker
) -> None:
    future = add.delay(2, y=40)
    assert isinstance(future, PrefectDistributedFuture)
    assert future.result(timeout=WAIT) == 42
    run = engine.stores.runs.read_task_run(future.task_run_id)
    assert run.state.type is StateType.COMPLETED and run.flow_run_id is None
    assert run.state.details.result is not None  # background tasks always persist
    names = [s.name for s in engine.stores.runs.read_state_history(run.id, "task_run")]
    assert names == ["Scheduled", "Pending", "Running", "Completed"]


def test_apply_async_waits_for_upstreams_and_failures_raise(
    engine: DirectEngineClient, worker: TaskWorker
) -> None:
    first = add.apply_async((1,))
    second = add.apply_async(kwargs={"x": first, "y": 10}, wait_for=[first])
    assert second.result(timeout=WAIT) == 12
    failed = boom.delay("no")
    failed.wait(WAIT)
    assert failed.state.type is StateType.FAILED
    with pytest.raises(FailedRun):
        failed.result(timeout=WAIT)


def test_a_delay_from_a_flow_outlives_it(engine: DirectEngineClient, worker: TaskWorker) -> None:
    @flow
    def submits() -> str:
        return add.delay(5).task_run_id

    task_run_id = submits()
    assert PrefectDistributedFuture[Any](task_run_id).result(timeout=WAIT) == 6


def test_a_run_is_claimed_once(engine: DirectEngineClient) -> None:
    """Two claims of one SCHEDULED run: one conditional transition wins."""
    future = add.delay(1)
    stores = engine.stores
    first = claim_task_run(stores, future.task_run_id, "w1")
    second = claim_task_run(stores, future.task_run_id, "w2")
    assert first is not None and second is None
    assert first.state.details.extra["task_worker_id"] == "w1"


def test_a_forged_parameter_payload_is_never_unpickled(engine: DirectEngineClient) -> None:
    """The parameters are a MAC-sealed pickle; a payload whose MAC fails fails the run."""
    import base64
    import pickle

    future = add.delay(1)
    stores = engine.stores
    run = stores.runs.read_task_run(future.task_run_id)
    ref = ResultRef.model_validate(run.state.details.extra[PARAMETERS_KEY])
    assert ref.inline is not None

    class Evil:
        def __reduce__(self) -> Any:
            return (exec, ("raise SystemExit('unpickled!')",))

    forged = ref.model_copy(update={"inline": base64.b64encode(pickle.dumps(Evil())).decode()})
    claimed = claim_task_run(stores, run.id, "w1")
    assert claimed is not None
    claimed.state.details.extra[PARAMETERS_KEY] = forged.model_dump(mode="json")
    worker = TaskWorker(add, client=engine, poll_seconds=1)
    worker.run_claimed(worker.tasks[add.task_key], claimed)
    after = stores.runs.read_task_run(run.id)
    assert after.state.type is StateType.FAILED
    assert "parameters could not be loaded" in (after.state.message or "")
    # its message is still queued: a worker would drop it (the run is no longer SCHEDULED)
    assert task_run_queue(stores).receive(wait_seconds=1)
