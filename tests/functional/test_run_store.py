"""RunStore against moto in-process: every operation, its rejections and its idempotency.

Each test gets a fresh installation (``stores`` fixture, unique prefix). Where a
call must be refused, the raw DynamoDB item is read before and after and must be
identical: a rejected request writes nothing.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

import runtime.stores.runs as runs_module
from runtime.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from runtime.models import (
    FlowRun,
    FlowRunCreate,
    FlowRunFilter,
    RetryPolicy,
    TaskRun,
    TaskRunCreate,
    TaskRunFilter,
)
from runtime.states import (
    Cancelling,
    Completed,
    Failed,
    Late,
    Pending,
    Running,
    Scheduled,
    State,
    StateType,
    utcnow,
)
from runtime.stores import Stores
from runtime.stores.dynamo import Item, encode_cursor
from runtime.stores.runs import RunStore, run_id_for_key, shard_of

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    """Creation times under the test's control: every read of the clock is one second later."""

    def __init__(self, start: datetime = T0) -> None:
        self._ticks = itertools.count()
        self.start = start
        self.last = start

    def __call__(self) -> datetime:
        self.last = self.start + timedelta(seconds=next(self._ticks))
        return self.last


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Patch the run store's clock: runs are created T0, T0+1s, T0+2s, ..."""
    fake = Clock()
    monkeypatch.setattr(runs_module, "utcnow", fake)
    return fake


def raw(stores: Stores, run_id: str) -> Item | None:
    """The run's DynamoDB item exactly as stored (consistent read)."""
    return stores.db.get(stores.specs.runs.name, {"id": run_id})


def all_flow_runs(stores: Stores, flt: FlowRunFilter | None = None) -> list[FlowRun]:
    out: list[FlowRun] = []
    cursor = None
    for _ in range(100):
        page = stores.runs.list_flow_runs(flt, limit=50, cursor=cursor)
        out += page.items
        cursor = page.next_cursor
        if cursor is None:
            return out
    raise AssertionError("pagination did not end")


def all_task_runs(stores: Stores, flt: TaskRunFilter | None = None) -> list[TaskRun]:
    out: list[TaskRun] = []
    cursor = None
    for _ in range(100):
        page = stores.runs.list_task_runs(flt, limit=50, cursor=cursor)
        out += page.items
        cursor = page.next_cursor
        if cursor is None:
            return out
    raise AssertionError("pagination did not end")


def flow(stores: Stores, **kwargs: Any) -> FlowRun:
    kwargs.setdefault("flow_name", "etl")
    return stores.runs.create_flow_run(FlowRunCreate(**kwargs))


def task(stores: Stores, **kwargs: Any) -> TaskRun:
    kwargs.setdefault("task_key", "extract")
    return stores.runs.create_task_run(TaskRunCreate(**kwargs))


def ids(runs: list[Any]) -> list[str]:
    return [r.id for r in runs]


def assert_unchanged(stores: Stores, run_id: str, before: Item | None) -> None:
    assert raw(stores, run_id) == before, "a refused request changed the stored item"


# ============================================================================ create


def test_create_flow_run_generates_name_id_and_pending_state(stores: Stores) -> None:
    run = flow(stores, parameters={"n": 3}, tags=["db", "nightly"])

    assert re.fullmatch(r"[a-z]+-[a-z]+", run.name), run.name
    assert uuid.UUID(run.id).version == 4
    assert run.state.type is StateType.PENDING and run.state.name == "Pending"
    assert (run.state_version, run.run_count) == (0, 0)
    assert run.start_time is None and run.end_time is None
    assert run.created == run.updated
    assert stores.runs.read_flow_run(run.id) == run

    item = raw(stores, run.id)
    assert item is not None
    assert FlowRun.model_validate_json(item["doc"]) == run
    assert item["kind"] == "flow_run"
    assert item["flow_name"] == "etl"
    assert item["state_type"] == "PENDING" and item["state_name"] == "Pending"
    # index partitions are sharded by the run's id (issue 8, item 11)
    shard = shard_of("flow_run", run.id)
    assert item["kind_state"] == f"flow_run#PENDING#{shard}"
    assert item["kind_shard"] == f"flow_run#{shard}"
    assert item["state_version"] == 0
    assert "tags" not in item  # filters read the document; no copy (issue 8, item 9)
    assert [json.loads(h)["name"] for h in item["history"]] == ["Pending"]
    # Sparse index attributes: absent, not null, when the run has none.
    assert "deployment_id" not in item and "parent_id" not in item


def test_create_task_run_generates_name_from_task_key(stores: Stores) -> None:
    parent = flow(stores)
    run = task(stores, task_key="load", flow_run_id=parent.id, dynamic_key="3")

    assert run.name == f"load-{run.id[:8]}"
    assert run.flow_run_id == parent.id and run.dynamic_key == "3"
    assert run.state.type is StateType.PENDING and run.state_version == 0
    assert stores.runs.read_task_run(run.id) == run
    item = raw(stores, run.id)
    assert item is not None
    assert (item["kind"], item["parent_id"]) == ("task_run", parent.id)
    # task runs are in by_kind (sharded) and by_parent only, not in by_state (issue 8, item 9)
    assert item["kind_shard"] == f"task_run#{shard_of('task_run', run.id)}"
    assert "kind_state" not in item and "task_key" not in item


def test_create_keeps_caller_id_and_name(stores: Stores) -> None:
    run_id = str(uuid.uuid4())
    run = flow(stores, id=run_id, name="my-run")
    assert (run.id, run.name) == (run_id, "my-run")
    assert stores.runs.read_flow_run(run_id).name == "my-run"


def test_create_with_scheduled_state_sets_expected_start(stores: Stores) -> None:
    when = utcnow() + timedelta(hours=1)
    run = flow(stores, state=Scheduled(scheduled_time=when))
    assert run.state.type is StateType.SCHEDULED
    assert run.expected_start_time == when
    assert run.next_scheduled_start_time == when
    assert stores.runs.read_flow_run(run.id).next_scheduled_start_time == when


def test_create_in_running_state_counts_the_run(stores: Stores) -> None:
    run = task(stores, state=Running())
    assert run.state.type is StateType.RUNNING
    assert run.run_count == 1
    assert run.start_time is not None


def test_flow_run_idempotency_key_returns_the_first_run(stores: Stores) -> None:
    first = flow(stores, idempotency_key="deploy-1@2026-03-01T12:00", parameters={"n": 1})
    before = raw(stores, first.id)
    again = flow(stores, idempotency_key="deploy-1@2026-03-01T12:00", parameters={"n": 1})

    assert again == first
    assert again.parameters == {"n": 1}
    assert first.id == run_id_for_key("flow_run", "flow:etl", "deploy-1@2026-03-01T12:00")
    assert ids(all_flow_runs(stores)) == [first.id], "a repeat must create nothing more"
    assert_unchanged(stores, first.id, before)


def test_task_run_idempotency_key_returns_the_first_run(stores: Stores) -> None:
    parent = flow(stores)
    key = f"{parent.id}:extract:0"
    first = task(stores, flow_run_id=parent.id, idempotency_key=key)
    again = task(stores, flow_run_id=parent.id, idempotency_key=key)
    with pytest.raises(Conflict):
        task(stores, flow_run_id=parent.id, idempotency_key=key, tags=["other"])

    assert again == first and again.tags == []
    assert first.id == run_id_for_key("task_run", f"flow_run:{parent.id}/task:extract", key)
    assert ids(all_task_runs(stores)) == [first.id]
    assert ids(all_task_runs(stores, TaskRunFilter(flow_run_id=parent.id))) == [first.id]


def test_idempotency_keys_are_per_kind(stores: Stores) -> None:
    flow_run = flow(stores, idempotency_key="k")
    task_run = task(stores, idempotency_key="k")
    assert flow_run.id != task_run.id
    assert stores.runs.read_flow_run(flow_run.id).kind == "flow_run"
    assert stores.runs.read_task_run(task_run.id).kind == "task_run"


def test_idempotency_key_with_a_different_id_is_refused(stores: Stores) -> None:
    with pytest.raises(InvalidInput) as caught:
        flow(stores, id=str(uuid.uuid4()), idempotency_key="k")
    assert caught.value.details["field"] == "idempotency_key"
    with pytest.raises(InvalidInput) as caught_task:
        task(stores, id=str(uuid.uuid4()), idempotency_key="k")
    assert caught_task.value.details["field"] == "idempotency_key"
    assert all_flow_runs(stores) == [] and all_task_runs(stores) == []

    # The id the key derives to is not a conflict.
    derived = run_id_for_key("flow_run", "flow:etl", "k")
    assert flow(stores, id=derived, idempotency_key="k").id == derived


def test_idempotency_key_owned_by_the_other_kind_is_a_conflict(stores: Stores) -> None:
    squatter = task(stores, id=run_id_for_key("flow_run", "flow:etl", "k"))
    before = raw(stores, squatter.id)
    with pytest.raises(Conflict):
        flow(stores, idempotency_key="k")
    assert_unchanged(stores, squatter.id, before)
    assert all_flow_runs(stores) == []


def test_duplicate_id_already_exists(stores: Stores) -> None:
    run_id = str(uuid.uuid4())
    first = flow(stores, id=run_id, parameters={"n": 1})
    before = raw(stores, run_id)

    with pytest.raises(AlreadyExists) as caught:
        flow(stores, id=run_id, parameters={"n": 2})
    assert caught.value.details["id"] == run_id
    with pytest.raises(AlreadyExists):
        task(stores, id=run_id)

    assert_unchanged(stores, run_id, before)
    assert stores.runs.read_flow_run(run_id) == first
    assert len(all_flow_runs(stores)) == 1 and all_task_runs(stores) == []


def test_duplicate_task_run_id_already_exists(stores: Stores) -> None:
    run_id = str(uuid.uuid4())
    task(stores, id=run_id)
    with pytest.raises(AlreadyExists):
        task(stores, id=run_id, task_key="other")
    assert stores.runs.read_task_run(run_id).task_key == "extract"


# ============================================================================ read


def test_read_unknown_or_wrong_kind_is_not_found(stores: Stores) -> None:
    flow_run = flow(stores)
    task_run = task(stores, flow_run_id=flow_run.id)
    unknown = str(uuid.uuid4())

    with pytest.raises(NotFound):
        stores.runs.read_flow_run(unknown)
    with pytest.raises(NotFound):
        stores.runs.read_task_run(unknown)
    with pytest.raises(NotFound):
        stores.runs.read_flow_run(task_run.id)
    with pytest.raises(NotFound):
        stores.runs.read_task_run(flow_run.id)
    with pytest.raises(NotFound):
        stores.runs.read_state_history(unknown)


def test_delete_run(stores: Stores) -> None:
    run = flow(stores)
    stores.runs.delete_run(run.id)
    with pytest.raises(NotFound):
        stores.runs.read_flow_run(run.id)
    stores.runs.delete_run(run.id)  # absent: no error


# ============================================================================ list


def test_list_flow_runs_by_flow_name(stores: Stores, clock: Clock) -> None:
    etl = [flow(stores, flow_name="etl") for _ in range(3)]
    flow(stores, flow_name="report")

    found = stores.runs.list_flow_runs(FlowRunFilter(flow_name="etl")).items
    assert ids(found) == ids(reversed(etl))  # type: ignore[arg-type]
    assert [r.flow_name for r in stores.runs.list_flow_runs().items] == [
        "report",
        "etl",
        "etl",
        "etl",
    ]
    assert stores.runs.list_flow_runs(FlowRunFilter(flow_name="nope")).items == []


def test_list_flow_runs_by_deployment_and_work_pool(stores: Stores, clock: Clock) -> None:
    dep_a, dep_b = str(uuid.uuid4()), str(uuid.uuid4())
    a1 = flow(stores, deployment_id=dep_a, work_pool_name="pool-1")
    a2 = flow(stores, deployment_id=dep_a, work_pool_name="pool-2")
    b1 = flow(stores, deployment_id=dep_b, work_pool_name="pool-1")
    flow(stores)

    assert ids(stores.runs.list_flow_runs(FlowRunFilter(deployment_id=dep_a)).items) == [
        a2.id,
        a1.id,
    ]
    assert ids(stores.runs.list_flow_runs(FlowRunFilter(work_pool_name="pool-1")).items) == [
        b1.id,
        a1.id,
    ]
    both = FlowRunFilter(deployment_id=dep_a, work_pool_name="pool-1")
    assert ids(stores.runs.list_flow_runs(both).items) == [a1.id]


def test_list_flow_runs_by_state_types_and_names(stores: Stores, clock: Clock) -> None:
    pending = flow(stores)
    running = flow(stores)
    completed = flow(stores)
    late = flow(stores, state=Scheduled(scheduled_time=T0))
    scheduled = flow(stores, state=Scheduled(scheduled_time=T0 + timedelta(days=1)))
    assert stores.runs.set_state("flow_run", running.id, Running()).accepted
    assert stores.runs.set_state("flow_run", completed.id, Running()).accepted
    assert stores.runs.set_state("flow_run", completed.id, Completed()).accepted
    assert stores.runs.set_state("flow_run", late.id, Late(scheduled_time=T0)).accepted

    def listed(**kwargs: Any) -> set[str]:
        return set(ids(stores.runs.list_flow_runs(FlowRunFilter(**kwargs)).items))

    # One state type: the by_state index; several: a filter on by_kind.
    assert listed(state_types=[StateType.RUNNING]) == {running.id}
    assert listed(state_types=[StateType.SCHEDULED]) == {late.id, scheduled.id}
    assert listed(state_types=[StateType.PENDING, StateType.COMPLETED]) == {
        pending.id,
        completed.id,
    }
    assert listed(state_types=[StateType.FAILED]) == set()
    assert listed(state_names=["Late"]) == {late.id}
    assert listed(state_names=["Scheduled", "Running"]) == {scheduled.id, running.id}
    assert listed(state_types=[StateType.SCHEDULED], state_names=["Scheduled"]) == {scheduled.id}
    assert listed(flow_name="etl", state_types=[StateType.COMPLETED]) == {completed.id}


def test_list_flow_runs_in_a_time_window(stores: Stores, clock: Clock) -> None:
    runs = [flow(stores) for _ in range(5)]  # created T0, T0+1s, ..., T0+4s
    created = [r.created for r in runs]
    assert created == [T0 + timedelta(seconds=i) for i in range(5)]

    def listed(**kwargs: Any) -> list[str]:
        return ids(stores.runs.list_flow_runs(FlowRunFilter(**kwargs)).items)

    newest_first = list(reversed(ids(runs)))
    assert listed(created_after=created[2]) == newest_first[:3]  # bounds are inclusive
    assert listed(created_before=created[1]) == newest_first[3:]
    assert listed(created_after=created[1], created_before=created[3]) == newest_first[1:4]
    assert listed(created_after=created[4] + timedelta(microseconds=1)) == []
    # On the by_state index the window is a filter, not a key condition.
    assert (
        listed(state_types=[StateType.PENDING], created_after=created[1], created_before=created[3])
        == newest_first[1:4]
    )
    # On by_flow it is part of the key condition again.
    assert listed(flow_name="etl", created_before=created[0]) == [runs[0].id]


def test_list_flow_runs_with_all_tags(stores: Stores, clock: Clock) -> None:
    a = flow(stores, tags=["db", "nightly"])
    b = flow(stores, tags=["db"])
    c = flow(stores, tags=["nightly", "db", "eu"])
    flow(stores)

    def listed(tags: list[str]) -> list[str]:
        return ids(stores.runs.list_flow_runs(FlowRunFilter(tags_all=tags)).items)

    assert listed(["db"]) == [c.id, b.id, a.id]
    assert listed(["db", "nightly"]) == [c.id, a.id]
    assert listed(["eu", "nightly", "db"]) == [c.id]
    assert listed(["d"]) == [], "tags match whole, not as substrings"


def test_list_subflows_and_task_runs_of_a_parent(stores: Stores, clock: Clock) -> None:
    parent = flow(stores)
    other = flow(stores)
    sub1 = flow(stores, flow_name="child", parent_flow_run_id=parent.id)
    t1 = task(stores, flow_run_id=parent.id, task_key="extract")
    t2 = task(stores, flow_run_id=parent.id, task_key="load")
    t3 = task(stores, flow_run_id=parent.id, task_key="extract", dynamic_key="1")
    sub2 = flow(stores, flow_name="child", parent_flow_run_id=parent.id)
    task(stores, flow_run_id=other.id, task_key="extract")
    task(stores, task_key="extract")  # a task run outside any flow

    # Subflows and task runs share the by_parent index: each listing keeps its own kind.
    subflows = stores.runs.list_flow_runs(FlowRunFilter(parent_flow_run_id=parent.id)).items
    assert ids(subflows) == [sub2.id, sub1.id]
    tasks = stores.runs.list_task_runs(TaskRunFilter(flow_run_id=parent.id)).items
    assert ids(tasks) == [t3.id, t2.id, t1.id]
    by_key = TaskRunFilter(flow_run_id=parent.id, task_key="extract")
    assert ids(stores.runs.list_task_runs(by_key).items) == [t3.id, t1.id]
    assert len(stores.runs.list_task_runs(TaskRunFilter(task_key="extract")).items) == 4
    assert len(stores.runs.list_task_runs().items) == 5
    assert len(stores.runs.list_flow_runs().items) == 4


def test_list_task_runs_by_state_tags_and_window(stores: Stores, clock: Clock) -> None:
    parent = flow(stores)
    assert stores.runs.set_state("flow_run", parent.id, Running()).accepted
    t1 = task(stores, flow_run_id=parent.id, tags=["db"])
    t2 = task(stores, flow_run_id=parent.id, tags=["db", "eu"])
    t3 = task(stores, flow_run_id=parent.id)
    assert stores.runs.set_state("task_run", t2.id, Running()).accepted
    assert stores.runs.set_state("task_run", t3.id, Running()).accepted
    assert stores.runs.set_state("task_run", t3.id, Failed()).accepted

    def listed(**kwargs: Any) -> list[str]:
        return ids(stores.runs.list_task_runs(TaskRunFilter(**kwargs)).items)

    assert listed(state_types=[StateType.RUNNING]) == [t2.id]
    assert listed(state_types=[StateType.PENDING, StateType.FAILED]) == [t3.id, t1.id]
    assert listed(flow_run_id=parent.id, state_types=[StateType.FAILED]) == [t3.id]
    assert listed(state_names=["Running", "Pending"]) == [t2.id, t1.id]
    assert listed(tags_all=["db"]) == [t2.id, t1.id]
    assert listed(tags_all=["db", "eu"], flow_run_id=parent.id) == [t2.id]
    assert listed(created_after=t2.created) == [t3.id, t2.id]
    assert listed(created_before=t1.created, flow_run_id=parent.id) == [t1.id]


def test_pagination_25_runs_3_pages_newest_first(stores: Stores, clock: Clock) -> None:
    created = [flow(stores) for _ in range(25)]
    pages = []
    cursor = None
    for _ in range(10):
        page = stores.runs.list_flow_runs(limit=10, cursor=cursor)
        pages.append(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break

    assert [len(p) for p in pages] == [10, 10, 5]
    listed = [r for p in pages for r in p]
    assert len(set(ids(listed))) == 25, "a run appeared twice"
    assert set(ids(listed)) == set(ids(created)), "a run is missing"
    assert ids(listed) == list(reversed(ids(created))), "not newest first"
    times = [r.created for r in listed]
    assert times == sorted(times, reverse=True)


def test_pagination_exact_multiple_has_no_empty_page(stores: Stores, clock: Clock) -> None:
    for _ in range(20):
        flow(stores)
    first = stores.runs.list_flow_runs(limit=10)
    assert len(first.items) == 10 and first.next_cursor
    second = stores.runs.list_flow_runs(limit=10, cursor=first.next_cursor)
    assert len(second.items) == 10
    assert second.next_cursor is None
    assert not set(ids(first.items)) & set(ids(second.items))


@pytest.mark.parametrize("limit", [1, 3, 7])
def test_pagination_with_filters(stores: Stores, clock: Clock, limit: int) -> None:
    parent = flow(stores)
    wanted = []
    for i in range(12):
        wanted.append(task(stores, flow_run_id=parent.id, task_key="extract", dynamic_key=str(i)))
        task(stores, flow_run_id=parent.id, task_key="load", dynamic_key=str(i))
    flt = TaskRunFilter(flow_run_id=parent.id, task_key="extract")
    listed: list[TaskRun] = []
    cursor = None
    pages = 0
    for _ in range(50):
        page = stores.runs.list_task_runs(flt, limit=limit, cursor=cursor)
        assert len(page.items) <= limit
        listed += page.items
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert ids(listed) == list(reversed(ids(wanted)))
    assert pages == -(-12 // limit)


def test_bad_cursor_is_refused(stores: Stores, clock: Clock) -> None:
    for _ in range(3):
        flow(stores)
    with pytest.raises((ValueError, InvalidInput)):
        stores.runs.list_flow_runs(cursor="not a cursor")
    with pytest.raises((ValueError, InvalidInput)):
        stores.runs.list_flow_runs(cursor=encode_cursor({"foo": "bar"}))
    with pytest.raises((ValueError, InvalidInput)):
        stores.runs.list_task_runs(cursor="e30=")  # base64 of "{}"
    # A cursor from one listing does not fit another one's index.
    by_kind = stores.runs.list_flow_runs(limit=1).next_cursor
    assert by_kind is not None
    with pytest.raises((ValueError, InvalidInput)):
        stores.runs.list_flow_runs(FlowRunFilter(flow_name="etl"), cursor=by_kind)
    with pytest.raises((ValueError, InvalidInput)):
        stores.runs.list_task_runs(cursor=by_kind)


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_limit_out_of_range_names_the_field(stores: Stores, limit: int) -> None:
    with pytest.raises(InvalidInput) as caught:
        stores.runs.list_flow_runs(limit=limit)
    assert caught.value.details["field"] == "limit"
    assert "limit" in caught.value.message
    with pytest.raises(InvalidInput) as caught_task:
        stores.runs.list_task_runs(limit=limit)
    assert caught_task.value.details["field"] == "limit"


def test_limit_bounds_are_accepted(stores: Stores) -> None:
    flow(stores)
    assert len(stores.runs.list_flow_runs(limit=1).items) == 1
    assert len(stores.runs.list_flow_runs(limit=1000).items) == 1


# ============================================================================ set_state


def history_names(stores: Stores, run_id: str) -> list[str]:
    return [s.name for s in stores.runs.read_state_history(run_id)]


def test_flow_run_accepted_transitions_keep_history_and_version(stores: Stores) -> None:
    run = flow(stores)
    running = stores.runs.set_state("flow_run", run.id, Running())
    assert running.status == "ACCEPT" and running.accepted
    assert running.state.type is StateType.RUNNING
    assert (running.state_version, running.run_count) == (1, 1)

    done = stores.runs.set_state("flow_run", run.id, Completed(message="ok"))
    assert done.status == "ACCEPT" and done.state_version == 2

    stored = stores.runs.read_flow_run(run.id)
    assert stored.state.type is StateType.COMPLETED and stored.state.message == "ok"
    assert (stored.state_version, stored.run_count) == (2, 1)
    assert stored.start_time is not None and stored.end_time is not None
    assert stored.end_time >= stored.start_time
    assert history_names(stores, run.id) == ["Pending", "Running", "Completed"]
    item = raw(stores, run.id)
    assert item is not None
    assert item["state_version"] == 2
    assert (item["state_type"], item["state_name"]) == ("COMPLETED", "Completed")
    assert item["kind_state"] == f"flow_run#COMPLETED#{shard_of('flow_run', run.id)}"
    assert len(item["history"]) == item["state_version"] + 1


def test_task_run_accepted_transitions(stores: Stores) -> None:
    run = task(stores)  # no flow run: nothing to check the flow state against
    assert stores.runs.set_state("task_run", run.id, Running()).accepted
    result = stores.runs.set_state("task_run", run.id, Completed())
    assert result.accepted and result.state_version == 2
    assert history_names(stores, run.id) == ["Pending", "Running", "Completed"]
    assert stores.runs.read_task_run(run.id).state.is_completed()


@pytest.mark.parametrize("kind", ["flow_run", "task_run"])
def test_second_claim_is_rejected_and_writes_nothing(stores: Stores, kind: str) -> None:
    run: FlowRun | TaskRun = flow(stores) if kind == "flow_run" else task(stores)
    assert stores.runs.set_state(kind, run.id, Running()).accepted  # type: ignore[call-overload]
    before = raw(stores, run.id)

    result = stores.runs.set_state(kind, run.id, Running())  # type: ignore[call-overload]
    assert result.status == "REJECT" and not result.accepted
    assert result.state.type is StateType.RUNNING
    assert result.reason and "RUNNING" in result.reason
    assert result.state_version == 1
    assert_unchanged(stores, run.id, before)


@pytest.mark.parametrize(
    ("setup", "proposed", "reason_part"),
    [
        ([Running(), Completed()], Running, "terminal"),
        ([Running(), Completed()], Failed, "terminal"),
        ([], Pending, "Pending again"),
        ([Running()], Pending, "Pending again"),
        ([], Late, "Late"),
        ([Running(), Cancelling()], Running, "Cancelling"),
    ],
)
def test_rejected_transitions_leave_the_item_unchanged(
    stores: Stores, setup: list[State], proposed: Callable[[], State], reason_part: str
) -> None:
    run = flow(stores)
    for state in setup:
        assert stores.runs.set_state("flow_run", run.id, state).accepted
    before = raw(stores, run.id)
    current = stores.runs.read_flow_run(run.id).state

    result = stores.runs.set_state("flow_run", run.id, proposed())
    assert result.status == "REJECT"
    assert result.state == current
    assert result.reason and reason_part in result.reason
    assert_unchanged(stores, run.id, before)


def test_duplicate_transition_id_is_rejected(stores: Stores) -> None:
    run = flow(stores)
    proposed = Running()
    proposed.details.transition_id = "attempt-1"
    assert stores.runs.set_state("flow_run", run.id, proposed).accepted
    before = raw(stores, run.id)
    replay = stores.runs.set_state("flow_run", run.id, proposed, force=True)
    assert replay.status == "REJECT" and "duplicate" in (replay.reason or "")
    assert_unchanged(stores, run.id, before)


def test_scheduled_run_waits_for_its_time(stores: Stores) -> None:
    start = utcnow()
    when = start + timedelta(seconds=30)
    run = flow(stores, state=Scheduled(scheduled_time=when))
    before = raw(stores, run.id)

    early = stores.runs.set_state("flow_run", run.id, Pending(), now=when - timedelta(seconds=10))
    assert early.status == "WAIT"
    assert early.delay_seconds == pytest.approx(10.0)
    assert early.state.type is StateType.SCHEDULED
    assert_unchanged(stores, run.id, before)
    early_run = stores.runs.set_state(
        "flow_run", run.id, Running(), now=when - timedelta(seconds=1)
    )
    assert early_run.status == "WAIT" and early_run.delay_seconds == pytest.approx(1.0)
    assert_unchanged(stores, run.id, before)

    on_time = stores.runs.set_state("flow_run", run.id, Pending(), now=when)
    assert on_time.accepted
    assert on_time.state.details.scheduled_time == when, "PENDING keeps the scheduled time"
    assert history_names(stores, run.id) == ["Scheduled", "Pending"]


def test_task_cannot_start_unless_its_flow_run_is_running(stores: Stores) -> None:
    parent = flow(stores)
    child = task(stores, flow_run_id=parent.id)
    before = raw(stores, child.id)

    aborted = stores.runs.set_state("task_run", child.id, Running())
    assert aborted.status == "ABORT"
    assert aborted.state.type is StateType.PENDING
    assert aborted.reason and "PENDING" in aborted.reason
    assert_unchanged(stores, child.id, before)

    assert stores.runs.set_state("flow_run", parent.id, Running()).accepted
    started = stores.runs.set_state("task_run", child.id, Running())
    assert started.accepted and started.state.type is StateType.RUNNING
    assert started.run_count == 1


def test_task_of_a_cancelling_flow_run_is_cancelled(stores: Stores) -> None:
    parent = flow(stores)
    assert stores.runs.set_state("flow_run", parent.id, Running()).accepted
    assert stores.runs.set_state("flow_run", parent.id, Cancelling()).accepted
    child = task(stores, flow_run_id=parent.id)

    result = stores.runs.set_state("task_run", child.id, Running())
    assert result.accepted
    assert result.state.type is StateType.CANCELLED
    assert stores.runs.read_task_run(child.id).state.is_cancelled()


def test_task_of_a_finished_flow_run_is_aborted(stores: Stores) -> None:
    parent = flow(stores)
    assert stores.runs.set_state("flow_run", parent.id, Running()).accepted
    assert stores.runs.set_state("flow_run", parent.id, Completed()).accepted
    child = task(stores, flow_run_id=parent.id)
    before = raw(stores, child.id)
    result = stores.runs.set_state("task_run", child.id, Running())
    assert result.status == "ABORT" and "COMPLETED" in (result.reason or "")
    assert_unchanged(stores, child.id, before)
    # force skips the flow-run check (and every other rule but duplicates).
    assert stores.runs.set_state("task_run", child.id, Running(), force=True).accepted


def test_force_overrides_the_rules(stores: Stores) -> None:
    run = flow(stores)
    assert stores.runs.set_state("flow_run", run.id, Running()).accepted
    assert stores.runs.set_state("flow_run", run.id, Completed()).accepted
    assert stores.runs.set_state("flow_run", run.id, Running()).status == "REJECT"

    forced = stores.runs.set_state("flow_run", run.id, Running(), force=True)
    assert forced.accepted and forced.state.type is StateType.RUNNING
    assert forced.state_version == 3
    forced_pending = stores.runs.set_state("flow_run", run.id, Pending(), force=True)
    assert forced_pending.accepted and forced_pending.state_version == 4
    assert history_names(stores, run.id) == [
        "Pending",
        "Running",
        "Completed",
        "Running",
        "Pending",
    ]


def test_flow_run_retries_become_awaiting_retry(stores: Stores) -> None:
    run = flow(stores, empirical_policy=RetryPolicy(retries=2, retry_delay_seconds=[10, 20]))
    now = utcnow()

    assert stores.runs.set_state("flow_run", run.id, Running(), now=now).run_count == 1
    first = stores.runs.set_state("flow_run", run.id, Failed(message="boom"), now=now)
    assert first.accepted
    assert (first.state.type, first.state.name) == (StateType.SCHEDULED, "AwaitingRetry")
    assert first.state.details.scheduled_time == now + timedelta(seconds=10)
    assert first.state.details.retry_count == 1
    assert first.state.message == "boom"
    assert first.run_count == 1
    assert stores.runs.read_flow_run(run.id).next_scheduled_start_time == (
        now + timedelta(seconds=10)
    )

    # Not before the retry delay...
    too_soon = stores.runs.set_state("flow_run", run.id, Running(), now=now + timedelta(seconds=5))
    assert too_soon.status == "WAIT" and too_soon.delay_seconds == pytest.approx(5.0)
    # ...then the rerun is named Retrying and counted.
    later = now + timedelta(seconds=10)
    retrying = stores.runs.set_state("flow_run", run.id, Running(), now=later)
    assert retrying.accepted and retrying.state.name == "Retrying" and retrying.run_count == 2

    second = stores.runs.set_state("flow_run", run.id, Failed(), now=later)
    assert second.state.name == "AwaitingRetry"
    assert second.state.details.scheduled_time == later + timedelta(seconds=20)
    assert second.state.details.retry_count == 2

    last = later + timedelta(seconds=20)
    assert stores.runs.set_state("flow_run", run.id, Running(), now=last).run_count == 3
    final = stores.runs.set_state("flow_run", run.id, Failed(), now=last)
    assert final.accepted and final.state.name == "Failed", "retries are used up"
    assert final.run_count == 3

    stored = stores.runs.read_flow_run(run.id)
    assert stored.state.is_failed() and stored.end_time is not None
    assert stored.state_version == 6
    assert history_names(stores, run.id) == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Retrying",
        "AwaitingRetry",
        "Retrying",
        "Failed",
    ]


def test_task_run_retry_and_non_retriable_failure(stores: Stores) -> None:
    parent = flow(stores)
    assert stores.runs.set_state("flow_run", parent.id, Running()).accepted
    child = task(stores, flow_run_id=parent.id, empirical_policy=RetryPolicy(retries=1))
    now = utcnow()
    assert stores.runs.set_state("task_run", child.id, Running(), now=now).accepted
    retry = stores.runs.set_state("task_run", child.id, Failed(), now=now)
    assert retry.state.name == "AwaitingRetry" and retry.run_count == 1
    assert stores.runs.set_state("task_run", child.id, Running(), now=now).run_count == 2
    final = stores.runs.set_state("task_run", child.id, Failed(), now=now)
    assert final.state.name == "Failed" and final.state_version == 4

    other = task(stores, flow_run_id=parent.id, empirical_policy=RetryPolicy(retries=3))
    assert stores.runs.set_state("task_run", other.id, Running()).accepted
    fatal = Failed(message="bad input")
    fatal.details.retriable = False
    result = stores.runs.set_state("task_run", other.id, fatal)
    assert result.accepted and result.state.name == "Failed", "non-retriable: no retry"


def test_set_state_on_unknown_or_wrong_kind_is_not_found(stores: Stores) -> None:
    flow_run = flow(stores)
    task_run = task(stores)
    with pytest.raises(NotFound):
        stores.runs.set_state("flow_run", str(uuid.uuid4()), Running())
    with pytest.raises(NotFound):
        stores.runs.set_state("flow_run", task_run.id, Running())
    with pytest.raises(NotFound):
        stores.runs.set_state("task_run", flow_run.id, Running())
    assert stores.runs.read_flow_run(flow_run.id).state_version == 0
    assert stores.runs.read_task_run(task_run.id).state_version == 0


class Interloper:
    """Makes one competing transition between the store's read and its conditional write."""

    def __init__(
        self, store: RunStore, rival: RunStore, kind: str, state: State, target: str | None = None
    ) -> None:
        self.rival, self.kind, self.state, self.target = rival, kind, state, target
        self.calls = 0
        self._original = store._decide

    def __call__(self, run: Any, proposed: State, force: bool, now: Any) -> Any:
        self.calls += 1
        decided = self._original(run, proposed, force, now)
        if self.calls == 1:  # after the rules read, before the write
            target = self.target or run.id
            assert self.rival.set_state(self.kind, target, self.state).accepted  # type: ignore[call-overload]
        return decided


def test_lost_race_reruns_the_rules_and_rejects(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = flow(stores)
    rival = RunStore(stores.db, stores.specs.runs)
    interloper = Interloper(stores.runs, rival, "flow_run", Running("rival"))
    monkeypatch.setattr(stores.runs, "_decide", interloper)

    result = stores.runs.set_state("flow_run", run.id, Running("mine"))
    assert interloper.calls == 2, "the rules ran again on the item as it is now"
    assert result.status == "REJECT"
    assert result.state.type is StateType.RUNNING and result.state.message == "rival"
    assert result.state_version == 1
    assert [s.message for s in stores.runs.read_state_history(run.id)] == [None, "rival"]


def test_lost_race_reruns_the_rules_and_can_still_accept(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = flow(stores)
    rival = RunStore(stores.db, stores.specs.runs)
    interloper = Interloper(stores.runs, rival, "flow_run", Running())
    monkeypatch.setattr(stores.runs, "_decide", interloper)

    result = stores.runs.set_state("flow_run", run.id, Completed())
    assert interloper.calls == 2
    assert result.accepted and result.state_version == 2
    assert history_names(stores, run.id) == ["Pending", "Running", "Completed"]
    stored = stores.runs.read_flow_run(run.id)
    assert stored.run_count == 1 and stored.state_version == 2


# ============================================================================ validation


def _error_locs(error: ValidationError) -> list[tuple[Any, ...]]:
    return [tuple(e["loc"]) for e in error.errors()]


@pytest.mark.parametrize(
    ("model", "data", "loc"),
    [
        (FlowRunCreate, {"flow_name": ""}, ("flow_name",)),
        (FlowRunCreate, {}, ("flow_name",)),
        (FlowRunCreate, {"flow_name": "etl", "flow": "x"}, ("flow",)),
        (FlowRunCreate, {"flow_name": "etl", "id": "not-a-uuid"}, ("id",)),
        (FlowRunCreate, {"flow_name": "etl", "parent_flow_run_id": "1"}, ("parent_flow_run_id",)),
        (FlowRunCreate, {"flow_name": "etl", "tags": ["ok", ""]}, ("tags", 1)),
        (FlowRunCreate, {"flow_name": "etl", "idempotency_key": ""}, ("idempotency_key",)),
        (
            FlowRunCreate,
            {"flow_name": "etl", "empirical_policy": {"retries": -1}},
            ("empirical_policy", "retries"),
        ),
        (
            FlowRunCreate,
            {"flow_name": "etl", "empirical_policy": {"retry_delay_seconds": [1, -2]}},
            ("empirical_policy", "retry_delay_seconds"),
        ),
        (
            FlowRunCreate,
            {"flow_name": "etl", "state": {"type": "NOPE", "name": "x"}},
            ("state", "type"),
        ),
        (TaskRunCreate, {}, ("task_key",)),
        (TaskRunCreate, {"task_key": "t", "flow_run_id": "nope"}, ("flow_run_id",)),
        (FlowRunFilter, {"state_types": ["RUNNING", "NOPE"]}, ("state_types", 1)),
        (FlowRunFilter, {"flow": "etl"}, ("flow",)),
        (TaskRunFilter, {"created_after": "yesterday"}, ("created_after",)),
    ],
)
def test_model_validation_names_the_bad_field(
    model: type[Any], data: dict[str, Any], loc: tuple[Any, ...]
) -> None:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    assert loc in _error_locs(caught.value), caught.value.errors()


def test_filter_window_must_be_ordered() -> None:
    with pytest.raises(ValidationError) as caught:
        FlowRunFilter(created_after=T0, created_before=T0 - timedelta(seconds=1))
    assert "created_after" in str(caught.value)


def test_a_task_never_starts_on_a_flow_run_state_that_changed_meanwhile(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task's RUNNING write also checks the flow run's version (one transaction)."""
    parent = flow(stores)
    stores.runs.set_state("flow_run", parent.id, Running())
    task_run = stores.runs.create_task_run(TaskRunCreate(task_key="t", flow_run_id=parent.id))
    rival = RunStore(stores.db, stores.specs.runs)
    interloper = Interloper(stores.runs, rival, "flow_run", Cancelling(), target=parent.id)
    monkeypatch.setattr(stores.runs, "_decide", interloper)

    result = stores.runs.set_state("task_run", task_run.id, Running())
    assert interloper.calls == 2, "the rules ran again with the flow run as it is now"
    assert result.accepted and result.state.type is StateType.CANCELLED
    assert history_names(stores, task_run.id) == ["Pending", "Cancelled"]


def test_history_keeps_the_first_and_the_latest_states(stores: Stores) -> None:
    from runtime.stores.runs import MAX_HISTORY

    run = flow(stores)
    for i in range(MAX_HISTORY + 5):
        state = Running(str(i)) if i % 2 == 0 else Pending(str(i))
        if i % 2 == 1:  # RUNNING -> PENDING is refused; go through Scheduled
            state = Scheduled(message=str(i))
        assert stores.runs.set_state("flow_run", run.id, state).accepted
    history = stores.runs.read_state_history(run.id)
    assert len(history) == MAX_HISTORY
    assert history[0].name == "Pending" and history[0].message is None
    assert history[-1].message == str(MAX_HISTORY + 4)
