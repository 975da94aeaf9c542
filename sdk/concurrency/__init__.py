"""Global concurrency limits and rate limits in flow code (Prefect's ``prefect.concurrency``).

``sdk.concurrency.sync`` holds the ``with concurrency(...)`` context manager and
``rate_limit(...)``; ``sdk.concurrency.asyncio`` the ``async with`` / ``await``
versions. Both take slots on the global concurrency limits created with
``get_client().create_global_concurrency_limit(...)`` or ``stratoflow
global-concurrency-limit create``, as leases (:mod:`runtime.stores.concurrency`).
"""
