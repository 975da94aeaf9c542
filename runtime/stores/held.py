"""The run items a store wrote last, so that its next transition need not read them back.

A process that drives a flow run (the engine) writes every one of its states
itself. After each accepted transition :class:`HeldItems` keeps the item as
written, keyed by run id and ``state_version``. The next ``set_state`` that names
that version (``expected_version``: the version the caller holds) decides on the
held item instead of reading it, and its write is conditioned on that version as
always: if anyone else changed the run meanwhile, the write loses, DynamoDB
returns the item as it is now (``ALL_OLD``) and the rules decide again on it. A
held item is therefore only ever a guess that the conditional write checks; it
can cost a lost write, never a wrong one.

Only flow runs are held (task-run records may be replaced by batch puts that do
not pass through here), at most :data:`MAX_HELD` of them, and never a run in a
final state: memory stays flat however many runs a process drives.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from runtime.states import TERMINAL_TYPES
from runtime.stores.dynamo import Item

__all__ = ["MAX_HELD", "HeldItems"]

MAX_HELD = 256
"""Most run items held at once (the least recently written go first)."""

_FINAL = frozenset(t.value for t in TERMINAL_TYPES)


class HeldItems:
    """A small, thread-safe map of run id -> the item this process last wrote for it."""

    def __init__(self, capacity: int = MAX_HELD) -> None:
        self._items: OrderedDict[str, Item] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def keep(self, item: Item) -> None:
        """Hold a flow run's item as just written (a final or task-run item is dropped)."""
        run_id = str(item["id"])
        with self._lock:
            self._items.pop(run_id, None)
            if item.get("kind") != "flow_run" or item.get("state_type") in _FINAL:
                return
            self._items[run_id] = item
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def get(self, run_id: str, version: int) -> Item | None:
        """The held item of ``run_id`` if it is at ``version``, else None (read it)."""
        with self._lock:
            item = self._items.get(run_id)
        if item is None or int(item.get("state_version", -1)) != version:
            return None
        return item

    def forget(self, run_id: str) -> None:
        """Drop what is held for ``run_id`` (it changed elsewhere, or was deleted)."""
        with self._lock:
            self._items.pop(run_id, None)
