"""Keyed transactions racing on one key, over HTTP against the session's locked moto server.

Oracle: Prefect 3 ``docs/v3/advanced/transactions.mdx``, "Handling race conditions":
with SERIALIZABLE isolation "each transaction [takes] a lock on the provided key", so
of N concurrent transactions on one key exactly one runs its body and commits; the
others wait, then find the committed record (``txn.is_committed()``). Every racer has
its own engine client (its own boto3 clients), like separate workers.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from runtime.engine.client import DirectEngineClient, EngineClient
from runtime.engine.http_engine_client import ApiEngineClient
from runtime.stores import Stores
from sdk.transactions import IsolationLevel, Transaction, transaction

RACERS = 6


def race_on(
    key: str, prefix: str, isolation: IsolationLevel, api: str | None = None
) -> list[dict[str, Any]]:
    """RACERS threads open a transaction on ``key`` at once; what each saw.

    Each racer has its own engine client: direct to DynamoDB, or over the API at ``api``.
    """
    barrier = threading.Barrier(RACERS)
    out: list[dict[str, Any]] = [{} for _ in range(RACERS)]
    clients: list[EngineClient] = [
        ApiEngineClient(api) if api else DirectEngineClient(Stores.connect(prefix))
        for _ in range(RACERS)
    ]

    def run(i: int) -> None:
        barrier.wait()
        with transaction(key=key, store=clients[i], isolation_level=isolation) as txn:
            out[i]["committed_at_begin"] = txn.is_committed()
            if not txn.is_committed():
                out[i]["ran"] = True
                txn.stage(f"racer {i}")
            else:
                out[i]["read"] = txn.read()
        out[i]["state"] = txn.state.name

    threads = [threading.Thread(target=run, args=(i,)) for i in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for client in clients:
        client.close()
    return out


@pytest.mark.parametrize("over_api", [False, True], ids=["direct", "api"])
def test_serializable_transactions_run_the_body_once(
    stores: Stores, prefix: str, api: str, over_api: bool
) -> None:
    seen = race_on("nightly-load", prefix, IsolationLevel.SERIALIZABLE, api if over_api else None)
    winners = [i for i, s in enumerate(seen) if s.get("ran")]
    assert len(winners) == 1
    assert all(s["state"] == "COMMITTED" for s in seen)
    losers = [s for s in seen if not s.get("ran")]
    assert len(losers) == RACERS - 1
    assert all(s["committed_at_begin"] and s["read"] == f"racer {winners[0]}" for s in losers)
    record = stores.cache.read("nightly-load")
    assert record is not None and record.task_key == "transaction"


def test_serializable_lock_is_the_cache_stores_lock(stores: Stores, prefix: str) -> None:
    """The lock a SERIALIZABLE transaction holds is the cache key's conditional-write
    lease: another owner's ``try_lock`` on the key is refused, naming the transaction."""
    client = DirectEngineClient(Stores.connect(prefix))
    try:
        with Transaction(
            key="held", store=client, isolation_level=IsolationLevel.SERIALIZABLE
        ) as txn:
            attempt = stores.cache.try_lock("held", "someone-else", 5.0)
            assert not attempt.acquired and attempt.holder == txn._holder
        assert stores.cache.read("held") is not None  # committed: the lock became the record
    finally:
        client.close()
