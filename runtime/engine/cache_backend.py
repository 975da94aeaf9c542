"""What the engine needs of a result cache: :class:`CacheBackend`.

Two implementations: :class:`runtime.stores.cache.CacheStore` (DynamoDB,
direct) and :class:`runtime.engine.http_engine_client.ApiCache` (the cache
routes of the HTTP API). ``EngineClient.cache`` returns one of them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from runtime.models import CacheRecord, LockAttempt

__all__ = ["CacheBackend"]


class CacheBackend(Protocol):
    """Cache records and their compute locks (see ``runtime.stores.cache`` for the semantics)."""

    def read(self, key: str, now: datetime | None = None) -> CacheRecord | None:
        """The live record for ``key``; None for a miss (no record, a lock, or expired)."""

    def try_lock(
        self,
        key: str,
        owner: str,
        lock_seconds: float,
        now: datetime | None = None,
        refresh: bool = False,
    ) -> LockAttempt:
        """Take (or, for the same owner, renew) the compute lock; who holds it when refused."""

    def lock(
        self,
        key: str,
        owner: str,
        lock_seconds: float,
        now: datetime | None = None,
        refresh: bool = False,
    ) -> bool:
        """:meth:`try_lock`, answering only whether ``owner`` now holds the key."""

    def write(self, key: str, record: CacheRecord, owner: str) -> None:
        """Store ``record`` in place of ``owner``'s lock; ``CacheLockLost`` if it was taken."""

    def unlock(self, key: str, owner: str) -> bool:
        """Give up ``owner``'s lock; True if it was removed."""

    def wait_for(self, key: str, timeout: float, poll: float = 0.05) -> CacheRecord | None:
        """The lock holder's record once written; None when the caller should try the lock."""

    def list(self, task_key: str | None = None, limit: int = 100) -> list[CacheRecord]:
        """Live cache records, newest first (of ``task_key``, or all), at most ``limit``."""

    def clear(self, key: str | None = None, task_key: str | None = None) -> int:
        """Delete one key, every key of a task, or everything; how many were deleted."""
