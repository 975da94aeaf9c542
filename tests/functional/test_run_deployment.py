"""``sdk.deployments.run_deployment`` against moto in-process, on the stores backend.

Expectations from Prefect's src/prefect/deployments/flow_runs.py (``run_deployment``):
``"flow-name/deployment-name"`` or a UUID; ``timeout=0`` returns the new run at once,
``timeout=None`` waits for a final state, ``timeout=N`` returns the run as it is after N
seconds; ``timeout < 0`` is a ValueError; called in a flow, the new run is linked to the
calling flow run (``as_subflow``). Parameter errors come from the deployment-run service
before anything is written.

Until workers exist on this branch, a thread plays the worker: it drives the run to its
final state through the run store, as a worker's engine would.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest

from runtime.backoff import Backoff
from runtime.engine.client import DirectEngineClient
from runtime.errors import InvalidInput, NotFound
from runtime.models import DeploymentCreate, FlowRun, FlowRunFilter
from runtime.services import work_pools
from runtime.states import Completed, Pending, Running, StateType
from runtime.stores import Stores
from sdk import flow
from sdk.client import ObjectNotFound
from sdk.deployments import arun_deployment, run_deployment

POLL = Backoff(base=0.01, cap=0.1, jitter=False)

SCHEMA = {
    "type": "object",
    "properties": {"count": {"type": "integer"}, "label": {"type": "string"}},
    "required": ["count"],
}


@pytest.fixture
def deployment_id(stores: Stores, engine: DirectEngineClient) -> str:
    work_pools.ensure_work_pool(stores, "default")
    deployment, _ = stores.registry.upsert_deployment(
        DeploymentCreate(
            name="nightly",
            flow_name="etl",
            work_pool_name="default",
            parameters={"label": "default"},
            parameter_openapi_schema=SCHEMA,
        )
    )
    return deployment.id


def play_worker(stores: Stores, value: object) -> threading.Thread:
    """A thread that waits for the deployment's first run, then runs it to Completed(value)."""

    def work() -> None:
        runs: list[FlowRun] = []
        for attempt in range(200):
            runs = stores.runs.list_flow_runs(FlowRunFilter(flow_name="etl")).items
            if runs:
                break
            POLL.sleep(attempt)
        [run] = runs
        if run.state.type is StateType.SCHEDULED:
            stores.runs.set_state("flow_run", run.id, Pending())
        stores.runs.set_state("flow_run", run.id, Running())
        ref = stores.results.persist(value, serializer="json")
        done = Completed()
        done.details.result = ref
        assert stores.runs.set_state("flow_run", run.id, done).status == "ACCEPT"

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_timeout_zero_returns_the_new_run_at_once(stores: Stores, deployment_id: str) -> None:
    """``timeout=0``: the run as created, not final; parameters merged over the deployment's.

    It is on its pool's queue already (PENDING, sent: the deployment-run service enqueues).
    """
    run = run_deployment("etl/nightly", parameters={"count": 3}, timeout=0, tags=["adhoc"])
    assert not run.state.is_final()
    assert run.state.type is StateType.PENDING
    [message] = stores.queues.receive("default", wait_seconds=0)
    assert message.body is not None and message.body.flow_run_id == run.id
    assert run.deployment_id == deployment_id
    assert run.parameters == {"label": "default", "count": 3}
    assert "adhoc" in run.tags
    assert stores.runs.read_flow_run(run.id).id == run.id


def test_waits_for_the_final_state_and_loads_the_result(stores: Stores, deployment_id: str) -> None:
    """``timeout=None`` returns once the run is final; ``state.result()`` loads the result."""
    worker = play_worker(stores, {"rows": 3})
    run = run_deployment(deployment_id, parameters={"count": 1}, poll_interval=0.2)
    worker.join(30)
    assert run.state.type is StateType.COMPLETED
    assert run.state.result() == {"rows": 3}


def test_timeout_n_returns_the_run_as_it_is_then(stores: Stores, deployment_id: str) -> None:
    """Nobody runs it: after ``timeout`` seconds the call returns the run, still not final."""
    run = run_deployment("etl/nightly", parameters={"count": 1}, timeout=0.3, poll_interval=0.1)
    assert not run.state.is_final()


def test_negative_timeout_is_refused(stores: Stores, deployment_id: str) -> None:
    with pytest.raises(ValueError, match="timeout"):
        run_deployment("etl/nightly", timeout=-1)


def test_parameters_failing_the_schema_name_the_parameter_and_create_nothing(
    stores: Stores, deployment_id: str
) -> None:
    """The service validates first: an error naming ``count``; no run exists afterwards."""
    with pytest.raises(InvalidInput) as caught:
        run_deployment("etl/nightly", parameters={"count": "three"}, timeout=0)
    assert "count" in str(caught.value)
    assert stores.runs.list_flow_runs(FlowRunFilter(deployment_id=deployment_id)).items == []
    assert stores.queues.receive("default", wait_seconds=0) == []  # nothing enqueued


def test_unknown_deployment_is_object_not_found(stores: Stores, deployment_id: str) -> None:
    with pytest.raises(ObjectNotFound, match="etl/weekly"):
        run_deployment("etl/weekly", timeout=0)
    with pytest.raises(NotFound):
        run_deployment(str(uuid.uuid4()), timeout=0)
    with pytest.raises(ValueError, match="flow-name/deployment-name"):
        run_deployment("no-slash", timeout=0)


def test_called_in_a_flow_the_run_is_linked_to_the_calling_flow_run(
    stores: Stores, deployment_id: str
) -> None:
    """``as_subflow=True`` (default): parent_flow_run_id is the caller's run; False: none."""

    @flow
    def orchestrator() -> tuple[str, str | None, str | None]:
        from sdk.runtime import flow_run

        linked = run_deployment("etl/nightly", parameters={"count": 1}, timeout=0)
        unlinked = run_deployment(
            "etl/nightly", parameters={"count": 2}, timeout=0, as_subflow=False
        )
        return flow_run.id, linked.parent_flow_run_id, unlinked.parent_flow_run_id

    caller, linked_parent, unlinked_parent = orchestrator()
    assert linked_parent == caller
    assert unlinked_parent is None


def test_arun_deployment_is_awaitable(stores: Stores, deployment_id: str) -> None:
    run = asyncio.run(arun_deployment("etl/nightly", parameters={"count": 1}, timeout=0))
    assert run.deployment_id == deployment_id


def test_in_async_code_run_deployment_is_awaited(stores: Stores, deployment_id: str) -> None:
    """Prefect's docs (how-to-guides/deployments/run-deployments.mdx, "Async usage"):
    ``flow_run = await run_deployment(...)`` in a coroutine."""

    async def trigger() -> FlowRun:
        pending: Any = run_deployment("etl/nightly", parameters={"count": 4}, timeout=0)
        run: FlowRun = await pending
        return run

    run = asyncio.run(trigger())
    assert run.parameters["count"] == 4
