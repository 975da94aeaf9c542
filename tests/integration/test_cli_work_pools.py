"""``stratoflow work-pool`` with queues: create, inspect the backlog, delete (refused, forced).

Each command runs in a subprocess against the ``api`` fixture (see
tests/integration/test_cli.py). Prefect's CLI is the model:
``prefect work-pool create|inspect|pause|resume|delete`` (docs/v3/api-ref/cli/work-pool.mdx).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from runtime.models import DeploymentCreate
from runtime.stores import Stores
from sdk.http_client import StratoflowClient
from tests.integration.test_cli import Result, run_cli


@pytest.fixture
def cli(api: str) -> Any:
    def invoke(*args: str) -> Result:
        return run_cli(*args, api_url=api)

    return invoke


@pytest.fixture
def client(api: str) -> Any:
    with StratoflowClient(api) as c:
        yield c


def test_work_pool_queue_backlog_and_delete(
    cli: Any, client: StratoflowClient, stores: Stores
) -> None:
    pool = f"pool-{uuid.uuid4().hex[:6]}"
    cli("work-pool", "create", pool, "--concurrency-limit", "2").ok()
    assert stores.queues.queue(pool, create=False) is not None  # the queue came with it
    deployment = client.create_deployment(
        DeploymentCreate(flow_name="etl", name=pool, work_pool_name=pool)
    )
    run = client.create_flow_run_from_deployment(deployment.id)

    inspected = cli("work-pool", "inspect", pool, "--json").json()
    assert inspected["name"] == pool and inspected["backlog"]["visible"] == 1
    assert (inspected["runs_waiting"], inspected["active_slots"]) == (1, 0)
    human = cli("work-pool", "inspect", pool).ok().out
    for line in ("messages visible", "messages in flight", "messages delayed", "slots in use"):
        assert line in human, human
    assert "0 of 2" in human and "Workers: none registered." in human

    set_limit = cli("work-pool", "set-concurrency-limit", pool, "5", "--json").json()
    assert set_limit["concurrency_limit"] == 5
    assert "0 of 5" in cli("work-pool", "inspect", pool).ok().out
    cli("work-pool", "clear-concurrency-limit", pool).ok()
    assert client.read_work_pool(pool).concurrency_limit is None
    cli("work-pool", "set-concurrency-limit", pool, "-1").failed(2)

    cli("work-pool", "delete", pool).failed(1, "1 queued and 0 running", "force")
    assert client.read_work_pool(pool).name == pool
    cli("work-pool", "delete", pool, "--force").ok()
    cli("work-pool", "inspect", pool).failed(1, "not found")
    assert client.read_flow_run(run.id).state.type.value == "CANCELLED"
    assert stores.queues.queue(pool, create=False) is None
