"""The flow-process side of :class:`~runtime.engine.task_runners.ProcessPoolTaskRunner`.

``task.submit()`` in a flow whose runner is a process pool hands the task run to
:class:`ProcessTaskExecutor`. One of its threads (as many as there are worker
processes) waits for the run's upstream futures, sends the task, its parameters
(upstream futures replaced by their final states) and the flow run as it is now
to a ``spawn``ed worker (``runtime.engine.process_worker``), and waits for the
final state, which becomes the future's. Every snapshot the worker takes is
recorded from here through the flow's engine client, as a thread's would be.

What differs from threads (docs/prefect-api-map.md):

* the task, its arguments and its result are pickled with cloudpickle (a task
  whose arguments cannot be pickled ends Failed, not retried);
* a worker process costs a start-up (Python, the engine's imports, clients) on
  its first task run; it then serves the flow run's other task runs;
* a worker that dies (SIGKILL, out of memory) breaks the pool: every task run
  in it ends Crashed, and later submits get a new pool;
* when the flow run ends without its task runs (timeout, crash), they end as
  with threads (Cancelled or Crashed) and their slots are released at once; the
  worker processes are then terminated rather than left running;
* a task run submitted from inside a process-pool task runs on threads of that
  worker (its dynamic key is derived from its parent task run's id).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cloudpickle

from runtime.engine.context import FlowRunContext, current_flow_run, with_current_tags
from runtime.engine.futures import PrefectFuture
from runtime.engine.inputs import upstream_futures
from runtime.engine.process_worker import (
    BackendConfig,
    Job,
    Message,
    backend_config,
    done_future,
    init_worker,
    run_job,
)
from runtime.models import Lease, RetryPolicy, TaskRun
from runtime.orchestration.transition import apply_transition
from runtime.states import Cancelled, Crashed, Failed, Pending, State, utcnow

if TYPE_CHECKING:
    from runtime.engine.client import EngineClient
    from runtime.engine.tasks import Task

logger = logging.getLogger("stratoflow.task_runs")

ABANDON_GRACE_SECONDS = 10.0
"""How long a task run whose worker was terminated by a flow run ending waits to be
ended by that flow run (Cancelled or Crashed) before it is ended Crashed itself."""


class _JobPickler(cloudpickle.Pickler):  # type: ignore[misc]
    """cloudpickle, with every :class:`PrefectFuture` sent as the final state it reached."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, PrefectFuture):
            obj.wait()
            return done_future, (obj.task_run_id, obj.name, obj.state)
        return super().reducer_override(obj)


def dumps_job(job: Job) -> bytes:
    """``job`` pickled for a worker (upstream futures become final ones)."""
    import io

    buffer = io.BytesIO()
    _JobPickler(buffer).dump(job)
    return buffer.getvalue()


def run_submitted(
    executor: Any,
    task: Task[..., Any],
    parameters: dict[str, Any],
    wait_for: Any,
    future: PrefectFuture[Any],
    task_run_id: str,
) -> State:
    """Run a submitted task run on ``executor``'s workers, or in this thread for threads."""
    if isinstance(executor, ProcessTaskExecutor):
        return executor.run_task(task, parameters, wait_for, future, task_run_id)
    return task._run(parameters, wait_for, future, task_run_id)


@dataclass(eq=False)
class _Tracked:
    """A task run sent to a worker, as the flow's process knows it (its latest snapshot).

    Registered with the flow run context (``track``) like a thread's task engine, so
    that a flow run ending without it ends it (:meth:`abandon`).
    """

    run_id: str
    client: EngineClient
    future: PrefectFuture[Any] | None = None
    initial: Any = None
    """A callable building the run's first snapshot (when the worker sent none)."""
    run: TaskRun | None = None
    history: list[State] = field(default_factory=list)
    lease: Lease | None = None
    abandoned: bool = False
    closed: bool = False
    """Ended from here: later snapshots from the worker are not recorded."""
    ended: threading.Event = field(default_factory=threading.Event)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def record(self, run: TaskRun, history: list[State]) -> None:
        """Record a snapshot from the worker, unless a newer one (or the end) came first."""
        with self.lock:
            if self.closed:  # ended here (its worker died, the flow run ended): final
                return
            if self.run is not None and run.state_version <= self.run.state_version:
                return  # older, or this snapshot again (the worker's last one comes twice)
            self.run, self.history = run, history
            self.client.record_task_run(run, history)
            if self.future is not None:  # downstream errors and reprs name the run
                self.future.name = run.name
                self.future._set_live_state(run.state)

    def end(self, state: State) -> State:
        """Force ``state`` (Crashed, Cancelled, Failed) onto the run from its latest snapshot."""
        with self.lock:
            base = self.run
            if base is None:
                base = self.initial() if self.initial is not None else None
                if base is None:
                    return state
                self.history = [base.state]
            self.closed = True
            if base.state.is_final():
                return base.state
            _, new = apply_transition(base, state, force=True)
            if new is None:  # pragma: no cover - a forced transition is always applied
                return base.state
            self.run, self.history = new, [*self.history, new.state]
            self.client.record_task_run(new, self.history)
            if self.future is not None:
                self.future._set_live_state(new.state)
            if state.has_data and not new.state.has_data:
                new.state.with_data(state.data)
            return new.state

    def abandon(self, reason: str, *, crashed: bool = False) -> None:
        """The flow run ended while this task run was in flight: end it for good."""
        with self.lock:
            if self.abandoned:
                return
            self.end(Crashed(message=reason) if crashed else Cancelled(message=reason))
            self.abandoned = True
            lease, self.lease = self.lease, None
        self.ended.set()
        if lease is not None:
            try:
                self.client.release_slots(lease)
            except Exception as exc:
                logger.error(
                    "releasing concurrency slots on %s failed (lease %s expires on its own): %r",
                    ", ".join(lease.limit_names),
                    lease.id,
                    exc,
                )

    def final_state(self) -> State:
        """The state the run was ended in (after :meth:`abandon`)."""
        with self.lock:
            return self.run.state if self.run is not None else Cancelled()


def _initial_run(
    task: Task[..., Any],
    parameters: dict[str, Any],
    wait_for: Any,
    flow_ctx: FlowRunContext,
    task_run_id: str,
    dynamic_key: str,
) -> TaskRun:
    """The run's first snapshot as its task engine would have taken it (Pending)."""
    try:
        name = task.render_run_name(parameters, dynamic_key)
    except Exception:
        name = f"{task.name}-{dynamic_key}"
    upstream = {
        name: [f.task_run_id for f in upstream_futures([value])]
        for name, value in parameters.items()
    }
    if wait_for:
        upstream["wait_for"] = [f.task_run_id for f in upstream_futures(list(wait_for))]
    now = utcnow()
    return TaskRun(
        id=task_run_id,
        name=name,
        task_key=task.task_key,
        flow_run_id=flow_ctx.flow_run.id,
        dynamic_key=dynamic_key,
        tags=with_current_tags(set(task.tags) | set(flow_ctx.flow_run.tags)),
        empirical_policy=RetryPolicy.model_construct(
            retries=task.retries,
            retry_delay_seconds=task.retry_delay_seconds,
            retry_jitter_factor=task.retry_jitter_factor,
        ),
        state=Pending(),
        created=now,
        updated=now,
        task_inputs={k: v for k, v in upstream.items() if v},
    )


class ProcessTaskExecutor(ThreadPoolExecutor):
    """A flow run's executor for a process pool: threads here, task runs in workers.

    Its threads (one per worker process) each send one task run at a time, so a
    task run is sent only when a worker is free for it and sees the flow run's
    state (a cancellation) as of then. The pool is started on the first submit.
    """

    def __init__(self, processes: int) -> None:
        super().__init__(max_workers=processes, thread_name_prefix="stratoflow-process-task")
        self.processes = processes
        self._mp = multiprocessing.get_context("spawn")
        self._pool: ProcessPoolExecutor | None = None
        self._queue: Any = None
        self._pool_lock = threading.Lock()
        self._config: BackendConfig | None = None
        self._client: EngineClient | None = None
        self._flow_bytes: bytes | None = None
        self._tracked: dict[str, _Tracked] = {}
        self._tracked_lock = threading.Lock()
        self._listeners: dict[ProcessPoolExecutor, threading.Thread] = {}
        self._terminating = False

    # ------------------------------------------------------------------ the pool

    def _start_pool(self, client: EngineClient) -> ProcessPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                if self._config is None:
                    self._config = backend_config(client)
                    self._client = client
                queue = self._mp.SimpleQueue()
                self._pool = ProcessPoolExecutor(
                    max_workers=self.processes,
                    mp_context=self._mp,
                    initializer=init_worker,
                    initargs=(queue, self._config),
                )
                self._queue = queue
                listener = threading.Thread(
                    target=self._listen,
                    args=(queue,),
                    name="stratoflow-process-listener",
                    daemon=True,
                )
                listener.start()
                self._listeners[self._pool] = listener
            return self._pool

    def _discard_pool(self, pool: ProcessPoolExecutor) -> None:
        """A worker died and broke ``pool``: later task runs get a new one."""
        with self._pool_lock:
            current = self._pool is pool
            if current:
                self._pool, queue = None, self._queue
                self._queue = None
        if current:
            pool.shutdown(wait=False, cancel_futures=True)
            # its workers are gone: its listener reads what they sent, then sees the end
            queue._writer.close()
        listener = self._listeners.get(pool)
        if listener is not None:  # every snapshot the workers sent is recorded first
            listener.join(ABANDON_GRACE_SECONDS)

    def _listen(self, queue: Any) -> None:
        while True:
            try:
                message: Message | None = queue.get()
            except (EOFError, OSError):
                return
            if message is None:
                return
            try:
                self._on_message(message)
            except Exception as exc:
                logger.error("a message from a task worker process could not be used: %r", exc)

    def _tracked_for(self, run_id: str) -> _Tracked:
        with self._tracked_lock:
            tracked = self._tracked.get(run_id)
            if tracked is None:  # a task run submitted by a task inside a worker
                assert self._client is not None
                tracked = self._tracked[run_id] = _Tracked(run_id, self._client)
            return tracked

    def _on_message(self, message: Message) -> None:
        kind, run_id, payload = message
        tracked = self._tracked_for(run_id)
        if kind == "run":
            run_json, history_json = payload
            tracked.record(
                TaskRun.model_validate_json(run_json),
                [State.model_validate_json(s) for s in history_json],
            )
        elif kind == "lease":
            with tracked.lock:
                tracked.lease = Lease.model_validate_json(payload)
        elif kind == "released":
            with tracked.lock:
                if tracked.lease is not None and tracked.lease.id == payload:
                    tracked.lease = None

    # ------------------------------------------------------------------ one task run

    def run_task(
        self,
        task: Task[..., Any],
        parameters: dict[str, Any],
        wait_for: Any,
        future: PrefectFuture[Any],
        task_run_id: str,
    ) -> State:
        """Send one task run to a worker and return its final state (in an executor thread)."""
        flow_ctx = current_flow_run()
        if flow_ctx is None:  # pragma: no cover - this executor only exists inside a flow run
            return task._run(parameters, wait_for, future, task_run_id)
        for upstream in upstream_futures([*parameters.values(), *(wait_for or [])]):
            upstream.wait()
        dynamic_key = flow_ctx.next_dynamic_key(task.task_key)
        tracked = _Tracked(
            task_run_id,
            flow_ctx.client,
            future,
            initial=lambda: _initial_run(
                task, parameters, wait_for, flow_ctx, task_run_id, dynamic_key
            ),
        )
        with self._tracked_lock:
            self._tracked[task_run_id] = tracked
        flow_ctx.track(tracked)  # ended at once if the flow run already ended
        try:
            if tracked.abandoned:
                return tracked.final_state()
            return self._send(task, parameters, wait_for, flow_ctx, tracked, dynamic_key)
        finally:
            flow_ctx.untrack(tracked)
            with self._tracked_lock:
                self._tracked.pop(task_run_id, None)

    def _flow(self, flow_ctx: FlowRunContext) -> bytes:
        """The flow pickled once, for the workers' run context (None if it cannot be)."""
        if self._flow_bytes is None:
            try:
                self._flow_bytes = cloudpickle.dumps(flow_ctx.flow)
            except Exception:
                self._flow_bytes = cloudpickle.dumps(None)
        return self._flow_bytes

    def _send(
        self,
        task: Task[..., Any],
        parameters: dict[str, Any],
        wait_for: Any,
        flow_ctx: FlowRunContext,
        tracked: _Tracked,
        dynamic_key: str,
    ) -> State:
        try:
            payload = dumps_job(
                Job(
                    task=task,
                    parameters=parameters,
                    wait_for=list(wait_for) if wait_for else None,
                    task_run_id=tracked.run_id,
                    dynamic_key=dynamic_key,
                    flow_run=flow_ctx.flow_run,
                    flow_parameters=flow_ctx.parameters,
                    flow=self._flow(flow_ctx),
                    log_prints=flow_ctx.log_prints,
                    tags=with_current_tags(()),
                )
            )
        except Exception as exc:
            error = TypeError(
                f"task {task.name!r} cannot be sent to a worker process of the "
                f"ProcessPoolTaskRunner: it or its parameters cannot be pickled "
                f"({type(exc).__name__}: {exc})"
            )
            error.__cause__ = exc
            state = Failed(message=str(error))
            state.details.retriable = False
            return tracked.end(state.with_data(error))
        pool = self._start_pool(flow_ctx.client)
        try:
            raw = pool.submit(run_job, payload).result()
        except (BrokenProcessPool, cf.CancelledError) as exc:
            self._discard_pool(pool)
            return self._worker_lost(tracked, exc)
        state, snapshot, problem = cloudpickle.loads(raw)
        if snapshot is not None:
            run_json, history_json = snapshot
            tracked.record(
                TaskRun.model_validate_json(run_json),
                [State.model_validate_json(s) for s in history_json],
            )
        if tracked.abandoned:
            return tracked.final_state()
        if problem is not None:
            raise TypeError(problem)
        final: State = state
        return final

    def _worker_lost(self, tracked: _Tracked, error: BaseException) -> State:
        """The worker running (or about to run) this task run died: it ends Crashed."""
        if self._terminating:  # the flow run is ending: it ends the run (Cancelled/Crashed)
            tracked.ended.wait(ABANDON_GRACE_SECONDS)
            if tracked.abandoned:
                return tracked.final_state()
        message = (
            "Task run crashed: the worker process of the ProcessPoolTaskRunner running it "
            f"died ({type(error).__name__}: {error or 'the process pool was broken'})"
        )
        state = Crashed(message=message)
        state.with_data(error)
        return tracked.end(state)

    # ------------------------------------------------------------------ shutdown

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """End with the flow run: ``wait`` for its task runs, or terminate the workers."""
        if not wait:
            self._terminating = True
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
        with self._pool_lock:
            pool, queue = self._pool, self._queue
            self._pool = self._queue = None
        if pool is not None:
            if not wait:
                for process in list(getattr(pool, "_processes", {}).values()):
                    process.terminate()
            # idle workers exit on their own (about a second: their clients close); the
            # flow run need not wait for that, and the interpreter joins them at exit
            pool.shutdown(wait=False, cancel_futures=cancel_futures)
        if queue is not None:
            if wait:
                # every task run has returned, and a worker sends a task run's snapshots
                # before its result: the listener reads them all before this end mark
                queue.put(None)
                for listener in self._listeners.values():
                    listener.join(ABANDON_GRACE_SECONDS)
            else:
                queue._writer.close()
