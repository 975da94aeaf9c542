"""Concurrency limits as leases, in DynamoDB.

A limit is a counter item (``active`` slots out of ``limit``); holding slots is
a lease item with an expiry. Acquire and release are single transactions that
move the counter and the lease together, each conditioned so that ``active``
can never exceed ``limit`` and a lease is released at most once. A process that
dies leaks nothing: once its lease expires, any acquirer or the sweep reclaims
it, and DynamoDB TTL deletes the lease item later as a backstop (the sweep's
reconciliation corrects the counter if TTL ever gets there first).

Rate limits (``slot_decay_per_second > 0``) are leaky buckets: the limit item
records when everything granted so far will have drained (``drain_at``), and a
grant of ``slots`` pushes it ``slots / decay`` seconds further; the lease expires
then, whatever the holder does (releasing early frees nothing, which is what a
rate limit means). So after a first burst of ``limit`` slots, slots come back at
``decay`` per second, as Prefect's decaying ``active_slots`` do.

An inactive limit (``active=False``) exists but is not enforced: acquiring takes
no slot on it (the lease says so in ``inactive_names``).
"""

from __future__ import annotations

import contextlib
import time
import uuid
import zlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Literal

from runtime.backoff import Backoff
from runtime.errors import AlreadyExists, Conflict, InvalidInput, LimitExceeded, NotFound
from runtime.models import ConcurrencyLimit, ConcurrencyLimitCreate, ConcurrencyLimitUpdate, Lease
from runtime.resources import TableSpec
from runtime.states import utcnow
from runtime.stores.dynamo import (
    ConditionFailed,
    Dynamo,
    Item,
    TransactionFailed,
    epoch,
    iso,
)

TTL_GRACE = timedelta(hours=1)
"""DynamoDB TTL deletes a lease item this long after it expires: the sweep comes first."""

MAX_ATTEMPTS = 10

SWEEP_INTERVAL = timedelta(seconds=1)
"""A full ``acquire`` sweeps expired leases at most this often per store (by its clock): the
sweep queries every lease shard, and waiters poll a full limit many times a second."""

CONFLICT_BACKOFF = Backoff(base=0.01, cap=0.5)
"""The wait before ``acquire`` tries again after a transaction conflict or a resized limit."""


def _limit_key(name: str) -> dict[str, str]:
    return {"pk": f"limit#{name}"}


AcquireMode = Literal["concurrency", "rate_limit"]
"""``rate_limit`` accepts only limits with slot decay (Prefect's ``mode``)."""


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _drained(item: Item, slots: int, moment: datetime) -> bool:
    """Whether a rate limit's bucket has room for ``slots`` at ``moment`` (by its drain time)."""
    drain = _parse(item.get("drain_at"))
    if drain is None:
        return True
    left = (drain - moment).total_seconds() * float(item["slot_decay_per_second"])
    return bool(left <= int(item["limit"]) - slots + 1e-6)


def _lease_key(lease_id: str) -> dict[str, str]:
    return {"pk": f"lease#{lease_id}"}


LEASE_SHARDS = 8
"""``by_type`` partitions leases are spread over (``lease#0`` ... ``lease#7``, from the id):
every acquire writes a lease, so one ``lease`` partition would take them all."""


def lease_type(lease_id: str) -> str:
    """The ``item_type`` (and ``by_type`` partition) of a lease: ``lease#<shard>``."""
    return f"lease#{zlib.crc32(lease_id.encode()) % LEASE_SHARDS}"


def _as_limit(item: Item) -> ConcurrencyLimit:
    return ConcurrencyLimit(
        id=item.get("limit_id", ""),
        name=item["name"],
        limit=item["limit"],
        active=not item.get("disabled", False),
        active_slots=item.get("active", 0),
        slot_decay_per_second=item.get("slot_decay_per_second", 0.0),
        created=item["created"],
        updated=item["updated"],
    )


def _as_lease(item: Item) -> Lease:
    return Lease(
        id=item["lease_id"],
        limit_names=item["limits"],
        slots=item["slots"],
        expires_at=datetime.fromisoformat(item["sort_value"]),
        holder=item.get("holder"),
        decays=bool(item.get("decays", False)),
    )


def _same_lease(item: Item, lease_id: str, names: list[str], slots: int) -> Lease:
    """The stored lease ``item`` if it is the one a repeated acquire asks for, else Conflict."""
    if sorted(item["limits"]) != names or item["slots"] != slots:
        raise Conflict(
            f"lease id {lease_id} already holds {item['slots']} slot(s) on "
            f"{sorted(item['limits'])}: choose a new id for another request",
            lease_id=lease_id,
        )
    return _as_lease(item)


class ConcurrencyStore:
    """Create, read, list and delete limits; acquire, renew and release leases; sweep."""

    def __init__(self, db: Dynamo, table: TableSpec) -> None:
        self.db = db
        self.table = table
        # Limit sizes last seen: acquire conditions on the size it assumes, so a stale
        # one costs a failed condition (which returns the item as it is), never a wrong grant.
        self._known: dict[str, Item] = {}
        # when a full acquire last swept expired leases (see SWEEP_INTERVAL)
        self._last_sweep: datetime | None = None

    # ------------------------------------------------------------------ limits

    def create_limit(self, request: ConcurrencyLimitCreate) -> ConcurrencyLimit:
        """Create a limit; AlreadyExists if the name is taken."""
        now = utcnow()
        limit = ConcurrencyLimit(
            id=str(uuid.uuid4()),
            name=request.name,
            limit=request.limit,
            active=request.active,
            slot_decay_per_second=request.slot_decay_per_second,
            created=now,
            updated=now,
        )
        try:
            self.db.put(
                self.table.name,
                {
                    **_limit_key(limit.name),
                    "item_type": "limit",
                    "sort_value": limit.name,
                    "name": limit.name,
                    "limit_id": limit.id,
                    "limit": limit.limit,
                    "disabled": not limit.active,
                    "config": 0,
                    "active": 0,
                    "version": 0,
                    "slot_decay_per_second": limit.slot_decay_per_second,
                    "created": iso(now),
                    "updated": iso(now),
                },
                condition="attribute_not_exists(pk)",
            )
        except ConditionFailed:
            raise AlreadyExists(f"concurrency limit {request.name!r} already exists") from None
        return limit

    def update_limit(
        self, name: str, limit: int | ConcurrencyLimitUpdate | None = None
    ) -> ConcurrencyLimit:
        """Change a limit's size, ``active`` flag or slot decay (only the fields given).

        Slots already held stay held (new ones wait below a smaller size). Every
        change bumps the limit's ``config`` counter, which acquire conditions on, so
        no grant is ever made against a size, flag or decay that no longer holds.
        """
        change = limit if isinstance(limit, ConcurrencyLimitUpdate) else None
        size = change.limit if change is not None else limit
        if isinstance(size, int) and size < 0:
            raise InvalidInput("limit must be >= 0", field="limit")
        sets = ["updated = :now"]
        values: dict[str, Any] = {":now": iso(utcnow()), ":one": 1}
        if size is not None:
            sets.append("#limit = :limit")
            values[":limit"] = size
        if change is not None and change.active is not None:
            sets.append("disabled = :disabled")
            values[":disabled"] = not change.active
        if change is not None and change.slot_decay_per_second is not None:
            if change.slot_decay_per_second < 0:
                raise InvalidInput(
                    "slot_decay_per_second must be >= 0", field="slot_decay_per_second"
                )
            sets.append("slot_decay_per_second = :decay")
            values[":decay"] = change.slot_decay_per_second
        try:
            item = self.db.update(
                self.table.name,
                _limit_key(name),
                f"SET {', '.join(sets)} ADD version :one, config :one",
                condition="attribute_exists(pk)",
                names={"#limit": "limit"} if size is not None else None,
                values=values,
            )
        except ConditionFailed:
            raise NotFound(f"concurrency limit {name!r} not found", name=name) from None
        assert item is not None
        self._known[name] = item
        return _as_limit(item)

    def read_limit(self, name: str) -> ConcurrencyLimit:
        """One limit with its active slot count, or NotFound."""
        item = self.db.get(self.table.name, _limit_key(name))
        if item is None:
            raise NotFound(f"concurrency limit {name!r} not found", name=name)
        return _as_limit(item)

    def list_limits(self) -> list[ConcurrencyLimit]:
        """Every limit, by name."""
        items = self.db.query(
            self.table.name,
            index="by_type",
            key_condition="item_type = :t",
            values={":t": "limit"},
        )
        return [_as_limit(i) for i in items]

    def delete_limit(self, name: str) -> None:
        """Delete a limit (NotFound if absent). Leases on it are released without effect."""
        try:
            self.db.delete(self.table.name, _limit_key(name), condition="attribute_exists(pk)")
        except ConditionFailed:
            raise NotFound(f"concurrency limit {name!r} not found", name=name) from None

    # ------------------------------------------------------------------ leases

    def acquire(
        self,
        names: Iterable[str],
        slots: int = 1,
        *,
        lease_seconds: float = 60.0,
        holder: str | None = None,
        lease_id: str | None = None,
        now: datetime | None = None,
        missing_ok: bool = False,
        mode: AcquireMode = "concurrency",
    ) -> Lease | None:
        """Take ``slots`` on every named active limit at once, or none: one transaction.

        Returns the lease, or None when a limit has too few free slots right now
        (expired leases are reclaimed first, so a dead holder never blocks).
        Raises NotFound for an unknown limit (unless ``missing_ok``: then it is
        skipped and named in the lease's ``missing_names``) and LimitExceeded when
        the request can never fit (e.g. a limit of 0). Inactive limits are skipped
        (``inactive_names``). When no named limit is active and present, the lease
        holds nothing (empty ``limit_names``) and nothing is written.
        ``mode="rate_limit"`` refuses (InvalidInput) active limits without slot decay.

        ``lease_id`` is the caller's id for the lease (default: a fresh UUID). The
        lease is put only if no lease has that id, so a repeat of the request (a
        retry after a lost response) returns the lease the first one took, with
        its expiry, and takes no second slot; a lease id already used for other
        limits or another slot count is a Conflict.
        """
        requested = sorted(set(names))
        if not requested:
            raise InvalidInput("name at least one limit", field="names")
        if slots < 1:
            raise InvalidInput("slots must be >= 1", field="slots")
        if lease_seconds <= 0:
            raise InvalidInput("lease_seconds must be > 0", field="lease_seconds")
        if mode not in ("concurrency", "rate_limit"):
            raise InvalidInput("mode must be 'concurrency' or 'rate_limit'", field="mode")
        chosen = lease_id is not None
        lease_id = lease_id if lease_id is not None else str(uuid.uuid4())
        swept = False
        retries = 0
        for _ in range(MAX_ATTEMPTS):
            moment = now or utcnow()
            limits, missing, inactive = self._resolve(requested, missing_ok)
            for name in [n for n, i in limits.items() if slots > i["limit"]]:
                item = limits[name] = self._limit_item(name)  # never refuse on a stale item
                if item.get("disabled"):
                    del limits[name]
                    inactive = sorted([*inactive, name])
            wanted = sorted(limits)
            for name, item in limits.items():
                if slots > item["limit"]:
                    held = self.db.get(self.table.name, _lease_key(lease_id)) if chosen else None
                    if held is not None:  # a repeat of a request that got its slots
                        return _same_lease(held, lease_id, wanted, slots)
                    raise LimitExceeded(
                        f"concurrency limit {name!r} is {item['limit']}: {slots} slot(s) "
                        "can never be acquired",
                        name=name,
                        limit=item["limit"],
                    )
            decays = [n for n in wanted if limits[n].get("slot_decay_per_second", 0) > 0]
            if mode == "rate_limit" and len(decays) < len(wanted):
                plain = ",".join(n for n in wanted if n not in decays)
                raise InvalidInput(
                    "Only concurrency limits with slot decay can be used for rate limiting. "
                    f"The following limits do not have a decay configured: {plain!r}",
                    field="names",
                )
            if not wanted:  # nothing to enforce: an empty lease, never stored
                return Lease(
                    id=lease_id,
                    limit_names=[],
                    slots=slots,
                    expires_at=moment,
                    holder=holder,
                    inactive_names=inactive,
                    missing_names=missing,
                )
            expires = moment + timedelta(seconds=lease_seconds)
            drains: dict[str, datetime] = {}
            for name in decays:
                # a leaky bucket: this grant drains slots / decay after everything before it
                item = limits[name]
                drained = _parse(item.get("drain_at"))
                start = max(moment, drained) if drained is not None else moment
                drains[name] = start + timedelta(seconds=slots / item["slot_decay_per_second"])
            drain_at = max(drains.values()) if drains else None
            if drain_at is not None:
                expires = max(expires, drain_at) if mode == "concurrency" else drain_at
            ops: list[dict[str, Any]] = [
                self._take(limits[name], slots, drains.get(name)) for name in wanted
            ]
            ops.append(
                {
                    "Put": {
                        "TableName": self.table.name,
                        "Item": {
                            **_lease_key(lease_id),
                            "item_type": lease_type(lease_id),
                            "sort_value": iso(expires),
                            "lease_id": lease_id,
                            "limits": wanted,
                            "slots": slots,
                            "holder": holder,
                            "decays": bool(decays),
                            "drain_at": iso(drain_at) if drain_at is not None else None,
                            "ttl_at": epoch(expires + TTL_GRACE),
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
            try:
                self.db.transact(ops)
                return Lease(
                    id=lease_id,
                    limit_names=wanted,
                    slots=slots,
                    expires_at=expires,
                    holder=holder,
                    decays=bool(decays),
                    inactive_names=inactive,
                    missing_names=missing,
                )
            except TransactionFailed as failed:
                existing = failed.items[len(wanted)] if len(failed.items) > len(wanted) else None
                if existing is not None:  # the lease id is taken: our own earlier attempt?
                    return _same_lease(existing, lease_id, wanted, slots)
                full: list[Item] = []
                for name, code, old in zip(wanted, failed.reasons, failed.items, strict=False):
                    if code != "ConditionalCheckFailed":
                        continue
                    if old is None:  # deleted meanwhile
                        self._known.pop(name, None)
                        continue
                    self._known[name] = old  # learn the limit as it is now
                    same = old.get("config") == limits[name].get("config") and old.get(
                        "limit"
                    ) == limits[name].get("limit")
                    if same and old.get("active", 0) > old["limit"] - slots:
                        full.append(old)
                if full and all(i.get("slot_decay_per_second", 0) > 0 for i in full):
                    # rate limits: sweep exactly when their buckets say a slot has drained
                    if not swept and all(_drained(i, slots, moment) for i in full):
                        swept = True
                        if self.sweep(now=moment):
                            continue
                    return None
                if full and not swept and self._sweep_due(moment, limits):
                    swept = True
                    if self.sweep(now=moment):
                        continue
                if full:
                    return None
                # the limit changed, or a transaction conflict: back off, read, retry
                CONFLICT_BACKOFF.sleep(retries, sleep=time.sleep)
                retries += 1
        raise Conflict(f"could not acquire {requested}: limits kept changing")

    def _resolve(
        self, names: list[str], missing_ok: bool
    ) -> tuple[dict[str, Item], list[str], list[str]]:
        """The active limits among ``names`` (items), the missing ones, the inactive ones.

        A limit last seen inactive is read again (it may have been enabled since): only
        active limits take part in the transaction, whose conditions catch other changes.
        """
        active: dict[str, Item] = {}
        missing: list[str] = []
        inactive: list[str] = []
        for name in names:
            item = self._known.get(name)
            try:
                if item is None or item.get("disabled"):
                    item = self._limit_item(name)
            except NotFound:
                if not missing_ok:
                    raise
                missing.append(name)
                continue
            if item.get("disabled"):
                inactive.append(name)
            else:
                active[name] = item
        return active, missing, inactive

    def _take(self, item: Item, slots: int, drain_at: datetime | None) -> dict[str, Any]:
        """The transaction step that takes ``slots`` on one limit as ``item`` last showed it."""
        condition = "#limit = :limit AND active <= :room AND "
        condition += "config = :config" if "config" in item else "attribute_not_exists(config)"
        condition += " AND (attribute_not_exists(disabled) OR disabled = :false)"
        values: dict[str, Any] = {
            ":n": slots,
            ":one": 1,
            ":limit": item["limit"],
            ":room": item["limit"] - slots,
            ":false": False,
        }
        if "config" in item:
            values[":config"] = item["config"]
        update = "ADD active :n, version :one"
        if drain_at is not None:
            update = "SET drain_at = :drain " + update
            values[":drain"] = iso(drain_at)
            if item.get("drain_at") is not None:
                condition += " AND drain_at = :drained"
                values[":drained"] = item["drain_at"]
            else:
                condition += " AND attribute_not_exists(drain_at)"
        return {
            "Update": {
                "TableName": self.table.name,
                "Key": _limit_key(item["name"]),
                "UpdateExpression": update,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#limit": "limit"},
                "ExpressionAttributeValues": values,
            }
        }

    def _limit_item(self, name: str) -> Item:
        item = self.db.get(self.table.name, _limit_key(name))
        if item is None:
            self._known.pop(name, None)
            raise NotFound(f"concurrency limit {name!r} not found", name=name)
        self._known[name] = item
        return item

    def read_lease(self, lease_id: str) -> Lease:
        """A lease that has not been released or reclaimed, or NotFound."""
        item = self.db.get(self.table.name, _lease_key(lease_id))
        if item is None:
            raise NotFound(f"lease {lease_id} not found (released or expired)", lease_id=lease_id)
        return _as_lease(item)

    def renew(
        self, lease_id: str, lease_seconds: float = 60.0, *, now: datetime | None = None
    ) -> Lease:
        """Push a lease's expiry to ``now + lease_seconds``; NotFound once it was reclaimed."""
        if lease_seconds <= 0:
            raise InvalidInput("lease_seconds must be > 0", field="lease_seconds")
        expires = (now or utcnow()) + timedelta(seconds=lease_seconds)
        try:
            item = self.db.update(
                self.table.name,
                _lease_key(lease_id),
                "SET sort_value = :exp, ttl_at = :ttl",
                condition="attribute_exists(pk) AND sort_value < :exp",
                values={":exp": iso(expires), ":ttl": epoch(expires + TTL_GRACE)},
            )
        except ConditionFailed as lost:
            if lost.current is None:
                raise NotFound(
                    f"lease {lease_id} not found (released or expired)", lease_id=lease_id
                ) from None
            return _as_lease(lost.current)  # already expires later than asked
        assert item is not None
        return _as_lease(item)

    def release(
        self, lease_id: str, *, now: datetime | None = None, known: Lease | None = None
    ) -> bool:
        """Give the lease's slots back. True if this call released it, False if already gone.

        A lease on a rate limit is not freed early: its slots return when it expires.
        ``known`` is the lease as its holder got it from :meth:`acquire`: the release
        then needs no read first (one transaction, the fastest hand-off).
        """
        if known is not None and known.id == lease_id and not known.limit_names:
            return False  # it holds nothing (every limit inactive or missing)
        if known is not None and known.id == lease_id and not known.decays:
            item: Item | None = {
                "lease_id": known.id,
                "limits": known.limit_names,
                "slots": known.slots,
            }
        else:
            item = self.db.get(self.table.name, _lease_key(lease_id))
        if item is None:
            return False
        moment = iso(now or utcnow())
        if item.get("decays") and item["sort_value"] > moment:
            drain = item.get("drain_at")
            if drain is None or drain > moment:
                if drain is not None and drain < item["sort_value"]:
                    self._expire_at(lease_id, drain)  # its slots drain; no longer held open
                return False
        return self._free(item, condition="attribute_exists(pk)", values={})

    def _expire_at(self, lease_id: str, moment: str) -> None:
        """Bring a rate-limit lease's expiry forward to ``moment`` (when its slots drain)."""
        # ConditionFailed: already released, or already expiring by then
        with contextlib.suppress(ConditionFailed):
            self.db.update(
                self.table.name,
                _lease_key(lease_id),
                "SET sort_value = :exp, ttl_at = :ttl",
                condition="attribute_exists(pk) AND sort_value > :exp",
                values={
                    ":exp": moment,
                    ":ttl": epoch(datetime.fromisoformat(moment) + TTL_GRACE),
                },
                return_new=False,
            )

    def _free(self, lease: Item, *, condition: str, values: dict[str, Any]) -> bool:
        """Delete a lease and decrement its limits' counters, in one transaction."""
        names = list(lease["limits"])
        for _ in range(MAX_ATTEMPTS):
            ops: list[dict[str, Any]] = [
                {
                    "Delete": {
                        "TableName": self.table.name,
                        "Key": _lease_key(lease["lease_id"]),
                        "ConditionExpression": condition,
                        **({"ExpressionAttributeValues": values} if values else {}),
                    }
                }
            ]
            ops += [
                {
                    "Update": {
                        "TableName": self.table.name,
                        "Key": _limit_key(name),
                        "UpdateExpression": "ADD active :n, version :one",
                        "ConditionExpression": "attribute_exists(pk)",
                        "ExpressionAttributeValues": {":n": -lease["slots"], ":one": 1},
                    }
                }
                for name in names
            ]
            try:
                self.db.transact(ops)
                return True
            except TransactionFailed as failed:
                if failed.reasons and failed.reasons[0] == "ConditionalCheckFailed":
                    return False  # someone else released or renewed it
                gone = [
                    n
                    for n, code in zip(names, failed.reasons[1:], strict=False)
                    if code == "ConditionalCheckFailed"
                ]
                names = [n for n in names if n not in gone]  # deleted limits: nothing to give
        raise Conflict(f"could not release lease {lease['lease_id']}")

    # ------------------------------------------------------------------ sweep

    def expired_leases(self, now: datetime | None = None) -> list[Lease]:
        """Leases whose expiry has passed and that nobody has reclaimed yet."""
        return [_as_lease(i) for i in self._expired_items(iso(now or utcnow()))]

    def _expired_items(self, moment: str) -> list[Item]:
        """Lease items past ``moment``, from every lease shard of ``by_type``."""
        return [
            item
            for shard in range(LEASE_SHARDS)
            for item in self.db.query(
                self.table.name,
                index="by_type",
                key_condition="item_type = :t AND sort_value <= :now",
                values={":t": f"lease#{shard}", ":now": moment},
            )
        ]

    def _sweep_due(self, moment: datetime, limits: dict[str, Item]) -> bool:
        """True (and ``moment`` noted) when this store's last full-limit sweep is old enough.

        Old enough is :data:`SWEEP_INTERVAL`, or one slot's decay time on a full rate
        limit that decays faster (its leases expire that often).
        """
        interval = SWEEP_INTERVAL
        for item in limits.values():
            decay = item.get("slot_decay_per_second", 0)
            if decay > 0:
                interval = min(interval, timedelta(seconds=1 / decay))
        last = self._last_sweep
        if last is not None and timedelta(0) <= moment - last < interval:
            return False
        self._last_sweep = moment
        return True

    def sweep(self, now: datetime | None = None) -> int:
        """Reclaim every expired lease; returns how many this call reclaimed.

        Safe to run anywhere, any number of times at once: each lease is freed by a
        transaction conditioned on it still existing *and still being expired*, so a
        lease renewed meanwhile survives and no lease is freed twice.
        """
        moment = iso(now or utcnow())
        reclaimed = 0
        for item in self._expired_items(moment):
            if self._free(
                item,
                condition="attribute_exists(pk) AND sort_value <= :now",
                values={":now": moment},
            ):
                reclaimed += 1
        return reclaimed

    def reconcile(self, name: str) -> ConcurrencyLimit:
        """Recount a limit's active slots from its live leases (repairs TTL-deleted leases).

        Conditioned on the limit's version: if any acquire or release happened while
        counting, nothing is written and the count is tried again. The leases are
        counted with a strongly consistent Scan of this (small) table, not the
        ``by_type`` index, whose lag could hide a lease the version already counts.
        """
        for _ in range(MAX_ATTEMPTS):
            limit = self._limit_item(name)
            leases = self.db.scan(
                self.table.name,
                "begins_with(item_type, :t) AND contains(limits, :name)",
                values={":t": "lease#", ":name": name},
            )
            held = sum(i["slots"] for i in leases)
            if held == limit.get("active", 0):
                return _as_limit(limit)
            try:
                item = self.db.update(
                    self.table.name,
                    _limit_key(name),
                    "SET active = :held ADD version :one",
                    condition="version = :v",
                    values={":held": held, ":v": limit["version"], ":one": 1},
                )
                assert item is not None
                return _as_limit(item)
            except ConditionFailed:
                continue
        raise Conflict(f"limit {name!r} kept changing while being reconciled")
