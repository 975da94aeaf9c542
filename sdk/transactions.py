"""``sdk.transactions``: Prefect's ``prefect.transactions`` on the result cache.

    from sdk.transactions import IsolationLevel, transaction

    with transaction(key="load-2024-01-01", isolation_level=IsolationLevel.SERIALIZABLE) as txn:
        if not txn.is_committed():
            load()

See ``runtime.engine.transactions`` for how keys, records and locks map onto
the cache store, and what ``store=`` accepts.
"""

from runtime.engine.transactions import (
    CommitMode,
    IsolationLevel,
    Transaction,
    TransactionState,
    TransactionStore,
    get_transaction,
    transaction,
)

__all__ = [
    "CommitMode",
    "IsolationLevel",
    "Transaction",
    "TransactionState",
    "TransactionStore",
    "get_transaction",
    "transaction",
]
