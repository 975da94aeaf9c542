"""Prefect's ``prefect.client.orchestration`` path: ``get_client`` and the client classes.

``from sdk.client.orchestration import get_client`` is the import Prefect's docs
use; the client itself lives in :mod:`sdk.client`.
"""

from sdk.client import ApiSyncClient, AsyncClient, SyncClient, get_client

SyncPrefectClient = SyncClient
"""Prefect's name for the synchronous client."""

PrefectClient = AsyncClient
"""Prefect's name for the asynchronous client."""

__all__ = [
    "ApiSyncClient",
    "AsyncClient",
    "PrefectClient",
    "SyncClient",
    "SyncPrefectClient",
    "get_client",
]
