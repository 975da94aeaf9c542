"""Work pools are SQS queues, over real HTTP (local gateway -> handlers -> loopback moto).

Prefect's oracle for what a pool does: docs/v3/concepts/work-pools.mdx (a pool
holds runs until a worker takes them; a paused pool keeps them; a pool's
concurrency limit caps its runs in progress) and docs/v3/how-to-guides/
deployments/run-deployments.mdx (``run_deployment`` puts a run on its
deployment's pool). Ours: the pool's runs sit in its SQS queue.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runtime.models import FlowRunFilter
from runtime.services import claims
from runtime.states import StateType
from runtime.stores import Stores
from tests.integration.http_calls import call

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"count": {"type": "integer", "minimum": 1}},
    "required": ["count"],
}


def make_pool(api: str, name: str = "pool-a", **fields: Any) -> dict[str, Any]:
    status, pool = call(api, "POST", "/work_pools", {"name": name, **fields})
    assert status == 201, pool
    return pool


def make_deployment(api: str, **fields: Any) -> dict[str, Any]:
    status, dep = call(
        api, "POST", "/deployments", {"name": "nightly", "flow_name": "etl"} | fields
    )
    assert status in (200, 201), dep
    return dep


def queued_ids(stores: Stores, pool: str) -> list[str]:
    got = stores.queues.receive(pool, max_messages=10, wait_seconds=0, visibility_timeout=0)
    return [m.body.flow_run_id for m in got if m.body]


def runs_of(stores: Stores, deployment_id: str) -> list[Any]:
    return stores.runs.list_flow_runs(FlowRunFilter(deployment_id=deployment_id)).items


def test_creating_a_pool_creates_its_queue_and_dead_letter_queue(api: str, stores: Stores) -> None:
    make_pool(api)
    spec = stores.queues.spec("pool-a")
    sqs = stores.queues.sqs
    url = sqs.get_queue_url(QueueName=spec.name)["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=spec.dlq_name)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == dlq_arn
    assert int(redrive["maxReceiveCount"]) == stores.queues.max_receive_count
    assert spec.name == f"{stores.specs.prefix}-pool-pool-a"


def test_running_a_deployment_queues_its_run(api: str, stores: Stores) -> None:
    make_pool(api)
    dep = make_deployment(api, work_pool_name="pool-a", parameters={"count": 1})
    status, run = call(api, "POST", f"/deployments/{dep['id']}/create_flow_run", {})
    assert status == 201, run
    assert run["state"]["type"] == "PENDING" and run["enqueued_at"] is not None
    status, pool = call(api, "GET", "/work_pools/pool-a/status")
    assert status == 200, pool
    assert (pool["name"], pool["backlog"]["visible"], pool["runs_waiting"]) == ("pool-a", 1, 1)
    assert pool["queue_name"] == stores.queues.spec("pool-a").name
    assert queued_ids(stores, "pool-a") == [run["id"]]
    # an idempotent repeat returns the same run and sends nothing more
    path = f"/deployments/{dep['id']}/create_flow_run"
    status, keyed = call(api, "POST", path, {}, headers={"Idempotency-Key": "k"})
    assert status == 201 and keyed["state"]["type"] == "PENDING"
    status, again = call(api, "POST", path, {}, headers={"Idempotency-Key": "k"})
    assert status == 200 and again["id"] == keyed["id"]
    assert sorted(queued_ids(stores, "pool-a")) == sorted([run["id"], keyed["id"]])


def test_a_deployment_without_a_pool_cannot_be_run(api: str, stores: Stores) -> None:
    dep = make_deployment(api)
    status, err = call(api, "POST", f"/deployments/{dep['id']}/create_flow_run", {})
    assert status == 409, err
    assert "etl/nightly has no work pool" in err["error"]["message"]
    assert runs_of(stores, dep["id"]) == []


def test_a_deployment_whose_pool_is_gone_cannot_be_run(api: str, stores: Stores) -> None:
    make_pool(api, "short-lived")
    dep = make_deployment(api, work_pool_name="short-lived")
    assert call(api, "DELETE", "/work_pools/short-lived")[0] == 204
    status, err = call(api, "POST", f"/deployments/{dep['id']}/create_flow_run", {})
    assert status == 409, err
    assert "work pool 'short-lived', which does not exist" in err["error"]["message"]
    assert runs_of(stores, dep["id"]) == []


def test_bad_parameters_create_and_enqueue_nothing(api: str, stores: Stores) -> None:
    make_pool(api)
    dep = make_deployment(api, work_pool_name="pool-a", parameter_openapi_schema=SCHEMA)
    status, err = call(
        api, "POST", f"/deployments/{dep['id']}/create_flow_run", {"parameters": {"count": 0}}
    )
    assert status == 422 and "parameters.count" in err["error"]["message"]
    assert runs_of(stores, dep["id"]) == []
    depth = stores.queues.depth("pool-a")
    assert (depth.visible, depth.delayed, depth.in_flight) == (0, 0, 0)
    status, err = call(
        api, "POST", "/deployments/00000000-0000-0000-0000-000000000000/create_flow_run", {}
    )
    assert status == 404 and stores.queues.depth("pool-a").visible == 0


def test_deleting_a_pool_with_queued_runs_is_refused_unless_forced(
    api: str, stores: Stores
) -> None:
    make_pool(api)
    dep = make_deployment(api, work_pool_name="pool-a")
    _, run = call(api, "POST", f"/deployments/{dep['id']}/create_flow_run", {})
    status, err = call(api, "DELETE", "/work_pools/pool-a")
    assert status == 409, err
    assert "has 1 queued and 0 running flow run(s)" in err["error"]["message"]
    assert "force" in err["error"]["message"]
    assert call(api, "GET", "/work_pools/pool-a")[0] == 200
    assert stores.runs.read_flow_run(run["id"]).state.type is StateType.PENDING

    assert call(api, "DELETE", "/work_pools/pool-a?force=true") == (204, None)
    assert call(api, "GET", "/work_pools/pool-a")[0] == 404
    assert stores.runs.read_flow_run(run["id"]).state.type is StateType.CANCELLED
    spec = stores.queues.spec("pool-a")
    for name in (spec.name, spec.dlq_name):
        with pytest.raises(ClientError):
            stores.queues.sqs.get_queue_url(QueueName=name)


def test_a_paused_pool_keeps_its_runs_queued_and_resuming_drains_them(
    api: str, stores: Stores
) -> None:
    make_pool(api)
    dep = make_deployment(api, work_pool_name="pool-a")
    assert call(api, "POST", "/work_pools/pool-a/pause")[1]["paused"] is True
    _, run = call(api, "POST", f"/deployments/{dep['id']}/create_flow_run", {})
    held = claims.claim_flow_run(stores, run["id"], "w1")
    assert (held.won, held.reason, held.drop_message) == (False, "pool paused", False)
    assert stores.runs.read_flow_run(run["id"]).state.type is StateType.PENDING
    assert call(api, "GET", "/work_pools/pool-a/status")[1]["backlog"]["visible"] == 1
    call(api, "POST", "/work_pools/pool-a/resume")
    assert claims.claim_flow_run(stores, run["id"], "w1").won
