"""Task cache records in DynamoDB: cache key -> result reference, with a compute lock.

One item per cache key in the cache table (partition key ``cache_key``, TTL
attribute ``ttl_at``). An item is in one of two forms, told apart by ``status``:

``pending``
    A compute lock: ``owner`` (who computes: the task run id), ``lock_until``
    (epoch seconds, float) and ``ttl_at`` (so that DynamoDB eventually removes a
    lock whose holder died; the store never relies on TTL timing).
``ready``
    A :class:`CacheRecord` as JSON in ``doc``, plus ``task_key``, ``created``,
    ``valid_until`` (epoch seconds of ``expires_at``, absent when the record
    never expires) and ``ttl_at`` (``expires_at`` in whole seconds, absent when
    it never expires).

Ownership: a live lock belongs to its owner. Nobody else takes it over before
``lock_until`` passes, not even with ``refresh``; only the owner writes the
record under its lock; a lock is a short lease (the engine's is 30 s) that its
holder renews while it computes, so a dead holder's key is free again within
seconds. A record's payload is authenticated by the engine (an HMAC over
pickles, :mod:`runtime.payload_auth`), not by this store: whoever may write
here cannot make the engine run code.

Concurrency contract (Prefect's SERIALIZABLE isolation, without a lock
manager to run): two concurrent runs with the same key compute once.

1. :meth:`CacheStore.read` -- a hit ends here. A pending lock, an expired
   record or no item is a miss.
2. :meth:`CacheStore.try_lock` -- ONE conditional ``PutItem`` that writes the
   pending marker only if the key is absent, holds an expired record, holds a
   stale lock (``lock_until`` passed), is already locked by the same owner (a
   renewal), or, with ``refresh=True`` (``refresh_cache``), holds any record.
   Exactly one of many racing callers wins and computes; a loser learns who
   holds the key (:class:`LockAttempt`).
3. The winner renews its lock (:meth:`CacheStore.lock` again, same owner) while
   it computes, then calls :meth:`CacheStore.write` (conditional on still owning
   the lock) when it succeeds, or :meth:`CacheStore.unlock` when the computation
   fails, giving the key up.
4. A loser WAITS with :meth:`CacheStore.wait_for`: it returns the winner's
   record as soon as it is written, or None when the lock disappears (the
   winner gave up) or expires (the winner died) -- the caller then goes back to
   step 2 and takes over -- or when its own timeout passes. It polls with
   backoff (at most one read a second once the wait is long).

Typical engine loop (the engine also renews the lock in the background)::

    record = cache.read(key)
    while record is None:
        attempt = cache.try_lock(key, owner, lock_seconds=30)
        if attempt.acquired:
            try:
                value = compute()
            except BaseException:
                cache.unlock(key, owner)
                raise
            cache.write(key, CacheRecord(key=key, result=persist(value), ...), owner)
            break
        record = cache.wait_for(key, timeout=30)  # attempt.holder is computing it

Records are shared by every flow and deployment of the installation (the key
alone decides), can be listed and cleared (:meth:`CacheStore.list`,
:meth:`CacheStore.clear`), and expire by ``expires_at`` at read time, whatever
TTL does. Clearing a record does not delete the result object it points at.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from runtime.backoff import Backoff
from runtime.errors import CacheKeyLocked, CacheLockLost
from runtime.models import CacheRecord, LockAttempt, Page
from runtime.resources import TableSpec
from runtime.states import utcnow
from runtime.stores.dynamo import ConditionFailed, Dynamo, Item, epoch, iso
from runtime.stores.paging import MAX_PAGE_LIMIT, SCAN, SCAN_BUDGET, Listing, read_page

__all__ = ["CacheKeyLocked", "CacheLockLost", "CacheRecord", "CacheStore", "LockAttempt"]

PENDING = "pending"
READY = "ready"

_NAMES = {"#k": "cache_key", "#s": "status", "#o": "owner"}


def _ts(now: datetime | None) -> float:
    return (now or utcnow()).timestamp()


class CacheStore:
    """Every operation on cache records and compute locks (see the module docstring)."""

    def __init__(self, db: Dynamo, table: TableSpec) -> None:
        self.db = db
        self.table = table

    # ------------------------------------------------------------------ items

    @staticmethod
    def to_item(record: CacheRecord) -> Item:
        """The ready item of a record."""
        item: Item = {
            "cache_key": record.key,
            "status": READY,
            "doc": record.model_dump_json(),
            "task_key": record.task_key,
            "created": iso(record.created),
        }
        if record.expires_at is not None:
            item["valid_until"] = record.expires_at.timestamp()
            item["ttl_at"] = epoch(record.expires_at)
        return item

    @staticmethod
    def from_item(item: Mapping[str, Any]) -> CacheRecord | None:
        """The record of a ready item; None for a pending lock."""
        if item.get("status") != READY:
            return None
        return CacheRecord.model_validate_json(item["doc"])

    @staticmethod
    def _state(item: Item | None, now: float) -> Literal["absent", "ready", "locked", "stale"]:
        """What an item means at ``now``: a live record, a live lock, or nothing usable."""
        if item is None:
            return "absent"
        if item.get("status") == PENDING:
            return "locked" if float(item.get("lock_until", 0)) > now else "stale"
        valid_until = item.get("valid_until")
        if valid_until is not None and float(valid_until) <= now:
            return "stale"
        return "ready"

    # ------------------------------------------------------------------ read

    def read(self, key: str, now: datetime | None = None) -> CacheRecord | None:
        """The live record for ``key`` (consistent read); None for a miss.

        No item, a pending lock and a record past its ``expires_at`` are all misses.
        """
        item = self.db.get(self.table.name, {"cache_key": key})
        if self._state(item, _ts(now)) != "ready":
            return None
        assert item is not None
        return self.from_item(item)

    # ------------------------------------------------------------------ lock

    def try_lock(
        self,
        key: str,
        owner: str,
        lock_seconds: float,
        now: datetime | None = None,
        refresh: bool = False,
    ) -> LockAttempt:
        """Take (or renew) the compute lock on ``key`` for ``lock_seconds``.

        One conditional ``PutItem``: it succeeds when the key is absent, holds an
        expired record, holds a lock that expired or that ``owner`` already holds
        (a renewal), or (``refresh=True``, Prefect's ``refresh_cache``) holds any
        record. It fails while someone else holds a live lock -- ``refresh`` or
        not -- and, without ``refresh``, while a valid record exists; the
        :class:`LockAttempt` then says who holds the key.
        """
        if lock_seconds <= 0:
            raise ValueError("lock_seconds must be > 0")
        ts = _ts(now)
        lock_until = ts + lock_seconds
        condition = (
            "attribute_not_exists(#k)"
            " OR (#s = :pending AND (lock_until <= :now OR #o = :owner))"
            " OR (#s = :ready AND valid_until <= :now)"
        )
        if refresh:
            condition += " OR #s = :ready"
        item: Item = {
            "cache_key": key,
            "status": PENDING,
            "owner": owner,
            "lock_until": lock_until,
            "locked_at": iso(now or utcnow()),
            "ttl_at": math.ceil(lock_until) + 1,
        }
        try:
            self.db.put(
                self.table.name,
                item,
                condition=condition,
                names=_NAMES,
                values={":pending": PENDING, ":ready": READY, ":now": ts, ":owner": owner},
            )
        except ConditionFailed as lost:
            current = lost.current or {}
            if current.get("status") == PENDING:
                return LockAttempt(
                    False, str(current.get("owner")), float(current.get("lock_until", 0))
                )
            return LockAttempt(False)
        return LockAttempt(True, owner, lock_until)

    def lock(
        self,
        key: str,
        owner: str,
        lock_seconds: float,
        now: datetime | None = None,
        refresh: bool = False,
    ) -> bool:
        """:meth:`try_lock`, answering only whether ``owner`` now holds the key."""
        return self.try_lock(key, owner, lock_seconds, now, refresh).acquired

    def write(self, key: str, record: CacheRecord, owner: str) -> None:
        """Store ``record`` under ``key``, replacing ``owner``'s pending lock.

        Only the owner of the lock writes: conditional on ``owner`` still
        holding it (even if it expired, as long as nobody took it over). Raises
        :class:`CacheLockLost` when the key holds no lock of ``owner`` (taken
        over, cleared, or never locked); the caller's own result is still valid.
        """
        if record.key != key:
            raise ValueError(f"record.key {record.key!r} does not match key {key!r}")
        try:
            self.db.put(
                self.table.name,
                self.to_item(record),
                condition="#s = :pending AND #o = :owner",
                names={"#s": "status", "#o": "owner"},
                values={":pending": PENDING, ":owner": owner},
            )
        except ConditionFailed as lost:
            current = lost.current
            if current is None:
                holder = "nobody (the key is not locked)"
            else:
                holder = str(current.get("owner") or "a completed record")
            raise CacheLockLost(
                f"cache key {key!r} is not locked by {owner!r} (now held by {holder}); "
                f"the record was not written",
                key=key,
            ) from None

    def unlock(self, key: str, owner: str) -> bool:
        """Give up ``owner``'s pending lock on ``key`` so a waiter can compute; True if deleted.

        Does nothing (False) when the lock is gone or belongs to someone else.
        """
        try:
            self.db.delete(
                self.table.name,
                {"cache_key": key},
                condition="#s = :pending AND #o = :owner",
                names={"#s": "status", "#o": "owner"},
                values={":pending": PENDING, ":owner": owner},
            )
        except ConditionFailed:
            return False
        return True

    def wait_for(
        self, key: str, timeout: float, poll: float = 0.05, max_poll: float = 1.0
    ) -> CacheRecord | None:
        """Wait for the lock holder's record; None when the caller should try the lock again.

        Polls with consistent reads after a backoff with full jitter
        (:class:`~runtime.backoff.Backoff`) whose ceiling starts at ``poll`` seconds
        and doubles up to ``max_poll``: a waiter averages at most a few reads a
        second, fewer the longer it waits. Returns the record as soon as a live one is there;
        returns None when the key has no live lock any more (the holder gave up
        or its lease expired: take the lock with :meth:`try_lock` and compute)
        or after ``timeout`` seconds.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        backoff = Backoff(base=poll, cap=max(max_poll, poll))
        attempt = 0
        while True:
            item = self.db.get(self.table.name, {"cache_key": key})
            state = self._state(item, _ts(None))
            if state == "ready":
                assert item is not None
                return self.from_item(item)
            if state != "locked":
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            backoff.sleep(attempt, sleep=time.sleep, limit=remaining)
            attempt += 1

    # ------------------------------------------------------------------ admin

    def list(
        self,
        task_key: str | None = None,
        limit: int = 100,
        *,
        include_expired: bool = False,
        now: datetime | None = None,
    ) -> list[CacheRecord]:
        """Cache records (of ``task_key``, or all), newest first, at most ``limit``.

        An admin operation: it reads every page of :meth:`list_page` (the whole
        table, a bounded ``Scan`` per page) and keeps the newest. The engine never
        calls it. Pending locks are not records and are left out; expired records
        too unless ``include_expired``.
        """
        records: list[CacheRecord] = []
        cursor = None
        while True:
            page = self.list_page(
                task_key,
                limit=MAX_PAGE_LIMIT,
                cursor=cursor,
                include_expired=include_expired,
                now=now,
            )
            records += page.items
            cursor = page.next_cursor
            if cursor is None:
                break
        records.sort(key=lambda r: r.created, reverse=True)
        return records[: max(limit, 0)]

    def list_page(
        self,
        task_key: str | None = None,
        *,
        limit: int = 100,
        cursor: str | None = None,
        include_expired: bool = False,
        now: datetime | None = None,
        budget: int = SCAN_BUDGET,
    ) -> Page[CacheRecord]:
        """One page of cache records (of ``task_key``, or all), newest first within the page.

        Pages follow the table's own order (a strongly consistent ``Scan``, at most
        ``budget`` items examined per call, so a call stays short however large the
        table); pass ``next_cursor`` back for the next one. A page may hold fewer
        than ``limit`` records, even none, and still have a cursor.
        """
        ts = _ts(now)

        def matches(item: Item) -> bool:
            if task_key is not None and item.get("task_key") != task_key:
                return False
            if item.get("status") != READY:
                return False
            return include_expired or self._state(item, ts) == "ready"

        page = read_page(
            self.db,
            Listing(self.table, None, (SCAN,)),
            limit=limit,
            cursor=cursor,
            fetch=lambda entries: entries,
            matches=matches,
            budget=budget,
        )
        records = [r for r in (self.from_item(i) for i in page.items) if r is not None]
        records.sort(key=lambda r: r.created, reverse=True)
        return Page[CacheRecord](items=records, next_cursor=page.next_cursor)

    def clear(self, key: str | None = None, task_key: str | None = None) -> int:
        """Delete cache items; returns how many were deleted.

        ``key``: that one key (record or pending lock). ``task_key``: every
        record of that task (a Scan). Neither: everything, locks included (a
        Scan). Result objects in S3 are left alone: run states may still point
        at them.
        """
        if key is not None:
            if task_key is not None:
                try:
                    self.db.delete(
                        self.table.name,
                        {"cache_key": key},
                        condition="task_key = :tk",
                        values={":tk": task_key},
                    )
                except ConditionFailed:
                    return 0
                return 1
            deleted = self.db.delete(self.table.name, {"cache_key": key})
            return 0 if deleted is None else 1
        if task_key is not None:
            items = list(self.db.scan(self.table.name, "task_key = :tk", None, {":tk": task_key}))
        else:
            items = list(
                self.db.scan(
                    self.table.name,
                )
            )
        count = 0
        for item in items:
            try:
                if task_key is not None:
                    # Only if the key still holds a record of that task (not a newer one).
                    self.db.delete(
                        self.table.name,
                        {"cache_key": item["cache_key"]},
                        condition="task_key = :tk",
                        values={":tk": task_key},
                    )
                else:
                    if self.db.delete(self.table.name, {"cache_key": item["cache_key"]}) is None:
                        continue
            except ConditionFailed:
                continue
            count += 1
        return count
