"""``run_deployment`` through the HTTP API (``STRATOFLOW_API_URL``'s client), real HTTP.

The same semantics as on the stores (tests/functional/test_run_deployment.py), through
``POST /deployments/{id}/create_flow_run`` and ``GET /flow_runs/{id}``: Prefect's
src/prefect/deployments/flow_runs.py. A thread stands in for the worker (it drives the
run through the API) until workers are merged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from runtime.backoff import Backoff
from runtime.engine.client import DirectEngineClient
from runtime.errors import InvalidInput
from runtime.models import DeploymentCreate, WorkPoolCreate
from runtime.states import Completed, Pending, Running, StateType
from runtime.stores import Stores
from sdk.client import ApiSyncClient, ObjectNotFound
from sdk.deployments import run_deployment
from sdk.http_client import StratoflowClient

POLL = Backoff(base=0.02, cap=0.2, jitter=False)
SCHEMA = {"type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]}


@pytest.fixture
def client(api: str) -> Iterator[ApiSyncClient]:
    with StratoflowClient(api) as http:
        yield ApiSyncClient(http)


@pytest.fixture
def deployment_id(client: ApiSyncClient) -> str:
    client.api.create_work_pool(WorkPoolCreate(name="default"))
    deployment = client.api.create_deployment(
        DeploymentCreate(
            name="nightly",
            flow_name="etl",
            work_pool_name="default",
            parameter_openapi_schema=SCHEMA,
        )
    )
    return str(deployment.id)


def test_timeout_zero_and_parameter_errors_over_http(
    client: ApiSyncClient, deployment_id: str
) -> None:
    run = run_deployment("etl/nightly", client=client, parameters={"count": 2}, timeout=0)
    assert run.deployment_id == deployment_id and not run.state.is_final()
    with pytest.raises(InvalidInput, match="count"):
        run_deployment("etl/nightly", client=client, parameters={"count": "x"}, timeout=0)
    assert [r.id for r in client.read_flow_runs(deployment_id=deployment_id)] == [run.id]
    with pytest.raises(ObjectNotFound, match="etl/weekly"):
        run_deployment("etl/weekly", client=client, timeout=0)


def test_waits_for_the_final_state_over_http(
    client: ApiSyncClient, deployment_id: str, stores: Stores, engine: DirectEngineClient
) -> None:
    def worker() -> None:
        for attempt in range(300):
            runs = client.read_flow_runs(deployment_id=deployment_id)
            if runs:
                break
            POLL.sleep(attempt)
        run_id = runs[0].id
        if runs[0].state.type is StateType.SCHEDULED:
            client.set_flow_run_state(run_id, Pending())
        client.set_flow_run_state(run_id, Running())
        done = Completed()
        done.details.result = stores.results.persist([1, 2, 3], serializer="json")
        client.set_flow_run_state(run_id, done)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    run = run_deployment(deployment_id, client=client, parameters={"count": 1}, poll_interval=0.2)
    thread.join(timeout=60)
    assert run.state.type is StateType.COMPLETED
    assert run.state.result() == [1, 2, 3]
