"""``PrefectDistributedFuture``: the final state of a task run executed by a task worker.

Returned by ``task.delay()`` and ``task.apply_async()``. It holds only the task
run's id (it pickles as such), and waits by reading the run's state with
:class:`runtime.backoff.Backoff` between reads until it is final; ``result()``
then loads the persisted result. Works from any process of the installation: the
stores directly, or the HTTP API when the engine writes through it.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from typing import Any, TypeVar

from runtime.backoff import Backoff
from runtime.engine.futures import PrefectFuture
from runtime.models import TaskRun
from runtime.states import State

__all__ = ["POLL", "PrefectDistributedFuture", "read_task_run"]

T = TypeVar("T")

POLL = Backoff(base=0.05, cap=1.0)
"""Delays between reads of a waited-for task run's state."""


def read_task_run(task_run_id: str) -> TaskRun:
    """The task run as stored, through the process's engine client (stores or API)."""
    from runtime.engine.backend import get_engine_client

    client: Any = get_engine_client()
    stores = getattr(client, "stores", None)
    if stores is not None:
        run: TaskRun = stores.runs.read_task_run(task_run_id)
        return run
    api = getattr(client, "api", None)
    if api is None:
        raise RuntimeError("this engine client cannot read task runs")
    remote: TaskRun = api.read_task_run(task_run_id)
    return remote


class _RemoteState(cf.Future[State]):
    """A ``concurrent.futures.Future`` whose result is read from the store on demand."""

    def __init__(self, task_run_id: str) -> None:
        super().__init__()
        self.task_run_id = task_run_id
        self._poll_lock = threading.Lock()

    def poll(self) -> State | None:
        """Read the run once; complete this future when it is final."""
        if super().done():
            return super().result()
        state = read_task_run(self.task_run_id).state
        if state.is_final():
            with self._poll_lock:
                if not super().done():
                    self.set_result(state)
            return state
        return None

    def done(self) -> bool:
        return self.poll() is not None

    def result(self, timeout: float | None = None) -> State:
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        while True:
            state = self.poll()
            if state is not None:
                return state
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise cf.TimeoutError()
            POLL.sleep(attempt, limit=remaining)
            attempt += 1


class PrefectDistributedFuture(PrefectFuture[T]):
    """A task run a task worker executes (Prefect's ``PrefectDistributedFuture``)."""

    def __init__(self, task_run_id: str, name: str = "") -> None:
        super().__init__(task_run_id, _RemoteState(task_run_id), name=name)

    @property
    def state(self) -> State:
        """The run's current state (read from the store)."""
        remote = self._future
        assert isinstance(remote, _RemoteState)
        final = remote.poll()
        return final if final is not None else read_task_run(self.task_run_id).state

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run is final or ``timeout`` seconds pass."""
        try:
            self._future.result(timeout=timeout)
        except cf.TimeoutError:
            return

    def add_done_callback(self, fn: Any) -> None:
        """Call ``fn(self)`` once the run is final (waits on a daemon thread)."""

        def watch() -> None:
            self._future.result()
            fn(self)

        threading.Thread(target=watch, daemon=True, name="stratoflow-future-watch").start()

    def __reduce__(self) -> tuple[Any, ...]:
        return (PrefectDistributedFuture, (self.task_run_id, self.name))

    def __repr__(self) -> str:
        return f"PrefectDistributedFuture({self.name or self.task_run_id})"
