"""DynamoDB's 400 KB item limit: every run item stays under it by construction (issue 7, item 7).

Against moto in-process, which refuses items over ~400 KB as DynamoDB does. Each
reproduction of the issue is a test here: a task with retries raising a 50 KB
message inside a flow, a 60 KB failure message per retry through the store, an
inline result bigger than the item can hold twice.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from runtime.engine.backend import use_engine_client
from runtime.engine.client import DirectEngineClient
from runtime.errors import ItemTooLarge
from runtime.limits import (
    INLINE_RESULT_MAX_BYTES,
    ITEM_BUDGET_BYTES,
    STATE_MESSAGE_MAX_BYTES,
    item_size,
)
from runtime.models import FlowRunCreate, LogRecord, TaskRun, TaskRunCreate, TaskRunFilter
from runtime.results import ResultStore
from runtime.settings import Settings
from runtime.states import (
    AwaitingRetry,
    Completed,
    Failed,
    Pending,
    Running,
    State,
    StateType,
)
from runtime.stores import Stores
from sdk import flow, task


def stored_size(stores: Stores, run_id: str) -> int:
    item = stores.runs.db.get(stores.runs.table.name, {"id": run_id})
    assert item is not None
    return item_size(item)


# ----------------------------------------------------------------------------- the model


def test_a_long_state_message_is_truncated_with_a_marker() -> None:
    state = Failed(message="x" * 50_000)
    assert state.message is not None
    assert len(state.message.encode()) <= STATE_MESSAGE_MAX_BYTES
    assert state.message.startswith("xxx")
    dropped = 50_000 - state.message.count("x")
    assert state.message.endswith(f"... [truncated {dropped} bytes]")
    parsed = State.model_validate({"type": "FAILED", "name": "Failed", "message": "é" * 20_000})
    assert parsed.message is not None and len(parsed.message.encode()) <= STATE_MESSAGE_MAX_BYTES
    assert Failed(message="short").message == "short"


def test_the_inline_result_setting_is_capped_well_below_the_item_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRATOFLOW_INLINE_RESULT_MAX_BYTES", "300000")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "inline_result_max_bytes" in str(caught.value)
    monkeypatch.delenv("STRATOFLOW_INLINE_RESULT_MAX_BYTES")
    assert Settings(inline_result_max_bytes=INLINE_RESULT_MAX_BYTES).inline_result_max_bytes == (
        INLINE_RESULT_MAX_BYTES
    )
    with pytest.raises(ValueError, match="inline_max_bytes"):
        ResultStore(None, "bucket", inline_max_bytes=300_000)


# ----------------------------------------------------------------------------- the store


def test_a_60kb_failure_message_per_retry_through_the_store(stores: Stores) -> None:
    run = stores.runs.create_task_run(TaskRunCreate(task_key="t"))
    message = "boom " * 12_000  # 60 KB
    for attempt in range(8):
        assert stores.runs.set_state("task_run", run.id, Running()).accepted
        result = stores.runs.set_state("task_run", run.id, AwaitingRetry(message=message))
        assert result.accepted, (attempt, result)
    assert stores.runs.set_state("task_run", run.id, Running()).accepted
    assert stores.runs.set_state("task_run", run.id, Failed(message=message)).accepted
    stored = stores.runs.read_task_run(run.id)
    assert stored.state.type is StateType.FAILED
    assert stored.state.message is not None and "[truncated" in stored.state.message
    assert stored_size(stores, run.id) <= ITEM_BUDGET_BYTES
    history = stores.runs.read_state_history(run.id)
    assert history[0].type is StateType.PENDING
    assert history[-1].type is StateType.FAILED


def test_history_is_bounded_by_bytes_keeping_the_first_and_the_latest(stores: Stores) -> None:
    run = stores.runs.create_task_run(TaskRunCreate(task_key="t"))
    message = "m" * STATE_MESSAGE_MAX_BYTES
    for _ in range(20):
        stores.runs.set_state("task_run", run.id, Running(), force=True)
        stores.runs.set_state("task_run", run.id, AwaitingRetry(message=message), force=True)
    stores.runs.set_state("task_run", run.id, Completed(), force=True)
    item = stores.runs.db.get(stores.runs.table.name, {"id": run.id})
    assert item is not None and item_size(item) <= ITEM_BUDGET_BYTES
    history = stores.runs.read_state_history(run.id)
    assert history[0].type is StateType.PENDING
    assert history[-1].type is StateType.COMPLETED
    assert len(history) < 42
    assert item["history_dropped"] == 42 - len(history)
    assert stores.runs.read_task_run(run.id).state_version == 41


def test_an_inline_result_is_not_copied_into_history(stores: Stores) -> None:
    results = ResultStore(stores.results.s3, stores.results.bucket, INLINE_RESULT_MAX_BYTES)
    value = {"rows": "r" * (INLINE_RESULT_MAX_BYTES - 100)}
    ref = results.persist(value, serializer="json")
    assert ref.inline is not None
    run = stores.runs.create_flow_run(FlowRunCreate(flow_name="f"))
    stores.runs.set_state("flow_run", run.id, Running())
    done = Completed()
    done.details.result = ref
    assert stores.runs.set_state("flow_run", run.id, done).accepted
    stored = stores.runs.read_flow_run(run.id)
    assert stored.state.details.result == ref
    assert results.load(stored.state.details.result) == value
    history = stores.runs.read_state_history(run.id)
    assert history[-1].details.result is not None
    assert history[-1].details.result.inline is None  # only the current state holds it
    assert stored_size(stores, run.id) < 2 * INLINE_RESULT_MAX_BYTES


def test_a_run_that_can_never_fit_is_item_too_large_and_writes_nothing(stores: Stores) -> None:
    run = stores.runs.create_task_run(TaskRunCreate(task_key="t"))
    huge = Running()
    huge.details.extra["blob"] = "b" * 500_000
    with pytest.raises(ItemTooLarge) as caught:
        stores.runs.set_state("task_run", run.id, huge)
    assert caught.value.status_code == 413
    assert run.id in caught.value.message
    assert stores.runs.read_task_run(run.id).state.type is StateType.PENDING
    record = TaskRun(id=str(uuid.uuid4()), name="t-0", task_key="t", state=huge)
    with pytest.raises(ItemTooLarge):
        stores.runs.write_task_run_records([(record, [Pending(), huge])])


def test_records_with_long_histories_are_fitted(stores: Stores) -> None:
    history: list[State] = [Pending()]
    for _ in range(30):
        history += [Running(), AwaitingRetry(message="z" * 40_000)]
    history.append(Failed(message="z" * 40_000))
    run = TaskRun(
        id=str(uuid.uuid4()),
        name="t-0",
        task_key="t",
        state=history[-1],
        state_version=len(history) - 1,
    )
    for guard in (False, True):
        stores.runs.write_task_run_records([(run, history)], guard=guard)
        run = run.model_copy(update={"state_version": run.state_version + 1})
    kept = stores.runs.read_state_history(run.id)
    assert kept[0].type is StateType.PENDING and kept[-1].type is StateType.FAILED
    assert stored_size(stores, run.id) <= ITEM_BUDGET_BYTES


# ----------------------------------------------------------------------------- the engine


def test_retries_raising_a_50kb_message_fail_the_flow_and_record_the_task(
    engine: DirectEngineClient,
) -> None:
    @task(retries=8, retry_delay_seconds=0)
    def noisy() -> None:
        raise ValueError("e" * 50_000)

    @flow
    def parent() -> None:
        noisy()

    state = parent(return_state=True)
    assert state.type is StateType.FAILED
    runs = engine.stores.runs.list_flow_runs().items
    assert [r.state.type for r in runs] == [StateType.FAILED]
    (task_run,) = engine.stores.runs.list_task_runs(TaskRunFilter(flow_run_id=runs[0].id)).items
    assert task_run.state.type is StateType.FAILED
    assert task_run.run_count == 9
    assert task_run.state.message is not None and "[truncated" in task_run.state.message
    assert stored_size(engine.stores, task_run.id) <= ITEM_BUDGET_BYTES


def test_a_json_result_at_the_inline_cap_is_stored_once(stores: Stores) -> None:
    stores.results.inline_max_bytes = INLINE_RESULT_MAX_BYTES
    client = DirectEngineClient(stores)

    @task(result_serializer="json", persist_result=True)
    def big() -> dict[str, Any]:
        return {"x": "y" * (INLINE_RESULT_MAX_BYTES - 1000)}

    @flow(result_serializer="json", persist_result=True)
    def parent() -> dict[str, Any]:
        return big()

    try:
        with use_engine_client(client):
            state = parent(return_state=True)
    finally:
        client.close()
    assert state.type is StateType.COMPLETED
    assert len(state.result()["x"]) == INLINE_RESULT_MAX_BYTES - 1000
    (run,) = stores.runs.list_flow_runs().items
    (task_run,) = stores.runs.list_task_runs().items
    for run_id in (run.id, task_run.id):
        history = stores.runs.read_state_history(run_id)
        assert all(s.details.result is None or s.details.result.inline is None for s in history)
        assert stored_size(stores, run_id) < 2 * INLINE_RESULT_MAX_BYTES


def test_the_recorder_isolates_a_poisoned_record_and_reports_it(
    engine: DirectEngineClient,
) -> None:
    flow_run = engine.create_flow_run(FlowRunCreate(flow_name="f"))
    good = [
        TaskRun(id=str(uuid.uuid4()), name=f"t-{i}", task_key="t", flow_run_id=flow_run.id)
        for i in range(7)
    ]
    poisoned_state = Running()
    poisoned_state.details.extra["blob"] = "p" * 500_000
    poisoned = TaskRun(
        id=str(uuid.uuid4()),
        name="bad-0",
        task_key="bad",
        flow_run_id=flow_run.id,
        state=poisoned_state,
    )
    for run in [*good[:3], poisoned, *good[3:]]:
        engine.record_task_run(run, [run.state])
    engine.flush()
    stored = engine.stores.runs.list_task_runs(TaskRunFilter(flow_run_id=flow_run.id)).items
    assert {r.id for r in stored} == {r.id for r in good}
    engine.flush()  # nothing left to retry forever
    logs = engine.stores.logs.read(flow_run.id).items
    messages = [line.message for line in logs]
    assert any(poisoned.id in m and "could not be recorded" in m for m in messages), messages
    assert all(isinstance(line, LogRecord) for line in logs)
    assert json.dumps([line.message for line in logs])
