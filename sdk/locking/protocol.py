"""The lock manager interface (Prefect's ``prefect.locking.protocol.LockManager``)."""

from __future__ import annotations

from typing import Protocol


class LockManager(Protocol):
    """Acquire and release named locks for a holder."""

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        """Take ``key`` for ``holder``; False when not taken within ``acquire_timeout``."""

    def release_lock(self, key: str, holder: str) -> None:
        """Give ``key`` up; ValueError when ``holder`` does not hold it."""

    def is_locked(self, key: str) -> bool:
        """Whether someone holds ``key``."""

    def is_lock_holder(self, key: str, holder: str) -> bool:
        """Whether ``holder`` holds ``key``."""

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        """Wait until ``key`` is free; False after ``timeout``."""
