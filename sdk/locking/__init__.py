"""``sdk.locking``: Prefect's lock managers, all on the result cache's compute locks.

``MemoryLockManager`` (``sdk.locking.memory``) and ``FileSystemLockManager``
(``sdk.locking.filesystem``) are names for :class:`CacheLockManager`: the
conditional-write lease tasks take on a cache key, which is also the lock a
SERIALIZABLE transaction takes. Prefect's ``RedisLockManager`` lives in the
``prefect-redis`` package, not here: use any of these instead.
"""

from sdk.locking.cache import CacheLockManager
from sdk.locking.filesystem import FileSystemLockManager
from sdk.locking.memory import MemoryLockManager
from sdk.locking.protocol import LockManager

__all__ = ["CacheLockManager", "FileSystemLockManager", "LockManager", "MemoryLockManager"]
