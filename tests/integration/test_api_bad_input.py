"""Bad input over real HTTP: every case is a 4xx naming the field and stores nothing.

Deeply nested bodies, non-finite numbers, control characters in names and tags,
state names that contradict their type, references to objects that do not
exist, duplicate tags, oversized bodies and limit names no route could address.
Each request goes through the local API Gateway to the handler and the
session's moto server; ``call`` checks every error's shape and that it is < 500.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any

import pytest

from runtime.models import FlowRunFilter
from runtime.stores import Stores
from tests.integration.http_calls import call


def error(api: str, method: str, path: str, body: Any = None, *, raw: bytes | None = None) -> str:
    """The error message of a request that must be refused with 422."""
    status, payload = call(api, method, path, body, raw=raw)
    assert status == 422, (status, payload)
    assert payload["error"]["type"] == "validation_error", payload
    return str(payload["error"]["message"])


def flow_runs(stores: Stores, flow_name: str) -> list[Any]:
    """Every stored flow run of ``flow_name``."""
    return stores.runs.list_flow_runs(FlowRunFilter(flow_name=flow_name), limit=100).items


@pytest.fixture
def flow_name(prefix: str) -> str:
    """A flow name unique to this test."""
    return f"flow-{prefix}"


def nested(depth: int) -> str:
    """A JSON array nested ``depth`` levels deep."""
    return "[" * depth + "]" * depth


# ----------------------------------------------------------------------------- JSON itself


@pytest.mark.parametrize("depth", [65, 250, 1_000, 100_000])
def test_a_deeply_nested_body_is_refused(
    api: str, stores: Stores, flow_name: str, depth: int
) -> None:
    raw = f'{{"flow_name": "{flow_name}", "parameters": {{"x": {nested(depth)}}}}}'.encode()
    message = error(api, "POST", "/flow_runs", raw=raw)
    assert "nested deeper than 64 levels" in message
    assert message.startswith("body")
    assert flow_runs(stores, flow_name) == []


def test_a_body_at_the_depth_limit_is_accepted(api: str, flow_name: str) -> None:
    # the body object is level 1, parameters 2, x 3: 61 more levels make 64
    raw = f'{{"flow_name": "{flow_name}", "parameters": {{"x": {nested(61)}}}}}'.encode()
    status, run = call(api, "POST", "/flow_runs", raw=raw)
    assert status == 201, run
    status, again = call(api, "GET", f"/flow_runs/{run['id']}")
    assert status == 200 and again["parameters"] == run["parameters"]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999999", "-1e999999"])
def test_non_finite_numbers_in_parameters_are_refused(
    api: str, stores: Stores, flow_name: str, number: str
) -> None:
    raw = f'{{"flow_name": "{flow_name}", "parameters": {{"a": {{"b": [1, {number}]}}}}}}'
    message = error(api, "POST", "/flow_runs", raw=raw.encode())
    assert "body.parameters.a.b.1" in message
    assert "not a JSON number" in message
    assert flow_runs(stores, flow_name) == []


def test_non_finite_numbers_are_refused_in_every_body(api: str, flow_name: str) -> None:
    raw = f'{{"name": "d", "flow_name": "{flow_name}", "parameters": {{"x": NaN}}}}'
    assert "body.parameters.x" in error(api, "POST", "/deployments", raw=raw.encode())
    status, dep = call(api, "POST", "/deployments", {"name": "d", "flow_name": flow_name})
    assert status == 201
    message = error(
        api,
        "POST",
        f"/deployments/{dep['id']}/create_flow_run",
        raw=b'{"parameters": {"y": Infinity}}',
    )
    assert "body.parameters.y" in message


def test_malformed_json_names_the_problem(api: str) -> None:
    message = error(api, "POST", "/flow_runs", raw=b'{"flow_name": "f", ')
    assert message.startswith("body: invalid JSON")


# ----------------------------------------------------------------------------- names and tags


@pytest.mark.parametrize("bad", ["\x1b[31mred", "a\x00b", "evil\u202etxt", "a\u200bb", "a\nb"])
@pytest.mark.parametrize("field", ["name", "flow_name", "tags"])
def test_control_characters_in_run_names_and_tags_are_refused(
    api: str, stores: Stores, flow_name: str, bad: str, field: str
) -> None:
    body: dict[str, Any] = {"flow_name": flow_name}
    body[field] = [bad] if field == "tags" else bad
    message = error(api, "POST", "/flow_runs", body)
    assert f"body.{field}" in message
    assert "control or format character" in message
    assert flow_runs(stores, flow_name) == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/deployments", {"name": "d\x1b]0;x\x07", "flow_name": "f"}, "body.name"),
        ("/deployments", {"name": "d", "flow_name": "f", "tags": ["\u202e"]}, "body.tags.0"),
        ("/concurrency_limits", {"name": "tag:\x1b[2J", "limit": 1}, "body.name"),
        ("/task_runs", {"task_key": "t\x00"}, "body.task_key"),
        ("/task_runs", {"task_key": "t", "tags": ["ok", "\u2066x"]}, "body.tags.1"),
    ],
)
def test_control_characters_are_refused_everywhere(
    api: str, path: str, body: dict[str, Any], field: str
) -> None:
    message = error(api, "POST", path, body)
    assert field in message and "control or format character" in message


def test_control_characters_in_a_state_name_are_refused(api: str, flow_name: str) -> None:
    status, run = call(api, "POST", "/flow_runs", {"flow_name": flow_name})
    assert status == 201
    bad = {"state": {"type": "COMPLETED", "name": "Done\x1b[0m"}}
    message = error(api, "POST", f"/flow_runs/{run['id']}/set_state", bad)
    assert "body.state.name" in message
    status, again = call(api, "GET", f"/flow_runs/{run['id']}")
    assert again["state"]["type"] == "PENDING"


def test_printable_unicode_names_are_kept(api: str, flow_name: str) -> None:
    name = "données-été 数据 🚀"
    status, run = call(api, "POST", "/flow_runs", {"flow_name": flow_name, "name": name})
    assert status == 201 and run["name"] == name


def test_duplicate_tags_are_stored_once_in_order(api: str, flow_name: str) -> None:
    tags = ["b", "a", "b", "c", "a"]
    status, run = call(api, "POST", "/flow_runs", {"flow_name": flow_name, "tags": tags})
    assert status == 201 and run["tags"] == ["b", "a", "c"]
    status, dep = call(
        api, "POST", "/deployments", {"name": "d", "flow_name": flow_name, "tags": tags}
    )
    assert status == 201 and dep["tags"] == ["b", "a", "c"]
    status, task = call(api, "POST", "/task_runs", {"task_key": "t", "tags": tags})
    assert status == 201 and task["tags"] == ["b", "a", "c"]


@pytest.mark.parametrize("name", ["tag:a/b", "a?b", "a#b", "a b", 'a"b', "a\\b"])
def test_a_limit_name_no_route_can_address_is_refused(api: str, name: str) -> None:
    message = error(api, "POST", "/concurrency_limits", {"name": name, "limit": 1})
    assert "body.name" in message
    status, page = call(api, "GET", "/concurrency_limits")
    assert status == 200
    assert name not in [limit["name"] for limit in page["items"]]


@pytest.mark.parametrize("name", ["tag:db", "tag:team.data-1", "tag:a:b@c", "tag:données"])
def test_every_accepted_limit_name_can_be_read_and_deleted(
    api: str, prefix: str, name: str
) -> None:
    name = f"{name}-{prefix}"
    status, _ = call(api, "POST", "/concurrency_limits", {"name": name, "limit": 1})
    assert status == 201
    path = "/concurrency_limits/" + urllib.parse.quote(name, safe="")
    status, limit = call(api, "GET", path)
    assert status == 200 and limit["name"] == name
    status, _ = call(api, "DELETE", path)
    assert status == 204


# ----------------------------------------------------------------------------- states


def test_a_state_name_of_another_type_is_refused(api: str, flow_name: str) -> None:
    status, run = call(api, "POST", "/flow_runs", {"flow_name": flow_name})
    assert status == 201
    path = f"/flow_runs/{run['id']}/set_state"
    for bad in (
        {"type": "COMPLETED", "name": "Running"},
        {"type": "RUNNING", "name": "Cached"},
        {"type": "FAILED", "name": "completed"},
        {"type": "SCHEDULED", "name": "CANCELLED"},
    ):
        message = error(api, "POST", path, {"state": bad})
        assert "body.state" in message and "is the name of a" in message, message
    status, again = call(api, "GET", f"/flow_runs/{run['id']}")
    assert again["state"]["type"] == "PENDING" and again["state_version"] == run["state_version"]
    first = {"flow_name": flow_name, "state": {"type": "PENDING", "name": "Failed"}}
    assert "body.state" in error(api, "POST", "/flow_runs", first)


def test_custom_state_names_stay_allowed(api: str, flow_name: str) -> None:
    status, run = call(api, "POST", "/flow_runs", {"flow_name": flow_name})
    assert status == 201
    path = f"/flow_runs/{run['id']}/set_state"
    status, result = call(api, "POST", path, {"state": {"type": "RUNNING", "name": "Retrying"}})
    assert status == 200 and result["status"] == "ACCEPT", result
    status, result = call(api, "POST", path, {"state": {"type": "COMPLETED", "name": "Skipped"}})
    assert status == 200 and result["state"]["name"] == "Skipped", result


# ----------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("parent_flow_run_id", "random-uuid"),
        ("parent_task_run_id", "random-uuid"),
        ("deployment_id", "random-uuid"),
        ("work_pool_name", "no-such-pool"),
    ],
)
def test_a_flow_run_referring_to_nothing_is_refused(
    api: str, stores: Stores, flow_name: str, field: str, value: str
) -> None:
    value = str(uuid.uuid4()) if value == "random-uuid" else value
    message = error(api, "POST", "/flow_runs", {"flow_name": flow_name, field: value})
    assert f"body.{field}" in message and value in message
    assert flow_runs(stores, flow_name) == []


def test_a_deployment_on_a_missing_work_pool_is_refused(
    api: str, stores: Stores, flow_name: str
) -> None:
    body = {"name": "d", "flow_name": flow_name, "work_pool_name": "no-such-pool"}
    message = error(api, "POST", "/deployments", body)
    assert "body.work_pool_name" in message and "no-such-pool" in message
    assert stores.registry.list_deployments(flow_name).items == []

    status, dep = call(api, "POST", "/deployments", {"name": "d", "flow_name": flow_name})
    assert status == 201, dep
    patch = {"work_pool_name": "no-such-pool"}
    message = error(api, "PATCH", f"/deployments/{dep['id']}", patch)
    assert "body.work_pool_name" in message and "no-such-pool" in message
    assert stores.registry.read_deployment(dep["id"]).work_pool_name is None


def test_a_task_run_in_a_missing_flow_run_is_refused(api: str) -> None:
    missing = str(uuid.uuid4())
    message = error(api, "POST", "/task_runs", {"task_key": "t", "flow_run_id": missing})
    assert "body.flow_run_id" in message and missing in message


def test_existing_references_are_accepted(api: str, flow_name: str) -> None:
    status, pool = call(api, "POST", "/work_pools", {"name": f"pool-{flow_name}"[:100]})
    assert status == 201
    status, dep = call(api, "POST", "/deployments", {"name": "d", "flow_name": flow_name})
    status, parent = call(api, "POST", "/flow_runs", {"flow_name": flow_name})
    status, task = call(api, "POST", "/task_runs", {"task_key": "t", "flow_run_id": parent["id"]})
    assert status == 201, task
    body = {
        "flow_name": flow_name,
        "parent_flow_run_id": parent["id"],
        "parent_task_run_id": task["id"],
        "deployment_id": dep["id"],
        "work_pool_name": pool["name"],
    }
    status, child = call(api, "POST", "/flow_runs", body)
    assert status == 201, child
    assert child["parent_flow_run_id"] == parent["id"]


# ----------------------------------------------------------------------------- body size


def test_a_body_above_the_lambda_payload_limit_is_413(
    api: str, stores: Stores, flow_name: str
) -> None:
    from handlers.local_gateway import MAX_REQUEST_BYTES

    assert MAX_REQUEST_BYTES == 6 * 1024 * 1024
    padding = "x" * (MAX_REQUEST_BYTES + 1)
    status, payload = call(
        api, "POST", "/flow_runs", {"flow_name": flow_name, "parameters": {"p": padding}}
    )
    assert status == 413, payload
    assert payload["error"]["type"] == "payload_too_large"
    assert "6291456" in payload["error"]["message"]
    assert flow_runs(stores, flow_name) == []


def test_a_body_just_under_the_limit_reaches_the_handler(api: str, flow_name: str) -> None:
    from handlers.local_gateway import MAX_REQUEST_BYTES

    body = {"flow_name": flow_name, "parameters": {"p": ""}}
    room = MAX_REQUEST_BYTES - len(json.dumps(body).encode())
    body["parameters"]["p"] = "x" * room
    assert len(json.dumps(body).encode()) == MAX_REQUEST_BYTES
    status, payload = call(api, "POST", "/flow_runs", body)
    # the handler refuses a run this large itself, naming the field (not the gateway)
    assert status == 422 and "body" in payload["error"]["message"], payload
