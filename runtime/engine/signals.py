"""SIGTERM while a flow runs: what ECS, Kubernetes and systemd send to stop a process.

Without a handler SIGTERM kills the process on the spot, leaving its flow and
task runs Running and its concurrency slots held until their leases expire.
While a flow runs in the main thread, :func:`terminate_on_sigterm` turns the
signal into a :class:`TerminationSignal` raised there (as SIGINT raises
``KeyboardInterrupt``), so the engine ends the runs Crashed and releases their
slots; then the signal does what it would have done: the default action kills
the process (exit status 143), a handler installed before the flow started is
called.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class TerminationSignal(BaseException):
    """The process was asked to terminate (SIGTERM) while a flow ran (Prefect's name).

    A ``BaseException``, like ``KeyboardInterrupt``: ``except Exception`` in user
    code does not swallow it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


INTERRUPTS: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, TerminationSignal)
"""Exceptions that stop a run from outside: the run is Crashed, not Failed."""

_installed = False


@contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Raise :class:`TerminationSignal` in the main thread on SIGTERM while the block runs.

    Only in the main thread (where Python runs signal handlers), only for the
    outermost flow, and not when SIGTERM is ignored. The previous handler is
    restored when the block ends; if one was installed from Python it is called
    first when the signal arrives (chained), and if the previous disposition was
    the default one the signal is delivered again once the block has cleaned up.
    """
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is None or previous == signal.SIG_IGN:  # not ours to change
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if callable(previous):
            previous(signum, frame)
        raise TerminationSignal(signum)

    signal.signal(signal.SIGTERM, handler)
    _installed = True
    try:
        yield
    finally:
        _installed = False
        signal.signal(signal.SIGTERM, previous)
        if received and previous == signal.SIG_DFL:
            # the runs are recorded: now die as SIGTERM would have (threads still
            # running a task cannot be stopped, and would keep the process alive)
            sys.stdout.flush()
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGTERM)
