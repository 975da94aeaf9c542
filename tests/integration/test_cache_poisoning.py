"""Cache poisoning over HTTP: an API caller cannot make a flow run its code (issue 7, item 1).

The attacker only talks to the API (the local gateway serving ``handlers.api``):
it tries to take over a live lock, then writes a cloudpickle whose ``__reduce__``
creates a file as the record of a key a flow uses. The flow runs with the
engine writing directly to the stores or through the same API; either way it
must refuse the payload (no file), compute the value instead, and say so in the
task run's logs.
"""

from __future__ import annotations

import base64
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from runtime.engine.backend import use_engine_client
from runtime.engine.client import DirectEngineClient, EngineClient
from runtime.engine.context import current_flow_run
from runtime.engine.http_engine_client import ApiEngineClient
from runtime.models import TaskRunFilter
from runtime.payload_auth import PayloadAuthenticationError
from runtime.states import Completed, ResultRef, State
from runtime.stores import Stores
from sdk import flow, task
from tests.integration.http_calls import call

KEY = "nightly-report-2026"


class CreatesAFile:
    """Unpickling this runs ``open(path, "w")``: the file appearing proves code ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def malicious_record(marker: Path) -> dict[str, Any]:
    payload = cloudpickle.dumps(CreatesAFile(marker))
    return {
        "key": KEY,
        "task_key": "report",
        "result": {
            "serializer": "pickle",
            "inline": base64.b64encode(payload).decode(),
            "size": len(payload),
        },
    }


@pytest.fixture(params=["direct", "api"])
def engine(request: pytest.FixtureRequest, stores: Stores, api: str) -> Iterator[EngineClient]:
    """The victim's engine client: straight to the stores, or through the API."""
    client: EngineClient
    if request.param == "direct":
        client = DirectEngineClient(stores)
    else:
        client = ApiEngineClient(api, record_interval=0.05, log_interval=0.05)
    with use_engine_client(client):
        yield client
    client.close()


def test_a_live_lock_cannot_be_taken_over_by_an_api_caller(api: str, stores: Stores) -> None:
    """Another owner's live lock: 409 naming the holder, with or without refresh."""
    assert stores.cache.lock(KEY, "task-run-computing", 60)
    for body in ({"owner": "attacker"}, {"owner": "attacker", "refresh": True}):
        status, err = call(api, "POST", f"/cache/{KEY}/lock", body)
        assert status == 409, (body, err)
        assert err["error"]["type"] == "cache_key_locked"
        assert err["error"]["details"]["holder"] == "task-run-computing"
    status, err = call(
        api, "PUT", f"/cache/{KEY}", {"record": malicious_record(Path("x")), "owner": "attacker"}
    )
    assert status == 409 and err["error"]["type"] == "conflict"
    status, _ = call(api, "DELETE", f"/cache/{KEY}/lock?owner=attacker")
    assert stores.cache.try_lock(KEY, "attacker", 60).holder == "task-run-computing"


def test_a_poisoned_cache_record_is_refused_reported_and_recomputed(
    api: str, stores: Stores, engine: EngineClient, tmp_path: Path
) -> None:
    marker = tmp_path / "the-payload-ran"
    computed: list[int] = []

    @task(cache_key_fn=lambda ctx, parameters: KEY, result_serializer="pickle")
    def report() -> dict[str, int]:
        computed.append(1)
        return {"rows": 3}

    @flow
    def nightly() -> tuple[str, State]:
        flow_run = current_flow_run()
        assert flow_run is not None
        return flow_run.flow_run.id, report(return_state=True)

    _, first = nightly()
    assert first.name == "Completed" and computed == [1]

    # The attacker replaces the live record (refresh: a record is not a live lock) and
    # writes its payload as the lock's owner: the API accepts it, it cannot check it.
    status, body = call(api, "POST", f"/cache/{KEY}/lock", {"owner": "attacker", "refresh": True})
    assert (status, body) == (200, {"locked": True})
    status, _ = call(
        api, "PUT", f"/cache/{KEY}", {"record": malicious_record(marker), "owner": "attacker"}
    )
    assert status == 200
    assert call(api, "GET", f"/cache/{KEY}")[1]["task_key"] == "report"

    flow_run_id, second = nightly()
    assert not marker.exists()  # the payload never ran
    assert second.name == "Completed"  # computed, not Cached
    assert second.result() == {"rows": 3} and computed == [1, 1]

    # ... and reported in the task run's logs, naming the key
    (task_run,) = stores.runs.list_task_runs(TaskRunFilter(flow_run_id=flow_run_id)).items
    assert task_run.state.name == "Completed" and task_run.state.details.cache_key == KEY
    logs = stores.logs.read(flow_run_id, task_run_id=task_run.id, level_ge=30).items
    warnings = [line.message for line in logs]
    assert any(
        KEY in message and "failed payload authentication" in message for message in warnings
    ), warnings

    # The record was replaced by the engine's own, which the next run uses.
    _, third = nightly()
    assert third.name == "Cached" and third.result() == {"rows": 3}
    assert computed == [1, 1] and not marker.exists()


def test_a_forged_result_reference_raises_instead_of_running_code(
    api: str, engine: EngineClient, tmp_path: Path
) -> None:
    """A pickle uploaded through POST /results (to S3) or forged inline is refused by
    state.result()."""
    marker = tmp_path / "the-result-payload-ran"
    payload = cloudpickle.dumps(CreatesAFile(marker))
    inline = {"serializer": "pickle", "inline": base64.b64encode(payload).decode()}
    refs = [inline]
    for extra in ({}, {"storage_key": "reports/forged.pkl"}):
        body = {"serializer": "pickle", "size": len(payload), **extra}
        status, ticket = call(api, "POST", "/results", body)
        assert status == 201
        upload = ticket["upload"]
        put = urllib.request.Request(
            upload["url"], data=payload, method="PUT", headers=upload["headers"]
        )
        with urllib.request.urlopen(put, timeout=60) as response:  # straight to S3
            assert response.status == 200
        refs.append(ticket["ref"])
    for ref in refs:
        state = Completed()
        state.details.result = ResultRef.model_validate(ref)  # as a record read from the API
        with pytest.raises(PayloadAuthenticationError, match="failed authentication"):
            state.result()
        assert not marker.exists()
