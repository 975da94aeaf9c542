"""The one SDK client behaves the same over both backends: the stores and the HTTP API.

Every test runs twice, with ``SyncClient(stores)`` and with ``ApiSyncClient`` (the
same client over ``StratoflowClient`` and the local gateway), and asserts the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from runtime.errors import NotFound
from runtime.models import CacheRecord, FlowRunCreate, LogRecord, TaskRunCreate
from runtime.states import Completed, ResultRef, Running, StateType
from runtime.stores import Stores
from sdk.client import ApiSyncClient, ObjectAlreadyExists, ObjectNotFound, SyncClient
from sdk.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
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


def test_global_concurrency_limits(client: SyncClient) -> None:
    """Prefect's client methods and schemas (src/prefect/client/orchestration/
    _concurrency_limits/client.py; client/schemas/actions.py ``GlobalConcurrencyLimitCreate``
    /``Update``; responses.py ``GlobalConcurrencyLimitResponse``)."""
    name = f"gcl-{uuid.uuid4().hex[:6]}"
    limit_id = client.create_global_concurrency_limit(
        GlobalConcurrencyLimitCreate(name=name, limit=3, slot_decay_per_second=0.5)
    )
    assert isinstance(limit_id, uuid.UUID)
    with pytest.raises(ObjectAlreadyExists):
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    read = client.read_global_concurrency_limit_by_name(name)
    assert (read.id, read.name, read.limit, read.active) == (str(limit_id), name, 3, True)
    assert (read.active_slots, read.slot_decay_per_second) == (0, 0.5)
    assert read.created is not None and read.updated is not None

    updated = client.update_global_concurrency_limit(
        name, GlobalConcurrencyLimitUpdate(active=False, limit=7)
    )
    assert (updated.limit, updated.active, updated.slot_decay_per_second) == (7, False, 0.5)
    client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active=True))
    assert client.read_global_concurrency_limit_by_name(name).active is True
    with pytest.raises(ObjectNotFound):
        client.update_global_concurrency_limit("nope", GlobalConcurrencyLimitUpdate(limit=1))

    client.upsert_global_concurrency_limit_by_name(name, 4, slot_decay_per_second=2.0)
    assert client.read_global_concurrency_limit_by_name(name).limit == 4
    client.upsert_global_concurrency_limit_by_name(f"{name}-b", 1)
    client.create_concurrency_limit(f"{name}-tag", 2)
    names = [lim.name for lim in client.read_global_concurrency_limits(limit=None)]
    assert names == sorted([name, f"{name}-b", f"tag:{name}-tag"])
    assert [lim.name for lim in client.read_global_concurrency_limits(limit=1, offset=1)] == [
        f"{name}-b"
    ]
    client.delete_global_concurrency_limit_by_name(name)
    with pytest.raises(ObjectNotFound):
        client.read_global_concurrency_limit_by_name(name)
    with pytest.raises(ObjectNotFound):
        client.delete_global_concurrency_limit_by_name(name)


def test_global_limit_requests_are_validated_before_anything_is_sent() -> None:
    with pytest.raises(ValidationError, match="active_slots cannot be set"):
        GlobalConcurrencyLimitCreate(name="x", limit=1, active_slots=2)
    with pytest.raises(ValidationError):
        GlobalConcurrencyLimitCreate(name="a/b", limit=1)
    with pytest.raises(ValidationError):
        GlobalConcurrencyLimitUpdate(limit=-1)


def test_tag_limits_have_prefect_v1_attribute_names(client: SyncClient) -> None:
    """``read_concurrency_limit_by_tag(tag).concurrency_limit`` and ``.tag`` (Prefect's
    ``ConcurrencyLimit`` object, client/schemas/objects.py)."""
    tag = f"v1-{uuid.uuid4().hex[:6]}"
    client.create_concurrency_limit(tag, 3)
    limit = client.read_concurrency_limit_by_tag(tag)
    assert (limit.tag, limit.concurrency_limit) == (tag, 3)
    assert [lim.tag for lim in client.read_concurrency_limits(limit=None)] == [tag]


def test_hello_and_api_url(client: SyncClient, request: pytest.FixtureRequest) -> None:
    """Prefect's docs (docs/v3/advanced/api-client.mdx): ``client.hello().json()`` is a wave."""
    assert client.hello().json() == "\N{WAVING HAND SIGN}"
    if isinstance(client.backend, HttpBackend):
        assert client.api_url == request.getfixturevalue("api").rstrip("/")
    else:
        assert client.api_url is None


def test_offset_paging_reads_every_run_once(client: SyncClient, stores: Stores) -> None:
    """The paging loop of docs/v3/advanced/api-client.mdx (limit + offset until a short page)."""
    name = f"flow-{uuid.uuid4().hex[:6]}"
    made = {stores.runs.create_flow_run(FlowRunCreate(flow_name=name)).id for _ in range(7)}
    seen: list[str] = []
    offset = 0
    while True:
        page = client.read_flow_runs(flow_name=name, limit=3, offset=offset)
        seen.extend(r.id for r in page)
        if len(page) < 3:
            break
        offset += 3
    assert sorted(seen) == sorted(made)
    assert {r.id for r in client.read_flow_runs(flow_name=name, limit=None)} == made
