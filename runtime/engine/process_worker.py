"""The worker-process side of :class:`~runtime.engine.task_runners.ProcessPoolTaskRunner`.

A worker is a ``spawn``ed process: it inherits no client, socket or thread of
the flow's process. :func:`init_worker` receives, explicitly, what it needs to
reach the flow's backend (:class:`BackendConfig`: the API URL, or the stores'
prefix and endpoint, and the payload key) and the queue to the flow's process.
:func:`run_job` runs one task run with the ordinary task engine, inside a flow
run context standing for the flow's: slots, cache locks, results and run logs
go to the backend from here; every task-run snapshot is sent to the flow's
process, which records it (so records are batched and flushed with the flow run,
and the flow's process knows the latest state if this process dies).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

import cloudpickle

from runtime.engine.cache_backend import CacheBackend
from runtime.engine.client import DirectEngineClient, EngineClient
from runtime.engine.context import FlowRunContext, flow_run_scope, tags
from runtime.engine.futures import PrefectFuture
from runtime.models import FlowRun, FlowRunCreate, Lease, LogRecord, OrchestrationResult, TaskRun
from runtime.states import ResultRef, State

if TYPE_CHECKING:
    from runtime.engine.slots import SlotRequest
    from runtime.payload_auth import PayloadKey

Message = tuple[str, str, Any]
"""What a worker sends to the flow's process: (kind, task run id, payload)."""

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class BackendConfig:
    """Everything a worker needs to reach the flow's backend (passed, never inherited).

    ``kind="api"``: the HTTP API at ``api_url``. ``kind="stores"``: the stores named
    ``prefix`` at ``endpoint_url`` (None: boto3's own endpoints and credentials);
    ``credentials`` only for a loopback endpoint (a local moto server's fake keys).
    ``embedded``: those stores are the embedded default's moto server.
    """

    kind: Literal["api", "stores"]
    lease_seconds: float
    payload_key: PayloadKey | None = None
    api_url: str | None = None
    token: str | None = None
    sign: bool | None = None
    region: str | None = None
    prefix: str = "stratoflow"
    endpoint_url: str | None = None
    results_bucket: str | None = None
    inline_result_max_bytes: int = 16_384
    retention_days: int | None = None
    credentials: tuple[str, str, str | None] | None = None
    embedded: bool = False


def _loaded_payload_key(client: Any) -> PayloadKey | None:
    """The parent's payload key, loaded now if it can be (else the worker loads its own)."""
    try:
        key: PayloadKey | None = client.payload_keys.for_serializer("pickle")
    except Exception:  # no key configured yet: the worker reports it if a task needs one
        return None
    return key


def backend_config(client: EngineClient) -> BackendConfig:
    """How a worker reaches the backend ``client`` (the flow's engine client) talks to."""
    from runtime.engine import backend
    from runtime.engine.http_engine_client import ApiEngineClient

    lease_seconds = float(getattr(client, "lease_seconds", 60.0))
    if isinstance(client, ApiEngineClient):
        transport = client.api.transport
        return BackendConfig(
            kind="api",
            lease_seconds=lease_seconds,
            payload_key=_loaded_payload_key(client),
            api_url=transport.api_url,
            token=transport.token,
            sign=transport.sign,
            region=transport.region,
        )
    if isinstance(client, DirectEngineClient):
        stores = client.stores
        dynamodb = stores.db.client
        s3_endpoint = stores.results.s3.meta.endpoint_url
        endpoint = dynamodb.meta.endpoint_url
        host = urlparse(endpoint).hostname or ""
        local = host in LOOPBACK_HOSTS and s3_endpoint == endpoint
        credentials = None
        if local:
            frozen = stores.session.get_credentials().get_frozen_credentials()
            credentials = (frozen.access_key, frozen.secret_key, frozen.token)
        return BackendConfig(
            kind="stores",
            lease_seconds=lease_seconds,
            payload_key=_loaded_payload_key(client),
            region=dynamodb.meta.region_name,
            prefix=stores.specs.prefix,
            endpoint_url=endpoint if local else None,
            results_bucket=stores.results.bucket,
            inline_result_max_bytes=stores.results.inline_max_bytes,
            retention_days=stores.runs.retention_days,
            credentials=credentials,
            embedded=stores is backend._embedded,
        )
    raise TypeError(
        "ProcessPoolTaskRunner needs the flow's engine client to be the API client or the "
        f"direct (stores) client, so that worker processes can reach the same backend; "
        f"got {type(client).__name__}"
    )


def connect(config: BackendConfig) -> EngineClient:
    """A new engine client for ``config`` (in the worker; it becomes the process's client)."""
    from runtime.engine import backend

    client: EngineClient
    if config.kind == "api":
        from runtime.engine.http_engine_client import ApiEngineClient

        client = ApiEngineClient(
            config.api_url,
            token=config.token,
            sign=config.sign,
            region=config.region,
            lease_seconds=config.lease_seconds,
            payload_key=config.payload_key,
        )
    else:
        import boto3

        from runtime.stores import Stores

        session_args: dict[str, Any] = {"region_name": config.region}
        if config.credentials is not None:
            key_id, secret, token = config.credentials
            session_args.update(
                aws_access_key_id=key_id, aws_secret_access_key=secret, aws_session_token=token
            )
        stores = Stores.connect(
            config.prefix,
            session=boto3.session.Session(**session_args),
            endpoint_url=config.endpoint_url,
            results_bucket=config.results_bucket,
            inline_result_max_bytes=config.inline_result_max_bytes,
            retention_days=config.retention_days,
        )
        if config.embedded:  # sdk.get_client() in a task reaches the flow's moto server
            stores.endpoint_url = config.endpoint_url  # type: ignore[attr-defined]
            backend._embedded = stores
        client = DirectEngineClient(
            stores, lease_seconds=config.lease_seconds, payload_key=config.payload_key
        )
    with backend._lock:  # results read in a task (future.result()) use it too
        backend._client = client
    return client


class ReportingClient(EngineClient):
    """The worker's engine client: task-run snapshots and leases go to the flow's process.

    Everything else (slots, cache, results, logs, flow-run reads) goes to the
    backend through ``inner``.
    """

    def __init__(self, inner: EngineClient, send: Callable[[Message], None]) -> None:
        self.inner = inner
        self._send = send
        self._lock = threading.Lock()
        self.last: dict[str, tuple[str, list[str]]] = {}
        """Each task run's latest snapshot (JSON), as sent."""

    def create_flow_run(self, request: FlowRunCreate) -> FlowRun:
        return self.inner.create_flow_run(request)

    def start_flow_run(self, request: FlowRunCreate) -> tuple[FlowRun, bool]:
        return self.inner.start_flow_run(request)

    def read_flow_run(self, run_id: str) -> FlowRun:
        return self.inner.read_flow_run(run_id)

    def read_flow_run_state(self, run_id: str) -> State:
        return self.inner.read_flow_run_state(run_id)

    def set_flow_run_state(
        self,
        run_id: str,
        state: State,
        *,
        force: bool = False,
        expected_version: int | None = None,
    ) -> OrchestrationResult:
        return self.inner.set_flow_run_state(
            run_id, state, force=force, expected_version=expected_version
        )

    def record_task_run(self, run: TaskRun, history: list[State]) -> None:
        snapshot = (run.model_dump_json(), [s.model_dump_json() for s in history])
        with self._lock:  # snapshots of one run leave in the order they were taken
            self.last[run.id] = snapshot
            self._send(("run", run.id, snapshot))

    def flush(self) -> None:
        self.inner.flush()

    def flush_task_runs(self) -> None:
        """Snapshots are written by the flow's process: nothing is buffered here."""

    def emit_log(self, record: LogRecord) -> None:
        self.inner.emit_log(record)

    def limits_for_tags(self, tags: Iterable[str]) -> list[str]:
        return self.inner.limits_for_tags(tags)

    def acquire_slots(
        self,
        names: list[str],
        *,
        holder: str | None,
        on_wait: Callable[[], None] | None = None,
        request: SlotRequest | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        cancelled: threading.Event | None = None,
    ) -> Lease:
        lease = self.inner.acquire_slots(
            names,
            holder=holder,
            on_wait=on_wait,
            request=request,
            timeout=timeout,
            max_retries=max_retries,
            cancelled=cancelled,
        )
        if holder is not None:  # the flow's process releases it if this worker dies
            self._send(("lease", holder, lease.model_dump_json()))
        return lease

    def release_slots(self, lease: Lease) -> None:
        self.inner.release_slots(lease)
        if lease.holder is not None:
            self._send(("released", lease.holder, lease.id))

    def persist_result(
        self, value: Any, *, serializer: str, storage_key: str | None = None
    ) -> ResultRef:
        return self.inner.persist_result(value, serializer=serializer, storage_key=storage_key)

    def load_result(self, ref: ResultRef) -> Any:
        return self.inner.load_result(ref)

    @property
    def cache(self) -> CacheBackend:
        return self.inner.cache

    def close(self) -> None:
        self.inner.close()


@dataclass
class WorkerFlowRunContext(FlowRunContext):
    """The flow run context in a worker: the flow's run as it was when the task was sent.

    The task run sent gets the dynamic key the flow's process chose for it; task
    runs it submits itself get keys derived from its id (unique in the flow run).
    """

    own_task_key: str = ""
    own_dynamic_key: str = "0"
    own_task_run_id: str = ""
    _own_used: bool = field(default=False, repr=False)

    def next_dynamic_key(self, task_key: str) -> str:
        """The sent task run's own key first; then keys no other task run of the flow has."""
        with self._lock:
            if task_key == self.own_task_key and not self._own_used:
                self._own_used = True
                return self.own_dynamic_key
            n = self._dynamic_keys.get(task_key, 0)
            self._dynamic_keys[task_key] = n + 1
        return f"{self.own_task_run_id}-{n}"


@dataclass
class Job:
    """One task run sent to a worker (cloudpickled by the flow's process)."""

    task: Any
    parameters: dict[str, Any]
    wait_for: list[Any] | None
    task_run_id: str
    dynamic_key: str
    flow_run: FlowRun
    flow_parameters: dict[str, Any]
    flow: bytes
    """The flow, cloudpickled once per flow run (``None`` pickled when it cannot be)."""
    log_prints: bool
    tags: list[str] = field(default_factory=list)
    """The ``tags(...)`` blocks the task was submitted in (they apply to its run)."""


def done_future(task_run_id: str, name: str, state: State) -> PrefectFuture[Any]:
    """An upstream future in a worker: already final, with the state it ended in."""
    inner: Future[State] = Future()
    inner.set_result(state)
    return PrefectFuture(task_run_id, inner, name=name)


_queue: Any = None
_config: BackendConfig | None = None
_client: ReportingClient | None = None
_client_lock = threading.Lock()


def init_worker(queue: Any, config: BackendConfig) -> None:
    """Runs once in each worker process: where to send snapshots, how to reach the backend."""
    global _queue, _config
    _queue = queue
    _config = config


def _reporting_client() -> ReportingClient:
    global _client
    with _client_lock:
        if _client is None:
            assert _config is not None, "init_worker() was not called in this process"
            _client = ReportingClient(connect(_config), _queue.put)
        return _client


_last_flow: tuple[bytes, Any] | None = None


def _flow(pickled: bytes) -> Any:
    """The job's flow, unpickled once per flow run (jobs of one flow run carry the same)."""
    global _last_flow
    if _last_flow is None or _last_flow[0] != pickled:
        _last_flow = (pickled, cloudpickle.loads(pickled))
    return _last_flow[1]


def run_job(payload: bytes) -> bytes:
    """Run one task run in this worker; returns its final state and last snapshot, pickled.

    The state keeps its value (or exception) when that can be pickled; when it
    cannot, the state goes back without it and ``problem`` says why.
    """
    job: Job = cloudpickle.loads(payload)
    client = _reporting_client()
    executor = ThreadPoolExecutor(thread_name_prefix="stratoflow-task")
    ctx = WorkerFlowRunContext(
        flow=_flow(job.flow),
        flow_run=job.flow_run,
        parameters=job.flow_parameters,
        client=client,
        executor=executor,
        log_prints=job.log_prints,
        own_task_key=job.task.task_key,
        own_dynamic_key=job.dynamic_key,
        own_task_run_id=job.task_run_id,
    )
    try:
        with flow_run_scope(ctx), tags(*job.tags):
            state: State = job.task._run(job.parameters, job.wait_for, None, job.task_run_id)
    finally:
        executor.shutdown(wait=True)
        client.flush()  # run logs are durable before the flow's process hears the end
    snapshot = client.last.pop(job.task_run_id, None)
    try:
        sent: bytes = cloudpickle.dumps((state, snapshot, None))
        return sent
    except Exception as exc:
        bare = State.model_validate_json(state.model_dump_json())  # without its value
        problem = (
            f"the {'result' if state.is_completed() else 'exception'} of task run "
            f"{job.task_run_id} cannot be sent back from its worker process: "
            f"{type(exc).__name__}: {exc}"
        )
        stripped: bytes = cloudpickle.dumps((bare, snapshot, problem))
        return stripped
