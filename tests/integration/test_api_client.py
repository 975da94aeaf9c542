"""``sdk.http_client.StratoflowClient`` against the real API over HTTP (docs/api.md).

Every method is called against the ``api`` fixture (the local gateway serving
``handlers.api`` over this test's stores, which talk HTTP to the moto server).
Retries are checked with gateways whose handler fails on purpose before (or
after) passing the request on; auth with a token gateway and a signed client.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handlers.local_gateway import LocalGateway
from runtime import errors
from runtime.models import (
    ConcurrencyLimitCreate,
    DeploymentCreate,
    DeploymentUpdate,
    FlowRunCreate,
    LogRecord,
    TaskRun,
    TaskRunCreate,
    WorkPoolCreate,
    WorkPoolUpdate,
)
from runtime.payload_auth import load_payload_key
from runtime.states import Completed, Pending, Running, State, StateType
from runtime.stores import Stores
from runtime.stores.cache import CacheRecord
from sdk import api_errors
from sdk.http_client import ApiTransport, StratoflowClient

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


# ----------------------------------------------------------------------------- helpers


def make_client(url: str, **transport: Any) -> StratoflowClient:
    """A client with short backoff (tests should not sleep for long)."""
    transport.setdefault("backoff", 0.01)
    transport.setdefault("max_backoff", 0.05)
    return StratoflowClient(transport=ApiTransport(url, **transport))


@pytest.fixture
def client(api: str) -> Iterator[StratoflowClient]:
    with make_client(api) as c:
        yield c


@pytest.fixture
def flow_name(prefix: str) -> str:
    return f"flow-{prefix}"


def real_handler() -> Handler:
    from handlers.api import lambda_handler

    return lambda_handler


def error_result(status: int, type_: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    import json

    body = {"error": {"type": type_, "message": f"injected {status}", "details": {}}}
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body),
    }


class Scripted:
    """A gateway handler that answers from a script first, then passes requests on.

    Each script entry is ``(status, type, headers)`` answered instead of the real
    handler, or ``("after", status)``: run the real handler, then answer ``status``
    anyway (a response lost after the work was done).
    """

    def __init__(self, script: list[tuple[Any, ...]]) -> None:
        self.script = list(script)
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._real = real_handler()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        with self._lock:
            self.events.append(event)
            step = self.script.pop(0) if self.script else None
        if step is None:
            return self._real(event, context)
        if step[0] == "after":
            self._real(event, context)
            return error_result(step[1], "internal")
        status, type_, *rest = step
        return error_result(status, type_, rest[0] if rest else None)


@pytest.fixture
def scripted(api: str) -> Iterator[Callable[[list[tuple[Any, ...]]], tuple[str, Scripted]]]:
    """Start gateways (over this test's stores) whose handler follows a script."""
    gateways: list[LocalGateway] = []

    def start(script: list[tuple[Any, ...]]) -> tuple[str, Scripted]:
        handler = Scripted(script)
        gateway = LocalGateway(handler).start()
        gateways.append(gateway)
        return gateway.url, handler

    yield start
    for gateway in gateways:
        gateway.stop()


def new_run(client: StratoflowClient, flow_name: str, **fields: Any) -> Any:
    return client.create_flow_run(FlowRunCreate(flow_name=flow_name, **fields))


# ----------------------------------------------------------------------------- basics


def test_health(client: StratoflowClient) -> None:
    assert client.health()["status"] == "ok"
    assert client.health(deep=True)["status"] == "ok"


def test_configured_from_the_environment(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.settings import get_settings

    monkeypatch.setenv("STRATOFLOW_API_URL", api + "/")
    get_settings.cache_clear()
    try:
        with StratoflowClient() as c:
            assert c.api_url == api
            assert not c.transport.sign
            assert c.health()["status"] == "ok"
    finally:
        monkeypatch.delenv("STRATOFLOW_API_URL")
        get_settings.cache_clear()
    with pytest.raises(ValueError, match="STRATOFLOW_API_URL"):
        StratoflowClient()


# ----------------------------------------------------------------------------- flow runs


class TestFlowRuns:
    def test_create_read_states(self, client: StratoflowClient, flow_name: str) -> None:
        run = new_run(client, flow_name, parameters={"n": 1}, tags=["a"])
        assert run.flow_name == flow_name and run.state.type is StateType.PENDING
        assert client.read_flow_run(run.id) == run
        assert [s.name for s in client.read_flow_run_states(run.id)] == ["Pending"]

    def test_idempotent_create(self, client: StratoflowClient, flow_name: str) -> None:
        first = new_run(client, flow_name)
        request = FlowRunCreate(flow_name=flow_name, parameters={"x": 1})
        a = client.create_flow_run(request, idempotency_key="once")
        b = client.create_flow_run(request, idempotency_key="once")
        assert a.id == b.id and a.idempotency_key == "once"
        body_key = client.create_flow_run(
            FlowRunCreate(flow_name=flow_name, parameters={"x": 1}, idempotency_key="once")
        )
        assert body_key.id == a.id
        with pytest.raises(api_errors.Conflict, match=a.id):  # the same key, another request
            client.create_flow_run(FlowRunCreate(flow_name=flow_name, idempotency_key="once"))
        ids = {r.id for r in client.list_flow_runs(flow_name=flow_name).items}
        assert ids == {first.id, a.id}

    def test_list_filters_and_pages(self, client: StratoflowClient, flow_name: str) -> None:
        runs = [new_run(client, flow_name, tags=["t", f"n{i}"]) for i in range(5)]
        client.set_flow_run_state(runs[0].id, Running())
        seen = list(client.paginate(client.list_flow_runs, flow_name=flow_name, limit=2))
        assert sorted(r.id for r in seen) == sorted(r.id for r in runs)
        page = client.list_flow_runs(flow_name=flow_name, limit=2)
        assert len(page.items) == 2 and page.next_cursor
        running = client.list_flow_runs(flow_name=flow_name, state_types=[StateType.RUNNING])
        assert [r.id for r in running.items] == [runs[0].id]
        assert [r.id for r in client.list_flow_runs(flow_name=flow_name, tags="n3").items] == [
            runs[3].id
        ]
        assert client.list_flow_runs(flow_name=flow_name, state_names="Pending", limit=10).items
        future = datetime.now(UTC) + timedelta(hours=1)
        assert client.list_flow_runs(flow_name=flow_name, created_after=future).items == []

    def test_set_state_accepts_and_returns_rejections(
        self, client: StratoflowClient, flow_name: str
    ) -> None:
        run = new_run(client, flow_name)
        accepted = client.set_flow_run_state(run.id, Running())
        assert accepted.status == "ACCEPT" and accepted.state.name == "Running"
        assert accepted.run_count == 1 and accepted.state_version == 1
        done = client.set_flow_run_state(run.id, Completed())
        assert done.accepted
        rejected = client.set_flow_run_state(run.id, Running())
        assert rejected.status == "REJECT" and not rejected.accepted
        assert rejected.state.name == "Completed" and rejected.reason
        with pytest.raises(api_errors.TransitionRejected) as info:
            client.set_flow_run_state(run.id, Running(), raise_on_reject=True)
        assert info.value.state is not None and info.value.state.name == "Completed"
        assert info.value.result.status == "REJECT"
        assert isinstance(info.value, errors.TransitionRejected)
        assert isinstance(info.value, errors.Conflict)
        forced = client.set_flow_run_state(run.id, Running(), force=True)
        assert forced.accepted

    def test_cancel(self, client: StratoflowClient, flow_name: str) -> None:
        pending = new_run(client, flow_name)
        assert client.cancel_flow_run(pending.id).state.name == "Cancelled"
        again = client.cancel_flow_run(pending.id)
        assert again.status in ("REJECT", "ABORT") and again.state.name == "Cancelled"
        with pytest.raises(api_errors.TransitionRejected):
            client.cancel_flow_run(pending.id, raise_on_reject=True)
        running = new_run(client, flow_name)
        client.set_flow_run_state(running.id, Running())
        assert client.cancel_flow_run(running.id).state.name == "Cancelling"

    def test_typed_errors(self, client: StratoflowClient, flow_name: str) -> None:
        missing = str(uuid.uuid4())
        with pytest.raises(api_errors.NotFound) as nf:
            client.read_flow_run(missing)
        assert isinstance(nf.value, errors.NotFound)
        assert nf.value.status == 404 and nf.value.type == "not_found"
        with pytest.raises(errors.NotFound):
            client.read_flow_run_states(missing)
        with pytest.raises(api_errors.ValidationError) as bad:
            client.list_flow_runs(limit=0)
        assert bad.value.status == 422 and bad.value.field == "limit"
        assert bad.value.loc == ["query", "limit"]
        assert isinstance(bad.value, errors.InvalidInput)
        with pytest.raises(api_errors.ValidationError) as body:
            client.create_flow_run(FlowRunCreate.model_construct(flow_name=None))  # type: ignore[arg-type]
        assert body.value.field == "flow_name" and "flow_name" in body.value.message
        with pytest.raises(api_errors.BadRequest) as cursor:
            client.list_flow_runs(flow_name=flow_name, cursor="not-a-cursor")
        assert isinstance(cursor.value, errors.BadRequest)
        taken = new_run(client, flow_name)
        with pytest.raises(api_errors.AlreadyExists) as exists:
            client.create_flow_run(FlowRunCreate(flow_name=flow_name, id=taken.id))
        assert isinstance(exists.value, errors.AlreadyExists)


# ----------------------------------------------------------------------------- task runs


class TestTaskRuns:
    def test_create_records_read_list_states(
        self, client: StratoflowClient, flow_name: str
    ) -> None:
        flow_run = new_run(client, flow_name)
        created = client.create_task_run(
            TaskRunCreate(task_key="t-created", flow_run_id=flow_run.id), idempotency_key="k1"
        )
        assert created.task_key == "t-created"
        again = client.create_task_run(
            TaskRunCreate(task_key="t-created", flow_run_id=flow_run.id), idempotency_key="k1"
        )
        assert again.id == created.id
        snapshots = []
        for i in range(3):
            history = [Pending(), Running(), Completed()]
            run = TaskRun(
                id=str(uuid.uuid4()),
                name=f"snap-{i}",
                task_key="t-snap",
                flow_run_id=flow_run.id,
                state=history[-1],
                tags=["x"],
            )
            snapshots.append((run, history))
        assert client.write_task_run_records(snapshots) == 3
        listed = client.list_task_runs(flow_run_id=flow_run.id, limit=10)
        assert {r.id for r in listed.items} == {created.id} | {r.id for r, _ in snapshots}
        done = client.list_task_runs(flow_run_id=flow_run.id, state_types=["COMPLETED"])
        assert {r.id for r in done.items} == {r.id for r, _ in snapshots}
        assert client.list_task_runs(flow_run_id=flow_run.id, task_key="t-created").items
        one = snapshots[0][0]
        assert client.read_task_run(one.id).name == "snap-0"
        names = [s.name for s in client.read_task_run_states(one.id)]
        assert names == ["Pending", "Running", "Completed"]
        aborted = client.set_task_run_state(created.id, Running())  # its flow run is Pending
        assert aborted.status == "ABORT" and aborted.state.name == "Pending"
        client.set_flow_run_state(flow_run.id, Running())
        result = client.set_task_run_state(created.id, Running())
        assert result.accepted and result.state.name == "Running"
        with pytest.raises(api_errors.NotFound):
            client.read_task_run(str(uuid.uuid4()))

    def test_many_records_are_sent_in_batches(
        self, api: str, client: StratoflowClient, flow_name: str, scripted: Any
    ) -> None:
        flow_run = new_run(client, flow_name)
        url, handler = scripted([])
        records = [
            (
                TaskRun(
                    id=str(uuid.uuid4()),
                    name=f"r{i}",
                    task_key="bulk",
                    flow_run_id=flow_run.id,
                    state=Completed(),
                ),
                [Completed()],
            )
            for i in range(230)
        ]
        assert make_client(url).write_task_run_records(records) == 230
        assert len(handler.events) == 3  # 100 + 100 + 30
        pages = client.paginate(client.list_task_runs, flow_run_id=flow_run.id, limit=1000)
        assert len(list(pages)) == 230


# ----------------------------------------------------------------------------- logs


def test_logs(client: StratoflowClient, flow_name: str) -> None:
    run = new_run(client, flow_name)
    task_run = str(uuid.uuid4())
    t0 = datetime.now(UTC)
    records = [
        LogRecord(
            flow_run_id=run.id,
            task_run_id=task_run if i % 2 else None,
            level=40 if i == 3 else 20,
            message=f"line {i}",
            timestamp=t0 + timedelta(milliseconds=i),
        )
        for i in range(7)
    ]
    assert client.write_logs(records) == 7
    read = list(client.paginate(client.read_logs, run.id, limit=3))
    assert [r.message for r in read] == [f"line {i}" for i in range(7)]
    assert [r.message for r in client.read_logs(run.id, level_ge=40).items] == ["line 3"]
    only = client.read_logs(run.id, task_run_id=task_run).items
    assert [r.message for r in only] == ["line 1", "line 3", "line 5"]
    with pytest.raises(api_errors.NotFound):
        client.read_logs(str(uuid.uuid4()))


# ----------------------------------------------------------------------------- concurrency


def test_concurrency_limits_and_leases(client: StratoflowClient, prefix: str) -> None:
    name = f"tag:{prefix}"
    created = client.create_concurrency_limit(ConcurrencyLimitCreate(name=name, limit=1))
    assert created.name == name and created.limit == 1
    with pytest.raises(api_errors.AlreadyExists):
        client.create_concurrency_limit(ConcurrencyLimitCreate(name=name, limit=1))
    assert name in {lim.name for lim in client.read_all_concurrency_limits()}
    assert name in {lim.name for lim in client.list_concurrency_limits().items}

    lease = client.acquire_lease([name], lease_seconds=30, holder="me")
    assert lease is not None and lease.limit_names == [name] and lease.holder == "me"
    assert client.read_concurrency_limit(name).active_slots == 1
    assert client.acquire_lease([name]) is None  # full right now: not an error
    renewed = client.renew_lease(lease.id, lease_seconds=120)
    assert renewed.id == lease.id and renewed.expires_at > lease.expires_at
    assert client.release_lease(lease.id) is True
    assert client.release_lease(lease.id) is False
    with pytest.raises(api_errors.NotFound):
        client.renew_lease(lease.id)

    assert client.update_concurrency_limit(name, 0).limit == 0
    with pytest.raises(api_errors.LimitExceeded) as never:
        client.acquire_lease([name])
    assert isinstance(never.value, errors.LimitExceeded) and never.value.status == 429
    with pytest.raises(api_errors.NotFound):
        client.acquire_lease([f"tag:{prefix}-missing"])
    client.delete_concurrency_limit(name)
    with pytest.raises(api_errors.NotFound):
        client.read_concurrency_limit(name)
    with pytest.raises(api_errors.NotFound):
        client.delete_concurrency_limit(name)


def test_limit_exceeded_is_not_retried(api: str, scripted: Any) -> None:
    url, handler = scripted([(429, "limit_exceeded")])
    with pytest.raises(api_errors.LimitExceeded):
        make_client(url).acquire_lease(["tag:x"])
    assert len(handler.events) == 1


# ----------------------------------------------------------------------------- results


def test_results(client: StratoflowClient, stores: Stores) -> None:
    small = client.persist_result({"a": [1, 2]}, serializer="json")
    assert small.inline is not None and small.storage_key is None
    assert client.load_result(small) == {"a": [1, 2]}
    big_value = list(range(20_000))
    big = client.persist_result(big_value, serializer="pickle")
    assert big.inline is None and big.storage_key and big.storage_key.startswith("s3://")
    assert client.load_result(big) == big_value
    key = load_payload_key()  # the engine's key: the API never holds it
    assert stores.results.load(big, payload_key=key) == big_value  # what the stores see
    keyed = client.persist_result("v", serializer="json", storage_key=f"k/{uuid.uuid4()}")
    assert keyed.storage_key and client.load_result(keyed) == "v"
    raw = client.upload_result(b'{"x": 1}', serializer="json")
    assert client.load_result(raw) == {"x": 1}
    assert client.download_result(big) == stores.results.read_bytes(big.storage_key)
    gone = big.model_copy(update={"storage_key": big.storage_key + "-gone"})
    with pytest.raises(api_errors.ResultNotFound) as info:
        client.load_result(gone)
    assert isinstance(info.value, errors.NotFound)


def test_a_result_larger_than_a_lambda_payload_goes_straight_to_s3(
    client: StratoflowClient, stores: Stores
) -> None:
    """7 MiB: more than a Lambda invocation carries (6 MB), so it cannot cross the API."""
    value = bytes(range(256)) * (7 * 1024 * 1024 // 256)
    ref = client.persist_result(value, serializer="pickle")
    assert ref.storage_key and ref.size > 7 * 1024 * 1024  # sealed: a MAC more
    assert client.load_result(ref) == value
    assert stores.results.load(ref, payload_key=load_payload_key()) == value


def test_a_small_result_needs_no_request() -> None:
    """Inline results are encoded by the client: nothing listens at this URL."""
    offline = make_client("http://127.0.0.1:9")
    ref = offline.upload_result(b'{"x": 1}', serializer="json")
    assert (ref.inline, ref.storage_key, ref.size) == ('{"x": 1}', None, 8)
    assert offline.download_result(ref) == b'{"x": 1}'


# ----------------------------------------------------------------------------- cache


def test_cache(client: StratoflowClient, prefix: str) -> None:
    key, task_key = f"key-{prefix}", f"task-{prefix}"
    ref = client.persist_result(42, serializer="json")
    with pytest.raises(api_errors.NotFound):
        client.read_cache_record(key)
    assert client.lock_cache_key(key, "a", 60) is True
    assert client.lock_cache_key(key, "b", 60) is False
    assert client.unlock_cache_key(key, "b") is False
    assert client.unlock_cache_key(key, "a") is True
    assert client.lock_cache_key(key, "b", 60) is True
    record = CacheRecord(key=key, result=ref, task_key=task_key)
    with pytest.raises(api_errors.CacheLockLost) as lost:
        client.write_cache_record(key, record, "a")
    from runtime.stores.cache import CacheLockLost

    assert isinstance(lost.value, CacheLockLost) and lost.value.status == 409
    written = client.write_cache_record(key, record, "b")
    assert written.key == key
    assert client.read_cache_record(key).result == ref
    assert client.lock_cache_key(key, "c", 60) is False  # a valid record: read it instead
    assert client.lock_cache_key(key, "c", 60, refresh=True) is True
    client.write_cache_record(key, record, "c")
    other = f"other-{prefix}"
    assert client.lock_cache_key(other, "d", 60)
    client.write_cache_record(other, CacheRecord(key=other, result=ref, task_key=task_key), "d")
    listed = client.list_cache_records(task_key=task_key)
    assert {r.key for r in listed} == {key, other}
    assert len(client.list_cache_records(task_key=task_key, limit=1)) == 1
    assert client.clear_cache(key=key) == 1
    assert client.clear_cache(task_key=task_key) == 1
    assert client.list_cache_records(task_key=task_key) == []


# ----------------------------------------------------------------------------- registry


def test_flows_deployments_and_work_pools(client: StratoflowClient, prefix: str) -> None:
    pool = f"pool-{prefix}"
    created_pool = client.create_work_pool(WorkPoolCreate(name=pool, concurrency_limit=2))
    assert created_pool.name == pool
    with pytest.raises(api_errors.AlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=pool))
    assert client.read_work_pool(pool).concurrency_limit == 2
    assert pool in {p.name for p in client.paginate(client.list_work_pools)}
    assert client.update_work_pool(pool, WorkPoolUpdate(description="d")).description == "d"
    assert client.update_work_pool(pool, concurrency_limit=5).concurrency_limit == 5
    assert client.pause_work_pool(pool).paused is True
    assert client.resume_work_pool(pool).paused is False

    flow = f"flow-{prefix}"
    request = DeploymentCreate(
        name="nightly", flow_name=flow, work_pool_name=pool, parameters={"n": 1, "m": 2}
    )
    deployment = client.create_deployment(request)
    upserted = client.create_deployment(request.model_copy(update={"description": "v2"}))
    assert upserted.id == deployment.id and upserted.description == "v2"
    assert client.read_deployment(deployment.id).name == "nightly"
    assert client.read_deployment_by_name(flow, "nightly").id == deployment.id
    assert client.read_deployment_by_name(f"{flow}/nightly").id == deployment.id
    listed = client.list_deployments(flow_name=flow)
    assert [d.id for d in listed.items] == [deployment.id]
    assert client.list_deployments(work_pool_name=pool).items
    updated = client.update_deployment(deployment.id, DeploymentUpdate(tags=["x"]))
    assert updated.tags == ["x"] and updated.description == "v2"
    assert client.update_deployment(deployment.id, paused=True).paused is True
    client.update_deployment(deployment.id, paused=False)

    run = client.create_flow_run_from_deployment(
        deployment.id, parameters={"n": 5}, tags=["manual"], idempotency_key="dep-1"
    )
    # due now: queued on its pool (Phase 5)
    assert run.deployment_id == deployment.id and run.state.type is StateType.PENDING
    assert run.parameters == {"n": 5, "m": 2}
    again = client.create_flow_run_from_deployment(
        deployment.id, parameters={"n": 5}, tags=["manual"], idempotency_key="dep-1"
    )
    assert again.id == run.id
    with pytest.raises(api_errors.Conflict, match=run.id):
        client.create_flow_run_from_deployment(deployment.id, idempotency_key="dep-1")
    assert flow in {f.name for f in client.paginate(client.list_flows)}

    client.delete_deployment(deployment.id)
    with pytest.raises(api_errors.NotFound):
        client.read_deployment(deployment.id)
    with pytest.raises(api_errors.NotFound):
        client.read_deployment_by_name(flow, "nightly")
    with pytest.raises(api_errors.Conflict, match="1 queued"):  # its run is still queued
        client.delete_work_pool(pool)
    client.delete_work_pool(pool, force=True)
    with pytest.raises(api_errors.NotFound):
        client.read_work_pool(pool)


# ----------------------------------------------------------------------------- retries


class TestRetries:
    def test_503_then_success(self, scripted: Any, flow_name: str) -> None:
        url, handler = scripted([(503, "unavailable"), (502, "bad_gateway")])
        c = make_client(url)
        slept: list[float] = []
        c.transport._sleep = slept.append
        run = new_run(c, flow_name)
        assert run.flow_name == flow_name
        assert len(handler.events) == 3 and len(slept) == 2
        assert all(0 < s <= 0.05 for s in slept)

    def test_429_honours_retry_after(self, scripted: Any) -> None:
        url, handler = scripted([(429, "throttled", {"Retry-After": "0.2"})])
        c = make_client(url)
        slept: list[float] = []
        c.transport._sleep = slept.append
        assert c.health()["status"] == "ok"
        assert slept == [0.2] and len(handler.events) == 2

    def test_gives_up_after_the_retries(self, scripted: Any) -> None:
        url, handler = scripted([(503, "unavailable")] * 3 + [(429, "throttled")] * 3)
        c = make_client(url, retries=2)
        c.transport._sleep = lambda s: None
        with pytest.raises(api_errors.ServerError) as server:
            c.health()
        assert server.value.status == 503 and len(handler.events) == 3
        with pytest.raises(api_errors.Throttled) as throttled:
            c.health()
        assert throttled.value.status == 429 and len(handler.events) == 6

    def test_other_4xx_are_never_retried(self, scripted: Any) -> None:
        url, handler = scripted([(404, "not_found"), (409, "conflict"), (422, "validation_error")])
        c = make_client(url)
        for expected in (api_errors.NotFound, api_errors.Conflict, api_errors.ValidationError):
            with pytest.raises(expected):
                c.health()
        assert len(handler.events) == 3

    def test_connection_errors_are_retried(self) -> None:
        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        c = make_client(f"http://127.0.0.1:{port}", retries=3)
        slept: list[float] = []
        c.transport._sleep = slept.append
        with pytest.raises(api_errors.ApiConnectionError) as info:
            c.health()
        assert info.value.status == 0 and len(slept) == 3
        assert slept == sorted(slept) or max(slept) <= 0.05  # backoff grows, capped

    def test_lost_create_response_creates_once(
        self, scripted: Any, client: StratoflowClient, flow_name: str
    ) -> None:
        url, handler = scripted([("after", 502)])
        run = new_run(make_client(url), flow_name)
        assert len(handler.events) >= 2
        assert [r.id for r in client.list_flow_runs(flow_name=flow_name).items] == [run.id]

    def test_lost_set_state_response_is_an_accept(
        self, scripted: Any, client: StratoflowClient, flow_name: str
    ) -> None:
        run = new_run(client, flow_name)
        url, _ = scripted([("after", 504)])
        result = make_client(url).set_flow_run_state(run.id, Running())
        assert result.accepted and result.state.name == "Running" and result.run_count == 1
        assert [s.name for s in client.read_flow_run_states(run.id)] == ["Pending", "Running"]


# ----------------------------------------------------------------------------- auth


def test_bearer_token(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with LocalGateway(token="s3cret") as gateway:
        assert make_client(gateway.url, token="s3cret").health()["status"] == "ok"
        monkeypatch.setenv("STRATOFLOW_API_TOKEN", "s3cret")
        assert make_client(gateway.url).health()["status"] == "ok"  # from the environment
        monkeypatch.delenv("STRATOFLOW_API_TOKEN")
        with pytest.raises(api_errors.Unauthorized) as info:
            make_client(gateway.url, token="wrong").health()
        assert info.value.status == 401
        with pytest.raises(api_errors.Unauthorized):
            make_client(gateway.url).health()


def test_signed_requests_carry_sigv4(scripted: Any, flow_name: str) -> None:
    from botocore.credentials import Credentials

    url, handler = scripted([(503, "unavailable")])
    c = make_client(url, sign=True, region="eu-west-1", credentials=Credentials("AKID", "SK", "T"))
    c.transport._sleep = lambda s: None
    run = new_run(c, flow_name)
    c.read_flow_run(run.id)
    assert len(handler.events) == 3  # the 503, its retry, the read: each one signed
    for event in handler.events:
        headers = {k.lower(): v for k, v in event["headers"].items()}
        auth = headers["authorization"]
        assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKID/")
        assert "/eu-west-1/execute-api/aws4_request" in auth
        assert headers["x-amz-security-token"] == "T" and headers["x-amz-date"]


def test_state_round_trip_keeps_details(client: StratoflowClient, flow_name: str) -> None:
    run = new_run(client, flow_name)
    state = State(type=StateType.RUNNING, name="Running", message="m")
    result = client.set_flow_run_state(run.id, state)
    assert result.state.message == "m" and result.state.details.transition_id
