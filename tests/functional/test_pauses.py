"""Pausing, suspending and resuming flow runs against moto in-process.

Expectations from Prefect 3: ``src/prefect/flow_runs.py`` (``pause_flow_run`` blocks
in a Paused state and raises ``FlowPauseTimeout`` when never resumed;
``suspend_flow_run`` needs a deployment; ``resume_flow_run`` raises
``NotPausedError`` for a run that is not paused), ``server/api/flow_runs.py``
(``resume_flow_run``: the input is validated against the stored schema before the
run moves; a Suspended run resumes to Scheduled "Resuming") and
``server/orchestration/core_policy.py`` (HandlePausingFlows: a pause key fires once).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest

from runtime.engine.client import DirectEngineClient
from runtime.engine.exceptions import FlowPauseTimeout, NotPausedError, Pause, PausedRun
from runtime.errors import InvalidInput, NotFound, TransitionRejected
from runtime.models import DeploymentCreate, FlowRun, FlowRunCreate, FlowRunFilter
from runtime.services import pauses
from runtime.states import Paused, Pending, Running, State, StateType, Suspended
from runtime.stores import Stores
from sdk import flow
from sdk.flow_runs import pause_flow_run, resume_flow_run, suspend_flow_run
from sdk.input import RunInput, read_flow_run_input

WAIT = 30.0


class Approval(pydantic.BaseModel):
    """What the paused flows below wait for."""

    approved: bool
    approver: str = "nobody"


def running_run(stores: Stores, deployment_id: str | None = None) -> FlowRun:
    run = stores.runs.create_flow_run(
        FlowRunCreate(flow_name="paused", state=Pending(), deployment_id=deployment_id)
    )
    assert stores.runs.set_state("flow_run", run.id, Running()).accepted
    return stores.runs.read_flow_run(run.id)


def paused_run(stores: Stores, state: State, schema: dict[str, Any] | None = None) -> FlowRun:
    """A RUNNING run paused with ``state``, waiting for ``schema``'s input when given."""
    deployment = None
    if state.details.pause_reschedule:
        deployment = stores.registry.upsert_deployment(
            DeploymentCreate(name="d", flow_name="paused")
        )[0].id
    run = running_run(stores, deployment)
    if schema is not None:
        keyset = pauses.keyset_from_paused_state(state)
        state.details.run_input_keyset = keyset
        pauses.create_flow_run_input(stores, run.id, keyset["schema"], schema)
    assert stores.runs.set_state("flow_run", run.id, state).accepted
    return stores.runs.read_flow_run(run.id)


# ------------------------------------------------------------------------------ service


def test_resume_with_valid_input_runs_again_and_stores_the_input(stores: Stores) -> None:
    run = paused_run(stores, Paused(pause_key="1"), Approval.model_json_schema())
    result = pauses.resume_flow_run(stores, run.id, {"approved": True, "approver": "ann"})
    assert result.accepted and result.state.type is StateType.RUNNING
    after = stores.runs.read_flow_run(run.id)
    assert after.state.name == "Running" and after.run_count == 1  # a resume is no new attempt
    assert after.pause_keys == ["1"]
    response = pauses.read_flow_run_input(stores, run.id, "paused-1-response")
    assert response == {"approved": True, "approver": "ann"}


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"approver": "ann"}, "run_input"),  # approved missing
        ({"approved": "maybe"}, "run_input.approved"),
        ({"approved": True, "extra": 1}, "run_input"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_the_run_stays_paused(
    stores: Stores, bad: dict[str, Any], field: str
) -> None:
    schema = RunInput.subclass_from_base_model_type(Approval).model_json_schema()
    run = paused_run(stores, Paused(pause_key="1"), schema)
    with pytest.raises(InvalidInput) as caught:
        pauses.resume_flow_run(stores, run.id, bad)
    assert caught.value.details["field"] == field
    after = stores.runs.read_flow_run(run.id)
    assert after.state.type is StateType.PAUSED and after.state_version == run.state_version
    with pytest.raises(NotFound):
        pauses.read_flow_run_input(stores, run.id, "paused-1-response")


def test_input_to_a_run_that_waits_for_none_is_refused(stores: Stores) -> None:
    run = paused_run(stores, Paused())
    with pytest.raises(InvalidInput, match="not waiting for input"):
        pauses.resume_flow_run(stores, run.id, {"x": 1})
    assert stores.runs.read_flow_run(run.id).state.type is StateType.PAUSED


def test_resuming_a_run_that_is_not_paused_is_rejected(stores: Stores) -> None:
    run = running_run(stores)
    with pytest.raises(TransitionRejected, match="not paused"):
        pauses.resume_flow_run(stores, run.id)
    with pytest.raises(NotFound):
        pauses.resume_flow_run(stores, "00000000-0000-4000-8000-000000000000")


def test_a_timed_out_pause_fails_the_run_instead_of_resuming(stores: Stores) -> None:
    run = paused_run(stores, Paused(timeout_seconds=-1))
    result = pauses.resume_flow_run(stores, run.id)
    assert result.state.type is StateType.FAILED
    assert result.state.message == "The flow was paused and never resumed."


def test_a_suspended_run_resumes_to_resuming(stores: Stores) -> None:
    run = paused_run(stores, Suspended(pause_key="1"), {"type": "object"})
    result = pauses.resume_flow_run(stores, run.id, {"any": "thing"})
    assert (result.state.type, result.state.name) == (StateType.SCHEDULED, "Resuming")
    after = stores.runs.read_flow_run(run.id)
    assert after.resuming  # its next RUNNING is no new attempt (and not "Retrying")
    assert stores.runs.set_state("flow_run", run.id, Running()).state.name == "Running"
    # the run starts again from the beginning: the same suspend (same key) has fired
    again = stores.runs.set_state("flow_run", run.id, Suspended(pause_key="1"))
    assert again.status == "REJECT" and again.state.type is StateType.RUNNING
    assert "already fired" in (again.reason or "")


def test_suspending_a_run_without_a_deployment_aborts(stores: Stores) -> None:
    run = running_run(stores)
    result = stores.runs.set_state("flow_run", run.id, Suspended())
    assert result.status == "ABORT" and "without a deployment" in (result.reason or "")


def test_run_inputs_are_written_once(stores: Stores) -> None:
    run = running_run(stores)
    assert pauses.create_flow_run_input(stores, run.id, "k", {"a": 1})
    assert not pauses.create_flow_run_input(stores, run.id, "k", {"a": 1})  # a retry
    from runtime.errors import AlreadyExists

    with pytest.raises(AlreadyExists):
        pauses.create_flow_run_input(stores, run.id, "k", {"a": 2})
    pauses.delete_flow_run_input(stores, run.id, "k")
    with pytest.raises(NotFound):
        pauses.read_flow_run_input(stores, run.id, "k")
    with pytest.raises(InvalidInput):
        pauses.create_flow_run_input(stores, run.id, "bad#key", 1)


# ------------------------------------------------------------------------------ in a flow


@pytest.fixture
def flows_in_thread() -> Iterator[list[threading.Thread]]:
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        thread.join(WAIT)


def start(threads: list[threading.Thread], target: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = target()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=run)
    threads.append(thread)
    thread.start()
    return out


def wait_for_paused(stores: Stores) -> FlowRun:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        runs = stores.runs.list_flow_runs(FlowRunFilter(state_types=[StateType.PAUSED])).items
        if runs:
            return runs[0]
        time.sleep(0.05)
    raise AssertionError("no flow run paused")


def test_pause_waits_in_process_and_returns_the_input(
    engine: DirectEngineClient, flows_in_thread: list[threading.Thread]
) -> None:
    @flow(name="approve")
    def approve() -> str:
        answer = pause_flow_run(wait_for_input=Approval, timeout=60, poll_interval=1)
        assert isinstance(answer, Approval)
        return f"{answer.approved}:{answer.approver}"

    out = start(flows_in_thread, approve)
    run = wait_for_paused(engine.stores)
    assert run.state.name == "Paused" and run.state.details.pause_key == "1"
    assert run.state.details.run_input_keyset == pauses.keyset_from_base_key("paused-1")
    with pytest.raises(PausedRun):
        run.state.result()
    with pytest.raises(InvalidInput):
        resume_flow_run(run.id, {"approved": "perhaps"})
    assert engine.stores.runs.read_flow_run(run.id).state.type is StateType.PAUSED
    resume_flow_run(run.id, {"approved": True, "approver": "ann"})
    flows_in_thread[0].join(WAIT)
    assert out == {"value": "True:ann"}
    final = engine.stores.runs.read_flow_run(run.id)
    assert final.state.type is StateType.COMPLETED
    assert read_flow_run_input("paused-1-response", flow_run_id=run.id) == {
        "approved": True,
        "approver": "ann",
    }
    with pytest.raises(NotPausedError):
        resume_flow_run(run.id)


def test_pause_of_a_plain_type_returns_the_value(
    engine: DirectEngineClient, flows_in_thread: list[threading.Thread]
) -> None:
    @flow(name="count")
    def count() -> int:
        return 2 * pause_flow_run(wait_for_input=int, timeout=60, poll_interval=1, key="n")

    out = start(flows_in_thread, count)
    run = wait_for_paused(engine.stores)
    with pytest.raises(InvalidInput, match=r"run_input\.value"):
        resume_flow_run(run.id, {"value": "x"})
    resume_flow_run(run.id, {"value": 21})
    flows_in_thread[0].join(WAIT)
    assert out == {"value": 42}


def test_a_pause_never_resumed_fails_the_flow(engine: DirectEngineClient) -> None:
    @flow(name="forgotten")
    def forgotten() -> None:
        pause_flow_run(timeout=1, poll_interval=1)

    state = forgotten(return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(FlowPauseTimeout, match="paused and never resumed"):
        state.result()


def test_suspend_without_a_deployment_fails_clearly(engine: DirectEngineClient) -> None:
    @flow(name="suspends")
    def suspends() -> None:
        suspend_flow_run()

    state = suspends(return_state=True)
    assert state.type is StateType.FAILED
    with pytest.raises(RuntimeError, match="cannot be suspended: Cannot suspend flows without"):
        state.result()


def test_the_engine_leaves_a_suspended_run_suspended(engine: DirectEngineClient) -> None:
    """What suspend_flow_run does after its Suspended state was accepted: ``Pause``."""
    seen: dict[str, str] = {}

    @flow(name="stops")
    def stops() -> None:
        from runtime.engine.context import current_flow_run

        ctx = current_flow_run()
        assert ctx is not None
        seen["id"] = ctx.flow_run.id
        state = Suspended(pause_key="1")
        engine.set_flow_run_state(ctx.flow_run.id, state, force=True)
        raise Pause(state=state)

    with pytest.raises(Pause):
        stops()
    run = engine.stores.runs.read_flow_run(seen["id"])
    assert (run.state.type, run.state.name) == (StateType.PAUSED, "Suspended")


def test_suspending_another_run_by_id(stores: Stores, engine: DirectEngineClient) -> None:
    request = DeploymentCreate(name="d", flow_name="paused")
    deployment, _ = stores.registry.upsert_deployment(request)
    run = running_run(stores, deployment.id)
    assert suspend_flow_run(wait_for_input=Approval, flow_run_id=run.id, key="k") is None
    after = stores.runs.read_flow_run(run.id)
    assert after.state.name == "Suspended"
    keyset = after.state.details.run_input_keyset
    assert keyset is not None
    schema = json.loads(json.dumps(pauses.read_flow_run_input(stores, run.id, keyset["schema"])))
    assert "approved" in schema["properties"]


def test_resuming_a_suspended_deployment_run_puts_it_back_on_its_pool_queue(
    stores: Stores,
) -> None:
    """Prefect's resume of a Suspended run schedules it "Resuming" for its worker
    (server/api/flow_runs.py); here that is the pool's SQS queue (runtime.services.dispatch)."""
    from runtime.models import WorkPoolCreate

    stores.registry.create_work_pool(WorkPoolCreate(name="resumers"))
    stores.queues.ensure_pool_queue("resumers")
    deployment, _ = stores.registry.upsert_deployment(
        DeploymentCreate(name="d", flow_name="paused", work_pool_name="resumers")
    )
    run = stores.runs.create_flow_run(
        FlowRunCreate(
            flow_name="paused",
            state=Pending(),
            deployment_id=deployment.id,
            work_pool_name="resumers",
        )
    )
    assert stores.runs.set_state("flow_run", run.id, Running()).accepted
    suspended = Suspended(pause_key="1")
    keyset = pauses.keyset_from_paused_state(suspended)
    suspended.details.run_input_keyset = keyset
    pauses.create_flow_run_input(stores, run.id, keyset["schema"], Approval.model_json_schema())
    assert stores.runs.set_state("flow_run", run.id, suspended).accepted
    assert stores.queues.receive("resumers", wait_seconds=0) == []

    with pytest.raises(InvalidInput):  # nothing is sent for a refused input
        pauses.resume_flow_run(stores, run.id, {"approved": 3})
    assert stores.queues.receive("resumers", wait_seconds=0) == []

    pauses.resume_flow_run(stores, run.id, {"approved": True})
    (message,) = stores.queues.receive("resumers", wait_seconds=1)
    assert message.body is not None and message.body.flow_run_id == run.id
    after = stores.runs.read_flow_run(run.id)
    assert after.state.type is StateType.PENDING and after.resuming
    # the input as given (defaults are applied when the flow loads it)
    assert pauses.read_flow_run_input(stores, run.id, keyset["response"]) == {"approved": True}


def test_a_suspended_run_gives_its_pool_slot_back(stores: Stores) -> None:
    """Suspending "releases its worker" (Prefect's suspend_flow_run docstring): here also
    the pool's concurrency slot the claim took, so another run of the pool can start."""
    from runtime.models import WorkPoolCreate
    from runtime.services import claims, flow_runs

    stores.registry.create_work_pool(WorkPoolCreate(name="one-slot", concurrency_limit=1))
    stores.queues.ensure_pool_queue("one-slot")
    deployment, _ = stores.registry.upsert_deployment(
        DeploymentCreate(name="d", flow_name="paused", work_pool_name="one-slot")
    )

    def new_run() -> str:
        return stores.runs.create_flow_run(
            FlowRunCreate(
                flow_name="paused", deployment_id=deployment.id, work_pool_name="one-slot"
            )
        ).id

    first, second = new_run(), new_run()
    assert claims.claim_flow_run(stores, first, "w1").won
    busy = claims.claim_flow_run(stores, second, "w2")
    assert not busy.won and busy.reason == "slots busy"
    result = flow_runs.set_run_state(stores, "flow_run", first, Suspended(pause_key="1"))
    assert result.accepted
    assert claims.claim_flow_run(stores, second, "w2").won
