"""One lifecycle, two drivers: run an engine's steps for a sync or an async user function.

An engine's lifecycle is a generator that yields instructions (sleep, call the
user function, do blocking work) and finally returns the final state. The sync
driver runs them in the calling thread; the async driver awaits them on the
running loop. The orchestration logic is written once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any

from runtime.engine.calls import call_async, call_sync
from runtime.states import State


@dataclass(frozen=True)
class Sleep:
    """Wait this long (a retry delay or a scheduled start)."""

    seconds: float


@dataclass(frozen=True)
class Call:
    """Run the user's function now; the driver sends back an :class:`Outcome`."""

    timeout: float | None


@dataclass(frozen=True)
class Blocking:
    """Blocking work that may wait long (a concurrency slot, a cache lock).

    The driver sends back what ``fn`` returns, or raises what it raised at the ``yield``
    (an interrupt during a :class:`Sleep` too, so the lifecycle can record it).
    """

    fn: Callable[[], Any]


@dataclass(frozen=True)
class Outcome:
    """What the user's function did: returned ``value`` or raised ``error``."""

    value: Any = None
    error: BaseException | None = None


Instruction = Sleep | Call | Blocking
Lifecycle = Generator[Instruction, Any, State]


def drive_sync(lifecycle: Lifecycle, fn: Callable[[], Any]) -> State:
    """Run a lifecycle whose user function is synchronous."""
    reply: Any = None
    error: BaseException | None = None
    try:
        while True:
            step = lifecycle.send(reply) if error is None else lifecycle.throw(error)
            reply, error = None, None
            if isinstance(step, Sleep | Blocking):
                try:
                    if isinstance(step, Blocking):
                        reply = step.fn()
                    else:
                        time.sleep(step.seconds)
                except BaseException as exc:  # raised in the lifecycle, where it was asked for
                    error = exc
            else:
                try:
                    reply = Outcome(value=call_sync(fn, step.timeout))
                except BaseException as exc:  # handed to the engine, which decides
                    reply = Outcome(error=exc)
    except StopIteration as stop:
        final: State = stop.value
        return final


async def drive_async(lifecycle: Lifecycle, fn: Callable[[], Awaitable[Any]]) -> State:
    """Run a lifecycle whose user function is a coroutine function."""
    reply: Any = None
    error: BaseException | None = None
    try:
        while True:
            step = lifecycle.send(reply) if error is None else lifecycle.throw(error)
            reply, error = None, None
            if isinstance(step, Sleep | Blocking):
                try:
                    if isinstance(step, Blocking):
                        reply = await asyncio.to_thread(step.fn)
                    else:
                        await asyncio.sleep(step.seconds)
                except BaseException as exc:  # an interrupt too: the lifecycle records it
                    error = exc
            else:
                try:
                    reply = Outcome(value=await call_async(fn, step.timeout))
                except BaseException as exc:
                    reply = Outcome(error=exc)
    except StopIteration as stop:
        final: State = stop.value
        return final
