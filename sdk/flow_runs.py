"""Pausing, suspending and resuming flow runs (Prefect's ``prefect.flow_runs``).

``pause_flow_run()`` blocks the flow in its process in a Paused state until
``resume_flow_run(id)`` (from any process, the CLI or the API) moves it back to
Running, or its ``timeout`` passes (``FlowPauseTimeout``: the flow fails).
``suspend_flow_run()`` puts a deployment's run in a Suspended state and stops the
flow (``Pause``): the worker is free; on ``resume_flow_run`` the run goes back to
its work pool's queue and a worker runs it again from the start, where the same
suspend (same key) returns the input at once. With ``wait_for_input=Model`` both
return the validated input; a bad input given to ``resume_flow_run`` is refused
(``InvalidInput`` naming the field) and the run stays paused.

Differences from Prefect: the sync functions do not switch to their async form in
a coroutine (call ``apause_flow_run`` & co. there); a paused run that is cancelled
or failed while it waits stops waiting at once instead of at its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, TypeVar
from uuid import UUID, uuid4

from runtime.engine.context import FlowRunContext, current_flow_run, current_task_run
from runtime.engine.exceptions import FlowPauseTimeout, NotPausedError, Pause
from runtime.engine.runlogs import get_run_logger
from runtime.errors import AlreadyExists
from runtime.models import OrchestrationResult
from runtime.states import Paused, State, StateType, Suspended
from sdk.client import get_client
from sdk.input.run_input import (
    RunInput,
    keyset_from_paused_state,
    run_input_subclass_from_type,
)

__all__ = [
    "apause_flow_run",
    "aresume_flow_run",
    "asuspend_flow_run",
    "pause_flow_run",
    "resume_flow_run",
    "suspend_flow_run",
]

T = TypeVar("T")


def _next_pause_key(ctx: FlowRunContext) -> str:
    """The default key: how many pauses this flow run took so far, counting this one."""
    count = ctx.observed_flow_pauses.get("counter", 0) + 1
    ctx.observed_flow_pauses["counter"] = count
    return str(count)


def _prepare(state: State, wait_for_input: Any, flow_run_id: str) -> type[RunInput] | None:
    """Attach the input keyset to ``state`` and store the input's schema (before the pause,
    so a resume never finds the run paused without it)."""
    if wait_for_input is None:
        return None
    input_cls = run_input_subclass_from_type(wait_for_input)
    keyset = keyset_from_paused_state(state)
    state.details.run_input_keyset = keyset
    with contextlib.suppress(AlreadyExists):  # stored by an earlier attempt already
        input_cls.save(keyset, flow_run_id=flow_run_id)
    return input_cls


def _propose(flow_run_id: str, state: State, verb: str) -> State:
    with get_client(sync_client=True) as client:
        result: OrchestrationResult = client.set_flow_run_state(flow_run_id, state)
    if result.status == "ABORT":
        raise RuntimeError(f"Flow run cannot be {verb}: {result.reason}")
    return result.state


def pause_flow_run(
    wait_for_input: type[T] | None = None,
    timeout: int = 3600,
    poll_interval: int = 10,
    key: str | None = None,
) -> T | None:
    """Block the current flow run in a Paused state until it is resumed (Prefect's).

    ``timeout``: seconds to wait before ``FlowPauseTimeout`` (the flow then fails);
    ``poll_interval``: seconds between reads of the run's state; ``key``: the pause's
    key (default: the number of pauses so far), a key fires once per run;
    ``wait_for_input``: a ``RunInput`` subclass, a pydantic model or another type:
    the validated input given to ``resume_flow_run`` is returned.
    """
    ctx = current_flow_run()
    if ctx is None:
        raise RuntimeError("Flow runs can only be paused from within a flow run.")
    logger = get_run_logger()
    flow_run_id = ctx.flow_run.id
    counted = _next_pause_key(ctx)
    pause_key = key or counted
    logger.info("Pausing flow, execution will continue when this flow run is resumed.")
    proposed = Paused(timeout_seconds=timeout, pause_key=pause_key)
    input_cls = _prepare(proposed, wait_for_input, flow_run_id)
    state = _propose(flow_run_id, proposed, "paused")
    if state.type is StateType.RUNNING:  # this pause fired before and was resumed
        return _load(input_cls, proposed, flow_run_id)  # type: ignore[no-any-return]
    if state.type is not StateType.PAUSED:
        raise RuntimeError(f"Flow run cannot be paused. Received non-paused state: {state.name}")
    started = time.monotonic()
    time.sleep(max(0.0, min(timeout / 2, poll_interval)))
    while True:
        with get_client(sync_client=True) as client:
            current = client.read_flow_run(flow_run_id).state
        if current.type is StateType.RUNNING:
            logger.info("Resuming flow run execution!")
            return _load(input_cls, proposed, flow_run_id)  # type: ignore[no-any-return]
        if current.type is not StateType.PAUSED:
            break  # failed (timed out), cancelled...: it will not resume
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            break
        time.sleep(min(poll_interval, remaining))
    raise FlowPauseTimeout("Flow run was paused and never resumed.")


def _load(input_cls: type[RunInput] | None, state: State, flow_run_id: str) -> Any:
    """The input the pause received (None when it waited for none)."""
    if input_cls is None:
        return None
    return input_cls.load(keyset_from_paused_state(state), flow_run_id=flow_run_id)


def suspend_flow_run(
    wait_for_input: type[T] | None = None,
    flow_run_id: str | UUID | None = None,
    timeout: int | None = None,
    key: str | None = None,
) -> T | None:
    """Suspend a deployment's flow run: its process stops, a worker runs it again on resume.

    Without ``flow_run_id``, the current flow run: the run becomes Suspended and
    ``Pause`` stops the flow (the worker is released). When the run starts again
    from the beginning, the same call (same key) returns the input at once. A run
    without a deployment cannot be suspended (RuntimeError), nor a subflow.
    """
    ctx = current_flow_run()
    if flow_run_id is None:
        if current_task_run() is not None:
            raise RuntimeError("Cannot suspend task runs.")
        if ctx is None:
            raise RuntimeError("Flow runs can only be suspended from within a flow run.")
        get_run_logger().info(
            "Suspending flow run, execution will be rescheduled when this flow run is resumed."
        )
        run_id = ctx.flow_run.id
        current = True
        counted = _next_pause_key(ctx)
        pause_key = key or counted
    else:
        run_id, current, pause_key = str(flow_run_id), False, key or str(uuid4())
    proposed = Suspended(timeout_seconds=timeout, pause_key=pause_key)
    input_cls = _prepare(proposed, wait_for_input, run_id)
    state = _propose(run_id, proposed, "suspended")
    if state.type is StateType.RUNNING:  # suspended before and resumed: carry on
        return _load(input_cls, proposed, run_id)  # type: ignore[no-any-return]
    if state.type is not StateType.PAUSED:
        raise RuntimeError(f"Flow run cannot be suspended. Received unexpected state: {state.name}")
    if current:
        raise Pause(state=state)
    return None


def resume_flow_run(flow_run_id: str | UUID, run_input: dict[str, Any] | None = None) -> None:
    """Resume a paused or suspended flow run, with the input it waits for (if any).

    ``NotPausedError`` when it is not paused; ``InvalidInput`` naming the field when
    ``run_input`` fails the run's input schema (the run stays paused);
    ``FlowPauseTimeout`` when the pause timed out (the run is then Failed).
    """
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(str(flow_run_id))
        if run.state.type is not StateType.PAUSED:
            raise NotPausedError("Cannot resume a run that isn't paused!")
        result: OrchestrationResult = client.resume_flow_run(str(flow_run_id), run_input)
    if result.state.type is StateType.FAILED:
        raise FlowPauseTimeout("Flow run can no longer be resumed.")
    if not result.accepted:
        raise RuntimeError(f"Cannot resume this run: {result.reason}")


async def apause_flow_run(
    wait_for_input: type[T] | None = None,
    timeout: int = 3600,
    poll_interval: int = 10,
    key: str | None = None,
) -> T | None:
    """:func:`pause_flow_run` for async flows (the wait does not block the event loop)."""
    # the thread runs in a copy of this context: the same flow run (and pause counter)
    return await asyncio.to_thread(pause_flow_run, wait_for_input, timeout, poll_interval, key)


async def asuspend_flow_run(
    wait_for_input: type[T] | None = None,
    flow_run_id: str | UUID | None = None,
    timeout: int | None = None,
    key: str | None = None,
) -> T | None:
    """:func:`suspend_flow_run`, awaitable (``Pause`` is raised in the caller's task)."""
    return suspend_flow_run(wait_for_input, flow_run_id, timeout, key)


async def aresume_flow_run(
    flow_run_id: str | UUID, run_input: dict[str, Any] | None = None
) -> None:
    """:func:`resume_flow_run`, awaitable."""
    await asyncio.to_thread(resume_flow_run, flow_run_id, run_input)
