"""What the routes share: the stores, connected lazily (cold start stays small)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.stores import Stores

_stores: Stores | None = None
_lock = threading.Lock()


def get_stores() -> Stores:
    """The stores of the configured installation (``STRATOFLOW_PREFIX`` at boto3's endpoint)."""
    global _stores
    with _lock:
        if _stores is None:
            from runtime.settings import get_settings
            from runtime.stores import Stores

            settings = get_settings()
            _stores = Stores.connect(
                settings.prefix,
                results_bucket=settings.results_bucket,
                inline_result_max_bytes=settings.inline_result_max_bytes,
            )
        return _stores


def set_stores(stores: Stores | None) -> None:
    """Use these stores for every request (the local gateway and tests)."""
    global _stores
    with _lock:
        _stores = stores
