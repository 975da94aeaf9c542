"""SIGTERM while a flow runs: what ECS, Kubernetes and systemd send to stop a process.

Without a handler SIGTERM kills the process on the spot, leaving its flow and
task runs Running and its concurrency slots held until their leases expire.
While a flow runs in the main thread, :func:`terminate_on_sigterm` turns the
signal into an exception there (as SIGINT raises ``KeyboardInterrupt``), so the
engine ends the runs Crashed and releases their slots. Then the signal does
what it would have done without us: the default action kills the process (exit
status 143); a handler installed from Python before the flow started is called.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import FrameType
from typing import Any


class TerminationSignal(BaseException):
    """The process was asked to terminate (SIGTERM) while a flow ran (Prefect's name).

    A ``BaseException``, like ``KeyboardInterrupt``: ``except Exception`` in user
    code does not swallow it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


INTERRUPTS: tuple[type[BaseException], ...] = (
    KeyboardInterrupt,
    SystemExit,
    TerminationSignal,
    asyncio.CancelledError,
)
"""Exceptions that stop a run from outside: the run is Crashed, not Failed (as in Prefect,
an async run cancelled by its environment is Crashed too)."""

_installed = False


def _previous_handler() -> Any:
    """SIGTERM's handler now, or None when it is not ours to replace.

    Only in the main thread (where Python runs signal handlers), only for the
    outermost flow, and never when SIGTERM is ignored or was set outside Python.
    """
    if _installed or threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None or previous == signal.SIG_IGN:
        return None
    return previous


def _after(previous: Any, frame: FrameType | None) -> None:
    """Once the runs are recorded, do what SIGTERM would have done without us."""
    signal.signal(signal.SIGTERM, previous)
    if callable(previous):
        previous(signal.SIGTERM, frame)  # the user's own handler, chained
    elif previous == signal.SIG_DFL:
        # die as SIGTERM would have (threads still running an abandoned task
        # cannot be stopped, and would keep the process alive)
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGTERM)


@contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`TerminationSignal` in the main thread.

    The previous handler is restored when the block ends; if the signal came, it
    is then honoured (see the module docstring).
    """
    global _installed
    previous = _previous_handler()
    if previous is None:
        yield
        return
    received: list[FrameType | None] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(frame)
        raise TerminationSignal(signum)

    signal.signal(signal.SIGTERM, handler)
    _installed = True
    try:
        yield
    finally:
        _installed = False
        if received:
            _after(previous, received[0])
        else:
            signal.signal(signal.SIGTERM, previous)


@asynccontextmanager
async def terminate_on_sigterm_async() -> AsyncIterator[None]:
    """:func:`terminate_on_sigterm` for a flow awaited on the running event loop.

    Raising from a signal handler would break the loop, so SIGTERM cancels the
    task awaiting the flow instead; the engine sees ``CancelledError`` (the runs
    end Crashed) and :class:`TerminationSignal` comes out of the block.
    """
    global _installed
    previous = _previous_handler()
    current = asyncio.current_task()
    if previous is None or current is None:
        yield
        return
    loop = asyncio.get_running_loop()
    received: list[bool] = []

    def on_sigterm() -> None:
        received.append(True)
        current.cancel("SIGTERM")

    cancel: Callable[[], None] = on_sigterm
    loop.add_signal_handler(signal.SIGTERM, cancel)
    _installed = True
    try:
        yield
    except asyncio.CancelledError:
        if received:
            raise TerminationSignal(signal.SIGTERM) from None
        raise
    finally:
        _installed = False
        loop.remove_signal_handler(signal.SIGTERM)
        if received:
            _after(previous, None)
        else:
            signal.signal(signal.SIGTERM, previous)
