"""RegistryStore against moto in-process: deployments, runs from deployments, pools, flows."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from runtime.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from runtime.models import (
    DeploymentCreate,
    DeploymentFlowRunCreate,
    DeploymentUpdate,
    FlowRunFilter,
    WorkPoolCreate,
    WorkPoolUpdate,
)
from runtime.resources import specs
from runtime.services.deployments import run_deployment, validate_parameters
from runtime.states import StateType, utcnow
from runtime.stores import Stores
from runtime.stores.dynamo import Item
from runtime.stores.registry import deployment_id_for

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "n": {"type": "integer"},
        "opts": {"type": "object", "properties": {"fast": {"type": "boolean"}}},
    },
    "required": ["n"],
    "additionalProperties": False,
}


def dep(name: str = "d", flow_name: str = "f", **fields: Any) -> DeploymentCreate:
    return DeploymentCreate(name=name, flow_name=flow_name, **fields)


def raw(stores: Stores, pk: str) -> Item | None:
    return stores.db.get(stores.specs.registry.name, {"pk": pk})


# ============================================================================ table


def test_registry_table_is_declared_and_provisioned(stores: Stores) -> None:
    spec = specs("x").registry
    assert (spec.name, spec.partition_key.name) == ("x-registry", "pk")
    assert [
        (i.name, i.partition_key.name, i.sort_key and i.sort_key.name) for i in spec.indexes
    ] == [("by_type", "item_type", "sort_value")]
    described = stores.db.client.describe_table(TableName=stores.specs.registry.name)["Table"]
    assert described["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert [g["IndexName"] for g in described["GlobalSecondaryIndexes"]] == ["by_type"]


# ============================================================================ deployments


def test_upsert_creates_then_replaces_keeping_id_and_created(stores: Stores) -> None:
    first, created = stores.registry.upsert_deployment(dep(tags=["a"], description="one"))
    assert created is True
    assert first.id == deployment_id_for("f", "d")
    item = raw(stores, f"deployment#{first.id}")
    assert item is not None and item["rev"] == 0 and item["sort_value"] == "f/d"

    second, created = stores.registry.upsert_deployment(dep(tags=["b"]))
    assert created is False
    assert (second.id, second.created) == (first.id, first.created)
    assert second.updated > first.updated
    assert (second.tags, second.description) == (["b"], None)
    item = raw(stores, f"deployment#{first.id}")
    assert item is not None and item["rev"] == 1
    assert stores.registry.read_deployment(first.id) == second
    assert stores.registry.read_deployment_by_name("f", "d") == second
    assert len(stores.registry.list_deployments().items) == 1


def test_concurrent_upserts_make_one_deployment_and_lose_no_write(stores: Stores) -> None:
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def upsert(i: int) -> None:
        barrier.wait()
        _, created = stores.registry.upsert_deployment(dep(description=f"writer {i}"))
        results.append(created)

    threads = [threading.Thread(target=upsert, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    item = raw(stores, f"deployment#{deployment_id_for('f', 'd')}")
    assert item is not None and item["rev"] == 7  # every replacement applied on the one before
    assert len(stores.registry.list_deployments().items) == 1


def test_concurrent_updates_lose_nothing(stores: Stores) -> None:
    d, _ = stores.registry.upsert_deployment(dep())
    changes = [
        DeploymentUpdate(description="desc"),
        DeploymentUpdate(version="1.2"),
        DeploymentUpdate(entrypoint="flows.py:main"),
        DeploymentUpdate(work_queue_name="q"),
        DeploymentUpdate(tags=["t"]),
        DeploymentUpdate(paused=True),
    ]
    barrier = threading.Barrier(len(changes))

    def apply(update: DeploymentUpdate) -> None:
        barrier.wait()
        stores.registry.update_deployment(d.id, update)

    threads = [threading.Thread(target=apply, args=(u,)) for u in changes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = stores.registry.read_deployment(d.id)
    assert (final.description, final.version, final.entrypoint) == ("desc", "1.2", "flows.py:main")
    assert (final.work_queue_name, final.tags, final.paused) == ("q", ["t"], True)
    item = raw(stores, f"deployment#{d.id}")
    assert item is not None and item["rev"] == len(changes)


def test_update_deployment(stores: Stores) -> None:
    d, _ = stores.registry.upsert_deployment(dep(work_pool_name="p", parameters={"n": 1}))
    updated = stores.registry.update_deployment(
        d.id, DeploymentUpdate(parameters={"n": 2}, work_pool_name=None)
    )
    assert (updated.parameters, updated.work_pool_name, updated.created) == (
        {"n": 2},
        None,
        d.created,
    )
    item = raw(stores, f"deployment#{d.id}")
    assert item is not None and "work_pool_name" not in item  # off the pool filter too
    with pytest.raises(InvalidInput, match=r"body\.tags"):
        stores.registry.update_deployment(d.id, DeploymentUpdate(tags=None))
    with pytest.raises(InvalidInput, match="parameter_openapi_schema"):
        stores.registry.update_deployment(
            d.id, DeploymentUpdate(parameter_openapi_schema={"type": 12})
        )
    with pytest.raises(NotFound):
        stores.registry.update_deployment(
            deployment_id_for("f", "nope"), DeploymentUpdate(paused=True)
        )
    assert stores.registry.read_deployment(d.id) == updated


def test_delete_and_missing_deployments(stores: Stores) -> None:
    d, _ = stores.registry.upsert_deployment(dep())
    stores.registry.delete_deployment(d.id)
    with pytest.raises(NotFound):
        stores.registry.read_deployment(d.id)
    with pytest.raises(NotFound, match="f/d"):
        stores.registry.read_deployment_by_name("f", "d")
    with pytest.raises(NotFound):
        stores.registry.delete_deployment(d.id)
    again, created = stores.registry.upsert_deployment(dep())
    assert created is True and again.id == d.id


@pytest.mark.parametrize(("name", "flow"), [("a/b", "f"), ("d", "f/g")])
def test_names_with_a_slash_are_refused(stores: Stores, name: str, flow: str) -> None:
    with pytest.raises(InvalidInput, match="must not contain '/'"):
        stores.registry.upsert_deployment(dep(name, flow))
    assert stores.registry.list_deployments().items == []


def test_list_deployments_pages_filters_and_cursors(stores: Stores) -> None:
    for flow in ("f1", "f2", "f10"):
        for name in ("a", "b"):
            stores.registry.upsert_deployment(dep(name, flow, work_pool_name=f"pool-{name}"))
    everything = []
    cursor = None
    while True:
        page = stores.registry.list_deployments(limit=4, cursor=cursor)
        everything += [f"{d.flow_name}/{d.name}" for d in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert everything == ["f1/a", "f1/b", "f10/a", "f10/b", "f2/a", "f2/b"]
    # "f1/" does not match "f10/..."
    assert [d.name for d in stores.registry.list_deployments("f1").items] == ["a", "b"]
    assert [
        (d.flow_name, d.name)
        for d in stores.registry.list_deployments(work_pool_name="pool-b").items
    ] == [("f1", "b"), ("f10", "b"), ("f2", "b")]
    page = stores.registry.list_deployments("f2", limit=1)
    assert [d.name for d in page.items] == ["a"] and page.next_cursor
    with pytest.raises(InvalidInput, match="cursor"):
        stores.registry.list_deployments("f1", cursor=page.next_cursor)
    with pytest.raises(InvalidInput, match="cursor"):
        stores.registry.list_work_pools(cursor=page.next_cursor)
    with pytest.raises(InvalidInput, match="cursor"):
        stores.registry.list_deployments(cursor="@@@")
    with pytest.raises(InvalidInput, match="limit"):
        stores.registry.list_deployments(limit=0)


# ============================================================================ runs from deployments


def test_create_flow_run_from_deployment(stores: Stores) -> None:
    stores.registry.create_work_pool(WorkPoolCreate(name="pool"))  # a deployment runs on one
    d, _ = stores.registry.upsert_deployment(
        dep(
            tags=["x", "y"],
            parameters={"n": 1},
            parameter_openapi_schema=SCHEMA,
            work_pool_name="pool",
            work_queue_name="default",
            job_variables={"env": {"A": "1"}, "image": "i"},
        )
    )
    at = utcnow() + timedelta(minutes=5)
    run = run_deployment(
        stores,
        d,
        DeploymentFlowRunCreate(
            parameters={"opts": {"fast": True}},
            tags=["y", "z"],
            scheduled_time=at,
            job_variables={"image": "j"},
        ),
    )
    assert run.state.type is StateType.SCHEDULED
    assert run.state.details.scheduled_time == at
    assert run.expected_start_time == at
    assert run.parameters == {"n": 1, "opts": {"fast": True}}
    assert run.tags == ["x", "y", "z"]
    assert (run.deployment_id, run.flow_name) == (d.id, "f")
    assert (run.work_pool_name, run.work_queue_name) == ("pool", "default")
    assert run.job_variables == {"env": {"A": "1"}, "image": "j"}
    assert stores.runs.read_flow_run(run.id) == run


@pytest.mark.parametrize(
    ("parameters", "locs"),
    [
        ({"n": "one"}, [["parameters", "n"]]),
        ({"n": 1, "opts": {"fast": "yes"}}, [["parameters", "opts", "fast"]]),
        ({"n": 1, "extra": 1, "other": 2}, [["parameters", "extra"], ["parameters", "other"]]),
    ],
)
def test_parameters_are_validated_against_the_schema(
    stores: Stores, parameters: dict[str, Any], locs: list[list[str]]
) -> None:
    d, _ = stores.registry.upsert_deployment(dep(parameter_openapi_schema=SCHEMA))
    with pytest.raises(InvalidInput) as info:
        run_deployment(stores, d, DeploymentFlowRunCreate(parameters=parameters))
    assert [e["loc"] for e in info.value.details["errors"]] == locs
    for loc in locs:
        assert ".".join(loc) in info.value.message
    assert stores.runs.list_flow_runs(FlowRunFilter(deployment_id=d.id)).items == []


def test_missing_required_parameter_is_named() -> None:
    with pytest.raises(InvalidInput, match=r"parameters\.n: 'n' is a required property"):
        validate_parameters({}, SCHEMA)
    validate_parameters({"n": 3}, SCHEMA)


def test_unenforced_or_absent_schema_is_not_checked(stores: Stores) -> None:
    stores.registry.create_work_pool(WorkPoolCreate(name="pool"))  # a deployment runs on one
    loose, _ = stores.registry.upsert_deployment(
        dep(
            "loose",
            parameter_openapi_schema=SCHEMA,
            enforce_parameter_schema=False,
            work_pool_name="pool",
        )
    )
    none, _ = stores.registry.upsert_deployment(dep("none", work_pool_name="pool"))
    for d in (loose, none):
        run = run_deployment(stores, d, DeploymentFlowRunCreate(parameters={"n": "x"}))
        assert run.parameters == {"n": "x"}


def test_flow_run_from_deployment_idempotency(stores: Stores) -> None:
    stores.registry.create_work_pool(WorkPoolCreate(name="pool"))  # a deployment runs on one
    d, _ = stores.registry.upsert_deployment(dep(work_pool_name="pool"))
    first = run_deployment(stores, d, DeploymentFlowRunCreate(idempotency_key="k"))
    again = run_deployment(stores, d, DeploymentFlowRunCreate(idempotency_key="k"))
    assert again == first
    with pytest.raises(Conflict, match=first.id):  # the same key, another request
        run_deployment(stores, d, DeploymentFlowRunCreate(idempotency_key="k", parameters={"p": 1}))
    by_arg = run_deployment(stores, d, DeploymentFlowRunCreate(), idempotency_key="k")
    assert by_arg.id == first.id
    assert len(stores.runs.list_flow_runs(FlowRunFilter(deployment_id=d.id)).items) == 1


# ============================================================================ work pools


def test_work_pools(stores: Stores) -> None:
    pool = stores.registry.create_work_pool(WorkPoolCreate(name="p1", concurrency_limit=2))
    with pytest.raises(AlreadyExists):
        stores.registry.create_work_pool(WorkPoolCreate(name="p1"))
    assert stores.registry.read_work_pool("p1") == pool
    assert stores.registry.pause_work_pool("p1").paused is True
    assert stores.registry.read_work_pool("p1").paused is True
    assert stores.registry.resume_work_pool("p1").paused is False
    updated = stores.registry.update_work_pool("p1", WorkPoolUpdate(description="d"))
    assert (updated.description, updated.concurrency_limit, updated.created) == (
        "d",
        2,
        pool.created,
    )
    with pytest.raises(InvalidInput, match=r"body\.paused"):
        stores.registry.update_work_pool("p1", WorkPoolUpdate(paused=None))
    item = raw(stores, "work_pool#p1")
    assert item is not None and item["rev"] == 3

    stores.registry.create_work_pool(WorkPoolCreate(name="p0"))
    stores.registry.create_work_pool(WorkPoolCreate(name="p2"))
    page = stores.registry.list_work_pools(limit=2)
    assert [p.name for p in page.items] == ["p0", "p1"]
    rest = stores.registry.list_work_pools(limit=2, cursor=page.next_cursor)
    assert [p.name for p in rest.items] == ["p2"] and rest.next_cursor is None

    stores.registry.delete_work_pool("p1")
    for op in (
        stores.registry.read_work_pool,
        stores.registry.delete_work_pool,
        stores.registry.pause_work_pool,
        stores.registry.resume_work_pool,
    ):
        with pytest.raises(NotFound):
            op("p1")


# ============================================================================ flows


def test_ensure_flow_is_idempotent_and_keeps_created(stores: Stores) -> None:
    first = stores.registry.ensure_flow("etl")
    again = stores.registry.ensure_flow("etl")
    assert again == first
    stores.registry.ensure_flow("a-flow")
    page = stores.registry.list_flows(limit=1)
    assert [f.name for f in page.items] == ["a-flow"]
    rest = stores.registry.list_flows(cursor=page.next_cursor)
    assert rest.items == [first] and rest.next_cursor is None
