"""Idempotency keys scoped per flow / deployment (issue 7, item 5) and guarded task-run
records (item 11), against moto in-process.

A key is scoped: flow runs per flow (per deployment for deployment runs), task runs
per flow run and task key. A repeat of the same request returns the first run; the
same key with another request is a Conflict naming that run. Records written over the
API (``guard=True``) replace a task run only with a strictly newer ``state_version``
of the same run under the same flow run, never land in a finished flow run, and a
transaction conflict is reported as one.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runtime.errors import Conflict
from runtime.models import (
    DeploymentCreate,
    DeploymentFlowRunCreate,
    FlowRunCreate,
    TaskRun,
    TaskRunCreate,
    TaskRunFilter,
    WorkPoolCreate,
)
from runtime.services.deployments import run_deployment, run_deployment_once
from runtime.states import Completed, Pending, Running, State, StateType
from runtime.stores import Stores
from runtime.stores.dynamo import TransactionFailed

# ----------------------------------------------------------------------------- item 5


def test_two_deployments_with_the_same_key_each_get_their_own_run(stores: Stores) -> None:
    stores.registry.create_work_pool(WorkPoolCreate(name="pool"))  # a deployment runs on one
    one, _ = stores.registry.upsert_deployment(
        DeploymentCreate(name="a", flow_name="etl", work_pool_name="pool")
    )
    two, _ = stores.registry.upsert_deployment(
        DeploymentCreate(name="b", flow_name="etl", work_pool_name="pool")
    )
    request = DeploymentFlowRunCreate(idempotency_key="nightly-2026-03-01")
    first = run_deployment(stores, one, request)
    second = run_deployment(stores, two, request)
    assert first.id != second.id
    assert (first.deployment_id, second.deployment_id) == (one.id, two.id)
    again, created = run_deployment_once(stores, two, request)
    assert again.id == second.id and not created


def test_two_flows_with_the_same_key_each_get_their_own_run(stores: Stores) -> None:
    a = stores.runs.create_flow_run(FlowRunCreate(flow_name="a", idempotency_key="k"))
    b = stores.runs.create_flow_run(FlowRunCreate(flow_name="b", idempotency_key="k"))
    assert a.id != b.id and (a.flow_name, b.flow_name) == ("a", "b")
    deployed = stores.runs.create_flow_run(
        FlowRunCreate(flow_name="a", deployment_id=str(uuid.uuid4()), idempotency_key="k")
    )
    assert deployed.id not in (a.id, b.id)


def test_task_run_keys_are_scoped_by_flow_run_and_task(stores: Stores) -> None:
    f1 = stores.runs.create_flow_run(FlowRunCreate(flow_name="etl"))
    f2 = stores.runs.create_flow_run(FlowRunCreate(flow_name="etl"))
    ids = {
        stores.runs.create_task_run(
            TaskRunCreate(task_key=key, flow_run_id=parent.id, idempotency_key="k")
        ).id
        for parent in (f1, f2)
        for key in ("extract", "load")
    }
    assert len(ids) == 4


def test_the_same_key_with_a_different_body_is_a_conflict_naming_the_run(
    stores: Stores,
) -> None:
    first = stores.runs.create_flow_run(
        FlowRunCreate(flow_name="etl", idempotency_key="k", parameters={"n": 1})
    )
    before = stores.db.get(stores.specs.runs.name, {"id": first.id})
    with pytest.raises(Conflict) as caught:
        stores.runs.create_flow_run(
            FlowRunCreate(flow_name="etl", idempotency_key="k", parameters={"n": 2})
        )
    assert first.id in caught.value.message
    assert caught.value.details["id"] == first.id
    assert stores.db.get(stores.specs.runs.name, {"id": first.id}) == before
    # the same body again (a retry: another default timestamp) returns the first run
    again, created = stores.runs.create_flow_run_once(
        FlowRunCreate(flow_name="etl", idempotency_key="k", parameters={"n": 1})
    )
    assert again == first and not created


def test_a_deployment_run_with_the_same_key_and_other_parameters_is_a_conflict(
    stores: Stores,
) -> None:
    stores.registry.create_work_pool(WorkPoolCreate(name="pool"))  # a deployment runs on one
    deployment, _ = stores.registry.upsert_deployment(
        DeploymentCreate(name="a", flow_name="etl", work_pool_name="pool")
    )
    first = run_deployment(stores, deployment, DeploymentFlowRunCreate(idempotency_key="k"))
    with pytest.raises(Conflict) as caught:
        run_deployment(
            stores,
            deployment,
            DeploymentFlowRunCreate(idempotency_key="k", parameters={"x": 1}),
        )
    assert first.id in caught.value.message
    assert len(stores.runs.list_flow_runs().items) == 1


# ----------------------------------------------------------------------------- item 11


def record(
    flow_run_id: str | None, *, run_id: str | None = None, version: int = 2, final: str = "C"
) -> tuple[TaskRun, list[State]]:
    now = datetime.now(UTC)
    last = Completed() if final == "C" else Running()
    history = [Pending(), Running(), last][: version + 1]
    for i, s in enumerate(history):
        s.timestamp = now + timedelta(milliseconds=i)
    run = TaskRun(
        id=run_id or str(uuid.uuid4()),
        name="t-0",
        task_key="t",
        flow_run_id=flow_run_id,
        state=history[-1],
        state_version=version,
    )
    return run, history


def running_flow(stores: Stores) -> str:
    run = stores.runs.create_flow_run(FlowRunCreate(flow_name="etl"))
    assert stores.runs.set_state("flow_run", run.id, Running()).accepted
    return run.id


def test_a_replayed_older_snapshot_cannot_move_a_completed_task_back(stores: Stores) -> None:
    parent = running_flow(stores)
    done = record(parent, version=2)
    stores.runs.write_task_run_records([done], guard=True)
    stale = record(parent, run_id=done[0].id, version=1, final="R")
    with pytest.raises(Conflict) as caught:
        stores.runs.write_task_run_records([stale], guard=True)
    assert done[0].id in caught.value.message and "state_version" in caught.value.message
    assert stores.runs.read_task_run(done[0].id).state.type is StateType.COMPLETED
    same_version_other_state = record(parent, run_id=done[0].id, version=2, final="R")
    with pytest.raises(Conflict):
        stores.runs.write_task_run_records([same_version_other_state], guard=True)
    # a replay of exactly what is stored (a retried request) is accepted, changing nothing
    assert stores.runs.write_task_run_records([done], guard=True) == 1
    assert stores.runs.read_task_run(done[0].id).state.type is StateType.COMPLETED


def test_a_record_cannot_move_a_task_run_to_another_flow_run(stores: Stores) -> None:
    parent, other = running_flow(stores), running_flow(stores)
    mine = record(parent, version=1, final="R")
    stores.runs.write_task_run_records([mine], guard=True)
    moved = record(other, run_id=mine[0].id, version=2)
    with pytest.raises(Conflict) as caught:
        stores.runs.write_task_run_records([moved], guard=True)
    assert parent in caught.value.message
    assert stores.runs.read_task_run(mine[0].id).flow_run_id == parent
    orphaned = record(None, run_id=mine[0].id, version=2)
    with pytest.raises(Conflict):
        stores.runs.write_task_run_records([orphaned], guard=True)
    newer = record(parent, run_id=mine[0].id, version=2)
    assert stores.runs.write_task_run_records([newer], guard=True) == 1
    assert stores.runs.read_task_run(mine[0].id).state.type is StateType.COMPLETED


def test_a_finished_flow_run_takes_no_more_task_runs(stores: Stores) -> None:
    parent = running_flow(stores)
    assert stores.runs.set_state("flow_run", parent, Completed()).accepted
    late = record(parent)
    with pytest.raises(Conflict) as caught:
        stores.runs.write_task_run_records([late], guard=True)
    assert parent in caught.value.message and "Completed" in caught.value.message
    assert stores.runs.list_task_runs(TaskRunFilter(flow_run_id=parent)).items == []


def test_a_record_for_a_flow_run_that_does_not_exist_is_refused(stores: Stores) -> None:
    ghost = str(uuid.uuid4())
    with pytest.raises(Conflict) as caught:
        stores.runs.write_task_run_records([record(ghost)], guard=True)
    assert ghost in caught.value.message
    assert stores.runs.list_task_runs().items == []


def test_many_records_of_one_flow_run_in_one_batch(stores: Stores) -> None:
    parent = running_flow(stores)
    batch = [record(parent) for _ in range(150)]
    assert stores.runs.write_task_run_records(batch, guard=True) == 150
    assert len(stores.runs.list_task_runs(TaskRunFilter(flow_run_id=parent)).items) == 150


def test_a_transaction_conflict_is_reported_as_such(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = running_flow(stores)
    calls: list[int] = []

    def conflicting(items: list[dict[str, Any]]) -> None:
        calls.append(len(items))
        raise TransactionFailed(["TransactionConflict"] * len(items), [None] * len(items))

    monkeypatch.setattr(stores.runs.db, "transact", conflicting)
    with pytest.raises(Conflict) as caught:
        stores.runs.write_task_run_records([record(parent)], guard=True)
    assert caught.value.error_type == "transaction_conflict"
    assert "conflict" in caught.value.message and "flow runs" not in caught.value.message
    assert len(calls) > 1, "a conflict is retried before it is reported"


def test_concurrent_replays_of_one_run_keep_the_newest(stores: Stores) -> None:
    parent = running_flow(stores)
    run_id = str(uuid.uuid4())
    snapshots = [record(parent, run_id=run_id, version=v, final="R") for v in (0, 1)]
    snapshots.append(record(parent, run_id=run_id, version=2))
    barrier = threading.Barrier(len(snapshots) * 4)
    errors: list[BaseException] = []

    def write(snap: tuple[TaskRun, list[State]]) -> None:
        barrier.wait()
        try:
            stores.runs.write_task_run_records([snap], guard=True)
        except Conflict as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s,)) for s in snapshots * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stores.runs.read_task_run(run_id).state_version == 2
    assert stores.runs.read_task_run(run_id).state.type is StateType.COMPLETED
