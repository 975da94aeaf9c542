"""The one SDK client behaves the same over both backends: the stores and the HTTP API.

Every test runs twice, with ``SyncClient(stores)`` and with ``ApiSyncClient`` (the
same client over ``StratoflowClient`` and the local gateway), and asserts the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from runtime.errors import NotFound
from runtime.models import CacheRecord, FlowRunCreate, LogRecord, TaskRunCreate
from runtime.states import Completed, ResultRef, Running, StateType
from runtime.stores import Stores
from sdk.client import ApiSyncClient, ObjectNotFound, SyncClient
from sdk.client_backends import HttpBackend, StoresBackend
from sdk.http_client import StratoflowClient

pytestmark = pytest.mark.integration


@pytest.fixture(params=["stores", "http"])
def client(request: pytest.FixtureRequest, stores: Stores) -> Iterator[SyncClient]:
    """The client over one backend, both working on this test's installation."""
    if request.param == "stores":
        yield SyncClient(stores)
        return
    api: str = request.getfixturevalue("api")
    with StratoflowClient(api) as http:
        yield ApiSyncClient(http)


def test_the_client_is_one_class_over_either_backend(client: SyncClient) -> None:
    assert type(client).read_flow_run is SyncClient.read_flow_run
    assert isinstance(client.backend, StoresBackend | HttpBackend)


def test_flow_runs_states_and_transitions(client: SyncClient, stores: Stores) -> None:
    name = f"flow-{uuid.uuid4().hex[:6]}"
    run = stores.runs.create_flow_run(FlowRunCreate(flow_name=name, tags=["x"]))
    other = stores.runs.create_flow_run(FlowRunCreate(flow_name=name))
    assert client.read_flow_run(run.id) == run
    assert [r.id for r in client.read_flow_runs(flow_name=name)] == [other.id, run.id]
    assert [r.id for r in client.read_flow_runs(flow_name=name, tags=["x"])] == [run.id]
    assert client.set_flow_run_state(run.id, Running()).status == "ACCEPT"
    refused = client.set_flow_run_state(run.id, Running())
    assert refused.status == "REJECT" and refused.state.type is StateType.RUNNING
    assert client.set_flow_run_state(run.id, Completed()).status == "ACCEPT"
    running = client.read_flow_runs(flow_name=name, state_types=[StateType.COMPLETED])
    assert [r.id for r in running] == [run.id]
    assert [s.type for s in client.read_flow_run_states(run.id)] == [
        StateType.PENDING,
        StateType.RUNNING,
        StateType.COMPLETED,
    ]
    with pytest.raises(ObjectNotFound):
        client.read_flow_run(str(uuid.uuid4()))


def test_task_runs_and_logs(client: SyncClient, stores: Stores) -> None:
    parent = stores.runs.create_flow_run(FlowRunCreate(flow_name="etl"))
    assert stores.runs.set_state("flow_run", parent.id, Running()).accepted
    task_run = stores.runs.create_task_run(TaskRunCreate(task_key="t", flow_run_id=parent.id))
    assert stores.runs.set_state("task_run", task_run.id, Running()).accepted
    assert client.read_task_run(task_run.id).state.type is StateType.RUNNING
    assert [r.id for r in client.read_task_runs(flow_run_id=parent.id)] == [task_run.id]
    assert client.read_task_runs(flow_run_id=parent.id, task_key="other") == []
    assert [s.type for s in client.read_task_run_states(task_run.id)] == [
        StateType.PENDING,
        StateType.RUNNING,
    ]
    with pytest.raises(ObjectNotFound):
        client.read_task_run(str(uuid.uuid4()))
    stores.logs.write(
        [
            LogRecord(flow_run_id=parent.id, message="flow line", level=20),
            LogRecord(flow_run_id=parent.id, task_run_id=task_run.id, message="task", level=40),
        ]
    )
    assert [r.message for r in client.read_logs(parent.id)] == ["flow line", "task"]
    assert [r.message for r in client.read_logs(parent.id, task_run_id=task_run.id)] == ["task"]
    assert [r.message for r in client.read_logs(parent.id, level_ge=30)] == ["task"]
    with pytest.raises(NotFound):
        client.read_logs(str(uuid.uuid4()))


def test_tag_concurrency_limits(client: SyncClient) -> None:
    tag = f"db-{uuid.uuid4().hex[:6]}"
    assert client.create_concurrency_limit(tag, 2).limit == 2
    assert client.create_concurrency_limit(tag, 5).limit == 5  # an upsert
    assert client.read_concurrency_limit_by_tag(tag).limit == 5
    assert [lim.name for lim in client.read_concurrency_limits()] == [f"tag:{tag}"]
    client.delete_concurrency_limit_by_tag(tag)
    with pytest.raises(ObjectNotFound):
        client.read_concurrency_limit_by_tag(tag)
    with pytest.raises(ObjectNotFound):
        client.delete_concurrency_limit_by_tag(tag)


def test_cache_entries(client: SyncClient, stores: Stores) -> None:
    for key, task_key in (("k1", "a"), ("k2", "a"), ("k3", "b")):
        assert stores.cache.lock(key, "me", 30)
        ref = ResultRef(serializer="json", inline="MQ==", size=1)
        stores.cache.write(key, CacheRecord(key=key, result=ref, task_key=task_key), "me")
    assert sorted(r.key for r in client.read_cache_entries()) == ["k1", "k2", "k3"]
    assert sorted(r.key for r in client.read_cache_entries(task_key="a")) == ["k1", "k2"]
    assert client.clear_cache(key="k1") == 1
    assert client.clear_cache(task_key="a") == 1
    assert [r.key for r in client.read_cache_entries()] == ["k3"]
    assert client.clear_cache() == 1
    assert client.read_cache_entries() == []


def test_listings_follow_cursors_past_pages_the_scan_budget_cut_short(
    client: SyncClient, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a listing ends a page after examining its budget of entries and hands back a
    # cursor: under a selective filter the first pages hold nothing, yet the client
    # must still return every match rather than stop at the first (empty) page
    name = f"flow-{uuid.uuid4().hex[:6]}"
    rare = stores.runs.create_flow_run(FlowRunCreate(flow_name=name, tags=["rare"]))
    for _ in range(11):
        stores.runs.create_flow_run(FlowRunCreate(flow_name=name))
    parent = stores.runs.create_flow_run(FlowRunCreate(flow_name=name))
    rare_task = stores.runs.create_task_run(
        TaskRunCreate(task_key="t", flow_run_id=parent.id, tags=["rare"])
    )
    for i in range(11):
        stores.runs.create_task_run(TaskRunCreate(task_key=f"t{i}", flow_run_id=parent.id))
    list_flow_runs, list_task_runs = stores.runs.list_flow_runs, stores.runs.list_task_runs
    monkeypatch.setattr(
        stores.runs, "list_flow_runs", lambda *a, **k: list_flow_runs(*a, **k, budget=4)
    )
    monkeypatch.setattr(
        stores.runs, "list_task_runs", lambda *a, **k: list_task_runs(*a, **k, budget=4)
    )
    assert [r.id for r in client.read_flow_runs(flow_name=name, tags=["rare"])] == [rare.id]
    assert len(client.read_flow_runs(flow_name=name, limit=5)) == 5
    tasks = client.read_task_runs(flow_run_id=parent.id, limit=200)
    assert rare_task.id in {t.id for t in tasks} and len(tasks) == 12
