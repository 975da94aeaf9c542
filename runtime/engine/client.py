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
from typing import TYPE_CHECKING, Any

from runtime.engine.cache_backend import CacheBackend
from runtime.engine.slots import SlotRequest, SlotWaiter
from runtime.errors import StratoflowError
from runtime.models import (
    FlowRun,
    FlowRunCreate,
    Lease,
    LogRecord,
    OrchestrationResult,
    TaskRun,
)
from runtime.payload_auth import PayloadKey, load_payload_key, needs_mac
from runtime.services import flow_runs, task_runs
from runtime.states import ResultRef, State, StateType

if TYPE_CHECKING:
    from runtime.logship import LogSink
    from runtime.stores import Stores
    from runtime.stores.logs import LogStore

TAG_LIMIT_PREFIX = "tag:"
"""Task-tag concurrency limits are the global limits named ``tag:<tag>`` (as in Prefect 3.4.19+)."""


def tag_limit_name(tag: str) -> str:
    """The concurrency limit governing tasks tagged ``tag``."""
    return f"{TAG_LIMIT_PREFIX}{tag}"


LIMITS_TTL = 1.0
"""Seconds the list of existing limit names is reused before it is read again."""


class EngineClient(ABC):
    """Every operation the flow and task engines need from the orchestration backend."""

    # -- flow runs (coordinated) ------------------------------------------------------
    @abstractmethod
    def create_flow_run(self, request: FlowRunCreate) -> FlowRun:
        """Create a flow run."""

    @abstractmethod
    def read_flow_run(self, run_id: str) -> FlowRun:
        """Read a flow run."""

    def start_flow_run(self, request: FlowRunCreate) -> tuple[FlowRun, bool]:
        """Create a flow run, RUNNING at once where the rules allow; True if it started."""
        return self.create_flow_run(request), False

    @abstractmethod
    def set_flow_run_state(
        self,
        run_id: str,
        state: State,
        *,
        force: bool = False,
        expected_version: int | None = None,
    ) -> OrchestrationResult:
        """Propose a flow-run state (one conditional write when accepted).

        ``expected_version``: the ``state_version`` the caller last wrote, so that the
        backend need not read the run before its conditional write.
        """

    def read_flow_run_state(self, run_id: str) -> State:
        """The flow run's current state (read often while it runs: keep it cheap)."""
        return self.read_flow_run(run_id).state

    # -- task runs (recorded in batches) ----------------------------------------------
    @abstractmethod
    def record_task_run(self, run: TaskRun, history: list[State]) -> None:
        """Queue the latest snapshot of a task run (with its full history) for writing."""

    @abstractmethod
    def flush(self) -> None:
        """Make every queued task-run record and log line durable."""

    def flush_task_runs(self) -> None:
        """Make every queued task-run record durable (log lines may still wait)."""
        self.flush()

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
        holder: str | None,
        on_wait: Callable[[], None] | None = None,
        request: SlotRequest | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        cancelled: threading.Event | None = None,
    ) -> Lease:
        """Block until a slot on every named limit is held; ``on_wait`` runs once if it waits.

        ``request`` says how many slots, for how long, and whether missing limits are
        skipped; ``timeout`` and ``max_retries`` bound the wait
        (:class:`~runtime.engine.slots.SlotWaitTimeout`,
        :class:`~runtime.engine.slots.SlotRetriesExhausted`). Raises LimitExceeded when
        the limits can never admit the request (limit 0).
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
        """Load a stored result; a pickle only once its MAC checks out.

        Raises ``runtime.payload_auth.PayloadAuthenticationError`` for a pickle
        without a valid MAC.
        """

    @property
    @abstractmethod
    def cache(self) -> CacheBackend:
        """The result cache (records and compute locks)."""

    def close(self) -> None:
        """Flush and stop background threads."""
        self.flush()


class PayloadKeyHolder:
    """The engine's payload key (``runtime.payload_auth``), loaded once, on first need.

    Only pickles need it, so a flow that persists json results never loads it.
    """

    def __init__(self, key: PayloadKey | None = None, session: Any = None) -> None:
        self._key = key
        self._session = session
        self._lock = threading.Lock()

    def for_serializer(self, serializer: str) -> PayloadKey | None:
        """The key when ``serializer`` needs a MAC, else None."""
        if not needs_mac(serializer):
            return None
        with self._lock:
            if self._key is None:
                self._key = load_payload_key(session=self._session)
            return self._key


def is_permanent(error: BaseException) -> bool:
    """True when writing the same records again can never succeed (a 4xx, not a 409 race).

    Throttling (429), transaction conflicts and auth failures (401, 403) are worth
    retrying; refused or oversized records are not: the recorder isolates them.
    """
    if isinstance(error, StratoflowError):
        status = error.status_code
        return (
            400 <= status < 500
            and status not in (401, 403, 429)  # not about the records: bisecting cannot help
            and error.error_type != "transaction_conflict"
        )
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return bool(response.get("Error", {}).get("Code") == "ValidationException")
    return False


Record = tuple[TaskRun, list[State]]


class _Recorder:
    """Buffers task-run snapshots and writes them in batches from a background thread.

    A batch refused for good (:func:`is_permanent`) is split in halves until the
    records that cannot be written are alone; those are dropped and handed to
    ``on_dropped`` (with the error), the others written. Anything else (network,
    throttling) puts the batch back for the next flush.
    """

    def __init__(
        self,
        write: Callable[[list[Record]], None],
        interval: float = 0.5,
        on_dropped: Callable[[TaskRun, BaseException], None] | None = None,
    ) -> None:
        self._write = write
        self._interval = interval
        self._on_dropped = on_dropped
        self._pending: dict[str, Record] = {}
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.dropped: list[tuple[str, str]] = []
        """(task run id, error) of every record that could not be written."""

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
            parts = [batch] if batch else []
            while parts:
                part = parts.pop(0)
                try:
                    self._write(part)
                except Exception as exc:
                    if not is_permanent(exc):
                        with self._lock:  # put back what was not written, unless a newer one came
                            for run, history in [r for p in [part, *parts] for r in p]:
                                self._pending.setdefault(run.id, (run, history))
                        raise
                    if len(part) == 1:
                        self._drop(part[0][0], exc)
                    else:
                        middle = len(part) // 2
                        parts[:0] = [part[:middle], part[middle:]]

    def _drop(self, run: TaskRun, error: BaseException) -> None:
        self.dropped.append((run.id, str(error)))
        print(
            f"stratoflow: task run {run.id} ({run.name}) could not be recorded: {error}",
            file=sys.stderr,
        )
        if self._on_dropped is not None:
            try:
                self._on_dropped(run, error)
            except Exception as exc:  # reporting must not lose the other records
                print(f"stratoflow: reporting it failed too: {exc}", file=sys.stderr)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self.flush()


class BufferedEngineClient(EngineClient):
    """What both engine clients share: batched task runs and logs, slot waits, limit names.

    Subclasses say how task-run records are written (``_write_task_runs``), which
    limits exist (``_limit_names``) and how a lease is taken, renewed and released
    (the callables given to ``__init__``).
    """

    def __init__(
        self,
        *,
        log_sink: LogStore | LogSink,
        acquire: Callable[[list[str], str | None, SlotRequest], Lease | None],
        renew: Callable[[str, float], Any],
        release: Callable[[Lease], Any],
        lease_seconds: float,
        record_interval: float = 0.5,
        log_interval: float = 1.0,
    ) -> None:
        from runtime.logship import LogShipper

        self.lease_seconds = lease_seconds
        self._recorder = _Recorder(
            self._write_task_runs, interval=record_interval, on_dropped=self._report_dropped
        )
        self._logs = LogShipper(log_sink, interval=log_interval)
        self._limits_cache: tuple[float, set[str]] | None = None
        self._limits_lock = threading.Lock()
        self._slots = SlotWaiter(
            acquire,
            renew,
            release,
            lease_seconds=lease_seconds,
            on_not_found=self.invalidate_limits,
        )

    @abstractmethod
    def _write_task_runs(self, batch: list[tuple[TaskRun, list[State]]]) -> None:
        """Write one batch of task-run snapshots."""

    @abstractmethod
    def _limit_names(self) -> set[str]:
        """The names of every concurrency limit that exists now."""

    def record_task_run(self, run: TaskRun, history: list[State]) -> None:
        self._recorder.add(run, history)

    def _report_dropped(self, run: TaskRun, error: BaseException) -> None:
        """A task-run record the backend refused for good: say so in its flow run's logs."""
        if run.flow_run_id is None:
            return
        self.emit_log(
            LogRecord(
                flow_run_id=run.flow_run_id,
                task_run_id=run.id,
                name="stratoflow.recorder",
                level=40,
                message=(
                    f"task run {run.id} ({run.name}, {run.state.name}) could not be recorded "
                    f"and was dropped: {error}"
                ),
            )
        )

    def flush(self) -> None:
        self._recorder.flush()
        self._logs.flush()

    def flush_task_runs(self) -> None:
        self._recorder.flush()

    def emit_log(self, record: LogRecord) -> None:
        self._logs.emit(record)

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
            if cached is None or time.monotonic() - cached[0] > LIMITS_TTL:
                cached = self._limits_cache = (time.monotonic(), self._limit_names())
        return sorted({tag_limit_name(t) for t in tags} & cached[1])

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
        return self._slots.acquire(
            names,
            holder=holder,
            on_wait=on_wait,
            request=request,
            timeout=timeout,
            max_retries=max_retries,
            cancelled=cancelled,
        )

    def release_slots(self, lease: Lease) -> None:
        self._slots.release(lease)

    def close(self) -> None:
        self._slots.close()
        self._recorder.close()
        self._logs.close()


class DirectEngineClient(BufferedEngineClient):
    """The engine talking to DynamoDB and S3 directly (worker IAM role, or local moto)."""

    def __init__(
        self,
        stores: Stores,
        *,
        lease_seconds: float = 60.0,
        payload_key: PayloadKey | None = None,
    ) -> None:
        self.stores = stores
        self.payload_keys = PayloadKeyHolder(payload_key, stores.session)
        self._known_flows: set[str] = set()
        concurrency = stores.concurrency
        super().__init__(
            log_sink=stores.logs,
            acquire=lambda names, holder, ask: concurrency.acquire(
                names,
                ask.slots,
                lease_seconds=ask.lease_seconds or lease_seconds,
                holder=holder,
                missing_ok=ask.missing_ok,
                mode=ask.mode,
            ),
            renew=lambda lease_id, seconds: concurrency.renew(lease_id, seconds),
            release=lambda lease: concurrency.release(lease.id, known=lease),
            lease_seconds=lease_seconds,
        )

    # -- flow runs ----------------------------------------------------------------------
    def create_flow_run(self, request: FlowRunCreate) -> FlowRun:
        # the engine's references are its own (a subflow's parent task run may still
        # be buffered): not read back; the flow is recorded once per name and process
        run, _ = flow_runs.create_flow_run(
            self.stores, request, check_references=False, known_flows=self._known_flows
        )
        return run

    def start_flow_run(self, request: FlowRunCreate) -> tuple[FlowRun, bool]:
        return flow_runs.start_flow_run(self.stores, request, known_flows=self._known_flows)

    def read_flow_run(self, run_id: str) -> FlowRun:
        return self.stores.runs.read_flow_run(run_id)

    def read_flow_run_state(self, run_id: str) -> State:
        # only the state's type and name: not the run's document nor its history
        runs = self.stores.runs
        item = runs.db.get(
            runs.table.name,
            {"id": run_id},
            projection="#t, #n",
            names={"#t": "state_type", "#n": "state_name"},
        )
        if item is None:
            return self.read_flow_run(run_id).state  # raises NotFound
        return State(type=StateType(item["state_type"]), name=item["state_name"])

    def set_flow_run_state(
        self,
        run_id: str,
        state: State,
        *,
        force: bool = False,
        expected_version: int | None = None,
    ) -> OrchestrationResult:
        return flow_runs.set_run_state(
            self.stores, "flow_run", run_id, state, force=force, expected_version=expected_version
        )

    # -- task runs and limits ----------------------------------------------------------
    def _write_task_runs(self, batch: list[tuple[TaskRun, list[State]]]) -> None:
        task_runs.record_task_runs(self.stores, batch)

    def _limit_names(self) -> set[str]:
        return {limit.name for limit in self.stores.concurrency.list_limits()}

    # -- results and cache --------------------------------------------------------------
    def persist_result(
        self, value: Any, *, serializer: str, storage_key: str | None = None
    ) -> ResultRef:
        return self.stores.results.persist(
            value,
            serializer=serializer,
            storage_key=storage_key,
            payload_key=self.payload_keys.for_serializer(serializer),
        )

    def load_result(self, ref: ResultRef) -> Any:
        return self.stores.results.load(
            ref, payload_key=self.payload_keys.for_serializer(ref.serializer)
        )

    @property
    def cache(self) -> CacheBackend:
        return self.stores.cache
