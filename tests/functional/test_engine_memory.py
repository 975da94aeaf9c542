"""Nothing of a flow run's task runs outlives it once it is durable: memory stays flat.

A worker or a long-lived process runs flow after flow; whatever the engine keeps
per task run (its engine, future, snapshots, history, the recorder's queue, the
store's held items) must be released once the records are written, or memory
grows with every run. Checked with object counts and weak references after
``gc.collect()``, not with timings or byte counts.
"""

from __future__ import annotations

import gc
import logging
import weakref
from typing import Any

from runtime.engine.client import DirectEngineClient
from runtime.engine.futures import PrefectFuture
from runtime.engine.task_engine import TaskRunEngine
from runtime.models import TaskRun
from sdk import flow, task


def live(kind: type, predicate: Any = None) -> int:
    gc.collect()
    return sum(
        1 for o in gc.get_objects() if isinstance(o, kind) and (predicate is None or predicate(o))
    )


def test_task_runs_futures_and_engines_are_released_when_the_flow_returns(
    engine: DirectEngineClient,
) -> None:
    ids: set[str] = set()
    futures: list[weakref.ref[PrefectFuture[Any]]] = []

    @task(on_completion=[lambda _task, run, _state: ids.add(run.id)])
    def inc(x: int) -> int:
        return x + 1

    @flow
    def work(n: int) -> int:
        mapped = inc.map(range(n))
        futures.extend(weakref.ref(f) for f in mapped)
        total = sum(mapped.result())
        submitted = inc.submit(0)
        futures.append(weakref.ref(submitted))
        return total + submitted.result() + inc(1)

    @flow
    def parent() -> int:
        return work(20) + work(20)

    assert parent() == 2 * (sum(range(1, 21)) + 1 + 2)

    assert len(ids) == 2 * 22  # every task run finished (and is recorded)
    gc.collect()
    assert futures and all(ref() is None for ref in futures)
    assert live(TaskRunEngine, lambda engine: engine.run.id in ids) == 0
    assert live(TaskRun, lambda run: run.id in ids) == 0
    assert len(engine.stores.runs.held) == 0  # final flow runs are not held
    stored = {r.id for r in engine.stores.runs.list_task_runs(limit=1000).items}
    assert ids <= stored


def test_the_held_flow_run_items_stay_bounded() -> None:
    from runtime.stores.held import HeldItems

    held = HeldItems(capacity=3)
    for i in range(10):
        held.keep(
            {"id": f"run-{i}", "kind": "flow_run", "state_type": "RUNNING", "state_version": 1}
        )
    assert len(held) == 3  # the least recently written went first
    assert held.get("run-0", 1) is None and held.get("run-9", 1) is not None
    assert held.get("run-9", 2) is None  # another version: read it
    held.keep({"id": "run-9", "kind": "flow_run", "state_type": "COMPLETED", "state_version": 2})
    held.keep({"id": "task", "kind": "task_run", "state_type": "RUNNING", "state_version": 1})
    assert len(held) == 2 and held.get("run-9", 2) is None


def test_a_task_defined_inside_a_function_is_released_with_what_its_failure_holds(
    engine: DirectEngineClient,
) -> None:
    # a task defined in a function, failing: its exception's traceback holds the task
    # run's engine; nothing process-wide (e.g. a cache of signatures) may keep the
    # function, its closure or that exception alive once the caller lets go of them
    class Boom(Exception):
        pass

    def make() -> tuple[Any, Any]:
        payload = bytearray(1024)

        @task
        def explode(x: int) -> int:
            raise Boom(len(payload) + x)

        @flow
        def outer() -> None:
            explode(1)

        return outer, explode

    outer, explode = make()
    fn = weakref.ref(explode.fn)
    state = outer(return_state=True)
    assert state.is_failed()
    del outer, explode, state
    # pytest's own log capture keeps this test's log records, and a task failure's
    # record carries the exception with its traceback: let go of those first
    for handler in logging.getLogger().handlers:
        records = getattr(handler, "records", None)
        if isinstance(records, list):
            records.clear()
    gc.collect()
    assert fn() is None
    assert live(Boom) == 0
