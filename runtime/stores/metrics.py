"""Counting the AWS requests Stratoflow makes (botocore event hooks), for benchmarks and tests."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

READ_OPERATIONS = frozenset(
    {
        "GetItem",
        "BatchGetItem",
        "Query",
        "Scan",
        "TransactGetItems",
        "GetObject",
        "HeadObject",
        "ListObjectsV2",
        "DescribeTable",
    }
)


class RequestCounter:
    """Counts requests per ``service.Operation`` on every client it is attached to."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def attach(self, client: Any) -> RequestCounter:
        """Count every request ``client`` makes from now on."""
        client.meta.events.register("before-call.*.*", self._count)
        return self

    def _count(self, model: Any, **_: Any) -> None:
        name = f"{model.service_model.service_name}.{model.name}"
        with self._lock:
            self.counts[name] += 1

    def snapshot(self) -> Counter[str]:
        """The counts so far (a copy)."""
        with self._lock:
            return Counter(self.counts)

    @staticmethod
    def split(counts: Counter[str]) -> tuple[int, int]:
        """(reads, writes) in ``counts``."""
        reads = sum(n for op, n in counts.items() if op.split(".", 1)[1] in READ_OPERATIONS)
        return reads, sum(counts.values()) - reads
