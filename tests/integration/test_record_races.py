"""Guarded task-run records and scoped idempotency keys under real concurrency (issue 7,
items 5 and 11), over HTTP against the session's locked moto server.

Every racer has its own boto3 client (its own ``Stores``), like separate workers.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from runtime.errors import Conflict
from runtime.models import FlowRunCreate, TaskRun
from runtime.states import Completed, Pending, Running, State, StateType
from runtime.stores import Stores


def race(racers: list[Callable[[], Any]]) -> list[Any]:
    """Start every racer at once (barrier); their results or exceptions, in order."""
    barrier = threading.Barrier(len(racers))
    out: list[Any] = [None] * len(racers)

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = racers[i]()
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(racers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def snapshot(flow_run_id: str, run_id: str, version: int) -> tuple[TaskRun, list[State]]:
    now = datetime.now(UTC)
    history: list[State] = [Pending(), Running(), Completed()][: version + 1]
    for i, s in enumerate(history):
        s.timestamp = now + timedelta(milliseconds=i)
    run = TaskRun(
        id=run_id,
        name="t-0",
        task_key="t",
        flow_run_id=flow_run_id,
        state=history[-1],
        state_version=version,
    )
    return run, history


def test_racing_snapshots_of_one_task_run_keep_the_newest(stores: Stores, prefix: str) -> None:
    parent = stores.runs.create_flow_run(FlowRunCreate(flow_name="etl"))
    assert stores.runs.set_state("flow_run", parent.id, Running()).accepted
    run_id = str(uuid.uuid4())
    racers_stores = [Stores.connect(prefix) for _ in range(12)]
    versions = [i % 3 for i in range(12)]
    results = race(
        [
            lambda s=s, v=v: s.runs.write_task_run_records(  # type: ignore[misc]
                [snapshot(parent.id, run_id, v)], guard=True
            )
            for s, v in zip(racers_stores, versions, strict=True)
        ]
    )
    assert all(r == 1 or isinstance(r, Conflict) for r in results), results
    stored = stores.runs.read_task_run(run_id)
    assert stored.state_version == 2 and stored.state.type is StateType.COMPLETED
    assert any(r == 1 for r, v in zip(results, versions, strict=True) if v == 2)


def test_records_racing_the_end_of_their_flow_run_never_land_after_it(
    stores: Stores, prefix: str
) -> None:
    parent = stores.runs.create_flow_run(FlowRunCreate(flow_name="etl"))
    assert stores.runs.set_state("flow_run", parent.id, Running()).accepted
    writers = [Stores.connect(prefix) for _ in range(8)]
    ids = [str(uuid.uuid4()) for _ in writers]
    ender = Stores.connect(prefix)
    results = race(
        [
            lambda: ender.runs.set_state("flow_run", parent.id, Completed()),
            *[
                lambda s=s, i=i: s.runs.write_task_run_records(  # type: ignore[misc]
                    [snapshot(parent.id, i, 2)], guard=True
                )
                for s, i in zip(writers, ids, strict=True)
            ],
        ]
    )
    assert results[0].accepted
    outcome = Counter("written" if r == 1 else type(r).__name__ for r in results[1:])
    assert set(outcome) <= {"written", "Conflict"}, results
    stored = {r.id for r in stores.runs.list_task_runs().items}
    for task_id, result in zip(ids, results[1:], strict=True):
        assert (task_id in stored) == (result == 1)
        if result != 1:
            assert "Completed" in result.message
    late = snapshot(parent.id, str(uuid.uuid4()), 2)
    try:
        stores.runs.write_task_run_records([late], guard=True)
    except Conflict as exc:
        assert "Completed" in exc.message
    else:
        raise AssertionError("a record landed in a finished flow run")


def test_two_flows_racing_one_key_each_get_their_own_run(stores: Stores, prefix: str) -> None:
    racers = [Stores.connect(prefix) for _ in range(10)]
    results = race(
        [
            lambda s=s, n=n: s.runs.create_flow_run_once(  # type: ignore[misc]
                FlowRunCreate(flow_name=f"flow-{n % 2}", idempotency_key="k")
            )
            for n, s in enumerate(racers)
        ]
    )
    created = [run for run, was_created in results if was_created]
    assert sorted(r.flow_name for r in created) == ["flow-0", "flow-1"]
    for run, _ in results:
        assert run.id == next(c.id for c in created if c.flow_name == run.flow_name)
