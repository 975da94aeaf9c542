"""What the engine writes through: :class:`EngineClient`, and its direct-to-AWS implementation.

Flow-run transitions are synchronous conditional writes (others can see and
race them). Task runs that need no coordination are orchestrated locally with
the same rules and recorded in batches by a background recorder; everything
buffered is durable once :meth:`EngineClient.flush` returns, and the flow
engine flushes before it reports the flow run's final state.
"""

from __future__ import annotations

import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

from runtime.errors import NotFound
from runtime.models import (
    FlowRun,
    FlowRunCreate,
    Lease,
    LogRecord,
    OrchestrationResult,
    TaskRun,
)
from runtime.states import ResultRef, State

TAG_LIMIT_PREFIX = "tag:"
"""Task-tag concurrency limits are the global limits named ``tag:<tag>`` (as in Prefect 3.4.19+)."""


def tag_limit_name(tag: str) -> str:
    """The concurrency limit governing tasks tagged ``tag``."""
    return f"{TAG_LIMIT_PREFIX}{tag}"


POLL_START = 0.02
POLL_MAX = 0.5
"""A waiting task polls for slots freed by other processes every 20 ms, backing off to 0.5 s."""
IDLE_WAIT = 5.0
"""Waiters that are not the poller re-check this often even if never woken (a safety net)."""


class EngineClient(ABC):
    """Every operation the flow and task engines need from the orchestration backend."""

    # -- flow runs (coordinated) ------------------------------------------------------
    @abstractmethod
    def create_flow_run(self, request: FlowRunCreate) -> FlowRun:
        """Create a flow run."""

    @abstractmethod
    def read_flow_run(self, run_id: str) -> FlowRun:
        """Read a flow run."""

    @abstractmethod
    def set_flow_run_state(
        self, run_id: str, state: State, *, force: bool = False
    ) -> OrchestrationResult:
        """Propose a flow-run state (one conditional write when accepted)."""

    # -- task runs (recorded in batches) ----------------------------------------------
    @abstractmethod
    def record_task_run(self, run: TaskRun, history: list[State]) -> None:
        """Queue the latest snapshot of a task run (with its full history) for writing."""

    @abstractmethod
    def flush(self) -> None:
        """Make every queued task-run record and log line durable."""

    # -- logs ---------------------------------------------------------------------------
    @abstractmethod
    def emit_log(self, record: LogRecord) -> None:
        """Queue one log record."""

    # -- concurrency --------------------------------------------------------------------
    @abstractmethod
    def limits_for_tags(self, tags: Iterable[str]) -> list[str]:
        """Names of the existing concurrency limits that govern these task tags."""

    @abstractmethod
    def acquire_slots(
        self,
        names: list[str],
        *,
        holder: str,
        on_wait: Callable[[], None] | None = None,
    ) -> Lease:
        """Block until a slot on every named limit is held; ``on_wait`` runs once if it waits.

        Raises LimitExceeded when the limits can never admit the request (limit 0).
        """

    @abstractmethod
    def release_slots(self, lease: Lease) -> None:
        """Give a lease's slots back and wake waiters at once."""

    # -- results and cache ------------------------------------------------------------
    @abstractmethod
    def persist_result(
        self, value: Any, *, serializer: str, storage_key: str | None = None
    ) -> ResultRef:
        """Store a result and return its reference."""

    @abstractmethod
    def load_result(self, ref: ResultRef) -> Any:
        """Load a stored result."""

    @property
    @abstractmethod
    def cache(self) -> Any:
        """The cache store (``runtime.stores.cache.CacheStore`` interface)."""

    def close(self) -> None:
        """Flush and stop background threads."""
        self.flush()


class _Recorder:
    """Buffers task-run snapshots and writes them in batches from a background thread."""

    def __init__(
        self, write: Callable[[list[tuple[TaskRun, list[State]]]], None], interval: float = 0.5
    ) -> None:
        self._write = write
        self._interval = interval
        self._pending: dict[str, tuple[TaskRun, list[State]]] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def add(self, run: TaskRun, history: list[State]) -> None:
        with self._lock:
            self._pending[run.id] = (run, list(history))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="stratoflow-task-recorder", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception as exc:  # never raise into user code; flush() will retry
                print(f"stratoflow: writing task runs failed, will retry: {exc}", file=sys.stderr)

    def flush(self) -> None:
        with self._flush_lock:
            with self._lock:
                batch = list(self._pending.values())
                self._pending.clear()
            if not batch:
                return
            try:
                self._write(batch)
            except Exception:
                with self._lock:  # put back what was not written, unless a newer one came
                    for run, history in batch:
                        self._pending.setdefault(run.id, (run, history))
                raise

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self.flush()


class DirectEngineClient(EngineClient):
    """The engine talking to DynamoDB and S3 directly (worker IAM role, or local moto)."""

    def __init__(self, stores: Any, *, lease_seconds: float = 60.0) -> None:
        from runtime.logship import LogShipper

        self.stores = stores
        self.lease_seconds = lease_seconds
        self._recorder = _Recorder(self._write_task_runs)
        self._logs = LogShipper(stores.logs)
        self._limits_cache: tuple[float, set[str]] | None = None
        self._limits_lock = threading.Lock()
        # one lock for every slot wait (no lost wake-ups), one condition per set of limits,
        # so a release wakes one waiter that can use it rather than every waiter
        self._slot_lock = threading.Lock()
        self._waiters: dict[frozenset[str], threading.Condition] = {}
        self._releases: dict[frozenset[str], int] = {}
        self._pollers: set[frozenset[str]] = set()
        self._leases: dict[str, Lease] = {}
        self._renewer: threading.Thread | None = None

    # -- flow runs ----------------------------------------------------------------------
    def create_flow_run(self, request: FlowRunCreate) -> FlowRun:
        return self.stores.runs.create_flow_run(request)  # type: ignore[no-any-return]

    def read_flow_run(self, run_id: str) -> FlowRun:
        return self.stores.runs.read_flow_run(run_id)  # type: ignore[no-any-return]

    def set_flow_run_state(
        self, run_id: str, state: State, *, force: bool = False
    ) -> OrchestrationResult:
        return self.stores.runs.set_state(  # type: ignore[no-any-return]
            "flow_run", run_id, state, force=force
        )

    # -- task runs ----------------------------------------------------------------------
    def record_task_run(self, run: TaskRun, history: list[State]) -> None:
        self._recorder.add(run, history)

    def _write_task_runs(self, batch: list[tuple[TaskRun, list[State]]]) -> None:
        self.stores.runs.write_task_run_records(batch)

    def flush(self) -> None:
        self._recorder.flush()
        self._logs.flush()

    def emit_log(self, record: LogRecord) -> None:
        self._logs.emit(record)

    # -- concurrency --------------------------------------------------------------------
    def invalidate_limits(self) -> None:
        """Forget the cached list of limit names (after creating or deleting one)."""
        with self._limits_lock:
            self._limits_cache = None

    def limits_for_tags(self, tags: Iterable[str]) -> list[str]:
        tags = list(tags)
        if not tags:
            return []
        with self._limits_lock:
            cached = self._limits_cache
            if cached is None or time.monotonic() - cached[0] > 1.0:
                names = {limit.name for limit in self.stores.concurrency.list_limits()}
                cached = self._limits_cache = (time.monotonic(), names)
        return sorted({tag_limit_name(t) for t in tags} & cached[1])

    def acquire_slots(
        self,
        names: list[str],
        *,
        holder: str,
        on_wait: Callable[[], None] | None = None,
    ) -> Lease:
        delay = POLL_START
        waited = polling = False
        key = frozenset(names)
        condition: threading.Condition | None = None
        try:
            while True:
                with self._slot_lock:
                    condition = self._waiters.get(key)
                    if condition is None:
                        condition = self._waiters[key] = threading.Condition(self._slot_lock)
                    seen = self._releases.get(key, 0)
                try:
                    lease = self.stores.concurrency.acquire(
                        names, 1, lease_seconds=self.lease_seconds, holder=holder
                    )
                except NotFound:
                    self.invalidate_limits()
                    raise
                if lease is not None:
                    self._hold(lease)
                    return lease  # type: ignore[no-any-return]
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                with self._slot_lock:
                    # A release in this process since our attempt wakes us at once (none is
                    # lost). Releases by other processes and expired leases are noticed by
                    # polling: one waiter per set of limits polls, backing off, the others
                    # sleep until woken, so waiting costs no requests per waiter.
                    if not polling and key not in self._pollers:
                        self._pollers.add(key)
                        polling = True
                    if self._releases.get(key, 0) == seen:
                        condition.wait(timeout=delay if polling else IDLE_WAIT)
                if polling:
                    delay = min(delay * 2, POLL_MAX)
        finally:
            if polling and condition is not None:
                with self._slot_lock:
                    self._pollers.discard(key)
                    condition.notify(1)  # hand the polling over to another waiter

    def _hold(self, lease: Lease) -> None:
        with self._slot_lock:
            self._leases[lease.id] = lease
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew_loop, name="stratoflow-lease-renewer", daemon=True
                )
                self._renewer.start()

    def _renew_loop(self) -> None:
        while True:
            time.sleep(self.lease_seconds / 3)
            with self._slot_lock:
                held = list(self._leases.values())
            for lease in held:
                try:
                    self.stores.concurrency.renew(lease.id, self.lease_seconds)
                except NotFound:
                    with self._slot_lock:
                        self._leases.pop(lease.id, None)
                except Exception as exc:
                    print(f"stratoflow: renewing lease {lease.id} failed: {exc}", file=sys.stderr)

    def release_slots(self, lease: Lease) -> None:
        try:
            self.stores.concurrency.release(lease.id)
        finally:
            freed = set(lease.limit_names)
            with self._slot_lock:
                self._leases.pop(lease.id, None)
                for names, condition in self._waiters.items():
                    if names & freed:
                        self._releases[names] = self._releases.get(names, 0) + 1
                        condition.notify(lease.slots)

    # -- results and cache --------------------------------------------------------------
    def persist_result(
        self, value: Any, *, serializer: str, storage_key: str | None = None
    ) -> ResultRef:
        return self.stores.results.persist(  # type: ignore[no-any-return]
            value, serializer=serializer, storage_key=storage_key
        )

    def load_result(self, ref: ResultRef) -> Any:
        return self.stores.results.load(ref)

    @property
    def cache(self) -> Any:
        return self.stores.cache

    def close(self) -> None:
        self._recorder.close()
        self._logs.close()
