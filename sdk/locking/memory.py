"""``sdk.locking.memory.MemoryLockManager``: Prefect's in-process lock manager name.

It maps onto the cache store's locks (:class:`sdk.locking.cache.CacheLockManager`),
which also hold across processes and machines -- stronger than Prefect's,
never weaker.
"""

from sdk.locking.cache import CacheLockManager


class MemoryLockManager(CacheLockManager):
    """Prefect's ``MemoryLockManager`` name for the cache store's locks."""


__all__ = ["MemoryLockManager"]
