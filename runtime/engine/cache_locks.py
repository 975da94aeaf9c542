"""Keeping cache compute locks alive while their holders compute.

A cache lock is a short lease (``STRATOFLOW_CACHE_LOCK_SECONDS``, 30 s by
default) so that a holder that dies (a killed process) frees its key within
seconds of the lease's end. A holder that is alive renews its lease every third
of it, from one background thread per process (:data:`KEEPER`), however long
the computation takes: a task computing for an hour is computed once.

A renewal is the same conditional write as taking the lock, by the same owner
(:meth:`runtime.stores.cache.CacheStore.lock`): it fails once another owner took
the key over (the holder was stalled past its lease), and the holder is told
(``on_lost``); its own result is still returned, but not written to the cache.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.engine.cache_backend import CacheBackend

__all__ = ["KEEPER", "CacheLockKeeper", "LockRenewal"]

logger = logging.getLogger("stratoflow.cache")

RETRY_SECONDS = 1.0
"""How soon a renewal that raised (a network error) is tried again."""


class LockRenewal:
    """One held lock that :class:`CacheLockKeeper` renews until :meth:`stop`."""

    def __init__(
        self,
        cache: CacheBackend,
        key: str,
        owner: str,
        lock_seconds: float,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self.cache = cache
        self.key = key
        self.owner = owner
        self.lock_seconds = lock_seconds
        self.interval = lock_seconds / 3
        self.next_due = time.monotonic() + self.interval
        self.renewals = 0
        self.lost = False
        self.stopped = False
        self._on_lost = on_lost
        self._lock = threading.Lock()

    def renew_if_due(self, now: float) -> None:
        """Renew the lease when a third of it has passed since the last renewal."""
        with self._lock:
            if self.stopped or self.lost or now < self.next_due:
                return
            try:
                held = self.cache.lock(self.key, self.owner, self.lock_seconds)
            except Exception as exc:  # a network error: try again soon, the lease still runs
                logger.warning("renewing the cache lock on %s failed: %s", self.key, exc)
                self.next_due = now + min(RETRY_SECONDS, self.interval)
                return
            if held:
                self.renewals += 1
                self.next_due = now + self.interval
                return
            self.lost = True
        if self._on_lost is not None:
            self._on_lost()

    def stop(self) -> None:
        """No more renewals (waits for one in flight): call before writing or unlocking."""
        with self._lock:
            self.stopped = True


class CacheLockKeeper:
    """Renews every held cache lock of this process from one daemon thread."""

    def __init__(self) -> None:
        self._renewals: set[LockRenewal] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def keep(
        self,
        cache: CacheBackend,
        key: str,
        owner: str,
        lock_seconds: float,
        on_lost: Callable[[], None] | None = None,
    ) -> LockRenewal:
        """Start renewing ``owner``'s lock on ``key``; stop with :meth:`release`."""
        renewal = LockRenewal(cache, key, owner, lock_seconds, on_lost)
        with self._cond:
            self._renewals.add(renewal)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="stratoflow-cache-locks", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return renewal

    def release(self, renewal: LockRenewal) -> None:
        """Stop renewing (waits for a renewal in flight to finish)."""
        renewal.stop()
        with self._cond:
            self._renewals.discard(renewal)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._renewals:
                    self._cond.wait()
                due = min(r.next_due for r in self._renewals)
                delay = due - time.monotonic()
                if delay > 0:
                    self._cond.wait(delay)
                renewals = list(self._renewals)
            now = time.monotonic()
            for renewal in renewals:
                renewal.renew_if_due(now)
                if renewal.lost or renewal.stopped:
                    with self._cond:
                        self._renewals.discard(renewal)

    def _after_fork(self) -> None:
        """In a forked child: the parent's locks are not ours, and the thread is gone."""
        self._renewals = set()
        self._cond = threading.Condition()
        self._thread = None


KEEPER = CacheLockKeeper()
"""The process's lock keeper."""

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=KEEPER._after_fork)
