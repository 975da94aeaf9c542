"""The engine talking to the HTTP API (``STRATOFLOW_API_URL``): :class:`ApiEngineClient`.

Every :class:`~runtime.engine.client.EngineClient` operation goes through
:class:`runtime.http.client.HttpApi`, with the same behaviour as the direct path:

* flow runs: ``POST /flow_runs``, ``GET /flow_runs/{id}``, ``POST .../set_state``
  (a 409 ``transition_rejected`` comes back as the REJECT/ABORT result with the
  run's current state, which is what the flow engine reasons about);
* task runs: snapshots buffered by the same background ``_Recorder`` as the
  direct path and written with ``POST /task_runs/records`` (at most 100 records
  and 1 MiB per request, :func:`record_chunks`);
* logs: a :class:`~runtime.logship.LogShipper` whose sink is ``POST /logs``;
* tag limits: ``GET /concurrency_limits`` (cached for a second) and the lease
  routes, waiting as :meth:`DirectEngineClient.acquire_slots` does: one waiter per
  set of limits polls with backoff, the others sleep until a release in this
  process wakes them; held leases are renewed in the background;
* results: serialized here (pickles sealed with the payload key, which the API
  never sees); small ones stay inline in the reference, others go straight to S3
  through the presigned URLs of ``POST /results`` and ``POST /results/download``,
  and are verified here;
* the cache: :class:`ApiCache`, a :class:`~runtime.engine.cache_backend.CacheBackend`
  over the cache routes.

A retried ``POST /logs`` whose first attempt was stored but whose response was
lost stores those lines twice; every other write is safe to retry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from runtime.backoff import Backoff
from runtime.engine.client import BufferedEngineClient, PayloadKeyHolder
from runtime.errors import NotFound
from runtime.http.client import HttpApi
from runtime.limits import ITEM_BUDGET_BYTES, RECORD_BATCH_MAX_BYTES, RECORD_BATCH_MAX_RECORDS
from runtime.models import (
    CacheRecord,
    FlowRun,
    FlowRunCreate,
    LockAttempt,
    LogRecord,
    OrchestrationResult,
    TaskRun,
)
from runtime.payload_auth import PayloadKey
from runtime.states import ResultRef, State

__all__ = ["ApiCache", "ApiEngineClient", "record_chunks"]


def _bounded_history(history: list[State]) -> tuple[list[State], int]:
    """The first state and as many of the latest as a run item could ever keep; their size."""
    sizes = [len(s.model_dump_json().encode()) for s in history]
    if not history:
        return [], 0
    keep, used = [len(history) - 1], sizes[-1]
    if len(history) > 1 and used + sizes[0] <= ITEM_BUDGET_BYTES:
        keep.append(0)
        used += sizes[0]
    for i in range(len(history) - 2, 0, -1):
        if used + sizes[i] > ITEM_BUDGET_BYTES:
            break
        keep.append(i)
        used += sizes[i]
    return [history[i] for i in sorted(keep)], used


def record_chunks(
    batch: list[tuple[TaskRun, list[State]]],
) -> Iterator[list[tuple[TaskRun, list[State]]]]:
    """``batch`` in requests of at most RECORD_BATCH_MAX_RECORDS and RECORD_BATCH_MAX_BYTES.

    Each record's history is first cut to what a run item could keep (its first
    state and the latest), so one record never outgrows a request; a record larger
    than the byte budget on its own still goes alone.
    """
    chunk: list[tuple[TaskRun, list[State]]] = []
    size = 0
    for run, history in batch:
        kept, history_bytes = _bounded_history(history)
        weight = len(run.model_dump_json().encode()) + history_bytes
        if chunk and (
            len(chunk) >= RECORD_BATCH_MAX_RECORDS or size + weight > RECORD_BATCH_MAX_BYTES
        ):
            yield chunk
            chunk, size = [], 0
        chunk.append((run, kept))
        size += weight
    if chunk:
        yield chunk


class ApiCache:
    """:class:`~runtime.engine.cache_backend.CacheBackend` over the HTTP API's cache routes.

    ``wait_for`` cannot see a lock through the API (a pending lock and no record
    both read as a miss), so it polls for the record, backing off from ``poll``
    to ``max_poll`` seconds, and returns None after ``probe`` seconds without
    one: the engine then tries the lock again, which succeeds if the holder gave
    up or died and fails (so it waits again) while the holder still computes.
    """

    def __init__(self, api: HttpApi, *, probe: float = 2.0, max_poll: float = 0.5) -> None:
        self.api = api
        self.probe = probe
        self.max_poll = max_poll

    def read(self, key: str, now: datetime | None = None) -> CacheRecord | None:
        """The live record for ``key``; None for a miss."""
        try:
            return self.api.read_cache_record(key)
        except NotFound:
            return None

    def try_lock(
        self,
        key: str,
        owner: str,
        lock_seconds: float,
        now: datetime | None = None,
        refresh: bool = False,
    ) -> LockAttempt:
        """Take (or, for the same owner, renew) the compute lock; who holds it when refused."""
        if lock_seconds <= 0:
            raise ValueError("lock_seconds must be > 0")
        return self.api.try_lock_cache_key(key, owner, lock_seconds, refresh)

    def lock(
        self,
        key: str,
        owner: str,
        lock_seconds: float,
        now: datetime | None = None,
        refresh: bool = False,
    ) -> bool:
        """Take the compute lock on ``key``; True when ``owner`` won it."""
        return self.try_lock(key, owner, lock_seconds, now, refresh).acquired

    def write(self, key: str, record: CacheRecord, owner: str) -> None:
        """Store ``record``; raises ``CacheLockLost`` when another owner took the key over."""
        if record.key != key:
            raise ValueError(f"record.key {record.key!r} does not match key {key!r}")
        self.api.write_cache_record(key, record, owner)

    def unlock(self, key: str, owner: str) -> bool:
        """Give up ``owner``'s lock; True if it was removed."""
        return self.api.unlock_cache_key(key, owner)

    def wait_for(self, key: str, timeout: float, poll: float = 0.05) -> CacheRecord | None:
        """The holder's record once written; None after ``min(timeout, probe)`` without one."""
        deadline = time.monotonic() + max(0.0, min(timeout, self.probe))
        backoff, attempt = Backoff(base=poll, cap=max(poll, self.max_poll)), 0
        while (record := self.read(key)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            backoff.sleep(attempt, sleep=time.sleep, limit=remaining)
            attempt += 1
        return record

    def list(self, task_key: str | None = None, limit: int = 100, **_: Any) -> list[CacheRecord]:
        """Live cache records, newest first (of ``task_key``, or all)."""
        return self.api.list_cache_records(task_key=task_key, limit=limit)

    def clear(self, key: str | None = None, task_key: str | None = None) -> int:
        """Delete one key, every key of a task, or everything; how many were deleted."""
        return self.api.clear_cache(key=key, task_key=task_key)


class _LogSink:
    """``POST /logs`` as a :class:`~runtime.logship.LogSink` for the shipper."""

    def __init__(self, api: HttpApi) -> None:
        self.api = api

    def write(self, records: list[LogRecord]) -> None:
        self.api.write_logs(records)


class ApiEngineClient(BufferedEngineClient):
    """The engine writing through the Stratoflow HTTP API (see the module docstring).

    ``ApiEngineClient(api_url)``; or pass a configured :class:`HttpApi` as ``api``.
    ``token``, ``sign`` and ``region`` are as for :class:`runtime.http.transport.ApiTransport`.
    """

    def __init__(
        self,
        api_url: str | None = None,
        *,
        api: HttpApi | None = None,
        token: str | None = None,
        sign: bool | None = None,
        region: str | None = None,
        lease_seconds: float = 60.0,
        record_interval: float = 0.5,
        log_interval: float = 1.0,
        payload_key: PayloadKey | None = None,
    ) -> None:
        self.api = http = api or HttpApi(api_url, token=token, sign=sign, region=region)
        self.payload_keys = PayloadKeyHolder(payload_key)
        self._cache = ApiCache(http)
        super().__init__(
            log_sink=_LogSink(http),
            acquire=lambda names, holder, ask: http.acquire_lease(
                names,
                ask.slots,
                lease_seconds=ask.lease_seconds or lease_seconds,
                holder=holder,
                missing_ok=ask.missing_ok,
                mode=ask.mode,
            ),
            renew=lambda lease_id, seconds: http.renew_lease(lease_id, seconds),
            release=lambda lease: http.release_lease(lease.id),
            lease_seconds=lease_seconds,
            record_interval=record_interval,
            log_interval=log_interval,
        )

    @property
    def api_url(self) -> str:
        """The API this client writes to."""
        return self.api.api_url

    # -- flow runs ----------------------------------------------------------------------
    def create_flow_run(self, request: FlowRunCreate) -> FlowRun:
        return self.api.create_flow_run(request)

    def read_flow_run(self, run_id: str) -> FlowRun:
        return self.api.read_flow_run(run_id)

    def set_flow_run_state(
        self,
        run_id: str,
        state: State,
        *,
        force: bool = False,
        expected_version: int | None = None,
    ) -> OrchestrationResult:
        return self.api.set_flow_run_state(
            run_id, state, force=force, expected_version=expected_version
        )

    # -- task runs and limits ----------------------------------------------------------
    def _write_task_runs(self, batch: list[tuple[TaskRun, list[State]]]) -> None:
        for chunk in record_chunks(batch):
            self.api.write_task_run_records(chunk)

    def _limit_names(self) -> set[str]:
        return {limit.name for limit in self.api.read_all_concurrency_limits()}

    # -- results and cache --------------------------------------------------------------
    def persist_result(
        self, value: Any, *, serializer: str, storage_key: str | None = None
    ) -> ResultRef:
        return self.api.persist_result(
            value,
            serializer=serializer,
            storage_key=storage_key,
            payload_key=self.payload_keys.for_serializer(serializer),
        )

    def load_result(self, ref: ResultRef) -> Any:
        return self.api.load_result(
            ref, payload_key=self.payload_keys.for_serializer(ref.serializer)
        )

    @property
    def cache(self) -> ApiCache:
        return self._cache
