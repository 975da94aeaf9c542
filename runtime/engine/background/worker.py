"""The task worker: long-polls the task-run queue and runs the background task runs it serves.

For each message: the run is claimed with ONE conditional transition SCHEDULED ->
PENDING naming this worker (of two workers, or two deliveries, one wins; the
loser deletes its message), its parameters are loaded (a pickle only once its MAC
checks out; a payload that fails ends the run Failed), then the task engine runs it
from that PENDING state with its result persisted (background tasks always
persist, as in Prefect) and the message is deleted only after the run is final.
While a run executes, its message's visibility is extended (a heartbeat); a
message for a task this worker does not serve is handed back at once.

``stop()`` (SIGTERM/SIGINT under :func:`serve`): no more polling, messages received
but not started are handed back (visible again), runs in progress finish, then
``start()`` returns.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from runtime.engine.background.futures import PrefectDistributedFuture
from runtime.engine.background.queue import ReceivedTaskRun, TaskRunQueue, task_run_queue
from runtime.engine.background.submit import PARAMETERS_KEY
from runtime.errors import NotFound
from runtime.models import TaskRun, new_id
from runtime.states import Failed, Pending, ResultRef, StateType

if TYPE_CHECKING:
    from runtime.engine.client import DirectEngineClient
    from runtime.engine.tasks import Task
    from runtime.stores import Stores

__all__ = ["StopTaskWorker", "TaskWorker", "claim_task_run"]

logger = logging.getLogger("stratoflow.task_worker")

VISIBILITY_SECONDS = 60
"""How long a received message stays hidden; extended every third of it while its run runs."""

UNSERVED_DELAY_SECONDS = 1
"""A message for a task this worker does not serve is visible again after this long."""


class StopTaskWorker(Exception):
    """Raised to stop a task worker (Prefect's name)."""


def claim_task_run(stores: Stores, task_run_id: str, worker_id: str) -> TaskRun | None:
    """Claim a SCHEDULED background task run for ``worker_id``: the run, or None if lost.

    One conditional transition SCHEDULED -> PENDING (conditioned on the version read):
    of two workers, one wins; the other's write fails, it reads the run again, and
    the rules refuse a second PENDING. None too for a run that is gone or not SCHEDULED.
    """
    try:
        run = stores.runs.read_task_run(task_run_id)
    except NotFound:
        return None
    if run.state.type is not StateType.SCHEDULED:
        return None
    state = Pending()
    # the parameters' reference stays on the state the engine starts from
    state.details.extra = {**run.state.details.extra, "task_worker_id": worker_id}
    result = stores.runs.set_state(
        "task_run", task_run_id, state, expected_version=run.state_version
    )
    if not result.accepted:
        return None
    return run.model_copy(update={"state": result.state, "state_version": result.state_version})


class TaskWorker:
    """Runs background task runs of ``tasks`` (Prefect's ``TaskWorker``), ``limit`` at a time."""

    def __init__(
        self,
        *tasks: Task[..., Any],
        limit: int | None = 10,
        client: DirectEngineClient | None = None,
        poll_seconds: int = 20,
        name: str | None = None,
    ) -> None:
        from runtime.engine.backend import get_engine_client

        engine: Any = client or get_engine_client()
        if getattr(engine, "stores", None) is None:
            raise RuntimeError(
                "a task worker needs the installation's stores and task queue "
                "(AWS_ENDPOINT_URL or STRATOFLOW_PREFIX, or the embedded default), not "
                "STRATOFLOW_API_URL"
            )
        self.client: DirectEngineClient = engine
        self.stores: Stores = engine.stores
        self.queue: TaskRunQueue = task_run_queue(self.stores)
        self.tasks = {t.task_key: t.with_options(persist_result=True) for t in tasks}
        self.limit = limit or 10
        self.poll_seconds = poll_seconds
        self.worker_id = name or f"{socket.gethostname()}-{os.getpid()}-{new_id()[:8]}"
        self._stop = threading.Event()
        self._slots = threading.Semaphore(self.limit)
        self._executor = ThreadPoolExecutor(self.limit, thread_name_prefix="stratoflow-task")
        self.finished_task_runs = 0

    @property
    def task_keys(self) -> set[str]:
        """The keys of the tasks this worker serves."""
        return set(self.tasks)

    def stop(self) -> None:
        """Stop polling; runs in progress finish before :meth:`start` returns."""
        self._stop.set()

    def start(self) -> None:
        """Poll and run until :meth:`stop` (runs in progress finish first)."""
        logger.info("Task worker %s serving %s", self.worker_id, ", ".join(sorted(self.task_keys)))
        try:
            while not self._stop.is_set():
                if not self._slots.acquire(timeout=0.5):
                    continue
                try:
                    received = self.queue.receive(
                        max_messages=1,
                        wait_seconds=self.poll_seconds,
                        visibility_timeout=VISIBILITY_SECONDS,
                    )
                except Exception:
                    self._slots.release()
                    raise
                if not received:
                    self._slots.release()
                    continue
                (message,) = received
                if self._stop.is_set():  # received as we stopped: hand it back
                    self.queue.release(message.receipt_handle)
                    self._slots.release()
                    break
                self._take(message)
        finally:
            self._executor.shutdown(wait=True)
            logger.info("Task worker %s stopped", self.worker_id)

    def _take(self, message: ReceivedTaskRun) -> None:
        """Claim the message's run and start it on the executor (the slot is released after)."""
        body = message.body
        if body is None:  # not ours to read: nothing can ever run it
            self.queue.delete(message.receipt_handle)
            self._slots.release()
            return
        task = self.tasks.get(body.task_key)
        if task is None:
            self.queue.release(message.receipt_handle, UNSERVED_DELAY_SECONDS)
            self._slots.release()
            return
        run = claim_task_run(self.stores, body.task_run_id, self.worker_id)
        if run is None:  # another worker has it, or it is final or gone
            self.queue.delete(message.receipt_handle)
            self._slots.release()
            return
        self._executor.submit(self._execute, task, run, message)

    def _execute(self, task: Task[..., Any], run: TaskRun, message: ReceivedTaskRun) -> None:
        try:
            with self._heartbeat(message):
                self.run_claimed(task, run)
            self.queue.delete(message.receipt_handle)
            self.finished_task_runs += 1
        except Exception as exc:  # the message comes back after its visibility timeout
            logger.error("running task run %s failed: %r", run.id, exc)
        finally:
            self._slots.release()

    @contextmanager
    def _heartbeat(self, message: ReceivedTaskRun) -> Iterator[None]:
        done = threading.Event()

        def beat() -> None:
            while not done.wait(VISIBILITY_SECONDS / 3):
                self.queue.extend(message.receipt_handle, VISIBILITY_SECONDS)

        thread = threading.Thread(target=beat, daemon=True, name="stratoflow-task-heartbeat")
        thread.start()
        try:
            yield
        finally:
            done.set()

    def run_claimed(self, task: Task[..., Any], run: TaskRun) -> None:
        """Run a claimed (PENDING) task run with the task engine, to its final state."""
        extra = run.state.details.extra
        try:
            payload = self.client.load_result(ResultRef.model_validate(extra[PARAMETERS_KEY]))
            parameters = dict(payload["parameters"])
            wait_for: list[Any] = [PrefectDistributedFuture(i) for i in payload.get("wait_for", [])]
        except Exception as exc:  # a missing or forged payload never runs
            logger.error("task run %s: its parameters cannot be loaded: %r", run.id, exc)
            self.stores.runs.set_state(
                "task_run",
                run.id,
                Failed(message=f"The task run's parameters could not be loaded: {exc}"),
            )
            return
        engine = task._engine(parameters, wait_for, None, run.id)
        engine.run = run
        engine.history = self.stores.runs.read_state_history(run.id, "task_run")
        task._drive(engine)


def serve(
    *tasks: Task[..., Any],
    limit: int | None = 10,
    poll_seconds: int = 20,
    timeout: float | None = None,
) -> TaskWorker:
    """Run a :class:`TaskWorker` for ``tasks`` until SIGTERM/SIGINT (or ``timeout`` seconds)."""
    worker = TaskWorker(*tasks, limit=limit, poll_seconds=poll_seconds)
    previous: dict[signal.Signals, Any] = {}
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: worker.stop())
    timer = threading.Timer(timeout, worker.stop) if timeout is not None else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        worker.start()
    finally:
        if timer is not None:
            timer.cancel()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return worker
