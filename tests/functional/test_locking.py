"""``sdk.locking``: Prefect's lock manager names over the cache store's locks (moto in-process).

Oracle: Prefect 3 ``src/prefect/locking/protocol.py`` (``acquire_lock``, ``release_lock``,
``is_locked``, ``is_lock_holder``, ``wait_for_lock``) and ``src/prefect/locking/memory.py``
(a second holder is refused until the first releases; ``release_lock`` by a non-holder
raises ``ValueError``).
"""

from __future__ import annotations

import threading

import pytest

from runtime.engine.client import DirectEngineClient
from sdk.locking import CacheLockManager, FileSystemLockManager, MemoryLockManager
from sdk.transactions import IsolationLevel, transaction


@pytest.mark.parametrize(
    "manager",
    [MemoryLockManager(), FileSystemLockManager(lock_files_directory="/tmp/unused-locks")],
    ids=["memory", "filesystem"],
)
def test_lock_manager_protocol(engine: DirectEngineClient, manager: CacheLockManager) -> None:
    assert manager.acquire_lock("k", holder="a")
    assert manager.is_locked("k")
    assert manager.is_lock_holder("k", "a") and not manager.is_lock_holder("k", "b")
    assert not manager.acquire_lock("k", holder="b", acquire_timeout=0.2)
    with pytest.raises(ValueError, match="does not hold it"):
        manager.release_lock("k", holder="b")
    manager.release_lock("k", holder="a")
    assert not manager.is_locked("k")
    assert manager.wait_for_lock("k", timeout=0.1)


def test_a_waiter_gets_the_lock_once_released(engine: DirectEngineClient) -> None:
    manager = MemoryLockManager()
    assert manager.acquire_lock("k", holder="a")
    got = threading.Event()

    def waiter() -> None:
        if manager.acquire_lock("k", holder="b", acquire_timeout=10):
            got.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert not got.wait(0.3)
    manager.release_lock("k", holder="a")
    thread.join(10)
    assert got.is_set() and manager.is_lock_holder("k", "b")
    manager.release_lock("k", holder="b")


def test_a_serializable_transaction_holds_the_lock_managers_lock(
    engine: DirectEngineClient,
) -> None:
    """transactions.mdx: the lock manager manages the SERIALIZABLE lock on the key --
    here every manager sees the transaction's lock on the cache key."""
    manager = FileSystemLockManager()
    with transaction(key="job", isolation_level=IsolationLevel.SERIALIZABLE) as txn:
        assert manager.is_locked("job")
        assert manager.is_lock_holder("job", txn._holder)
        assert not manager.acquire_lock("job", holder="other", acquire_timeout=0.2)
    assert not manager.is_locked("job")  # committed: a record, no lock
