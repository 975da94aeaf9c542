"""The use cases of runtime.services, called directly against moto (no HTTP)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from runtime.errors import (
    BadRequest,
    Conflict,
    InvalidInput,
    NotFound,
    TransitionRejected,
)
from runtime.models import (
    DeploymentCreate,
    DeploymentFlowRunCreate,
    DeploymentUpdate,
    FlowRunCreate,
    FlowRunFilter,
    LogRecord,
    TaskRun,
    TaskRunCreate,
    WorkPoolCreate,
)
from runtime.services import deployments, flow_runs, pages, task_runs
from runtime.states import Completed, Pending, Running, State, StateType
from runtime.stores import Stores


def flow_names(stores: Stores) -> list[str]:
    return [f.name for f in stores.registry.list_flows().items]


# ----------------------------------------------------------------------------- flow runs


def test_creating_a_flow_run_records_its_flow(stores: Stores) -> None:
    run, created = flow_runs.create_flow_run(stores, FlowRunCreate(flow_name="etl"))
    assert created and stores.runs.read_flow_run(run.id) == run
    assert flow_names(stores) == ["etl"]


def test_an_idempotent_repeat_returns_the_first_run(stores: Stores) -> None:
    request = FlowRunCreate(flow_name="etl", idempotency_key="nightly")
    first, created = flow_runs.create_flow_run(stores, request)
    again, created_again = flow_runs.create_flow_run(stores, request)
    assert created and not created_again and again.id == first.id


def test_known_flows_records_each_flow_once_per_caller(stores: Stores) -> None:
    known: set[str] = set()
    flow_runs.create_flow_run(stores, FlowRunCreate(flow_name="a"), known_flows=known)
    assert known == {"a"} and flow_names(stores) == ["a"]
    stores.registry.db.delete(stores.registry.table.name, {"pk": "flow#a"})
    flow_runs.create_flow_run(stores, FlowRunCreate(flow_name="a"), known_flows=known)
    assert flow_names(stores) == []  # the caller already recorded it: not written again
    flow_runs.create_flow_run(stores, FlowRunCreate(flow_name="b"), known_flows=known)
    assert known == {"a", "b"} and flow_names(stores) == ["b"]


@pytest.mark.parametrize(
    "field", ["parent_flow_run_id", "parent_task_run_id", "deployment_id", "work_pool_name"]
)
def test_a_reference_to_nothing_is_refused_naming_it(stores: Stores, field: str) -> None:
    value = "no-such-pool" if field == "work_pool_name" else str(uuid.uuid4())
    request = FlowRunCreate(flow_name="etl", **{field: value})
    with pytest.raises(InvalidInput) as caught:
        flow_runs.create_flow_run(stores, request)
    assert caught.value.details["field"] == field and field in caught.value.message
    assert stores.runs.list_flow_runs().items == [] and flow_names(stores) == []


def test_the_engine_creates_without_reading_references(stores: Stores) -> None:
    parent_task = str(uuid.uuid4())  # still buffered in the engine's recorder
    request = FlowRunCreate(flow_name="sub", parent_task_run_id=parent_task)
    run, created = flow_runs.create_flow_run(stores, request, check_references=False)
    assert created and run.parent_task_run_id == parent_task


def test_set_run_state_returns_or_raises_a_refusal(stores: Stores) -> None:
    run, _ = flow_runs.create_flow_run(stores, FlowRunCreate(flow_name="etl"))
    assert flow_runs.set_run_state(stores, "flow_run", run.id, Running()).status == "ACCEPT"
    refused = flow_runs.set_run_state(stores, "flow_run", run.id, Running())
    assert refused.status == "REJECT" and refused.state.type is StateType.RUNNING
    with pytest.raises(TransitionRejected) as caught:
        flow_runs.set_run_state(stores, "flow_run", run.id, Running(), raise_on_reject=True)
    assert caught.value.details["status"] == "REJECT"
    assert caught.value.details["state"]["type"] == "RUNNING"


def test_cancel_before_start_is_cancelled_and_while_running_is_cancelling(
    stores: Stores,
) -> None:
    waiting, _ = flow_runs.create_flow_run(stores, FlowRunCreate(flow_name="etl"))
    assert flow_runs.cancel_flow_run(stores, waiting.id).state.type is StateType.CANCELLED
    running, _ = flow_runs.create_flow_run(stores, FlowRunCreate(flow_name="etl"))
    flow_runs.set_run_state(stores, "flow_run", running.id, Running())
    result = flow_runs.cancel_flow_run(stores, running.id)
    assert result.status == "ACCEPT" and result.state.type is StateType.CANCELLING
    assert stores.runs.read_flow_run(running.id).state.type is StateType.CANCELLING


def test_cancelling_a_final_run_is_refused_and_changes_nothing(stores: Stores) -> None:
    run, _ = flow_runs.create_flow_run(stores, FlowRunCreate(flow_name="etl"))
    flow_runs.set_run_state(stores, "flow_run", run.id, Running())
    flow_runs.set_run_state(stores, "flow_run", run.id, Completed())
    assert flow_runs.cancel_flow_run(stores, run.id).status == "REJECT"
    with pytest.raises(TransitionRejected) as caught:
        flow_runs.cancel_flow_run(stores, run.id, raise_on_reject=True)
    assert caught.value.details["state"]["type"] == "COMPLETED"
    assert stores.runs.read_flow_run(run.id).state.type is StateType.COMPLETED


def test_cancelling_nothing_is_not_found(stores: Stores) -> None:
    with pytest.raises(NotFound):
        flow_runs.cancel_flow_run(stores, str(uuid.uuid4()))


# ----------------------------------------------------------------------------- task runs


def snapshot(flow_run_id: str, version: int = 1) -> tuple[TaskRun, list[State]]:
    now = datetime.now(UTC)
    history = [Pending(), Running(), Completed()][: version + 1]
    for i, s in enumerate(history):
        s.timestamp = now + timedelta(milliseconds=i)
    run = TaskRun(
        id=str(uuid.uuid4()),
        name="t-0",
        task_key="t",
        flow_run_id=flow_run_id,
        state=history[-1],
        state_version=version,
    )
    return run, history


def test_create_task_run_needs_its_flow_run(stores: Stores) -> None:
    with pytest.raises(InvalidInput) as caught:
        task_runs.create_task_run(
            stores, TaskRunCreate(task_key="t", flow_run_id=str(uuid.uuid4()))
        )
    assert caught.value.details["field"] == "flow_run_id"
    parent, _ = flow_runs.create_flow_run(stores, FlowRunCreate(flow_name="etl"))
    run, created = task_runs.create_task_run(
        stores, TaskRunCreate(task_key="t", flow_run_id=parent.id)
    )
    assert created and stores.runs.read_task_run(run.id) == run


def test_recording_a_batch_guarded_refuses_a_finished_flow_run(stores: Stores) -> None:
    parent, _ = flow_runs.create_flow_run(stores, FlowRunCreate(flow_name="etl"))
    flow_runs.set_run_state(stores, "flow_run", parent.id, Running())
    batch = [snapshot(parent.id, 2), snapshot(parent.id, 1)]
    assert task_runs.record_task_runs(stores, batch, guard=True) == 2
    assert {r.id for r in stores.runs.list_task_runs().items} == {r.id for r, _ in batch}
    flow_runs.set_run_state(stores, "flow_run", parent.id, Completed())
    late = snapshot(parent.id)
    with pytest.raises(Conflict):
        task_runs.record_task_runs(stores, [late], guard=True)
    with pytest.raises(NotFound):
        stores.runs.read_task_run(late[0].id)
    # the engine's own process records unguarded
    assert task_runs.record_task_runs(stores, [late]) == 1
    assert stores.runs.read_task_run(late[0].id).state.type is StateType.RUNNING


# ----------------------------------------------------------------------------- deployments


def test_upsert_deployment_records_its_flow_and_checks_its_pool(stores: Stores) -> None:
    with pytest.raises(InvalidInput) as caught:
        deployments.upsert_deployment(
            stores, DeploymentCreate(name="d", flow_name="etl", work_pool_name="nope")
        )
    assert caught.value.details["field"] == "work_pool_name" and flow_names(stores) == []
    stores.registry.create_work_pool(WorkPoolCreate(name="pool"))
    deployment, created = deployments.upsert_deployment(
        stores, DeploymentCreate(name="d", flow_name="etl", work_pool_name="pool")
    )
    assert created and flow_names(stores) == ["etl"]
    with pytest.raises(InvalidInput):
        deployments.update_deployment(
            stores, deployment.id, DeploymentUpdate(work_pool_name="nope")
        )
    assert stores.registry.read_deployment(deployment.id).work_pool_name == "pool"


def test_run_deployment_by_id_merges_the_deployment_and_the_request(stores: Stores) -> None:
    stores.registry.create_work_pool(WorkPoolCreate(name="pool"))  # a deployment runs on one
    deployment, _ = deployments.upsert_deployment(
        stores,
        DeploymentCreate(
            name="d", flow_name="etl", parameters={"n": 1}, tags=["a"], work_pool_name="pool"
        ),
    )
    request = DeploymentFlowRunCreate(parameters={"m": 2}, tags=["b"], idempotency_key="k")
    run, created = deployments.run_deployment_once(stores, deployment.id, request)
    # due now: Scheduled -> Pending and sent to the pool's queue (Phase 5)
    assert created and run.state.type is StateType.PENDING
    assert run.parameters == {"n": 1, "m": 2} and run.tags == ["a", "b"]
    assert run.deployment_id == deployment.id
    again, created_again = deployments.run_deployment_once(stores, deployment, request)
    assert again.id == run.id and not created_again
    assert [r.id for r in stores.runs.list_flow_runs(FlowRunFilter()).items] == [run.id]


def test_running_no_deployment_is_not_found(stores: Stores) -> None:
    with pytest.raises(NotFound):
        deployments.run_deployment(stores, str(uuid.uuid4()))


# ----------------------------------------------------------------------------- pages


def test_a_cursor_the_listing_did_not_hand_out_is_a_bad_request(stores: Stores) -> None:
    for read in (
        lambda: pages.list_flow_runs(stores, cursor="@@@"),
        lambda: pages.list_task_runs(stores, cursor="@@@"),
        lambda: pages.list_deployments(stores, cursor="@@@"),
        lambda: pages.list_work_pools(stores, cursor="@@@"),
        lambda: pages.list_flows(stores, cursor="@@@"),
    ):
        with pytest.raises(BadRequest) as caught:
            read()
        assert caught.value.details["field"] == "cursor"


def test_pages_continue_from_their_cursor(stores: Stores) -> None:
    made = [flow_runs.create_flow_run(stores, FlowRunCreate(flow_name="etl"))[0] for _ in range(3)]
    first = pages.list_flow_runs(stores, limit=2)
    assert len(first.items) == 2 and first.next_cursor is not None
    rest = pages.list_flow_runs(stores, limit=2, cursor=first.next_cursor)
    assert rest.next_cursor is None
    assert {r.id for r in [*first.items, *rest.items]} == {r.id for r in made}


def test_reading_the_logs_of_no_flow_run_is_not_found(stores: Stores) -> None:
    with pytest.raises(NotFound):
        pages.read_logs(stores, str(uuid.uuid4()))
    run, _ = flow_runs.create_flow_run(stores, FlowRunCreate(flow_name="etl"))
    stores.logs.write([LogRecord(flow_run_id=run.id, message="hello")])
    assert [r.message for r in pages.read_logs(stores, run.id).items] == ["hello"]
