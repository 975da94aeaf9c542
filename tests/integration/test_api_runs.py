"""The flow-run, task-run and log routes over real HTTP (docs/api.md).

Requests go to the local API gateway (``api`` fixture) whose handlers use this
test's stores, which talk HTTP to the session's moto server.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runtime.stores import Stores

ERROR_TYPES = {
    400: "bad_request",
    413: "item_too_large",
    404: "not_found",
    409: "transition_rejected",
    422: "validation_error",
}


@dataclass
class Reply:
    """One HTTP response: status and decoded JSON body."""

    status: int
    body: Any

    def error(self, status: int, error_type: str | None = None) -> dict[str, Any]:
        """Assert an error with the API's shape; return its ``error`` object."""
        assert self.status == status, (self.status, self.body)
        assert set(self.body) == {"error"}, self.body
        err = self.body["error"]
        assert set(err) == {"type", "message", "details"}, err
        assert isinstance(err["message"], str) and err["message"]
        assert isinstance(err["details"], dict)
        assert err["type"] == (error_type or ERROR_TYPES[status]), err
        return err  # type: ignore[no-any-return]


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    query: list[tuple[str, str]] | None = None,
) -> Reply:
    """Send one request; 4xx/5xx come back as a Reply too."""
    url = base + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, payload = exc.code, exc.read()
    assert status != 500, payload
    return Reply(status, json.loads(payload) if payload else None)


def state(type_: str, name: str, **details: Any) -> dict[str, Any]:
    """A state body."""
    out: dict[str, Any] = {"type": type_, "name": name}
    if details:
        out["details"] = details
    return out


def iso(dt: datetime) -> str:
    return dt.isoformat()


@pytest.fixture
def flow_name(prefix: str) -> str:
    """A flow name unique to this test."""
    return f"flow-{prefix}"


def new_flow_run(api: str, flow_name: str, **fields: Any) -> dict[str, Any]:
    reply = call(api, "POST", "/flow_runs", {"flow_name": flow_name, **fields})
    assert reply.status == 201, reply.body
    return reply.body  # type: ignore[no-any-return]


def set_flow_state(api: str, run_id: str, st: dict[str, Any], force: bool = False) -> Reply:
    return call(api, "POST", f"/flow_runs/{run_id}/set_state", {"state": st, "force": force})


def running_flow_run(api: str, flow_name: str) -> dict[str, Any]:
    run = new_flow_run(api, flow_name)
    reply = set_flow_state(api, run["id"], state("RUNNING", "Running"))
    assert reply.status == 200 and reply.body["status"] == "ACCEPT", reply.body
    return run


# ----------------------------------------------------------------------------- flow runs


class TestCreateAndReadFlowRuns:
    def test_create_then_read(self, api: str, flow_name: str) -> None:
        run = new_flow_run(api, flow_name, parameters={"n": 3}, tags=["a", "b"])
        assert run["flow_name"] == flow_name
        assert run["state"]["type"] == "PENDING"
        assert run["parameters"] == {"n": 3}
        uuid.UUID(run["id"])
        reply = call(api, "GET", f"/flow_runs/{run['id']}")
        assert reply.status == 200
        assert reply.body == run

    def test_caller_chosen_id_and_initial_state(self, api: str, flow_name: str) -> None:
        run_id = str(uuid.uuid4())
        when = datetime.now(UTC) + timedelta(hours=1)
        run = new_flow_run(
            api,
            flow_name,
            id=run_id,
            state=state("SCHEDULED", "Scheduled", scheduled_time=iso(when)),
        )
        assert run["id"] == run_id
        assert run["state"]["name"] == "Scheduled"
        again = call(api, "POST", "/flow_runs", {"flow_name": flow_name, "id": run_id})
        again.error(409, "already_exists")

    def test_unknown_and_malformed_ids(self, api: str) -> None:
        missing = str(uuid.uuid4())
        err = call(api, "GET", f"/flow_runs/{missing}").error(404)
        assert missing in err["message"]
        err = call(api, "GET", "/flow_runs/not-a-uuid").error(422)
        assert "path.id" in err["message"]
        assert err["details"]["errors"][0]["loc"] == ["path", "id"]

    def test_a_task_run_id_is_not_a_flow_run(self, api: str, flow_name: str) -> None:
        reply = call(api, "POST", "/task_runs", {"task_key": "t"})
        assert reply.status == 201
        call(api, "GET", f"/flow_runs/{reply.body['id']}").error(404)
        call(api, "GET", f"/flow_runs/{reply.body['id']}/states").error(404)

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({}, "body.flow_name"),
            ({"flow_name": "f", "bogus": 1}, "body.bogus"),
            ({"flow_name": "f", "tags": "x"}, "body.tags"),
            ({"flow_name": "f", "parameters": [1]}, "body.parameters"),
            ({"flow_name": "f", "id": "nope"}, "body.id"),
            ({"flow_name": "f", "parent_flow_run_id": "nope"}, "body.parent_flow_run_id"),
            ({"flow_name": "f", "deployment_id": ""}, "body.deployment_id"),
            ({"flow_name": "f", "state": {"type": "DONE", "name": "x"}}, "body.state.type"),
            ({"flow_name": "f", "parameters": {"x": "y" * 400_000}}, "body"),
            ([], "body"),
        ],
    )
    def test_bad_bodies_name_the_field(
        self, api: str, stores: Stores, body: Any, field: str
    ) -> None:
        err = call(api, "POST", "/flow_runs", body).error(422)
        assert field in err["message"], err
        assert stores.runs.list_flow_runs().items == []

    def test_malformed_json(self, api: str) -> None:
        err = call(api, "POST", "/flow_runs", raw=b'{"flow_name": ').error(422)
        assert "body" in err["message"]

    def test_naive_datetimes_are_utc(self, api: str, flow_name: str) -> None:
        naive = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None)
        run = new_flow_run(
            api,
            flow_name,
            state=state("SCHEDULED", "Scheduled", scheduled_time=naive.isoformat()),
        )
        reply = set_flow_state(api, run["id"], state("PENDING", "Pending"))
        assert reply.status == 200
        assert reply.body["status"] == "WAIT"
        assert reply.body["delay_seconds"] > 3000


class TestIdempotentCreate:
    def test_header_key_returns_the_first_run(
        self, api: str, stores: Stores, flow_name: str
    ) -> None:
        headers = {"Idempotency-Key": f"key-{flow_name}"}
        first = call(api, "POST", "/flow_runs", {"flow_name": flow_name}, headers=headers)
        assert first.status == 201
        assert first.body["idempotency_key"] == headers["Idempotency-Key"]
        second = call(api, "POST", "/flow_runs", {"flow_name": flow_name}, headers=headers)
        assert second.status == 200
        assert second.body == first.body
        listed = call(api, "GET", "/flow_runs", query=[("flow_name", flow_name)])
        assert [r["id"] for r in listed.body["items"]] == [first.body["id"]]
        assert len(stores.runs.list_flow_runs().items) == 1

    def test_the_same_key_with_another_body_is_409_naming_the_run(
        self, api: str, stores: Stores, flow_name: str
    ) -> None:
        headers = {"Idempotency-Key": f"key-{flow_name}"}
        first = call(api, "POST", "/flow_runs", {"flow_name": flow_name}, headers=headers)
        assert first.status == 201
        other = {"flow_name": flow_name, "tags": ["x"]}
        err = call(api, "POST", "/flow_runs", other, headers=headers).error(409, "conflict")
        assert first.body["id"] in err["message"]
        assert err["details"]["id"] == first.body["id"]
        assert len(stores.runs.list_flow_runs().items) == 1

    def test_the_same_key_in_two_flows_makes_two_runs(
        self, api: str, stores: Stores, flow_name: str
    ) -> None:
        headers = {"Idempotency-Key": "shared-key"}
        a = call(api, "POST", "/flow_runs", {"flow_name": f"{flow_name}-a"}, headers=headers)
        b = call(api, "POST", "/flow_runs", {"flow_name": f"{flow_name}-b"}, headers=headers)
        assert (a.status, b.status) == (201, 201)
        assert a.body["id"] != b.body["id"]
        assert len(stores.runs.list_flow_runs().items) == 2

    def test_same_key_in_body_and_header(self, api: str, flow_name: str) -> None:
        body = {"flow_name": flow_name, "idempotency_key": "k1"}
        first = call(api, "POST", "/flow_runs", body, headers={"Idempotency-Key": "k1"})
        assert first.status == 201
        second = call(api, "POST", "/flow_runs", body)
        assert second.status == 200
        assert second.body["id"] == first.body["id"]

    def test_different_keys_are_refused(self, api: str, stores: Stores, flow_name: str) -> None:
        body = {"flow_name": flow_name, "idempotency_key": "k1"}
        err = call(api, "POST", "/flow_runs", body, headers={"Idempotency-Key": "k2"}).error(422)
        assert "idempotency_key" in err["message"]
        assert stores.runs.list_flow_runs().items == []

    def test_empty_header_is_refused(self, api: str, flow_name: str) -> None:
        err = call(
            api, "POST", "/flow_runs", {"flow_name": flow_name}, headers={"Idempotency-Key": ""}
        ).error(422)
        assert "header.idempotency-key" in err["message"].lower()

    def test_key_with_another_id_is_refused(self, api: str, flow_name: str) -> None:
        body = {"flow_name": flow_name, "id": str(uuid.uuid4())}
        err = call(api, "POST", "/flow_runs", body, headers={"Idempotency-Key": "k"}).error(422)
        assert "idempotency_key" in err["message"]


class TestListFlowRuns:
    def test_pages_cover_every_run_once(self, api: str, flow_name: str) -> None:
        ids = {new_flow_run(api, flow_name)["id"] for _ in range(5)}
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            query = [("flow_name", flow_name), ("limit", "2")]
            if cursor:
                query.append(("cursor", cursor))
            reply = call(api, "GET", "/flow_runs", query=query)
            assert reply.status == 200
            assert len(reply.body["items"]) <= 2
            seen += [r["id"] for r in reply.body["items"]]
            pages += 1
            cursor = reply.body["next_cursor"]
            if cursor is None:
                break
        assert pages == 3
        assert len(seen) == 5 and set(seen) == ids
        created = [call(api, "GET", f"/flow_runs/{i}").body["created"] for i in seen]
        assert created == sorted(created, reverse=True)

    def test_filters(self, api: str, flow_name: str) -> None:
        assert call(api, "POST", "/work_pools", {"name": "pool-a"}).status == 201
        a = new_flow_run(api, flow_name, tags=["x", "y"], work_pool_name="pool-a")
        b = new_flow_run(api, flow_name, tags=["x"])
        c = running_flow_run(api, flow_name)
        child = new_flow_run(api, flow_name, parent_flow_run_id=a["id"])

        def ids(*query: tuple[str, str]) -> set[str]:
            reply = call(api, "GET", "/flow_runs", query=[("flow_name", flow_name), *query])
            assert reply.status == 200, reply.body
            return {r["id"] for r in reply.body["items"]}

        assert ids() == {a["id"], b["id"], c["id"], child["id"]}
        assert ids(("tag", "x")) == {a["id"], b["id"]}
        assert ids(("tag", "x"), ("tag", "y")) == {a["id"]}
        assert ids(("state_type", "RUNNING")) == {c["id"]}
        assert ids(("state_type", "RUNNING"), ("state_type", "PENDING")) == {
            a["id"],
            b["id"],
            c["id"],
            child["id"],
        }
        assert ids(("state_name", "Running")) == {c["id"]}
        assert ids(("work_pool_name", "pool-a")) == {a["id"]}
        assert ids(("parent_flow_run_id", a["id"])) == {child["id"]}
        future = iso(datetime.now(UTC) + timedelta(hours=1))
        past = iso(datetime.now(UTC) - timedelta(hours=1))
        assert ids(("created_after", future)) == set()
        assert ids(("created_after", past), ("created_before", future)) == {
            a["id"],
            b["id"],
            c["id"],
            child["id"],
        }
        # state-only query (another index), across flows
        reply = call(api, "GET", "/flow_runs", query=[("state_type", "RUNNING")])
        assert c["id"] in {r["id"] for r in reply.body["items"]}

    @pytest.mark.parametrize(
        ("query", "field"),
        [
            ([("limit", "0")], "query.limit"),
            ([("limit", "1001")], "query.limit"),
            ([("limit", "many")], "query.limit"),
            ([("state_type", "DONE")], "query.state_type"),
            ([("created_after", "yesterday")], "query.created_after"),
            (
                [("created_after", "2030-01-02T00:00:00Z"), ("created_before", "2030-01-01")],
                "query.created_after",
            ),
        ],
    )
    def test_bad_queries_name_the_field(
        self, api: str, query: list[tuple[str, str]], field: str
    ) -> None:
        err = call(api, "GET", "/flow_runs", query=query).error(422)
        assert field in err["message"], err

    @pytest.mark.parametrize("cursor", ["%%%", "bm90IGpzb24", "eyJhIjogMX0="])
    def test_bad_cursor(self, api: str, cursor: str) -> None:
        err = call(api, "GET", "/flow_runs", query=[("cursor", cursor)]).error(400)
        assert "cursor" in err["message"]
        assert err["details"]["field"] == "cursor"

    def test_cursor_of_another_listing(self, api: str, flow_name: str) -> None:
        for _ in range(2):
            new_flow_run(api, flow_name)
        page = call(api, "GET", "/flow_runs", query=[("flow_name", flow_name), ("limit", "1")])
        cursor = page.body["next_cursor"]
        assert cursor
        err = call(
            api, "GET", "/flow_runs", query=[("flow_name", "other"), ("cursor", cursor)]
        ).error(400)
        assert "cursor" in err["message"]


class TestSetFlowRunState:
    def test_accept_then_reject_with_current_state(self, api: str, flow_name: str) -> None:
        run = new_flow_run(api, flow_name)
        accepted = set_flow_state(api, run["id"], state("RUNNING", "Running"))
        assert accepted.status == 200
        assert accepted.body["status"] == "ACCEPT"
        assert accepted.body["state"]["type"] == "RUNNING"
        assert accepted.body["run_count"] == 1
        assert accepted.body["state_version"] == 1

        rejected = set_flow_state(api, run["id"], state("PENDING", "Pending"))
        err = rejected.error(409)
        assert err["details"]["status"] == "REJECT"
        assert err["details"]["reason"] == err["message"]
        assert err["details"]["state"]["type"] == "RUNNING"
        assert err["details"]["state"]["name"] == "Running"
        now = call(api, "GET", f"/flow_runs/{run['id']}").body
        assert now["state"]["type"] == "RUNNING" and now["state_version"] == 1

        done = set_flow_state(api, run["id"], state("COMPLETED", "Completed"))
        assert done.status == 200 and done.body["status"] == "ACCEPT"
        err = set_flow_state(api, run["id"], state("RUNNING", "Running")).error(409)
        assert err["details"]["state"]["type"] == "COMPLETED"
        forced = set_flow_state(api, run["id"], state("RUNNING", "Running"), force=True)
        assert forced.status == 200 and forced.body["status"] == "ACCEPT"

    def test_wait_is_200(self, api: str, flow_name: str) -> None:
        when = datetime.now(UTC) + timedelta(minutes=10)
        run = new_flow_run(
            api, flow_name, state=state("SCHEDULED", "Scheduled", scheduled_time=iso(when))
        )
        reply = set_flow_state(api, run["id"], state("PENDING", "Pending"))
        assert reply.status == 200
        assert reply.body["status"] == "WAIT"
        assert 0 < reply.body["delay_seconds"] <= 600
        assert reply.body["state"]["type"] == "SCHEDULED"

    def test_history_oldest_first(self, api: str, flow_name: str) -> None:
        run = running_flow_run(api, flow_name)
        set_flow_state(api, run["id"], state("COMPLETED", "Completed"))
        reply = call(api, "GET", f"/flow_runs/{run['id']}/states")
        assert reply.status == 200
        assert [s["type"] for s in reply.body] == ["PENDING", "RUNNING", "COMPLETED"]
        call(api, "GET", f"/flow_runs/{uuid.uuid4()}/states").error(404)
        call(api, "GET", "/flow_runs/x/states").error(422)

    def test_errors(self, api: str, flow_name: str) -> None:
        run = new_flow_run(api, flow_name)
        set_flow_state(api, str(uuid.uuid4()), state("RUNNING", "Running")).error(404)
        err = call(api, "POST", f"/flow_runs/{run['id']}/set_state", {"force": True}).error(422)
        assert "body.state" in err["message"]
        err = call(
            api, "POST", f"/flow_runs/{run['id']}/set_state", {"state": {"name": "x"}}
        ).error(422)
        assert "body.state.type" in err["message"]
        err = call(
            api,
            "POST",
            f"/flow_runs/{run['id']}/set_state",
            {"state": state("RUNNING", "Running"), "extra": 1},
        ).error(422)
        assert "body.extra" in err["message"]
        err = set_flow_state(api, "zzz", state("RUNNING", "Running")).error(422)
        assert "path.id" in err["message"]
        call(api, "POST", f"/flow_runs/{run['id']}/set_state", raw=b"{not json").error(422)
        huge = state("FAILED", "Failed") | {"details": {"extra": {"x": "x" * 200_000}}}
        err = set_flow_state(api, run["id"], huge).error(422)
        assert "body.state" in err["message"]
        assert call(api, "GET", f"/flow_runs/{run['id']}").body["state_version"] == 0


class TestCancelFlowRun:
    def test_pending_run_is_cancelled(self, api: str, flow_name: str) -> None:
        run = new_flow_run(api, flow_name)
        reply = call(api, "POST", f"/flow_runs/{run['id']}/cancel")
        assert reply.status == 200
        assert reply.body["status"] == "ACCEPT"
        assert reply.body["state"]["type"] == "CANCELLED"
        assert call(api, "GET", f"/flow_runs/{run['id']}").body["state"]["type"] == "CANCELLED"

    def test_scheduled_run_is_cancelled(self, api: str, flow_name: str) -> None:
        when = datetime.now(UTC) + timedelta(hours=1)
        run = new_flow_run(
            api, flow_name, state=state("SCHEDULED", "Scheduled", scheduled_time=iso(when))
        )
        reply = call(api, "POST", f"/flow_runs/{run['id']}/cancel")
        assert reply.status == 200 and reply.body["state"]["type"] == "CANCELLED"

    def test_paused_run_is_cancelled(self, api: str, flow_name: str) -> None:
        run = running_flow_run(api, flow_name)
        paused = set_flow_state(api, run["id"], state("PAUSED", "Paused"))
        assert paused.status == 200 and paused.body["status"] == "ACCEPT", paused.body
        reply = call(api, "POST", f"/flow_runs/{run['id']}/cancel")
        assert reply.status == 200 and reply.body["state"]["type"] == "CANCELLED"

    def test_running_run_is_cancelling(self, api: str, flow_name: str) -> None:
        run = running_flow_run(api, flow_name)
        reply = call(api, "POST", f"/flow_runs/{run['id']}/cancel")
        assert reply.status == 200
        assert reply.body["state"]["type"] == "CANCELLING"
        # a second cancel: the run may only end now
        err = call(api, "POST", f"/flow_runs/{run['id']}/cancel").error(409)
        assert err["details"]["state"]["type"] == "CANCELLING"
        # the worker finishes the job
        done = set_flow_state(api, run["id"], state("CANCELLED", "Cancelled"))
        assert done.status == 200 and done.body["status"] == "ACCEPT"
        types = [s["type"] for s in call(api, "GET", f"/flow_runs/{run['id']}/states").body]
        assert types == ["PENDING", "RUNNING", "CANCELLING", "CANCELLED"]

    def test_final_run_is_409(self, api: str, flow_name: str) -> None:
        run = running_flow_run(api, flow_name)
        set_flow_state(api, run["id"], state("COMPLETED", "Completed"))
        err = call(api, "POST", f"/flow_runs/{run['id']}/cancel").error(409)
        assert err["details"]["status"] == "REJECT"
        assert err["details"]["state"]["type"] == "COMPLETED"
        assert call(api, "GET", f"/flow_runs/{run['id']}").body["state"]["type"] == "COMPLETED"

    def test_unknown_run(self, api: str) -> None:
        call(api, "POST", f"/flow_runs/{uuid.uuid4()}/cancel").error(404)
        call(api, "POST", "/flow_runs/123/cancel").error(422)


# ----------------------------------------------------------------------------- task runs


class TestTaskRuns:
    def test_create_read_list(self, api: str, flow_name: str) -> None:
        flow_run = new_flow_run(api, flow_name)
        created = []
        for i in range(3):
            reply = call(
                api,
                "POST",
                "/task_runs",
                {"task_key": "extract", "flow_run_id": flow_run["id"], "dynamic_key": str(i)},
            )
            assert reply.status == 201, reply.body
            created.append(reply.body)
        one = call(api, "GET", f"/task_runs/{created[0]['id']}")
        assert one.status == 200 and one.body == created[0]
        listed = call(api, "GET", "/task_runs", query=[("flow_run_id", flow_run["id"])])
        assert {r["id"] for r in listed.body["items"]} == {r["id"] for r in created}
        page = call(
            api, "GET", "/task_runs", query=[("flow_run_id", flow_run["id"]), ("limit", "2")]
        )
        assert len(page.body["items"]) == 2 and page.body["next_cursor"]
        rest = call(
            api,
            "GET",
            "/task_runs",
            query=[("flow_run_id", flow_run["id"]), ("cursor", page.body["next_cursor"])],
        )
        assert len(rest.body["items"]) == 1 and rest.body["next_cursor"] is None
        by_key = call(
            api,
            "GET",
            "/task_runs",
            query=[("flow_run_id", flow_run["id"]), ("task_key", "other")],
        )
        assert by_key.body["items"] == []
        call(api, "GET", f"/task_runs/{uuid.uuid4()}").error(404)
        call(api, "GET", f"/task_runs/{flow_run['id']}").error(404)
        call(api, "GET", "/task_runs/nope").error(422)

    def test_idempotent_create(self, api: str, stores: Stores) -> None:
        headers = {"Idempotency-Key": f"task-{uuid.uuid4()}"}
        first = call(api, "POST", "/task_runs", {"task_key": "t"}, headers=headers)
        second = call(api, "POST", "/task_runs", {"task_key": "t"}, headers=headers)
        assert (first.status, second.status) == (201, 200)
        assert first.body["id"] == second.body["id"]
        assert len(stores.runs.list_task_runs().items) == 1
        other = call(api, "POST", "/task_runs", {"task_key": "t", "tags": ["x"]}, headers=headers)
        assert first.body["id"] in other.error(409, "conflict")["message"]
        own = call(api, "POST", "/task_runs", {"task_key": "u"}, headers=headers)
        assert own.status == 201 and own.body["id"] != first.body["id"]
        err = call(
            api,
            "POST",
            "/task_runs",
            {"task_key": "t", "idempotency_key": "other"},
            headers=headers,
        ).error(422)
        assert "idempotency_key" in err["message"]

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({}, "body.task_key"),
            ({"task_key": ""}, "body.task_key"),
            ({"task_key": "t", "flow_run_id": "x"}, "body.flow_run_id"),
            ({"task_key": "t", "task_inputs": {"a": "b"}}, "body.task_inputs"),
            ({"task_key": "t", "what": 1}, "body.what"),
        ],
    )
    def test_bad_bodies(self, api: str, stores: Stores, body: Any, field: str) -> None:
        err = call(api, "POST", "/task_runs", body).error(422)
        assert field in err["message"], err
        assert stores.runs.list_task_runs().items == []

    def test_set_state_follows_the_flow_run(self, api: str, flow_name: str) -> None:
        flow_run = new_flow_run(api, flow_name)
        task = call(api, "POST", "/task_runs", {"task_key": "t", "flow_run_id": flow_run["id"]})
        path = f"/task_runs/{task.body['id']}/set_state"
        err = call(api, "POST", path, {"state": state("RUNNING", "Running")}).error(409)
        assert err["details"]["status"] == "ABORT"
        assert err["details"]["state"]["type"] == "PENDING"
        set_flow_state(api, flow_run["id"], state("RUNNING", "Running"))
        ok = call(api, "POST", path, {"state": state("RUNNING", "Running")})
        assert ok.status == 200 and ok.body["status"] == "ACCEPT"
        ok = call(api, "POST", path, {"state": state("COMPLETED", "Completed")})
        assert ok.status == 200
        err = call(api, "POST", path, {"state": state("RUNNING", "Running")}).error(409)
        assert err["details"]["state"]["type"] == "COMPLETED"
        states = call(api, "GET", f"/task_runs/{task.body['id']}/states")
        assert [s["type"] for s in states.body] == ["PENDING", "RUNNING", "COMPLETED"]
        call(api, "GET", f"/task_runs/{flow_run['id']}/states").error(404)
        call(
            api,
            "POST",
            f"/task_runs/{uuid.uuid4()}/set_state",
            {"state": state("RUNNING", "Running")},
        ).error(404)
        err = call(api, "POST", path, {"state": state("RUNNING", "")} | {"force": "x"}).error(422)
        assert "body.force" in err["message"]


def snapshot(flow_run_id: str, key: str, final: str = "COMPLETED") -> dict[str, Any]:
    """A task-run record as the engine writes it: the run and its full history."""
    now = datetime.now(UTC)
    history = [
        state("PENDING", "Pending") | {"timestamp": iso(now)},
        state("RUNNING", "Running") | {"timestamp": iso(now + timedelta(milliseconds=1))},
        state(final, final.title()) | {"timestamp": iso(now + timedelta(milliseconds=2))},
    ]
    run = {
        "id": str(uuid.uuid4()),
        "name": f"{key}-0",
        "task_key": key,
        "flow_run_id": flow_run_id,
        "state": history[-1],
        "state_version": 2,
        "run_count": 1,
    }
    return {"run": run, "history": history}


class TestTaskRunRecords:
    def test_a_record_cannot_overwrite_a_flow_run(self, api: str, flow_name: str) -> None:
        flow_run = running_flow_run(api, flow_name)
        good = snapshot(flow_run["id"], "ok")
        hostile = snapshot(flow_run["id"], "evil")
        hostile["run"]["id"] = flow_run["id"]
        reply = call(api, "POST", "/task_runs/records", {"records": [good, hostile]})
        err = reply.error(409, "conflict")
        assert flow_run["id"] in err["message"]
        assert call(api, "GET", f"/flow_runs/{flow_run['id']}").body["flow_name"] == flow_name
        assert call(api, "GET", f"/task_runs/{good['run']['id']}").status == 404  # all or none

    def test_batch_then_read(self, api: str, flow_name: str) -> None:
        flow_run = running_flow_run(api, flow_name)
        records = [snapshot(flow_run["id"], f"t{i}") for i in range(30)]
        reply = call(api, "POST", "/task_runs/records", {"records": records})
        assert reply.status == 202
        assert reply.body == {"written": 30}
        first = records[0]["run"]
        got = call(api, "GET", f"/task_runs/{first['id']}")
        assert got.status == 200
        assert got.body["state"]["type"] == "COMPLETED"
        assert got.body["task_key"] == "t0"
        states = call(api, "GET", f"/task_runs/{first['id']}/states")
        assert [s["type"] for s in states.body] == ["PENDING", "RUNNING", "COMPLETED"]
        listed = call(
            api,
            "GET",
            "/task_runs",
            query=[("flow_run_id", flow_run["id"]), ("state_type", "COMPLETED")],
        )
        assert len(listed.body["items"]) == 30
        # a newer snapshot of the same run overwrites it
        newer = snapshot(flow_run["id"], "t0", final="FAILED")
        newer["run"]["id"] = first["id"]
        newer["run"]["state_version"] = 3
        assert call(api, "POST", "/task_runs/records", {"records": [newer]}).status == 202
        assert call(api, "GET", f"/task_runs/{first['id']}").body["state"]["type"] == "FAILED"

    def test_a_replayed_older_snapshot_is_409_and_changes_nothing(
        self, api: str, flow_name: str
    ) -> None:
        flow_run = running_flow_run(api, flow_name)
        done = snapshot(flow_run["id"], "t")
        assert call(api, "POST", "/task_runs/records", {"records": [done]}).status == 202
        stale = snapshot(flow_run["id"], "t", final="RUNNING")
        stale["run"]["id"] = done["run"]["id"]
        stale["run"]["state_version"] = 1
        err = call(api, "POST", "/task_runs/records", {"records": [stale]}).error(409, "conflict")
        assert done["run"]["id"] in err["message"] and "state_version" in err["message"]
        got = call(api, "GET", f"/task_runs/{done['run']['id']}").body
        assert got["state"]["type"] == "COMPLETED"
        # the same request again (its response was lost) is accepted and changes nothing
        assert call(api, "POST", "/task_runs/records", {"records": [done]}).status == 202

    def test_a_record_cannot_move_a_task_run_to_another_flow_run(
        self, api: str, flow_name: str
    ) -> None:
        mine, other = running_flow_run(api, flow_name), running_flow_run(api, flow_name)
        record = snapshot(mine["id"], "t", final="RUNNING")
        record["run"]["state_version"] = 1
        assert call(api, "POST", "/task_runs/records", {"records": [record]}).status == 202
        moved = snapshot(other["id"], "t")
        moved["run"]["id"] = record["run"]["id"]
        moved["run"]["state_version"] = 5
        err = call(api, "POST", "/task_runs/records", {"records": [moved]}).error(409, "conflict")
        assert mine["id"] in err["message"]
        got = call(api, "GET", f"/task_runs/{record['run']['id']}").body
        assert got["flow_run_id"] == mine["id"] and got["state"]["type"] == "RUNNING"

    def test_a_finished_flow_run_takes_no_more_task_runs(
        self, api: str, stores: Stores, flow_name: str
    ) -> None:
        flow_run = running_flow_run(api, flow_name)
        assert set_flow_state(api, flow_run["id"], state("COMPLETED", "Completed")).status == 200
        late = snapshot(flow_run["id"], "t")
        err = call(api, "POST", "/task_runs/records", {"records": [late]}).error(409, "conflict")
        assert flow_run["id"] in err["message"] and "Completed" in err["message"]
        assert "belong to flow runs" not in err["message"]
        assert stores.runs.list_task_runs().items == []

    def test_a_long_history_is_fitted_not_refused(self, api: str, flow_name: str) -> None:
        flow_run = running_flow_run(api, flow_name)
        record = snapshot(flow_run["id"], "t", final="FAILED")
        retries = [
            state("SCHEDULED", "AwaitingRetry") | {"message": "x" * 16_000} for _ in range(30)
        ]
        record["history"] = record["history"][:2] + retries + record["history"][2:]
        record["run"]["state_version"] = len(record["history"]) - 1
        assert call(api, "POST", "/task_runs/records", {"records": [record]}).status == 202
        states = call(api, "GET", f"/task_runs/{record['run']['id']}/states").body
        assert states[0]["type"] == "PENDING" and states[-1]["type"] == "FAILED"

    def test_bad_batches_write_nothing(self, api: str, stores: Stores, flow_name: str) -> None:
        flow_run = new_flow_run(api, flow_name)
        ok = snapshot(flow_run["id"], "t")
        dup = snapshot(flow_run["id"], "u")
        dup["run"]["id"] = ok["run"]["id"]
        no_history = snapshot(flow_run["id"], "v") | {"history": []}
        bad_id = snapshot(flow_run["id"], "w")
        bad_id["run"]["id"] = ""
        no_key = snapshot(flow_run["id"], "x")
        no_key["run"]["task_key"] = ""
        cases = [
            ({"records": [ok, dup]}, "body.records.1.run.id"),
            ({"records": [ok, no_history]}, "body.records.1.history"),
            ({"records": [ok, bad_id]}, "body.records.1.run.id"),
            ({"records": [ok, no_key]}, "body.records.1.run.task_key"),
            ({"records": []}, "body.records"),
            ({"records": [ok] * 101}, "body.records"),
            ({"records": [ok], "more": 1}, "body.more"),
            ({}, "body.records"),
        ]
        for body, field in cases:
            err = call(api, "POST", "/task_runs/records", body).error(422)
            assert field in err["message"], (field, err)
        assert stores.runs.list_task_runs().items == []


class TestItemBudgets:
    def test_a_60kb_failure_message_per_retry_is_never_a_500(
        self, api: str, flow_name: str
    ) -> None:
        flow_run = running_flow_run(api, flow_name)
        task = call(api, "POST", "/task_runs", {"task_key": "t", "flow_run_id": flow_run["id"]})
        path = f"/task_runs/{task.body['id']}/set_state"
        message = "boom " * 12_000
        for _ in range(8):
            assert call(api, "POST", path, {"state": state("RUNNING", "Running")}).status == 200
            retry = state("SCHEDULED", "AwaitingRetry") | {"message": message}
            assert call(api, "POST", path, {"state": retry}).status == 200
        call(api, "POST", path, {"state": state("RUNNING", "Running")})
        failed = state("FAILED", "Failed") | {"message": message}
        reply = call(api, "POST", path, {"state": failed})
        assert reply.status == 200, reply.body
        got = call(api, "GET", f"/task_runs/{task.body['id']}").body
        assert got["state"]["type"] == "FAILED" and "[truncated" in got["state"]["message"]

    def test_a_state_the_item_cannot_hold_is_413_and_changes_nothing(
        self, api: str, flow_name: str
    ) -> None:
        run = new_flow_run(api, flow_name, parameters={"blob": "p" * 190_000})
        big = state("RUNNING", "Running") | {"details": {"extra": {"blob": "s" * 120_000}}}
        err = set_flow_state(api, run["id"], big).error(413, "item_too_large")
        assert run["id"] in err["message"] and "400 KB" in err["message"]
        assert call(api, "GET", f"/flow_runs/{run['id']}").body["state"]["type"] == "PENDING"


# ----------------------------------------------------------------------------- logs


def log(flow_run_id: str, message: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {"flow_run_id": flow_run_id, "message": message, "timestamp": iso(at), **fields}


class TestLogs:
    def test_write_then_read_in_time_order(self, api: str, flow_name: str) -> None:
        run = new_flow_run(api, flow_name)
        task_id = str(uuid.uuid4())
        start = datetime.now(UTC)
        records = [
            log(run["id"], f"line {i}", start + timedelta(milliseconds=i), level=10 * (i % 5))
            for i in range(7)
        ]
        records[3]["task_run_id"] = task_id
        shuffled = records[4:] + records[:4]
        reply = call(api, "POST", "/logs", shuffled)
        assert reply.status == 202
        assert reply.body == {"written": 7}

        every = call(api, "GET", f"/flow_runs/{run['id']}/logs")
        assert every.status == 200
        assert [r["message"] for r in every.body["items"]] == [f"line {i}" for i in range(7)]
        assert every.body["next_cursor"] is None

        messages: list[str] = []
        cursor = None
        while True:
            query = [("limit", "3")] + ([("cursor", cursor)] if cursor else [])
            page = call(api, "GET", f"/flow_runs/{run['id']}/logs", query=query)
            messages += [r["message"] for r in page.body["items"]]
            cursor = page.body["next_cursor"]
            if cursor is None:
                break
        assert messages == [f"line {i}" for i in range(7)]

        task = call(api, "GET", f"/flow_runs/{run['id']}/logs", query=[("task_run_id", task_id)])
        assert [r["message"] for r in task.body["items"]] == ["line 3"]
        warn = call(api, "GET", f"/flow_runs/{run['id']}/logs", query=[("level_ge", "30")])
        assert [r["message"] for r in warn.body["items"]] == ["line 3", "line 4"]

    def test_read_errors(self, api: str, flow_name: str) -> None:
        run = new_flow_run(api, flow_name)
        call(api, "GET", f"/flow_runs/{uuid.uuid4()}/logs").error(404)
        call(api, "GET", "/flow_runs/abc/logs").error(422)
        path = f"/flow_runs/{run['id']}/logs"
        assert "query.limit" in call(api, "GET", path, query=[("limit", "0")]).error(422)["message"]
        err = call(api, "GET", path, query=[("level_ge", "loud")]).error(422)
        assert "query.level_ge" in err["message"]
        err = call(api, "GET", path, query=[("cursor", "garbage!")]).error(400)
        assert "cursor" in err["message"]

    def test_write_errors(self, api: str, stores: Stores, flow_name: str) -> None:
        run = new_flow_run(api, flow_name)
        now = datetime.now(UTC)
        good = log(run["id"], "ok", now)
        cases = [
            ([good, {"flow_run_id": run["id"]}], "body.1.message"),
            ([good, log(run["id"], "x", now, level="high")], "body.1.level"),
            ([good, log(run["id"], "x", now, level=500)], "body.1.level"),
            ([good, log(run["id"], "x", now, colour="red")], "body.1.colour"),
            ([good] * 1001, "body"),
            ({"flow_run_id": run["id"], "message": "not a list"}, "body"),
            ([good, log("", "x", now)], "flow_run_id"),
        ]
        for body, field in cases:
            err = call(api, "POST", "/logs", body).error(422)
            assert field in err["message"], (field, err)
        assert call(api, "GET", f"/flow_runs/{run['id']}/logs").body["items"] == []
        assert call(api, "POST", "/logs", []).body == {"written": 0}


def test_a_body_that_is_not_json_is_415_not_500(api: str, flow_name: str) -> None:
    request = urllib.request.Request(
        api + "/flow_runs",
        data=b"flow_name=x",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    try:
        urllib.request.urlopen(request, timeout=30)
        raise AssertionError("expected an error")
    except urllib.error.HTTPError as exc:
        assert exc.code == 415
        assert json.loads(exc.read())["error"]["type"] == "unsupported_media_type"


def test_set_state_takes_the_version_the_caller_holds(
    api: str, flow_name: str, stores: Stores
) -> None:
    """``expected_version`` lets the API skip its read when it wrote that version; stale is fine."""
    from runtime.stores.metrics import RequestCounter

    run = new_flow_run(api, flow_name)
    path = f"/flow_runs/{run['id']}/set_state"
    running = call(api, "POST", path, {"state": state("RUNNING", "Running"), "expected_version": 0})
    assert running.status == 200 and running.body["state_version"] == 1, running.body

    counter = RequestCounter().attach(stores.db.client)
    before = counter.snapshot()
    done = call(
        api, "POST", path, {"state": state("COMPLETED", "Completed"), "expected_version": 1}
    )
    assert done.status == 200 and done.body["state_version"] == 2, done.body
    assert dict(counter.snapshot() - before) == {"dynamodb.UpdateItem": 1}  # no read first

    # a version the caller holds that is no longer current: the rules decide on the run as is
    stale = call(api, "POST", path, {"state": state("RUNNING", "Running"), "expected_version": 0})
    assert "terminal" in stale.error(409, "transition_rejected")["message"]
    err = call(
        api, "POST", path, {"state": state("RUNNING", "Running"), "expected_version": -1}
    ).error(422)
    assert "body.expected_version" in err["message"]
    assert call(api, "GET", f"/flow_runs/{run['id']}").body["state_version"] == 2
