"""Noticing that a running flow run was asked to cancel (``stratoflow flow-run cancel``).

Cancelling a RUNNING flow run writes CANCELLING; only the process running it
can stop it. :class:`CancellationWatcher` reads the run's state type every
``CANCEL_POLL_SECONDS`` (one small strongly consistent read) from a daemon
thread while an attempt runs, and reports the first CANCELLING or CANCELLED it
sees. A flow shorter than the interval costs no read at all. A subflow also
stops when its parent flow run is being cancelled (seen in memory, no read).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from runtime.states import Cancelling, State, StateType

if TYPE_CHECKING:
    from runtime.engine.client import EngineClient

logger = logging.getLogger("stratoflow.flow_runs")

CANCEL_POLL_SECONDS = 1.0
"""How often a running flow run's state is read to notice a cancellation request."""

CANCEL_TYPES = frozenset({StateType.CANCELLING, StateType.CANCELLED})


class CancellationWatcher:
    """Calls ``on_cancel(state)`` once when the flow run's state becomes CANCELLING/CANCELLED."""

    def __init__(
        self,
        client: EngineClient,
        flow_run_id: str,
        on_cancel: Callable[[State], None],
        *,
        parent_state: Callable[[], State | None] | None = None,
        interval: float = CANCEL_POLL_SECONDS,
    ) -> None:
        self._client = client
        self._parent_state = parent_state
        self._flow_run_id = flow_run_id
        self._on_cancel = on_cancel
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="stratoflow-cancel-watcher", daemon=True
        )

    def start(self) -> CancellationWatcher:
        """Start watching (from a daemon thread)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (returns at once; the thread ends at its next wake-up)."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            parent = self._parent_state() if self._parent_state is not None else None
            if parent is not None and parent.type in CANCEL_TYPES:
                self._on_cancel(
                    Cancelling(message=f"Its parent flow run is {parent.name}: cancelled with it.")
                )
                return
            try:
                state = self._client.read_flow_run_state(self._flow_run_id)
            except Exception as exc:  # a lost read is retried at the next tick
                logger.debug(
                    "reading flow run %s for cancellation failed: %r", self._flow_run_id, exc
                )
                continue
            if state.type in CANCEL_TYPES and not self._stop.is_set():
                self._on_cancel(state)
                return
