"""``sdk.locking.filesystem.FileSystemLockManager``: Prefect's lock-file manager name.

It maps onto the cache store's locks (:class:`sdk.locking.cache.CacheLockManager`):
``lock_files_directory`` is accepted and not used -- the locks live in the
backend (DynamoDB), shared by every process and machine, not in files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sdk.locking.cache import CacheLockManager


class FileSystemLockManager(CacheLockManager):
    """Prefect's ``FileSystemLockManager`` name for the cache store's locks."""

    def __init__(self, lock_files_directory: str | Path | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lock_files_directory = Path(lock_files_directory) if lock_files_directory else None


__all__ = ["FileSystemLockManager"]
