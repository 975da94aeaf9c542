"""The registry routes over real HTTP: flows, deployments, running deployments, work pools.

Every request goes to the local API Gateway (``api`` fixture), whose handlers
talk HTTP to the session's locked moto server. Every error response is checked
for the one error shape and for never being a 5xx.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runtime.models import FlowRunFilter
from runtime.stores import Stores
from runtime.stores.registry import deployment_id_for
from tests.integration.http_calls import call

SCHEMA: dict[str, Any] = {
    "title": "Parameters",
    "type": "object",
    "properties": {
        "count": {"type": "integer", "minimum": 1},
        "label": {"type": "string"},
        "config": {
            "type": "object",
            "properties": {"depth": {"type": "integer"}},
        },
    },
    "required": ["count"],
}


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def deployment(name: str = "nightly", flow_name: str = "etl", **fields: Any) -> dict[str, Any]:
    return {"name": name, "flow_name": flow_name, **fields}


def ensure_pool(api: str, *names: str) -> None:
    """Create these work pools unless they exist (a deployment's pool must exist)."""
    for name in names:
        status, body = call(api, "POST", "/work_pools", {"name": name})
        assert status in (201, 409), body


# ============================================================================ deployments


def test_upsert_twice_keeps_one_deployment(api: str) -> None:
    ensure_pool(api, "pool-1")
    status, first = call(
        api, "POST", "/deployments", deployment(tags=["a"], parameters={"count": 1})
    )
    assert status == 201
    assert first["id"] == deployment_id_for("etl", "nightly")
    assert (first["flow_name"], first["name"], first["tags"]) == ("etl", "nightly", ["a"])

    status, second = call(
        api,
        "POST",
        "/deployments",
        deployment(tags=["b"], description="v2", work_pool_name="pool-1"),
    )
    assert status == 200
    assert second["id"] == first["id"]
    assert second["created"] == first["created"]
    assert second["updated"] > first["updated"]
    assert (second["tags"], second["description"], second["parameters"]) == (["b"], "v2", {})

    status, page = call(api, "GET", "/deployments")
    assert status == 200
    assert [d["id"] for d in page["items"]] == [first["id"]]
    assert page["next_cursor"] is None
    assert page["items"][0]["description"] == "v2"

    status, flows = call(api, "GET", "/flows")
    assert status == 200
    assert [f["name"] for f in flows["items"]] == ["etl"]


def test_read_by_id_and_by_name(api: str) -> None:
    _, created = call(api, "POST", "/deployments", deployment("daily run", "my-flow"))
    status, by_id = call(api, "GET", f"/deployments/{created['id']}")
    assert status == 200 and by_id == created
    status, by_name = call(api, "GET", f"/deployments/name/my-flow/{q('daily run')}")
    assert status == 200 and by_name == created

    status, err = call(api, "GET", "/deployments/name/my-flow/other")
    assert status == 404 and err["error"]["type"] == "not_found"
    assert "my-flow/other" in err["error"]["message"]
    status, err = call(api, "GET", "/deployments/00000000-0000-0000-0000-000000000000")
    assert status == 404 and err["error"]["type"] == "not_found"
    status, err = call(api, "GET", "/deployments/not-a-uuid")
    assert status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x"}, "body.flow_name"),
        ({"flow_name": "f"}, "body.name"),
        ({"name": "", "flow_name": "f"}, "body.name"),
        ({"name": "x", "flow_name": "f", "concurrency_limit": -1}, "body.concurrency_limit"),
        ({"name": "x", "flow_name": "f", "unknown": 1}, "body.unknown"),
        ({"name": "x", "flow_name": "f", "tags": "notalist"}, "body.tags"),
        ({"name": "a/b", "flow_name": "f"}, "body.name"),
        ({"name": "x", "flow_name": "f/g"}, "body.flow_name"),
        (
            {"name": "x", "flow_name": "f", "parameter_openapi_schema": {"type": "nope"}},
            "body.parameter_openapi_schema",
        ),
    ],
)
def test_bad_deployment_is_422_naming_the_field(
    api: str, stores: Stores, body: dict[str, Any], field: str
) -> None:
    status, err = call(api, "POST", "/deployments", body)
    assert status == 422, err
    assert err["error"]["type"] == "validation_error"
    assert field in err["error"]["message"]
    assert any(".".join(e["loc"]) == field for e in err["error"]["details"]["errors"])
    assert call(api, "GET", "/deployments")[1]["items"] == []  # nothing was written
    assert call(api, "GET", "/flows")[1]["items"] == []


def test_malformed_json_body_is_422(api: str) -> None:
    status, err = call(api, "POST", "/deployments", raw=b"{not json")
    assert status == 422, err
    status, err = call(api, "POST", "/deployments", raw=b"[1, 2]")
    assert status == 422 and "body" in err["error"]["message"]


def test_patch_changes_only_given_fields(api: str) -> None:
    ensure_pool(api, "p")
    _, created = call(
        api,
        "POST",
        "/deployments",
        deployment(tags=["t"], description="old", work_pool_name="p", parameters={"count": 2}),
    )
    path = f"/deployments/{created['id']}"
    status, updated = call(api, "PATCH", path, {"description": "new", "paused": True})
    assert status == 200
    assert (updated["description"], updated["paused"]) == ("new", True)
    assert (updated["tags"], updated["work_pool_name"], updated["parameters"]) == (
        ["t"],
        "p",
        {"count": 2},
    )
    assert updated["created"] == created["created"]
    # explicit null clears an optional field...
    status, cleared = call(api, "PATCH", path, {"work_pool_name": None})
    assert status == 200 and cleared["work_pool_name"] is None
    # ...but not a required one
    status, err = call(api, "PATCH", path, {"tags": None})
    assert status == 422 and "body.tags" in err["error"]["message"]
    status, err = call(api, "PATCH", path, {"name": "renamed"})
    assert status == 422 and "body.name" in err["error"]["message"]
    status, err = call(api, "PATCH", path, {"concurrency_limit": -5})
    assert status == 422 and "body.concurrency_limit" in err["error"]["message"]
    assert call(api, "GET", path)[1]["tags"] == ["t"]
    status, err = call(api, "PATCH", "/deployments/nope", {"description": "x"})
    assert status == 404 and err["error"]["type"] == "not_found"


def test_delete_deployment(api: str) -> None:
    _, created = call(api, "POST", "/deployments", deployment())
    status, body = call(api, "DELETE", f"/deployments/{created['id']}")
    assert (status, body) == (204, None)
    assert call(api, "GET", f"/deployments/{created['id']}")[0] == 404
    status, err = call(api, "DELETE", f"/deployments/{created['id']}")
    assert status == 404 and err["error"]["type"] == "not_found"


def test_list_deployments_pages_and_filters(api: str) -> None:
    ensure_pool(api, "even", "odd")
    for flow in ("alpha", "beta"):
        for i in range(3):
            pool = "even" if i % 2 == 0 else "odd"
            assert (
                call(api, "POST", "/deployments", deployment(f"d{i}", flow, work_pool_name=pool))[0]
                == 201
            )
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        path = "/deployments?limit=4" + (f"&cursor={q(cursor)}" if cursor else "")
        status, page = call(api, "GET", path)
        assert status == 200
        seen += [f"{d['flow_name']}/{d['name']}" for d in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 2
    assert seen == [f"{f}/d{i}" for f in ("alpha", "beta") for i in range(3)]

    _, page = call(api, "GET", "/deployments?flow_name=beta&limit=2")
    assert [d["name"] for d in page["items"]] == ["d0", "d1"]
    _, rest = call(
        api, "GET", f"/deployments?flow_name=beta&limit=2&cursor={q(page['next_cursor'])}"
    )
    assert [d["name"] for d in rest["items"]] == ["d2"] and rest["next_cursor"] is None

    _, odd = call(api, "GET", "/deployments?work_pool_name=odd")
    assert [(d["flow_name"], d["name"]) for d in odd["items"]] == [("alpha", "d1"), ("beta", "d1")]
    _, both = call(api, "GET", "/deployments?work_pool_name=even&flow_name=alpha")
    assert [d["name"] for d in both["items"]] == ["d0", "d2"]
    assert call(api, "GET", "/deployments?flow_name=gamma")[1]["items"] == []

    # a bad cursor, or one of another listing, is 400; a bad limit 422
    status, err = call(api, "GET", "/deployments?cursor=garbage")
    assert status == 400 and err["error"]["type"] == "bad_request"
    assert "cursor" in err["error"]["message"]
    status, err = call(api, "GET", f"/deployments?flow_name=alpha&cursor={q(page['next_cursor'])}")
    assert status == 400 and "cursor" in err["error"]["message"]
    for bad in ("0", "1001", "many"):
        status, err = call(api, "GET", f"/deployments?limit={bad}")
        assert status == 422 and "query.limit" in err["error"]["message"]


# ============================================================================ runs


def test_create_flow_run_from_deployment(api: str, stores: Stores) -> None:
    ensure_pool(api, "pool-a")
    _, dep = call(
        api,
        "POST",
        "/deployments",
        deployment(
            tags=["prod", "etl"],
            parameters={"count": 2, "label": "default"},
            parameter_openapi_schema=SCHEMA,
            work_pool_name="pool-a",
            work_queue_name="q-default",
            job_variables={"image": "py:3.11", "cpu": 1},
        ),
    )
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    status, run = call(
        api,
        "POST",
        f"/deployments/{dep['id']}/create_flow_run",
        {
            "parameters": {"count": 5},
            "tags": ["adhoc", "prod"],
            "name": "manual-1",
            "scheduled_time": when.isoformat(),
            "work_queue_name": "q-fast",
            "job_variables": {"cpu": 2},
        },
    )
    assert status == 201, run
    assert run["state"]["type"] == "SCHEDULED" and run["state"]["name"] == "Scheduled"
    assert datetime.fromisoformat(run["state"]["details"]["scheduled_time"]) == when
    assert run["parameters"] == {"count": 5, "label": "default"}
    assert run["tags"] == ["prod", "etl", "adhoc"]
    assert (run["deployment_id"], run["flow_name"], run["name"]) == (dep["id"], "etl", "manual-1")
    assert (run["work_pool_name"], run["work_queue_name"]) == ("pool-a", "q-fast")
    assert run["job_variables"] == {"image": "py:3.11", "cpu": 2}
    assert stores.runs.read_flow_run(run["id"]).state.type.value == "SCHEDULED"

    # no body at all: the deployment's parameters, scheduled now, its own queue
    status, plain = call(api, "POST", f"/deployments/{dep['id']}/create_flow_run")
    assert status == 201, plain
    assert plain["parameters"] == {"count": 2, "label": "default"}
    assert plain["work_queue_name"] == "q-default"
    assert plain["tags"] == ["prod", "etl"]

    runs = stores.runs.list_flow_runs(FlowRunFilter(deployment_id=dep["id"]))
    assert {r.id for r in runs.items} == {run["id"], plain["id"]}


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"count": "five"}, ["parameters.count"]),
        ({"count": 0}, ["parameters.count"]),
        ({"count": None}, ["parameters.count"]),
        ({"label": 3}, ["parameters.label"]),
        ({"count": 1, "config": {"depth": "deep"}}, ["parameters.config.depth"]),
        ({"count": "x", "label": 1}, ["parameters.count", "parameters.label"]),
    ],
)
def test_create_flow_run_schema_errors_name_the_parameter(
    api: str, stores: Stores, parameters: dict[str, Any], named: list[str]
) -> None:
    _, dep = call(
        api,
        "POST",
        "/deployments",
        deployment(parameters={"count": 1}, parameter_openapi_schema=SCHEMA),
    )
    status, err = call(
        api, "POST", f"/deployments/{dep['id']}/create_flow_run", {"parameters": parameters}
    )
    assert status == 422, err
    assert err["error"]["type"] == "validation_error"
    for name in named:
        assert name in err["error"]["message"]
    assert sorted(".".join(e["loc"]) for e in err["error"]["details"]["errors"]) == sorted(named)
    assert stores.runs.list_flow_runs(FlowRunFilter(deployment_id=dep["id"])).items == []


def test_missing_required_parameter_is_named(api: str) -> None:
    _, dep = call(api, "POST", "/deployments", deployment(parameter_openapi_schema=SCHEMA))
    status, err = call(api, "POST", f"/deployments/{dep['id']}/create_flow_run", {})
    assert status == 422
    assert "parameters.count" in err["error"]["message"]
    assert "required" in err["error"]["message"]


def test_unenforced_schema_accepts_anything(api: str) -> None:
    ensure_pool(api, "pool-a")  # a deployment runs on its work pool
    _, dep = call(
        api,
        "POST",
        "/deployments",
        deployment(
            parameter_openapi_schema=SCHEMA,
            enforce_parameter_schema=False,
            work_pool_name="pool-a",
        ),
    )
    status, run = call(
        api, "POST", f"/deployments/{dep['id']}/create_flow_run", {"parameters": {"count": "x"}}
    )
    assert status == 201 and run["parameters"] == {"count": "x"}


def test_create_flow_run_is_idempotent(api: str, stores: Stores) -> None:
    ensure_pool(api, "pool-a")  # a deployment runs on its work pool
    _, dep = call(api, "POST", "/deployments", deployment(work_pool_name="pool-a"))
    path = f"/deployments/{dep['id']}/create_flow_run"
    status, first = call(api, "POST", path, {"idempotency_key": "k-1", "parameters": {"a": 1}})
    assert status == 201
    status, again = call(api, "POST", path, {"idempotency_key": "k-1", "parameters": {"a": 1}})
    assert status == 200 and again == first
    status, other = call(api, "POST", path, {"idempotency_key": "k-1", "parameters": {"a": 2}})
    assert status == 409 and first["id"] in other["error"]["message"]
    status, by_header = call(api, "POST", path, {}, headers={"Idempotency-Key": "k-2"})
    assert status == 201
    status, repeat = call(api, "POST", path, {}, headers={"Idempotency-Key": "k-2"})
    assert status == 200 and repeat["id"] == by_header["id"]
    runs = stores.runs.list_flow_runs(FlowRunFilter(deployment_id=dep["id"]))
    assert len(runs.items) == 2


def test_two_deployments_with_the_same_key_each_get_their_own_run(api: str, stores: Stores) -> None:
    ensure_pool(api, "pool-a")  # a deployment runs on its work pool
    _, one = call(api, "POST", "/deployments", deployment("one", work_pool_name="pool-a"))
    _, two = call(api, "POST", "/deployments", deployment("two", work_pool_name="pool-a"))
    headers = {"Idempotency-Key": "nightly-2026-03-01"}
    runs = []
    for dep in (one, two):
        path = f"/deployments/{dep['id']}/create_flow_run"
        status, run = call(api, "POST", path, {}, headers=headers)
        assert status == 201, run
        runs.append(run)
    assert runs[0]["id"] != runs[1]["id"]
    assert [r["deployment_id"] for r in runs] == [one["id"], two["id"]]
    for dep in (one, two):
        listed = stores.runs.list_flow_runs(FlowRunFilter(deployment_id=dep["id"]))
        assert len(listed.items) == 1


def test_create_flow_run_bad_input(api: str) -> None:
    status, err = call(
        api, "POST", "/deployments/00000000-0000-0000-0000-000000000000/create_flow_run", {}
    )
    assert status == 404 and err["error"]["type"] == "not_found"
    _, dep = call(api, "POST", "/deployments", deployment())
    path = f"/deployments/{dep['id']}/create_flow_run"
    for body, field in [
        ({"scheduled_time": "tomorrow"}, "body.scheduled_time"),
        ({"tags": [""]}, "body.tags"),
        ({"parameters": []}, "body.parameters"),
        ({"bogus": True}, "body.bogus"),
    ]:
        status, err = call(api, "POST", path, body)
        assert status == 422, err
        assert field in err["error"]["message"]


# ============================================================================ work pools


def test_work_pool_lifecycle(api: str) -> None:
    status, pool = call(
        api, "POST", "/work_pools", {"name": "pool-1", "type": "process", "concurrency_limit": 3}
    )
    assert status == 201
    assert (pool["name"], pool["type"], pool["paused"], pool["concurrency_limit"]) == (
        "pool-1",
        "process",
        False,
        3,
    )
    status, err = call(api, "POST", "/work_pools", {"name": "pool-1"})
    assert status == 409 and err["error"]["type"] == "already_exists"
    assert call(api, "GET", "/work_pools/pool-1")[1] == pool

    status, paused = call(api, "POST", "/work_pools/pool-1/pause")
    assert status == 200 and paused["paused"] is True
    assert call(api, "GET", "/work_pools/pool-1")[1]["paused"] is True
    status, resumed = call(api, "POST", "/work_pools/pool-1/resume")
    assert status == 200 and resumed["paused"] is False

    status, patched = call(
        api, "PATCH", "/work_pools/pool-1", {"description": "d", "concurrency_limit": None}
    )
    assert status == 200
    assert (patched["description"], patched["concurrency_limit"], patched["type"]) == (
        "d",
        None,
        "process",
    )
    assert patched["created"] == pool["created"]
    status, err = call(api, "PATCH", "/work_pools/pool-1", {"paused": None})
    assert status == 422 and "body.paused" in err["error"]["message"]
    status, err = call(api, "PATCH", "/work_pools/pool-1", {"type": "docker"})
    assert status == 422 and "body.type" in err["error"]["message"]

    assert call(api, "DELETE", "/work_pools/pool-1") == (204, None)
    for method, path in [
        ("GET", "/work_pools/pool-1"),
        ("DELETE", "/work_pools/pool-1"),
        ("POST", "/work_pools/pool-1/pause"),
        ("POST", "/work_pools/pool-1/resume"),
    ]:
        status, err = call(api, method, path)
        assert status == 404 and err["error"]["type"] == "not_found", (method, path)
    status, err = call(api, "PATCH", "/work_pools/pool-1", {"description": "x"})
    assert status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body.name"),
        ({"name": "has space"}, "body.name"),
        ({"name": "x" * 101}, "body.name"),
        ({"name": "ok", "concurrency_limit": -1}, "body.concurrency_limit"),
        ({"name": "ok", "paused": "maybe"}, "body.paused"),
    ],
)
def test_bad_work_pool_is_422(api: str, body: dict[str, Any], field: str) -> None:
    status, err = call(api, "POST", "/work_pools", body)
    assert status == 422, err
    assert field in err["error"]["message"]
    assert call(api, "GET", "/work_pools")[1]["items"] == []


def test_list_work_pools_pages(api: str) -> None:
    names = [f"pool-{i:02d}" for i in range(5)]
    for name in reversed(names):
        assert call(api, "POST", "/work_pools", {"name": name})[0] == 201
    _, first = call(api, "GET", "/work_pools?limit=3")
    assert [p["name"] for p in first["items"]] == names[:3]
    _, second = call(api, "GET", f"/work_pools?limit=3&cursor={q(first['next_cursor'])}")
    assert [p["name"] for p in second["items"]] == names[3:]
    assert second["next_cursor"] is None
    status, err = call(api, "GET", f"/deployments?cursor={q(first['next_cursor'])}")
    assert status == 400 and err["error"]["type"] == "bad_request"


# ============================================================================ flows


def test_flows_listing_pages(api: str, stores: Stores) -> None:
    for flow in ("c-flow", "a-flow", "b-flow"):
        call(api, "POST", "/deployments", deployment("one", flow))
    call(api, "POST", "/deployments", deployment("two", "a-flow"))
    stores.registry.ensure_flow("d-flow")  # a flow known from its runs
    _, page = call(api, "GET", "/flows?limit=2")
    assert [f["name"] for f in page["items"]] == ["a-flow", "b-flow"]
    _, rest = call(api, "GET", f"/flows?limit=2&cursor={q(page['next_cursor'])}")
    assert [f["name"] for f in rest["items"]] == ["c-flow", "d-flow"]
    assert rest["next_cursor"] is None
    assert all(datetime.fromisoformat(f["created"]) for f in page["items"] + rest["items"])
    status, err = call(api, "GET", "/flows?cursor=%21%21")
    assert status == 400 and err["error"]["type"] == "bad_request"


def test_openapi_lists_the_registry_routes(api: str) -> None:
    status, doc = call(api, "GET", "/openapi.json")
    assert status == 200
    paths = doc["paths"]
    for path in (
        "/flows",
        "/deployments",
        "/deployments/{id}",
        "/deployments/name/{flow_name}/{name}",
        "/deployments/{id}/create_flow_run",
        "/work_pools",
        "/work_pools/{name}",
        "/work_pools/{name}/pause",
        "/work_pools/{name}/resume",
    ):
        assert path in paths, path


def test_too_large_deployment_or_run_is_422_not_500(api: str) -> None:
    status, err = call(api, "POST", "/deployments", deployment(description="x" * 350_000))
    assert status == 422 and err["error"]["type"] == "validation_error"
    assert call(api, "GET", "/deployments")[1]["items"] == []
    _, dep = call(api, "POST", "/deployments", deployment(parameters={"big": "y" * 200_000}))
    status, err = call(
        api,
        "POST",
        f"/deployments/{dep['id']}/create_flow_run",
        {"parameters": {"more": "z" * 150_000}},
    )
    assert status == 422 and "parameters" in err["error"]["message"]
    status, err = call(api, "PATCH", f"/deployments/{dep['id']}", {"description": "d" * 150_000})
    assert status == 422
    assert call(api, "GET", f"/deployments/{dep['id']}")[1]["description"] is None


def test_naive_scheduled_time_is_utc(api: str) -> None:
    ensure_pool(api, "pool-a")  # a deployment runs on its work pool
    _, dep = call(api, "POST", "/deployments", deployment(work_pool_name="pool-a"))
    status, run = call(
        api,
        "POST",
        f"/deployments/{dep['id']}/create_flow_run",
        {"scheduled_time": "2030-01-02T03:04:05"},
    )
    assert status == 201
    when = datetime.fromisoformat(run["state"]["details"]["scheduled_time"])
    assert when == datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_flows_that_have_runs_are_listed(api: str, prefix: str) -> None:
    """A flow run created over the API, or by the engine, makes its flow known."""
    import json as _json
    import urllib.request as _rq

    body = _json.dumps({"flow_name": f"ran-{prefix}"}).encode()
    req = _rq.Request(
        api + "/flow_runs", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with _rq.urlopen(req, timeout=30) as response:
        assert response.status == 201
    with _rq.urlopen(api + "/flows?limit=1000", timeout=30) as response:
        names = [f["name"] for f in _json.loads(response.read())["items"]]
    assert f"ran-{prefix}" in names
