"""Futures for submitted task runs, and ``wait`` / ``as_completed`` (``prefect.futures``)."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Iterable, Iterator
from typing import Any, Generic, NamedTuple, TypeVar

from runtime.states import Pending, State

T = TypeVar("T")


class PrefectFuture(Generic[T]):
    """The eventual final state of a task run submitted with ``.submit()`` or ``.map()``."""

    def __init__(self, task_run_id: str, future: cf.Future[State], name: str = "") -> None:
        self.task_run_id = task_run_id
        self.name = name
        self._future = future
        self._live_state: State = Pending()

    def _set_live_state(self, state: State) -> None:
        self._live_state = state

    @property
    def state(self) -> State:
        """The final state once done, else the latest state the task run has reached."""
        if self._future.done():
            return self._future.result()
        return self._live_state

    def done(self) -> bool:
        """True once the task run reached a final state."""
        return self._future.done()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the task run is final or ``timeout`` seconds pass."""
        cf.wait([self._future], timeout=timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> T:
        """The task's return value; raises the task's exception if it failed.

        Raises ``TimeoutError`` if the run is not final within ``timeout`` seconds.
        """
        try:
            state = self._future.result(timeout=timeout)
        except cf.TimeoutError:
            raise TimeoutError(
                f"task run {self.name or self.task_run_id} is not finished after {timeout}s"
            ) from None
        from runtime.engine.results import state_result

        value: T = state_result(state, raise_on_failure=raise_on_failure)
        return value

    def add_done_callback(self, fn: Any) -> None:
        """Call ``fn(self)`` when the task run is final."""
        self._future.add_done_callback(lambda _: fn(self))

    def __repr__(self) -> str:
        return f"PrefectFuture({self.name or self.task_run_id}, {self.state!r})"


class PrefectFutureList(list[PrefectFuture[T]]):
    """The futures returned by ``.map()``; ``.result()`` gathers every value in order."""

    def wait(self, timeout: float | None = None) -> None:
        """Block until every future is final (or the timeout passes)."""
        wait(self, timeout=timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> list[T]:
        """Every task's return value, in order."""
        return [f.result(timeout=timeout, raise_on_failure=raise_on_failure) for f in self]


class DoneAndNotDoneFutures(NamedTuple):
    """What :func:`wait` returns: the futures that finished and those that did not."""

    done: set[PrefectFuture[Any]]
    not_done: set[PrefectFuture[Any]]


def wait(
    futures: Iterable[PrefectFuture[Any]], timeout: float | None = None
) -> DoneAndNotDoneFutures:
    """Wait for every future (or until ``timeout``); returns ``(done, not_done)``."""
    futures = list(futures)
    by_inner = {f._future: f for f in futures}
    done, not_done = cf.wait(list(by_inner), timeout=timeout)
    return DoneAndNotDoneFutures({by_inner[d] for d in done}, {by_inner[n] for n in not_done})


def as_completed(
    futures: Iterable[PrefectFuture[T]], timeout: float | None = None
) -> Iterator[PrefectFuture[T]]:
    """Yield futures as their task runs finish, first finished first."""
    futures = list(futures)
    by_inner = {f._future: f for f in futures}
    try:
        for inner in cf.as_completed(list(by_inner), timeout=timeout):
            yield by_inner[inner]
    except cf.TimeoutError:
        raise TimeoutError(f"not every future finished within {timeout}s") from None
