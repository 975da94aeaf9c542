"""One way to read a page of a listing: shards merged in order, a read budget, one cursor.

Every listing of the stores (runs, deployments, work pools, flows, cache
records) is a :func:`read_page` over one index:

* **Shards merged**: a listing names one or more partitions of its index (a
  sharded partition key such as ``task_run#0`` ... ``task_run#7``). Each is
  queried lazily, in index order, and the heads are merged, so the page is in
  one order across all of them.
* **Filters in one place**: the index entries (keys only, or the whole item)
  become values through ``fetch`` (e.g. a ``BatchGetItem`` of the runs the keys
  name), and ``matches`` keeps the ones the filter asks for.
* **Read-ahead and a budget**: the page holds at most ``limit`` values; reading
  stops at ``limit + 1`` matches (so the cursor is only given when there is
  more) or after ``budget`` index entries examined, whichever comes first. A
  page cut by the budget may hold fewer than ``limit`` values (even none) and
  still has a cursor: a selective filter over a large index answers in bounded
  time, page after page.
* **The cursor** names, for each partition not yet exhausted, the key of the
  last entry consumed from it (null: none yet), and the index it belongs to.
  A cursor of another listing (other index or partitions) or a malformed one
  is refused with ``InvalidInput(field="cursor")`` before anything is read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from runtime.backoff import Backoff
from runtime.errors import InvalidInput
from runtime.resources import TableSpec
from runtime.stores.dynamo import Dynamo, Item, decode_cursor, deserialize, encode_cursor, serialize

T = TypeVar("T")

MAX_PAGE_LIMIT = 1000
"""Largest ``limit`` a listing accepts."""

SCAN_BUDGET = 2000
"""Index entries one page request examines at most before it returns what it has."""

BATCH_GET_MAX_KEYS = 100
"""Most keys in one ``BatchGetItem``."""

_UNPROCESSED_BACKOFF = Backoff(base=0.02, cap=1.0)


def check_limit(limit: int, maximum: int = MAX_PAGE_LIMIT) -> None:
    """InvalidInput(field="limit") unless ``1 <= limit <= maximum``."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= maximum:
        raise InvalidInput(f"limit must be between 1 and {maximum}", field="limit")


SCAN = "scan"
"""The one "partition" of a listing that scans its table (``index=None``)."""


@dataclass(frozen=True)
class Listing:
    """Which entries a listing reads: one index, its partitions, an optional range condition.

    ``range_condition`` (e.g. ``#sk BETWEEN :after AND :before``) is ANDed to each
    partition's ``#pk = :pk``; ``names`` and ``values`` serve it. ``index=None``
    queries the table itself (strongly consistent with ``consistent``);
    ``partitions=(SCAN,)`` with ``index=None`` reads the whole table with a strongly
    consistent ``Scan`` instead (admin listings), in the table's own order.
    """

    table: TableSpec
    index: str | None
    partitions: tuple[str, ...]
    forward: bool = False
    range_condition: str | None = None
    names: Mapping[str, str] = field(default_factory=dict)
    values: Mapping[str, Any] = field(default_factory=dict)
    position_ok: Callable[[Item], bool] | None = None
    """Whether a cursor's position can belong to this listing (e.g. within its range)."""
    consistent: bool = False
    """Strongly consistent queries (the table only: an index never is)."""

    @property
    def scan(self) -> bool:
        """True when the listing scans its table."""
        return self.index is None and self.partitions == (SCAN,)

    @property
    def label(self) -> str:
        """What a cursor names its source by."""
        return self.index or (SCAN if self.scan else "table")

    @property
    def key_names(self) -> tuple[str, ...]:
        """The table key and the index key: what a position holds."""
        return self.table.key_names(self.index)

    @property
    def pk_name(self) -> str:
        """The partition key attribute read ("" for a scan: positions are table keys)."""
        if self.scan:
            return ""
        if self.index is None:
            return self.table.partition_key.name
        spec = next(i for i in self.table.indexes if i.name == self.index)
        return spec.partition_key.name

    @property
    def sk_name(self) -> str | None:
        """The sort key attribute read (None for a scan)."""
        if self.scan:
            return None
        if self.index is None:
            return self.table.sort_key.name if self.table.sort_key else None
        spec = next(i for i in self.table.indexes if i.name == self.index)
        return spec.sort_key.name if spec.sort_key else None


@dataclass
class Slice(Generic[T]):
    """One page of values and the cursor of the next (None: nothing more)."""

    items: list[T]
    next_cursor: str | None


def _positions(listing: Listing, cursor: str | None) -> dict[str, dict[str, Any] | None]:
    """Each partition still to read and the key to start after (None: from its start)."""
    if not cursor:
        return dict.fromkeys(listing.partitions)
    try:
        data = decode_cursor(cursor)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="cursor") from None
    after = data.get("after")
    other_names = [k for k in listing.key_names if k != listing.pk_name]
    if data.get("index") != listing.label or not isinstance(after, dict):
        raise InvalidInput("cursor does not belong to this listing", field="cursor")
    out: dict[str, dict[str, Any] | None] = {}
    for partition, position in after.items():
        if partition not in listing.partitions:
            raise InvalidInput("cursor does not belong to this listing", field="cursor")
        if position is None:
            out[partition] = None
            continue
        if (
            not isinstance(position, list)
            or len(position) != len(other_names)
            or not all(isinstance(v, str) and v for v in position)
        ):
            raise InvalidInput("cursor does not belong to this listing", field="cursor")
        key = dict(zip(other_names, position, strict=True))
        if not listing.scan:
            key[listing.pk_name] = partition
        if listing.position_ok is not None and not listing.position_ok(key):
            raise InvalidInput("cursor does not belong to this listing", field="cursor")
        out[partition] = key
    return out


def _encode(listing: Listing, positions: Mapping[str, dict[str, Any] | None]) -> str:
    other_names = [k for k in listing.key_names if k != listing.pk_name]
    after = {
        p: None if key is None else [key[n] for n in other_names] for p, key in positions.items()
    }
    return encode_cursor({"index": listing.label, "after": after})


class _Stream:
    """One partition's entries, in index order, read lazily."""

    def __init__(
        self, db: Dynamo, listing: Listing, partition: str, start: Item | None, page_size: int
    ) -> None:
        self.partition = partition
        self.head: Item | None = None
        self.ended = False
        self.produced = 0
        if listing.scan:
            self._entries: Iterator[Item] = _scan(db, listing.table.name, start, page_size)
            self._advance()
            return
        names = {"#pk": listing.pk_name, **listing.names}
        condition = "#pk = :pk"
        if listing.range_condition:
            condition += f" AND {listing.range_condition}"
        self._entries = db.query(
            listing.table.name,
            index=listing.index,
            key_condition=condition,
            names=names,
            values={":pk": partition, **listing.values},
            forward=listing.forward,
            start_key=start,
            page_size=page_size,
            consistent=listing.consistent,
        )
        self._advance()

    def _advance(self) -> None:
        try:
            self.head = next(self._entries)
            self.produced += 1
        except StopIteration:
            self.head, self.ended = None, True

    def take(self) -> Item:
        assert self.head is not None
        entry = self.head
        self._advance()
        return entry


def read_page(
    db: Dynamo,
    listing: Listing,
    *,
    limit: int,
    cursor: str | None,
    fetch: Callable[[list[Item]], Sequence[T | None]],
    matches: Callable[[T], bool] = lambda _: True,
    budget: int = SCAN_BUDGET,
    weigh: Callable[[T], int] | None = None,
    max_weight: int = 0,
) -> Slice[T]:
    """One page of ``listing`` (see the module docstring); ``fetch`` turns entries into values.

    ``fetch`` gets entries in order and returns one value per entry (None: gone,
    e.g. deleted since the index was written), ``matches`` keeps values. With
    ``weigh``, a page also ends before the value that would take its total weight
    past ``max_weight`` (it always holds at least one): e.g. bytes of log messages.
    """
    check_limit(limit)
    if budget < 1:
        raise ValueError("budget must be >= 1")
    positions = _positions(listing, cursor)
    sort = listing.sk_name
    page_size = min(MAX_PAGE_LIMIT, max(limit + 1, 25))
    streams = [
        _Stream(db, listing, p, start, page_size)
        for p in listing.partitions
        if p in positions
        for start in [positions[p]]
    ]
    consumed: list[tuple[_Stream, Item, bool]] = []  # in merged order: (stream, entry, matched)
    found: list[T] = []
    examined = 0
    weight = 0
    full = False
    while len(found) <= limit and examined < budget and not full:
        chunk: list[tuple[_Stream, Item]] = []
        want = min(BATCH_GET_MAX_KEYS, budget - examined, max(2 * (limit + 1 - len(found)), 25))
        while len(chunk) < want:
            live = [s for s in streams if s.head is not None]
            if not live:
                break
            best = live[0]
            for s in live[1:]:
                a, b = (s.head or {}).get(sort or "", ""), (best.head or {}).get(sort or "", "")
                if (a < b) if listing.forward else (a > b):
                    best = s
            chunk.append((best, best.take()))
        if not chunk:
            break
        values = fetch([e for _, e in chunk])
        for (stream, entry), value in zip(chunk, values, strict=True):
            hit = value is not None and matches(value)
            if hit and weigh is not None and len(found) < limit:
                assert value is not None
                heavy = weigh(value)
                if found and weight + heavy > max_weight:
                    full = True  # this one starts the next page
                    break
                weight += heavy
            examined += 1
            consumed.append((stream, entry, hit))
            if hit:
                assert value is not None
                found.append(value)
                if len(found) == limit + 1:
                    break
    more = len(found) > limit
    if more:
        # cut after the last returned value: the extra one and what followed are read again
        found = found[:limit]
        hits = 0
        for i, (_, _, hit) in enumerate(consumed):
            hits += hit
            if hits == limit:
                consumed = consumed[: i + 1]
                break
    kept: dict[str, int] = {}
    for stream, entry, _ in consumed:
        positions[stream.partition] = {k: entry[k] for k in listing.key_names}
        kept[stream.partition] = kept.get(stream.partition, 0) + 1
    for stream in streams:
        if stream.ended and kept.get(stream.partition, 0) == stream.produced:
            positions.pop(stream.partition, None)
    next_cursor = _encode(listing, positions) if positions else None
    return Slice(items=found, next_cursor=next_cursor)


def _scan(db: Dynamo, table: str, start: Item | None, page_size: int) -> Iterator[Item]:
    """A strongly consistent ``Scan`` of ``table`` after ``start``, item by item, lazily."""
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True, "Limit": page_size}
    if start:
        kwargs["ExclusiveStartKey"] = serialize(start)
    while True:
        out = db._call("scan", **kwargs)
        for raw in out.get("Items", []):
            yield deserialize(raw)
        last = out.get("LastEvaluatedKey")
        if not last:
            return
        kwargs["ExclusiveStartKey"] = last


def batch_get(
    db: Dynamo,
    table: str,
    keys: Sequence[Mapping[str, Any]],
    key_names: Sequence[str],
    *,
    projection: str | None = None,
    names: Mapping[str, str] | None = None,
) -> list[Item | None]:
    """The items named by ``keys``, in order (None where absent), eventually consistent.

    ``BatchGetItem`` of at most 100 keys per request; unprocessed keys are asked
    for again after a capped exponential backoff.
    """
    found: dict[tuple[Any, ...], Item] = {}
    unique = list({tuple(k[n] for n in key_names): k for k in keys}.values())
    for start in range(0, len(unique), BATCH_GET_MAX_KEYS):
        request: dict[str, Any] = {"Keys": [serialize(k) for k in unique[start : start + 100]]}
        if projection:
            request["ProjectionExpression"] = projection
        if names:
            request["ExpressionAttributeNames"] = dict(names)
        pending: dict[str, Any] = {table: request}
        attempt = 0
        while pending:
            out = db._call("batch_get_item", RequestItems=pending)
            for raw in out.get("Responses", {}).get(table, []):
                item = deserialize(raw)
                found[tuple(item[n] for n in key_names)] = item
            pending = out.get("UnprocessedKeys") or {}
            if pending:
                _UNPROCESSED_BACKOFF.sleep(attempt, sleep=time.sleep)
                attempt += 1
    return [found.get(tuple(k[n] for n in key_names)) for k in keys]


__all__ = [
    "MAX_PAGE_LIMIT",
    "SCAN",
    "SCAN_BUDGET",
    "Listing",
    "Slice",
    "batch_get",
    "check_limit",
    "read_page",
]
