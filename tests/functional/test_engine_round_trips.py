"""How many AWS requests a flow run and a transition cost, and that saving them changes nothing.

A trivial flow run is created RUNNING in one conditional put, ends with one
conditional update decided on the version the engine holds (no read first), and
ships its log lines in one batch: three requests. The rules still decide every
transition, and a held version that another party made stale costs a lost write
and a new decision, never a wrong state.
"""

from __future__ import annotations

from collections import Counter

from runtime.engine.client import DirectEngineClient
from runtime.models import FlowRunCreate, new_id
from runtime.states import Completed, Pending, Running, StateType
from runtime.stores import Stores
from runtime.stores.metrics import RequestCounter
from sdk import flow, task


@flow
def trivial() -> int:
    return 1


@task
def one() -> int:
    return 1


@flow
def with_a_task() -> int:
    return one()


def requests_of(engine: DirectEngineClient, fn: object) -> Counter[str]:
    counter = RequestCounter().attach(engine.stores.db.client).attach(engine.stores.results.s3)
    before = counter.snapshot()
    assert callable(fn)
    fn()
    return counter.snapshot() - before


def names(stores: Stores, run_id: str) -> list[str]:
    return [s.name for s in stores.runs.read_state_history(run_id)]


def test_a_trivial_flow_run_costs_three_requests(engine: DirectEngineClient) -> None:
    trivial()  # the first run of a flow also records the flow (once per process)

    counts = requests_of(engine, trivial)

    assert counts == Counter(
        {
            "dynamodb.PutItem": 1,  # created RUNNING
            "dynamodb.UpdateItem": 1,  # Completed, on the version the engine holds
            "dynamodb.BatchWriteItem": 1,  # its two log lines, once
        }
    )
    run = engine.stores.runs.list_flow_runs(limit=1).items[0]
    assert run.state.type is StateType.COMPLETED
    assert names(engine.stores, run.id) == ["Pending", "Running", "Completed"]
    assert run.run_count == 1 and run.start_time is not None and run.end_time is not None
    logs = engine.stores.logs.read(run.id, limit=10).items
    assert [line.message.split(" ")[0] for line in logs] == ["Created", "Finished"]


def test_a_flow_run_with_a_task_adds_only_the_task_record(engine: DirectEngineClient) -> None:
    with_a_task()

    counts = requests_of(engine, with_a_task)

    assert counts == Counter(
        {"dynamodb.PutItem": 1, "dynamodb.UpdateItem": 1, "dynamodb.BatchWriteItem": 2}
    )


def test_a_held_version_is_one_write_and_a_stale_one_is_decided_again(stores: Stores) -> None:
    runs = stores.runs
    run, started = runs.start_flow_run(FlowRunCreate(flow_name="f", state=Pending()))
    assert started and run.state.type is StateType.RUNNING and run.state_version == 1
    counter = RequestCounter().attach(stores.db.client)

    # another party (another process: its own store) cancels the run meanwhile
    other = type(runs)(runs.db, runs.table)
    assert other.cancel_flow_run(run.id).state.type is StateType.CANCELLING

    before = counter.snapshot()
    result = runs.set_state("flow_run", run.id, Completed(), expected_version=1)
    # the guess lost; the rules decided again on the run as it is now
    assert result.status == "ACCEPT" and result.state.type is StateType.COMPLETED
    assert result.state_version == 3
    assert counter.snapshot() - before == Counter({"dynamodb.UpdateItem": 2})
    assert names(stores, run.id) == ["Pending", "Running", "Cancelling", "Completed"]

    started_again, _ = runs.start_flow_run(FlowRunCreate(flow_name="f"))
    before = counter.snapshot()
    done = runs.set_state("flow_run", started_again.id, Completed(), expected_version=1)
    assert done.accepted and counter.snapshot() - before == Counter({"dynamodb.UpdateItem": 1})


def test_a_refused_transition_on_a_held_version_writes_nothing(stores: Stores) -> None:
    runs = stores.runs
    run, _ = runs.start_flow_run(FlowRunCreate(flow_name="f"))

    result = runs.set_state("flow_run", run.id, Running(), expected_version=1)

    assert result.status == "REJECT" and "claimed" in (result.reason or "")
    assert runs.read_flow_run(run.id).state_version == 1


def test_runs_that_may_not_skip_their_claim_are_created_as_requested(stores: Stores) -> None:
    runs = stores.runs
    keyed, started = runs.start_flow_run(FlowRunCreate(flow_name="f", idempotency_key="k"))
    assert not started and keyed.state.type is StateType.PENDING
    again, started = runs.start_flow_run(FlowRunCreate(flow_name="f", idempotency_key="k"))
    assert not started and again.id == keyed.id

    deployment_run, started = runs.start_flow_run(
        FlowRunCreate(flow_name="f", deployment_id=new_id())
    )
    assert not started and deployment_run.state.type is StateType.PENDING

    other_state, started = runs.start_flow_run(FlowRunCreate(flow_name="f", state=Completed()))
    assert not started and other_state.state.type is StateType.COMPLETED
