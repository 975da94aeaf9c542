"""A lock manager over the result cache's compute locks (``runtime.stores.cache``).

Every lock is the conditional-write lease a task takes on a cache key while it
computes: shared by every process and machine on the backend, renewed by
``runtime.engine.cache_locks.KEEPER`` while held (unless ``hold_timeout`` is
given: then it simply expires), taken over once a dead holder's lease ends.
A transaction's SERIALIZABLE lock on its key is this same lock.

A key that holds a committed record is done: it cannot be locked
(``acquire_lock`` waits, then answers False), unlike Prefect's lock managers,
which keep locks apart from records.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from runtime.models import new_id

if TYPE_CHECKING:
    from runtime.engine.cache_backend import CacheBackend
    from runtime.engine.cache_locks import LockRenewal


class CacheLockManager:
    """Named locks on the cache store (``cache``: a backend; None: the current client's)."""

    def __init__(self, cache: CacheBackend | None = None, **_ignored: Any) -> None:
        self._cache = cache
        self._held: dict[tuple[str, str], LockRenewal | None] = {}
        self._mutex = threading.Lock()

    @property
    def cache(self) -> CacheBackend:
        """The cache backend whose locks this manager takes."""
        if self._cache is None:
            from runtime.engine.transactions import resolve_store

            return resolve_store(None).cache
        return self._cache

    @staticmethod
    def _lease() -> float:
        from runtime.settings import get_settings

        return get_settings().cache_lock_seconds

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Take ``key`` for ``holder``, waiting up to ``acquire_timeout`` (None: forever).

        With ``hold_timeout`` the lock expires after it; without, it is renewed
        until :meth:`release_lock`.
        """
        from runtime.engine.cache_locks import KEEPER

        cache = self.cache
        seconds = hold_timeout if hold_timeout is not None else self._lease()
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        while True:
            attempt = cache.try_lock(key, holder, seconds)
            if attempt.acquired:
                renewal = (
                    None if hold_timeout is not None else KEEPER.keep(cache, key, holder, seconds)
                )
                with self._mutex:
                    old = self._held.pop((key, holder), None)
                    self._held[(key, holder)] = renewal
                if old is not None:
                    KEEPER.release(old)
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            wait = seconds if remaining is None else min(seconds, remaining)
            if attempt.holder is None:  # a committed record: the key stays done
                if remaining is None:
                    return False
                time.sleep(min(remaining, 0.05))
                continue
            cache.wait_for(key, timeout=wait)

    def release_lock(self, key: str, holder: str) -> None:
        """Give ``key`` up; ValueError when ``holder`` does not hold it."""
        from runtime.engine.cache_locks import KEEPER

        with self._mutex:
            known = (key, holder) in self._held
            renewal = self._held.pop((key, holder), None)
        if renewal is not None:
            KEEPER.release(renewal)
        if not self.cache.unlock(key, holder) and not known:
            raise ValueError(f"Cannot release lock on {key!r}: {holder!r} does not hold it")

    def _holder_of(self, key: str) -> str | None:
        """Who holds ``key`` now (a probe: a free key is taken and given back at once)."""
        probe = f"probe-{new_id()}"
        attempt = self.cache.try_lock(key, probe, 1.0)
        if attempt.acquired:
            self.cache.unlock(key, probe)
            return None
        return attempt.holder

    def is_locked(self, key: str) -> bool:
        """Whether someone holds ``key``."""
        return self._holder_of(key) is not None

    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Whether ``holder`` holds ``key``."""
        return self._holder_of(key) == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until nobody holds ``key``; False after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self.cache.wait_for(key, timeout=self._lease() if remaining is None else remaining)
        return True
