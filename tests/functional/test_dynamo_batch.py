"""``Dynamo.batch_write`` retries ``UnprocessedItems`` with exponential backoff, and gives up.

DynamoDB answers a throttled ``BatchWriteItem`` with the items it did not write
in ``UnprocessedItems``; AWS asks clients to send them again after an
exponential backoff with jitter. moto never throttles, so these tests make the
real client throttle: a botocore event hook trims the request before it is sent
(the server writes only what is left) and hands the trimmed items back as
``UnprocessedItems`` in the parsed response, as DynamoDB would.
"""

from __future__ import annotations

from typing import Any

import pytest

from runtime.backoff import Backoff
from runtime.stores import Stores
from runtime.stores.dynamo import MAX_BATCH_ATTEMPTS, Unprocessed


class Throttle:
    """Lets ``keep`` puts of each BatchWriteItem through; the rest come back unprocessed."""

    def __init__(self, client: Any, keep: int, times: int) -> None:
        self.keep = keep
        self.times = times
        self.calls = 0
        self._trimmed: dict[str, list[Any]] = {}
        events = client.meta.events
        events.register("before-parameter-build.dynamodb.BatchWriteItem", self._trim)
        events.register("after-call.dynamodb.BatchWriteItem", self._unprocessed)

    def _trim(self, params: dict[str, Any], **_: Any) -> None:
        self.calls += 1
        if self.calls > 200:  # a loop that never gives up would spin here forever
            raise RuntimeError("BatchWriteItem was sent 200 times for one batch")
        self._trimmed = {}
        if self.calls > self.times:
            return
        for table, requests in params["RequestItems"].items():
            if len(requests) > self.keep:
                params["RequestItems"][table] = requests[: self.keep]
                self._trimmed[table] = requests[self.keep :]

    def _unprocessed(self, parsed: dict[str, Any], **_: Any) -> None:
        if self._trimmed:
            parsed["UnprocessedItems"] = self._trimmed


def items(n: int) -> list[dict[str, Any]]:
    return [{"pk": f"batch#{i}", "value": i} for i in range(n)]


def test_unprocessed_items_are_sent_again_after_a_growing_backoff(stores: Stores) -> None:
    db = stores.db
    sleeps: list[float] = []
    db.sleep = sleeps.append
    db.backoff = Backoff(base=0.05, cap=2.0, jitter=False)
    throttle = Throttle(db.client, keep=2, times=3)
    table = stores.specs.concurrency.name

    db.batch_write(table, items(10))

    assert throttle.calls == 4  # 2 + 2 + 2 written while throttled, then the last 4
    assert sleeps == [0.05, 0.1, 0.2]  # one backoff before each retry, doubling
    stored = {i["pk"] for i in db.scan(table) if i["pk"].startswith("batch#")}
    assert stored == {f"batch#{i}" for i in range(10)}


def test_jittered_waits_stay_under_the_doubling_ceiling(stores: Stores) -> None:
    db = stores.db
    sleeps: list[float] = []
    db.sleep = sleeps.append
    samples = iter([0.5, 0.25, 1.0 - 1e-9, 0.5])
    db.backoff = Backoff(base=0.1, cap=0.3, rng=lambda: next(samples))
    throttle = Throttle(db.client, keep=1, times=4)

    db.batch_write(stores.specs.concurrency.name, items(5))

    assert throttle.calls == 5
    assert sleeps == pytest.approx([0.05, 0.05, 0.3, 0.15])


def test_a_batch_left_unprocessed_for_good_raises_after_bounded_attempts(
    stores: Stores,
) -> None:
    db = stores.db
    sleeps: list[float] = []
    db.sleep = sleeps.append
    throttle = Throttle(db.client, keep=1, times=10_000)

    with pytest.raises(Unprocessed) as raised:
        db.batch_write(stores.specs.concurrency.name, items(MAX_BATCH_ATTEMPTS + 5))

    assert throttle.calls == MAX_BATCH_ATTEMPTS
    assert len(sleeps) == MAX_BATCH_ATTEMPTS - 1
    assert raised.value.status_code == 503
    assert "5 item(s)" in raised.value.message
