"""Run contexts: what the code running inside a flow or task can ask about itself."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runtime.models import FlowRun, TaskRun

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from runtime.engine.client import EngineClient
    from runtime.engine.flows import Flow
    from runtime.engine.task_runners import TaskRunner
    from runtime.engine.tasks import Task


class MissingContextError(RuntimeError):
    """Run context was asked for outside a flow or task run (``get_run_logger()``,
    ``get_run_context()``)."""


@dataclass
class FlowRunContext:
    """The flow run being executed in this thread (Prefect's ``FlowRunContext``)."""

    flow: Flow[..., Any]
    flow_run: FlowRun
    parameters: dict[str, Any]
    client: EngineClient
    executor: ThreadPoolExecutor
    log_prints: bool = False
    observed_flow_pauses: dict[str, int] = field(default_factory=dict)
    """Pauses this attempt has taken so far (the default pause key counts them, as Prefect's)."""
    _dynamic_keys: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _active: set[Any] = field(default_factory=set)
    _closed: str | None = None
    _crashed: bool = False

    @classmethod
    def get(cls) -> FlowRunContext | None:
        """The current flow run context; None outside a flow run (Prefect's ``.get()``)."""
        return _flow_ctx.get()

    @property
    def task_runner(self) -> TaskRunner:
        """The task runner the flow's submitted tasks run on."""
        return self.flow.task_runner

    @property
    def start_time(self) -> Any:
        """When the flow run started (None before it ran)."""
        return self.flow_run.start_time

    def track(self, engine: Any) -> None:
        """Note a task run in flight in this flow run (ended at once if the flow run ended)."""
        with self._lock:
            closed = self._closed
            if closed is None:
                self._active.add(engine)
        if closed is not None:
            engine.abandon(closed, crashed=self._crashed)

    def untrack(self, engine: Any) -> None:
        """Note a task run that finished."""
        with self._lock:
            self._active.discard(engine)

    def abandon_active(self, reason: str, *, crashed: bool = False) -> None:
        """End every task run still in flight (the flow run ended without them).

        They end Cancelled, or Crashed with ``crashed``; their slots are released.
        """
        with self._lock:
            self._closed = reason
            self._crashed = crashed
            active = list(self._active)
            self._active.clear()
        for engine in active:
            engine.abandon(reason, crashed=crashed)

    def next_dynamic_key(self, task_key: str) -> str:
        """0, 1, 2... per task in this flow run: how task runs of one task are told apart."""
        with self._lock:
            n = self._dynamic_keys.get(task_key, 0)
            self._dynamic_keys[task_key] = n + 1
        return str(n)


@dataclass
class TaskRunContext:
    """The task run being executed in this thread (Prefect's ``TaskRunContext``)."""

    task: Task[..., Any]
    task_run: TaskRun
    parameters: dict[str, Any]
    flow_run_context: FlowRunContext | None
    log_prints: bool = False

    @classmethod
    def get(cls) -> TaskRunContext | None:
        """The current task run context; None outside a task run (Prefect's ``.get()``)."""
        return _task_ctx.get()

    @property
    def client(self) -> EngineClient | None:
        """The engine client recording this task run (the flow run's; None standalone)."""
        return self.flow_run_context.client if self.flow_run_context else None

    @property
    def start_time(self) -> Any:
        """When the task run started."""
        return self.task_run.start_time


_flow_ctx: ContextVar[FlowRunContext | None] = ContextVar("stratoflow_flow_run", default=None)
_task_ctx: ContextVar[TaskRunContext | None] = ContextVar("stratoflow_task_run", default=None)


def current_flow_run() -> FlowRunContext | None:
    """The flow run context of the calling code, if any."""
    return _flow_ctx.get()


def current_task_run() -> TaskRunContext | None:
    """The task run context of the calling code, if any."""
    return _task_ctx.get()


@contextmanager
def flow_run_scope(ctx: FlowRunContext) -> Iterator[FlowRunContext]:
    """Make ``ctx`` the current flow run (and no task run) while the block runs."""
    flow_token = _flow_ctx.set(ctx)
    task_token = _task_ctx.set(None)
    try:
        yield ctx
    finally:
        _task_ctx.reset(task_token)
        _flow_ctx.reset(flow_token)


@contextmanager
def task_run_scope(ctx: TaskRunContext) -> Iterator[TaskRunContext]:
    """Make ``ctx`` the current task run while the block runs."""
    flow_token = _flow_ctx.set(ctx.flow_run_context)
    task_token = _task_ctx.set(ctx)
    try:
        yield ctx
    finally:
        _task_ctx.reset(task_token)
        _flow_ctx.reset(flow_token)


def get_run_context() -> TaskRunContext | FlowRunContext:
    """The task run context if there is one, else the flow run context.

    A subflow called from inside a task wins over that task (its flow run is
    not the task's). Raises ``MissingContextError`` outside any run (Prefect's
    ``prefect.context.get_run_context``).
    """
    task_ctx = _task_ctx.get()
    flow_ctx = _flow_ctx.get()
    if task_ctx is not None and flow_ctx is not None:
        if flow_ctx.flow_run.id != task_ctx.task_run.flow_run_id:
            return flow_ctx
        return task_ctx
    if task_ctx is not None:
        return task_ctx
    if flow_ctx is not None:
        return flow_ctx
    raise MissingContextError(
        "No run context available. You are not in a flow or task run context."
    )


_tags: ContextVar[frozenset[str]] = ContextVar("stratoflow_tags", default=frozenset())


def current_tags() -> set[str]:
    """The tags of the enclosing ``tags(...)`` blocks (empty outside any)."""
    return set(_tags.get())


def with_current_tags(tags: Iterable[str] | None) -> list[str]:
    """``tags`` joined with the enclosing ``tags(...)`` blocks', sorted: a new run's tags."""
    return sorted(set(tags or ()) | _tags.get())


@contextmanager
def tags(*new_tags: str) -> Iterator[set[str]]:
    """Add tags to every flow run and task run created in the block (Prefect's ``tags``).

    Nested blocks add to the enclosing ones; a run's own (decorator) tags are
    added too. Yields the set of tags now in effect.
    """
    for tag in new_tags:
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"tags(...) takes non-empty strings, got {tag!r}")
    combined = _tags.get() | frozenset(new_tags)
    token = _tags.set(combined)
    try:
        yield set(combined)
    finally:
        _tags.reset(token)
