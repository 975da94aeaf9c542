"""When the engine installs its SIGTERM handler, and what it leaves behind.

Only in the main thread, only for the outermost flow, never over an ignored
SIGTERM; the previous handler is always restored, and called (after the
engine's cleanup) when the signal came.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

from runtime.engine.signals import TerminationSignal, terminate_on_sigterm


@pytest.fixture
def own_handler() -> Iterator[list[int]]:
    """A SIGTERM handler of the user's, recording the signals it is called with."""
    calls: list[int] = []

    def own(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    before = signal.signal(signal.SIGTERM, own)
    try:
        yield calls
    finally:
        signal.signal(signal.SIGTERM, before)


def test_installed_in_the_main_thread_and_restored_after(own_handler: list[int]) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with terminate_on_sigterm():
        inside = signal.getsignal(signal.SIGTERM)
        with terminate_on_sigterm():  # a subflow: the outer flow's handler stays
            assert signal.getsignal(signal.SIGTERM) is inside
    assert inside is not previous
    assert signal.getsignal(signal.SIGTERM) is previous
    assert own_handler == []


def test_a_signal_raises_termination_then_the_previous_handler_runs(
    own_handler: list[int],
) -> None:
    with pytest.raises(TerminationSignal, match="SIGTERM"), terminate_on_sigterm():
        signal.raise_signal(signal.SIGTERM)
    assert own_handler == [signal.SIGTERM]  # chained, once the block had cleaned up


def test_not_installed_when_sigterm_is_ignored() -> None:
    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with terminate_on_sigterm():
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)


def test_not_installed_outside_the_main_thread(own_handler: list[int]) -> None:
    seen: list[Any] = []

    def in_thread() -> None:
        with terminate_on_sigterm():
            seen.append(signal.getsignal(signal.SIGTERM))

    previous = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert seen == [previous]
