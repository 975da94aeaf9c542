"""The typed REST client of the engine's routes: :class:`HttpApi`.

It calls the routes the engine needs (runs, task-run records, logs, limits and
leases, results, cache, health) over :class:`runtime.http.transport.ApiTransport`
and returns the runtime models; ``sdk.http_client.StratoflowClient`` extends it
with the rest of the API (flows, deployments, work pools). It lives in
``runtime`` so that the engine's
:class:`~runtime.engine.http_engine_client.ApiEngineClient` can use it without
importing ``sdk`` (dependencies point ``sdk -> runtime``); it imports neither
boto3 nor the stores.

Retrying writes is safe: creates without an idempotency key get a client-chosen
run id (a retry that finds it taken returns that run), proposed states carry
a ``transition_id`` (a retry whose first attempt was applied is recognised), and
leases, log lines and results get client-chosen ids (a repeat returns the same
lease, overwrites the same lines, writes the same object).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from runtime.http.errors import (
    AlreadyExists,
    ApiConnectionError,
    CacheLockLost,
    Conflict,
    TransitionRejected,
    unreachable_api,
)
from runtime.http.transport import ApiTransport, segment
from runtime.log_ids import new_log_id
from runtime.models import (
    CacheRecord,
    ConcurrencyLimit,
    ConcurrencyLimitCreate,
    ConcurrencyLimitUpdate,
    FlowRun,
    FlowRunCreate,
    Lease,
    LockAttempt,
    LogRecord,
    OrchestrationResult,
    Page,
    TaskRun,
    TaskRunCreate,
    new_id,
)
from runtime.payload_auth import PayloadKey, load_payload_key, needs_mac
from runtime.serializers import get_serializer
from runtime.states import ResultRef, State, StateType

__all__ = ["MAX_LOG_RECORDS", "MAX_TASK_RUN_RECORDS", "HttpApi"]

T = TypeVar("T", bound=BaseModel)

MAX_TASK_RUN_RECORDS = 100
"""Most task-run snapshots one ``POST /task_runs/records`` carries."""
MAX_LOG_RECORDS = 1000
"""Most log lines one ``POST /logs`` carries."""


def _page(model: type[T], body: Any) -> Page[T]:
    return Page[model](  # type: ignore[valid-type]
        items=[model.model_validate(item) for item in body.get("items", [])],
        next_cursor=body.get("next_cursor"),
    )


def _state_body(state: State) -> tuple[dict[str, Any], str]:
    """The state as JSON with a ``transition_id`` (a fresh one unless it has one)."""
    doc = state.model_dump(mode="json")
    tid = state.details.transition_id or str(uuid.uuid4())
    doc["details"]["transition_id"] = tid
    return doc, tid


def _states(values: Iterable[str | StateType] | str | StateType | None) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, str):  # StateType is a str too
        return [str(values.value if isinstance(values, StateType) else values)]
    return [str(v.value if isinstance(v, StateType) else v) for v in values]


class HttpApi:
    """The API's run, log, concurrency, result and cache routes, returning runtime models.

    Everything the engine needs; ``sdk.http_client.StratoflowClient`` adds the rest.
    Thread-safe: one instance serves every thread of a process.
    """

    def __init__(
        self,
        api_url: str | None = None,
        *,
        token: str | None = None,
        sign: bool | None = None,
        region: str | None = None,
        timeout: float = 30,
        retries: int = 4,
        transport: ApiTransport | None = None,
    ) -> None:
        self.transport = transport or ApiTransport(
            api_url, token=token, sign=sign, region=region, timeout=timeout, retries=retries
        )

    @property
    def api_url(self) -> str:
        """The API's base URL."""
        return self.transport.api_url

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The body of ``transport.request(...)``; pass ``idempotent=True`` for a POST
        that carries a client-chosen id (it may then be retried after a lost response)."""
        try:
            return self.transport.request(method, path, **kwargs).body
        except ApiConnectionError as exc:
            raise unreachable_api(exc, self.api_url) from None

    def close(self) -> None:
        """Close pooled connections."""
        self.transport.close()

    def __enter__(self) -> HttpApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ health

    def health(self, deep: bool = False) -> dict[str, Any]:
        """``GET /health``: ``{"status": "ok", "version": ...}``."""
        return dict(self._call("GET", "/health", query={"deep": deep or None}))

    # ------------------------------------------------------------------ flow runs

    def create_flow_run(
        self, request: FlowRunCreate, idempotency_key: str | None = None
    ) -> FlowRun:
        """``POST /flow_runs``; with an idempotency key a repeat returns the first run.

        Without a key or an id, the client picks the id, so that a retry after a
        lost response returns the run the first attempt created.
        """
        return FlowRun.model_validate(self._create("/flow_runs", request, idempotency_key))

    def read_flow_run(self, flow_run_id: str) -> FlowRun:
        """``GET /flow_runs/{id}`` (NotFound when absent)."""
        return FlowRun.model_validate(self._call("GET", f"/flow_runs/{segment(flow_run_id)}"))

    def list_flow_runs(
        self,
        *,
        flow_name: str | None = None,
        deployment_id: str | None = None,
        parent_flow_run_id: str | None = None,
        work_pool_name: str | None = None,
        state_types: Iterable[str | StateType] | str | StateType | None = None,
        state_names: Iterable[str] | str | None = None,
        tags: Iterable[str] | str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[FlowRun]:
        """``GET /flow_runs``: one page, newest first; every given filter must match."""
        query = {
            "flow_name": flow_name,
            "deployment_id": deployment_id,
            "parent_flow_run_id": parent_flow_run_id,
            "work_pool_name": work_pool_name,
            "state_type": _states(state_types),
            "state_name": [state_names] if isinstance(state_names, str) else state_names,
            "tag": [tags] if isinstance(tags, str) else tags,
            "created_after": created_after,
            "created_before": created_before,
            "limit": limit,
            "cursor": cursor,
        }
        return _page(FlowRun, self._call("GET", "/flow_runs", query=_listify(query)))

    def set_flow_run_state(
        self,
        flow_run_id: str,
        state: State,
        force: bool = False,
        *,
        raise_on_reject: bool = False,
        expected_version: int | None = None,
    ) -> OrchestrationResult:
        """``POST /flow_runs/{id}/set_state``: what the rules did.

        A rejection (409 ``transition_rejected``) comes back as a result with status
        REJECT or ABORT and the run's current state, as the engine needs; pass
        ``raise_on_reject=True`` to get :class:`TransitionRejected` instead.
        """
        return self._set_state(
            "flow_run", flow_run_id, state, force, raise_on_reject, expected_version
        )

    def cancel_flow_run(
        self, flow_run_id: str, *, raise_on_reject: bool = False
    ) -> OrchestrationResult:
        """``POST /flow_runs/{id}/cancel``: Cancelled if not started, Cancelling if running.

        A run already final gives a REJECT result (or TransitionRejected with
        ``raise_on_reject=True``).
        """
        try:
            body = self._call("POST", f"/flow_runs/{segment(flow_run_id)}/cancel")
        except TransitionRejected as exc:
            if raise_on_reject or exc.state is None:
                raise
            return exc.result
        return OrchestrationResult.model_validate(body)

    def read_flow_run_states(self, flow_run_id: str) -> list[State]:
        """``GET /flow_runs/{id}/states``: every state, oldest first."""
        body = self._call("GET", f"/flow_runs/{segment(flow_run_id)}/states")
        return [State.model_validate(s) for s in body]

    # ------------------------------------------------------------------ task runs

    def create_task_run(
        self, request: TaskRunCreate, idempotency_key: str | None = None
    ) -> TaskRun:
        """``POST /task_runs`` (idempotent like :meth:`create_flow_run`)."""
        return TaskRun.model_validate(self._create("/task_runs", request, idempotency_key))

    def write_task_run_records(
        self, records: Sequence[tuple[TaskRun, Sequence[State]]] | Sequence[Any]
    ) -> int:
        """``POST /task_runs/records`` in batches of 100: the engine's task-run snapshots.

        ``records`` holds ``(run, history)`` pairs (or ``TaskRunRecord`` objects);
        returns how many were written.
        """
        docs: list[dict[str, Any]] = []
        for record in records:
            if isinstance(record, tuple):
                run, history = record
            else:
                run, history = record.run, record.history
            docs.append(
                {
                    "run": run.model_dump(mode="json"),
                    "history": [s.model_dump(mode="json") for s in (history or [run.state])],
                }
            )
        written = 0
        for start in range(0, len(docs), MAX_TASK_RUN_RECORDS):
            chunk = docs[start : start + MAX_TASK_RUN_RECORDS]
            body = self._call(
                "POST", "/task_runs/records", json_body={"records": chunk}, idempotent=True
            )
            written += int(body.get("written", len(chunk)))
        return written

    def read_task_run(self, task_run_id: str) -> TaskRun:
        """``GET /task_runs/{id}`` (NotFound when absent)."""
        return TaskRun.model_validate(self._call("GET", f"/task_runs/{segment(task_run_id)}"))

    def list_task_runs(
        self,
        *,
        flow_run_id: str | None = None,
        task_key: str | None = None,
        state_types: Iterable[str | StateType] | str | StateType | None = None,
        state_names: Iterable[str] | str | None = None,
        tags: Iterable[str] | str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[TaskRun]:
        """``GET /task_runs``: one page, newest first; every given filter must match."""
        query = {
            "flow_run_id": flow_run_id,
            "task_key": task_key,
            "state_type": _states(state_types),
            "state_name": [state_names] if isinstance(state_names, str) else state_names,
            "tag": [tags] if isinstance(tags, str) else tags,
            "created_after": created_after,
            "created_before": created_before,
            "limit": limit,
            "cursor": cursor,
        }
        return _page(TaskRun, self._call("GET", "/task_runs", query=_listify(query)))

    def read_task_run_states(self, task_run_id: str) -> list[State]:
        """``GET /task_runs/{id}/states``: every state, oldest first."""
        body = self._call("GET", f"/task_runs/{segment(task_run_id)}/states")
        return [State.model_validate(s) for s in body]

    def set_task_run_state(
        self, task_run_id: str, state: State, force: bool = False, *, raise_on_reject: bool = False
    ) -> OrchestrationResult:
        """``POST /task_runs/{id}/set_state`` (rejections as for flow runs)."""
        return self._set_state("task_run", task_run_id, state, force, raise_on_reject)

    # ------------------------------------------------------------------ logs

    def read_logs(
        self,
        flow_run_id: str,
        *,
        task_run_id: str | None = None,
        level_ge: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[LogRecord]:
        """``GET /flow_runs/{id}/logs``: one page of log lines in time order."""
        query = {"task_run_id": task_run_id, "level_ge": level_ge, "limit": limit, "cursor": cursor}
        body = self._call("GET", f"/flow_runs/{segment(flow_run_id)}/logs", query=query)
        return _page(LogRecord, body)

    def write_logs(self, records: Sequence[LogRecord]) -> int:
        """``POST /logs`` in batches of 1000; returns how many lines were written.

        A record without an ``id`` gets one here, so a retry after a lost response
        overwrites the same lines instead of storing them twice.
        """
        written = 0
        for start in range(0, len(records), MAX_LOG_RECORDS):
            chunk = [
                r if r.id else r.model_copy(update={"id": new_log_id()})
                for r in records[start : start + MAX_LOG_RECORDS]
            ]
            body = self._call("POST", "/logs", json_body=chunk, idempotent=True)
            written += int(body.get("written", len(chunk)))
        return written

    # ------------------------------------------------------------------ concurrency

    def create_concurrency_limit(self, request: ConcurrencyLimitCreate) -> ConcurrencyLimit:
        """``POST /concurrency_limits`` (AlreadyExists if it exists)."""
        body = self._call("POST", "/concurrency_limits", json_body=request)
        return ConcurrencyLimit.model_validate(body)

    def list_concurrency_limits(self, cursor: str | None = None) -> Page[ConcurrencyLimit]:
        """``GET /concurrency_limits``: one page."""
        body = self._call("GET", "/concurrency_limits", query={"cursor": cursor})
        return _page(ConcurrencyLimit, body)

    def read_all_concurrency_limits(self) -> list[ConcurrencyLimit]:
        """Every concurrency limit (all pages)."""
        limits: list[ConcurrencyLimit] = []
        cursor: str | None = None
        while True:
            page = self.list_concurrency_limits(cursor=cursor)
            limits.extend(page.items)
            if not page.next_cursor:
                return limits
            cursor = page.next_cursor

    def read_concurrency_limit(self, name: str) -> ConcurrencyLimit:
        """``GET /concurrency_limits/{name}`` with its active slots."""
        body = self._call("GET", f"/concurrency_limits/{segment(name)}")
        return ConcurrencyLimit.model_validate(body)

    def update_concurrency_limit(
        self, name: str, limit: int | ConcurrencyLimitUpdate
    ) -> ConcurrencyLimit:
        """``PATCH /concurrency_limits/{name}``: a new size (or the fields of an update)."""
        change = limit if isinstance(limit, ConcurrencyLimitUpdate) else None
        body = self._call(
            "PATCH",
            f"/concurrency_limits/{segment(name)}",
            json_body=(
                change.model_dump(mode="json", exclude_none=True)
                if change is not None
                else {"limit": limit}
            ),
            idempotent=True,
        )
        return ConcurrencyLimit.model_validate(body)

    def delete_concurrency_limit(self, name: str) -> None:
        """``DELETE /concurrency_limits/{name}`` (NotFound if absent)."""
        self._call("DELETE", f"/concurrency_limits/{segment(name)}")

    def acquire_lease(
        self,
        names: Sequence[str],
        slots: int = 1,
        *,
        lease_seconds: float = 60.0,
        holder: str | None = None,
        lease_id: str | None = None,
        missing_ok: bool = False,
        mode: str = "concurrency",
    ) -> Lease | None:
        """``POST /concurrency_limits/leases``: the lease, or None when no slot is free now.

        The lease id is chosen here (or ``lease_id``, a UUID), so a retry after a lost
        response gets the lease the first attempt took instead of a second slot.
        Raises NotFound for an unknown limit and LimitExceeded when the request can
        never fit (a limit of 0).
        """
        body = self._call(
            "POST",
            "/concurrency_limits/leases",
            json_body={
                "names": list(names),
                "slots": slots,
                "lease_seconds": lease_seconds,
                "holder": holder,
                "id": lease_id or new_id(),
                **({"missing_ok": True} if missing_ok else {}),
                **({"mode": mode} if mode != "concurrency" else {}),
            },
            idempotent=True,
        )
        lease = body.get("lease") if isinstance(body, dict) else None
        return None if lease is None else Lease.model_validate(lease)

    def renew_lease(self, lease_id: str, lease_seconds: float = 60.0) -> Lease:
        """``POST /concurrency_limits/leases/{id}/renew`` (NotFound once reclaimed)."""
        body = self._call(
            "POST",
            f"/concurrency_limits/leases/{segment(lease_id)}/renew",
            json_body={"lease_seconds": lease_seconds},
            idempotent=True,
        )
        return Lease.model_validate(body)

    def release_lease(self, lease_id: str) -> bool:
        """``DELETE /concurrency_limits/leases/{id}``: True if this call released it."""
        body = self._call("DELETE", f"/concurrency_limits/leases/{segment(lease_id)}")
        return bool(body.get("released")) if isinstance(body, dict) else False

    # ------------------------------------------------------------------ results

    def upload_result(
        self, payload: bytes, *, serializer: str, storage_key: str | None = None
    ) -> ResultRef:
        """Store serialized bytes: inline in the reference when small, else straight to S3.

        A payload that fits ``STRATOFLOW_INLINE_RESULT_MAX_BYTES`` (and no ``storage_key``)
        needs no request. Otherwise ``POST /results`` returns the reference and a presigned
        PUT, and the bytes go to S3 directly (never through the API and its 6 MB limit).
        The result's id is chosen here: a retry after a lost response targets the same S3
        object, never a second (orphaned) one.
        """
        from runtime.api_schemas import ResultUploadTicket
        from runtime.inline_results import inline_ref
        from runtime.settings import get_settings

        if storage_key is None:
            ref = inline_ref(payload, serializer, get_settings().inline_result_max_bytes)
            if ref is not None:
                return ref
        body = self._call(
            "POST",
            "/results",
            json_body={
                "serializer": serializer,
                "size": len(payload),
                "storage_key": storage_key,
                "id": new_id(),
            },
            idempotent=True,
        )
        ticket = ResultUploadTicket.model_validate(body)
        self.transport.presigned(
            ticket.upload.method, ticket.upload.url, ticket.upload.headers, payload
        )
        return ticket.ref

    def download_result(self, ref: ResultRef) -> bytes:
        """The stored bytes of a reference: inline ones decoded here, S3 ones fetched directly.

        ``POST /results/download`` returns a presigned GET (404 ``result_not_found`` when
        the object is gone: :class:`ResultNotFound`); the bytes come from S3 itself.
        """
        from runtime.api_schemas import ResultDownloadTicket
        from runtime.inline_results import inline_bytes

        if ref.inline is not None:
            return inline_bytes(ref)
        body = self._call(
            "POST", "/results/download", json_body=ref.model_dump(mode="json"), idempotent=True
        )
        download = ResultDownloadTicket.model_validate(body).download
        return self.transport.presigned(download.method, download.url, download.headers, None)

    def persist_result(
        self,
        value: Any,
        *,
        serializer: str = "pickle",
        storage_key: str | None = None,
        payload_key: PayloadKey | None = None,
    ) -> ResultRef:
        """Serialize ``value`` here and store it through ``POST /results``.

        A pickle is sealed with ``payload_key`` (default: this machine's key,
        :func:`runtime.payload_auth.load_payload_key`); the API never sees the key.
        """
        data = get_serializer(serializer).dumps(value)
        if needs_mac(serializer):
            data = (payload_key or load_payload_key()).seal(data, serializer)
        return self.upload_result(data, serializer=serializer, storage_key=storage_key)

    def load_result(self, ref: ResultRef, *, payload_key: PayloadKey | None = None) -> Any:
        """The value a reference stands for (inline: decoded here; else downloaded).

        A pickle is unpickled only once its MAC checks out with ``payload_key``
        (default: this machine's key); ``PayloadAuthenticationError`` otherwise.
        """
        from runtime.results import ResultStore, open_payload

        if ref.inline is not None:
            data = ResultStore(None, "inline-only").load_bytes(ref)  # no S3 call
        else:
            data = self.download_result(ref)
        if payload_key is None and needs_mac(ref.serializer):
            payload_key = load_payload_key()
        return open_payload(ref, data, payload_key)

    # ------------------------------------------------------------------ cache

    def read_cache_record(self, key: str) -> CacheRecord:
        """``GET /cache/{key}``: the live record (NotFound on a miss)."""
        return CacheRecord.model_validate(self._call("GET", f"/cache/{segment(key)}"))

    def list_cache_records(
        self, task_key: str | None = None, limit: int | None = None
    ) -> list[CacheRecord]:
        """``GET /cache``, every page: live records, newest first (of one task, or all)."""
        records: list[CacheRecord] = []
        cursor = None
        while True:
            query = {"task_key": task_key, "limit": 1000, "cursor": cursor}
            body = self._call("GET", "/cache", query=query)
            records += [CacheRecord.model_validate(r) for r in body.get("items", [])]
            cursor = body.get("next_cursor")
            if not cursor:
                break
        records.sort(key=lambda r: r.created, reverse=True)
        return records[: 200 if limit is None else limit]  # the route's default page

    def clear_cache(self, key: str | None = None, task_key: str | None = None) -> int:
        """``DELETE /cache``: one key, every key of a task, or (neither) everything."""
        body = self._call("DELETE", "/cache", query={"key": key, "task_key": task_key})
        return int(body.get("deleted", 0)) if isinstance(body, dict) else 0

    def lock_cache_key(
        self, key: str, owner: str, lock_seconds: float = 30.0, refresh: bool = False
    ) -> bool:
        """``POST /cache/{key}/lock``: True when ``owner`` now holds the compute lock."""
        return self.try_lock_cache_key(key, owner, lock_seconds, refresh).acquired

    def try_lock_cache_key(
        self, key: str, owner: str, lock_seconds: float = 30.0, refresh: bool = False
    ) -> LockAttempt:
        """``POST /cache/{key}/lock``: acquired, or who holds the live lock (a 409)."""
        try:
            body = self._call(
                "POST",
                f"/cache/{segment(key)}/lock",
                json_body={"owner": owner, "lock_seconds": lock_seconds, "refresh": refresh},
                idempotent=True,  # the owner's id: a repeat by the same owner keeps its lock
            )
        except Conflict as exc:
            if exc.type != "cache_key_locked":
                raise
            until = exc.details.get("lock_until")
            try:
                lock_until = datetime.fromisoformat(str(until)).timestamp()
            except ValueError:
                lock_until = None
            return LockAttempt(False, str(exc.details.get("holder")), lock_until)
        return LockAttempt(True, owner) if body.get("locked") else LockAttempt(False)

    def write_cache_record(self, key: str, record: CacheRecord, owner: str) -> CacheRecord:
        """``PUT /cache/{key}``: store the record; CacheLockLost when the lock was taken over."""
        try:
            body = self._call(
                "PUT",
                f"/cache/{segment(key)}",
                json_body={"record": record.model_dump(mode="json"), "owner": owner},
            )
        except Conflict as exc:
            raise CacheLockLost(exc.status, exc.type, exc.message, exc.details) from None
        return CacheRecord.model_validate(body) if body else record

    def unlock_cache_key(self, key: str, owner: str) -> bool:
        """``DELETE /cache/{key}/lock?owner=``: True when ``owner``'s lock was removed."""
        body = self._call("DELETE", f"/cache/{segment(key)}/lock", query={"owner": owner})
        return bool(body.get("unlocked")) if isinstance(body, dict) else False

    # ------------------------------------------------------------------ internals

    def _create(self, path: str, request: FlowRunCreate | TaskRunCreate, key: str | None) -> Any:
        chosen_id = None
        if key is None and request.idempotency_key is None and request.id is None:
            chosen_id = new_id()
            request = request.model_copy(update={"id": chosen_id})
        body = request.model_dump(mode="json", exclude_unset=True)
        if chosen_id is not None:
            body["id"] = chosen_id
        headers = {"Idempotency-Key": key} if key is not None else None
        try:  # a key or an id: a repeat returns the first run
            return self._call("POST", path, json_body=body, headers=headers, idempotent=True)
        except AlreadyExists:
            if chosen_id is None:
                raise
            # our own earlier attempt created it before its response was lost
            return self._call("GET", f"{path}/{segment(chosen_id)}")

    def _set_state(
        self,
        kind: str,
        run_id: str,
        state: State,
        force: bool,
        raise_on_reject: bool,
        expected_version: int | None = None,
    ) -> OrchestrationResult:
        doc, tid = _state_body(state)
        path = f"/{kind}s/{segment(run_id)}/set_state"
        request: dict[str, Any] = {"state": doc, "force": force}
        if expected_version is not None:
            request["expected_version"] = expected_version
        try:
            body = self._call("POST", path, json_body=request, idempotent=True)
        except TransitionRejected as exc:
            current = exc.state
            if current is not None and current.details.transition_id == tid:
                # a retry of a request whose first attempt was applied: report that success
                run = self._call("GET", f"/{kind}s/{segment(run_id)}")
                return OrchestrationResult(
                    status="ACCEPT",
                    state=current,
                    run_count=int(run.get("run_count", 0)),
                    state_version=int(run.get("state_version", 0)),
                )
            if raise_on_reject or current is None:
                raise
            result = exc.result
        else:
            result = OrchestrationResult.model_validate(body)
        if result.accepted and state.has_data and result.state.type is state.type:
            result.state.with_data(state.data)
        return result


def _listify(query: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (list(v) if isinstance(v, Iterable) and not isinstance(v, str) else v)
        for k, v in query.items()
    }
