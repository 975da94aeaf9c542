"""ConcurrencyStore against moto in-process: limits, leases, expiry, sweep, rate limits.

Time is moved with the ``now=`` parameters, never by sleeping: a lease taken at
``T0`` for 10 s is expired for a sweep at ``T0 + 11 s`` whatever the wall clock says.
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from pydantic import ValidationError

from runtime.errors import AlreadyExists, Conflict, InvalidInput, LimitExceeded, NotFound
from runtime.models import ConcurrencyLimitCreate, ConcurrencyLimitUpdate, Lease
from runtime.states import utcnow
from runtime.stores import Stores
from runtime.stores.concurrency import TTL_GRACE, ConcurrencyStore, lease_type
from runtime.stores.dynamo import Item, epoch, iso

T0 = utcnow().replace(microsecond=0)


def make(stores: Stores, name: str, limit: int, decay: float = 0.0) -> None:
    stores.concurrency.create_limit(
        ConcurrencyLimitCreate(name=name, limit=limit, slot_decay_per_second=decay)
    )


def active(stores: Stores, name: str) -> int:
    return stores.concurrency.read_limit(name).active_slots


def raw(stores: Stores, pk: str) -> Item | None:
    return stores.db.get(stores.specs.concurrency.name, {"pk": pk})


def take(stores: Stores, names: list[str], slots: int = 1, seconds: float = 10.0) -> Lease:
    lease = stores.concurrency.acquire(names, slots, lease_seconds=seconds, now=T0)
    assert lease is not None, f"expected free slots on {names}"
    return lease


# ============================================================================ limits


def test_create_read_list_limits(stores: Stores) -> None:
    created = stores.concurrency.create_limit(ConcurrencyLimitCreate(name="tag:db", limit=3))
    assert (created.name, created.limit, created.active_slots) == ("tag:db", 3, 0)
    assert created.available == 3
    make(stores, "pool:default", 10)
    make(stores, "global:api", 0)

    read = stores.concurrency.read_limit("tag:db")
    assert (read.name, read.limit, read.active_slots) == ("tag:db", 3, 0)
    assert [lim.name for lim in stores.concurrency.list_limits()] == [
        "global:api",
        "pool:default",
        "tag:db",
    ]
    item = raw(stores, "limit#tag:db")
    assert item is not None
    assert (item["item_type"], item["sort_value"], item["active"], item["version"]) == (
        "limit",
        "tag:db",
        0,
        0,
    )


def test_create_duplicate_limit_already_exists(stores: Stores) -> None:
    make(stores, "tag:db", 3)
    take(stores, ["tag:db"])
    before = raw(stores, "limit#tag:db")
    with pytest.raises(AlreadyExists):
        make(stores, "tag:db", 99)
    assert raw(stores, "limit#tag:db") == before, "the held slot survives a duplicate create"


def test_read_update_delete_unknown_limit_not_found(stores: Stores) -> None:
    with pytest.raises(NotFound):
        stores.concurrency.read_limit("nope")
    with pytest.raises(NotFound):
        stores.concurrency.update_limit("nope", 3)
    with pytest.raises(NotFound):
        stores.concurrency.delete_limit("nope")
    with pytest.raises(NotFound):
        stores.concurrency.acquire(["nope"])
    assert raw(stores, "limit#nope") is None, "update must not create the limit"


def test_update_limit_changes_size_and_keeps_held_slots(stores: Stores) -> None:
    make(stores, "tag:db", 5)
    take(stores, ["tag:db"], 3)
    updated = stores.concurrency.update_limit("tag:db", 2)
    assert (updated.limit, updated.active_slots) == (2, 3)
    assert stores.concurrency.acquire(["tag:db"], 1, now=T0) is None, "over the new size"
    grown = stores.concurrency.update_limit("tag:db", 4)
    assert grown.limit == 4
    assert take(stores, ["tag:db"], 1) is not None
    assert active(stores, "tag:db") == 4
    with pytest.raises(InvalidInput) as caught:
        stores.concurrency.update_limit("tag:db", -1)
    assert caught.value.details["field"] == "limit"


def test_delete_limit(stores: Stores) -> None:
    make(stores, "tag:db", 2)
    lease = take(stores, ["tag:db"])
    stores.concurrency.delete_limit("tag:db")
    with pytest.raises(NotFound):
        stores.concurrency.read_limit("tag:db")
    with pytest.raises(NotFound):
        stores.concurrency.delete_limit("tag:db")
    assert stores.concurrency.list_limits() == []
    # A lease on a deleted limit releases cleanly, without resurrecting the limit.
    assert stores.concurrency.release(lease.id, now=T0) is True
    assert raw(stores, "limit#tag:db") is None
    with pytest.raises(NotFound):
        stores.concurrency.read_lease(lease.id)


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        ({"name": "", "limit": 1}, ("name",)),
        ({"name": "has#hash", "limit": 1}, ("name",)),
        ({"name": "has space", "limit": 1}, ("name",)),
        ({"name": "ok", "limit": -1}, ("limit",)),
        ({"name": "ok"}, ("limit",)),
        ({"name": "ok", "limit": 1, "slot_decay_per_second": -0.5}, ("slot_decay_per_second",)),
        ({"name": "ok", "limit": 1, "size": 2}, ("size",)),
    ],
)
def test_limit_validation_names_the_bad_field(data: dict[str, object], loc: tuple[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        ConcurrencyLimitCreate.model_validate(data)
    assert loc in [tuple(e["loc"]) for e in caught.value.errors()]


# ============================================================================ acquire / release


def test_acquire_n_slots_on_one_limit(stores: Stores) -> None:
    make(stores, "tag:db", 5)
    lease = take(stores, ["tag:db"], 3, seconds=30)
    assert (lease.limit_names, lease.slots) == (["tag:db"], 3)
    assert lease.expires_at == T0 + timedelta(seconds=30)
    assert active(stores, "tag:db") == 3
    assert stores.concurrency.read_lease(lease.id) == lease

    item = raw(stores, f"lease#{lease.id}")
    assert item is not None
    # leases are spread over by_type shards by their id (issue 8, item 11)
    assert (item["item_type"], item["sort_value"]) == (lease_type(lease.id), iso(lease.expires_at))
    assert item["item_type"].startswith("lease#")
    assert item["ttl_at"] == epoch(lease.expires_at + TTL_GRACE)

    assert take(stores, ["tag:db"], 2) is not None
    assert active(stores, "tag:db") == 5


def test_acquire_on_a_full_limit_returns_none(stores: Stores) -> None:
    make(stores, "tag:db", 2)
    take(stores, ["tag:db"], 2)
    before = raw(stores, "limit#tag:db")
    assert stores.concurrency.acquire(["tag:db"], 1, now=T0) is None
    assert raw(stores, "limit#tag:db") == before
    make(stores, "tag:api", 3)
    take(stores, ["tag:api"], 2)
    assert stores.concurrency.acquire(["tag:api"], 2, now=T0) is None, "1 free, 2 asked"
    assert active(stores, "tag:api") == 2


def test_acquire_on_several_limits_is_all_or_nothing(stores: Stores) -> None:
    make(stores, "tag:db", 5)
    make(stores, "tag:eu", 2)
    lease = take(stores, ["tag:eu", "tag:db", "tag:db"], 2)
    assert lease.limit_names == ["tag:db", "tag:eu"]
    assert (active(stores, "tag:db"), active(stores, "tag:eu")) == (2, 2)

    db_before = raw(stores, "limit#tag:db")
    # tag:eu is full: nothing is taken on tag:db either.
    assert stores.concurrency.acquire(["tag:db", "tag:eu"], 1, now=T0) is None
    assert raw(stores, "limit#tag:db") == db_before
    assert len(stores.concurrency.expired_leases(now=T0 + timedelta(days=1))) == 1

    assert stores.concurrency.release(lease.id, now=T0)
    assert (active(stores, "tag:db"), active(stores, "tag:eu")) == (0, 0)
    assert take(stores, ["tag:db", "tag:eu"], 2) is not None


def test_requests_that_can_never_fit_raise_limit_exceeded(stores: Stores) -> None:
    make(stores, "global:off", 0)
    make(stores, "tag:db", 2)
    with pytest.raises(LimitExceeded) as caught:
        stores.concurrency.acquire(["global:off"], now=T0)
    assert caught.value.details == {"name": "global:off", "limit": 0}
    with pytest.raises(LimitExceeded):
        stores.concurrency.acquire(["tag:db"], 3, now=T0)
    with pytest.raises(LimitExceeded):
        stores.concurrency.acquire(["tag:db", "global:off"], 1, now=T0)
    assert active(stores, "tag:db") == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"names": []}, "names"),
        ({"names": ["tag:db"], "slots": 0}, "slots"),
        ({"names": ["tag:db"], "lease_seconds": 0}, "lease_seconds"),
        ({"names": ["tag:db"], "lease_seconds": -5}, "lease_seconds"),
    ],
)
def test_acquire_bad_arguments(stores: Stores, kwargs: dict[str, object], field: str) -> None:
    make(stores, "tag:db", 2)
    with pytest.raises(InvalidInput) as caught:
        stores.concurrency.acquire(**kwargs)  # type: ignore[arg-type]
    assert caught.value.details["field"] == field
    assert active(stores, "tag:db") == 0


def test_release_twice_second_is_false(stores: Stores) -> None:
    make(stores, "tag:db", 3)
    lease = take(stores, ["tag:db"], 2)
    assert stores.concurrency.release(lease.id, now=T0) is True
    assert active(stores, "tag:db") == 0
    assert stores.concurrency.release(lease.id, now=T0) is False
    assert active(stores, "tag:db") == 0, "a second release gives nothing back"
    with pytest.raises(NotFound):
        stores.concurrency.read_lease(lease.id)
    with pytest.raises(NotFound):
        stores.concurrency.renew(lease.id, 60, now=T0)
    assert stores.concurrency.release("no-such-lease") is False


def test_renew_extends_expiry(stores: Stores) -> None:
    make(stores, "tag:db", 1)
    lease = take(stores, ["tag:db"], seconds=10)

    renewed = stores.concurrency.renew(lease.id, 60, now=T0 + timedelta(seconds=5))
    assert renewed.expires_at == T0 + timedelta(seconds=65)
    assert stores.concurrency.read_lease(lease.id).expires_at == renewed.expires_at
    item = raw(stores, f"lease#{lease.id}")
    assert item is not None and item["ttl_at"] == epoch(renewed.expires_at + TTL_GRACE)

    # Past the original expiry the renewed lease is not reclaimed...
    assert stores.concurrency.sweep(now=T0 + timedelta(seconds=30)) == 0
    assert active(stores, "tag:db") == 1
    # ...and a renewal asking for less than it has keeps the later expiry.
    shorter = stores.concurrency.renew(lease.id, 1, now=T0 + timedelta(seconds=6))
    assert shorter.expires_at == renewed.expires_at
    with pytest.raises(InvalidInput):
        stores.concurrency.renew(lease.id, 0, now=T0)

    assert stores.concurrency.sweep(now=T0 + timedelta(seconds=66)) == 1
    assert active(stores, "tag:db") == 0
    with pytest.raises(NotFound):
        stores.concurrency.renew(lease.id, 60, now=T0 + timedelta(seconds=67))


# ============================================================================ expiry


def test_sweep_reclaims_only_expired_leases(stores: Stores) -> None:
    make(stores, "tag:db", 10)
    short = take(stores, ["tag:db"], 2, seconds=10)
    medium = take(stores, ["tag:db"], 3, seconds=60)
    long = take(stores, ["tag:db"], 4, seconds=600)
    assert active(stores, "tag:db") == 9

    assert stores.concurrency.sweep(now=T0 + timedelta(seconds=9)) == 0
    assert [lease.id for lease in stores.concurrency.expired_leases(now=T0)] == []

    at = T0 + timedelta(seconds=61)
    assert {lease.id for lease in stores.concurrency.expired_leases(now=at)} == {
        short.id,
        medium.id,
    }
    assert stores.concurrency.sweep(now=at) == 2
    assert active(stores, "tag:db") == 4
    assert stores.concurrency.read_lease(long.id) == long
    for gone in (short, medium):
        with pytest.raises(NotFound):
            stores.concurrency.read_lease(gone.id)
    assert stores.concurrency.sweep(now=at) == 0, "a second sweep reclaims nothing more"
    assert stores.concurrency.release(short.id, now=at) is False
    assert active(stores, "tag:db") == 4


def test_sweep_frees_every_limit_of_a_lease(stores: Stores) -> None:
    make(stores, "tag:db", 2)
    make(stores, "pool:default", 2)
    take(stores, ["tag:db", "pool:default"], 2, seconds=5)
    assert stores.concurrency.sweep(now=T0 + timedelta(seconds=6)) == 1
    assert (active(stores, "tag:db"), active(stores, "pool:default")) == (0, 0)


def test_acquirer_reclaims_expired_leases_itself(stores: Stores) -> None:
    make(stores, "tag:db", 2)
    dead = take(stores, ["tag:db"], 2, seconds=10)  # its holder died: nobody releases it

    assert stores.concurrency.acquire(["tag:db"], 1, now=T0 + timedelta(seconds=5)) is None
    later = T0 + timedelta(seconds=11)
    fresh = stores.concurrency.acquire(["tag:db"], 1, lease_seconds=30, now=later)
    assert fresh is not None, "a full limit whose leases expired must not block"
    assert fresh.expires_at == later + timedelta(seconds=30)
    assert active(stores, "tag:db") == 1
    with pytest.raises(NotFound):
        stores.concurrency.read_lease(dead.id)


def test_rate_limit_keeps_slots_until_they_decay(stores: Stores) -> None:
    """Slots drain at ``slot_decay_per_second`` one after the other, as Prefect's decaying
    ``active_slots`` do (src/prefect/server/models/concurrency_limits_v2.py,
    ``active_slots_after_decay``: active minus decay times the elapsed time)."""
    make(stores, "rate:api", 2, decay=0.5)  # a slot drains 2 s after the one before it
    first = take(stores, ["rate:api"], 1, seconds=0.1)
    assert first.expires_at == T0 + timedelta(seconds=2), "held for slots / decay seconds"
    second = take(stores, ["rate:api"], 1, seconds=0.1)
    assert second.expires_at == T0 + timedelta(seconds=4), "drains after the first one"

    one_second = T0 + timedelta(seconds=1)
    assert stores.concurrency.release(first.id, now=one_second) is False, "not freed early"
    assert active(stores, "rate:api") == 2
    assert stores.concurrency.acquire(["rate:api"], 1, now=one_second) is None
    assert stores.concurrency.sweep(now=one_second) == 0

    after_decay = T0 + timedelta(seconds=2, milliseconds=1)
    assert stores.concurrency.acquire(["rate:api"], 2, lease_seconds=1, now=after_decay) is None
    third = stores.concurrency.acquire(["rate:api"], 1, lease_seconds=1, now=after_decay)
    assert third is not None, "one slot decayed (the acquirer swept it)"
    assert third.expires_at == T0 + timedelta(seconds=6)  # after the second drains, + 2 s
    assert active(stores, "rate:api") == 2
    with pytest.raises(NotFound):
        stores.concurrency.read_lease(first.id)
    # Once expired, an explicit release frees it.
    assert stores.concurrency.release(second.id, now=T0 + timedelta(seconds=7)) is True
    assert stores.concurrency.release(third.id, now=T0 + timedelta(seconds=7)) is True
    assert active(stores, "rate:api") == 0


def test_rate_limit_on_one_of_several_limits_decides_expiry(stores: Stores) -> None:
    make(stores, "rate:api", 5, decay=0.1)
    make(stores, "tag:db", 5)
    lease = take(stores, ["rate:api", "tag:db"], 1, seconds=3)
    assert lease.expires_at == T0 + timedelta(seconds=10)
    assert stores.concurrency.release(lease.id, now=T0 + timedelta(seconds=3)) is False
    assert stores.concurrency.sweep(now=T0 + timedelta(seconds=10)) == 1
    assert (active(stores, "rate:api"), active(stores, "tag:db")) == (0, 0)


def test_reconcile_repairs_a_counter_after_ttl_deleted_a_lease(stores: Stores) -> None:
    make(stores, "tag:db", 5)
    make(stores, "tag:eu", 5)
    kept = take(stores, ["tag:db"], 2, seconds=600)
    lost = take(stores, ["tag:db", "tag:eu"], 1, seconds=600)
    assert active(stores, "tag:db") == 3

    # DynamoDB TTL deletes the lease item behind the store's back: the counters lag.
    stores.db.delete(stores.specs.concurrency.name, {"pk": f"lease#{lost.id}"})
    assert (active(stores, "tag:db"), active(stores, "tag:eu")) == (3, 1)

    fixed = stores.concurrency.reconcile("tag:db")
    assert fixed.active_slots == 2
    assert stores.concurrency.reconcile("tag:eu").active_slots == 0
    assert (active(stores, "tag:db"), active(stores, "tag:eu")) == (2, 0)
    assert stores.concurrency.reconcile("tag:db").active_slots == 2, "idempotent"
    item = raw(stores, "limit#tag:db")
    assert item is not None and item["version"] >= 3

    assert stores.concurrency.release(lost.id, now=T0) is False
    assert stores.concurrency.release(kept.id, now=T0) is True
    assert active(stores, "tag:db") == 0
    with pytest.raises(NotFound):
        stores.concurrency.reconcile("nope")


def test_reconcile_of_a_correct_counter_writes_nothing(stores: Stores) -> None:
    make(stores, "tag:db", 5)
    take(stores, ["tag:db"], 2)
    before = raw(stores, "limit#tag:db")
    assert stores.concurrency.reconcile("tag:db").active_slots == 2
    assert raw(stores, "limit#tag:db") == before


def test_release_of_a_known_lease_is_one_transaction(stores: Stores) -> None:
    """The holder knows its lease: the hand-off to a waiter costs one request, not two."""
    from runtime.stores.metrics import RequestCounter

    stores.concurrency.create_limit(ConcurrencyLimitCreate(name="handoff", limit=1))
    lease = stores.concurrency.acquire(["handoff"])
    assert lease is not None and not lease.decays
    counter = RequestCounter().attach(stores.db.client)
    assert stores.concurrency.release(lease.id, known=lease) is True
    assert counter.snapshot() == {"dynamodb.TransactWriteItems": 1}
    assert stores.concurrency.read_limit("handoff").active_slots == 0
    assert stores.concurrency.release(lease.id, known=lease) is False  # exactly once


def test_a_known_rate_limited_lease_is_still_not_freed_early(stores: Stores) -> None:
    stores.concurrency.create_limit(
        ConcurrencyLimitCreate(name="rate", limit=1, slot_decay_per_second=0.01)
    )
    lease = stores.concurrency.acquire(["rate"])
    assert lease is not None and lease.decays
    assert stores.concurrency.release(lease.id, known=lease) is False
    assert stores.concurrency.read_limit("rate").active_slots == 1


# ============================================================================ client-chosen ids


LEASE_ID = "6f1c2b9e-4a57-4d0e-9a51-0c7e3d2b8f10"


def test_a_repeated_acquire_with_the_same_lease_id_holds_one_slot(stores: Stores) -> None:
    """A retry after a lost response gets the first lease back, not a second slot."""
    make(stores, "tag:db", 3)
    first = stores.concurrency.acquire(
        ["tag:db"], lease_seconds=10, holder="h", lease_id=LEASE_ID, now=T0
    )
    assert first is not None and first.id == LEASE_ID
    again = stores.concurrency.acquire(
        ["tag:db"], lease_seconds=10, holder="h", lease_id=LEASE_ID, now=T0 + timedelta(seconds=1)
    )
    assert again == first
    assert active(stores, "tag:db") == 1
    assert stores.concurrency.release(LEASE_ID) is True
    assert active(stores, "tag:db") == 0


def test_a_repeat_on_a_limit_its_own_lease_filled_returns_that_lease(stores: Stores) -> None:
    make(stores, "tag:one", 1)
    first = stores.concurrency.acquire(["tag:one"], lease_id=LEASE_ID, now=T0)
    assert first is not None
    assert stores.concurrency.acquire(["tag:one"], now=T0) is None  # full for anyone else
    assert stores.concurrency.acquire(["tag:one"], lease_id=LEASE_ID, now=T0) == first
    stores.concurrency.update_limit("tag:one", 0)  # can never fit now, but it is held already
    assert stores.concurrency.acquire(["tag:one"], lease_id=LEASE_ID, now=T0) == first
    assert active(stores, "tag:one") == 1


def test_a_lease_id_reused_for_another_request_is_a_conflict(stores: Stores) -> None:
    make(stores, "tag:a", 3)
    make(stores, "tag:b", 3)
    first = stores.concurrency.acquire(["tag:a"], lease_id=LEASE_ID, now=T0)
    assert first is not None
    for names, slots in ((["tag:b"], 1), (["tag:a"], 2), (["tag:a", "tag:b"], 1)):
        with pytest.raises(Conflict, match=LEASE_ID):
            stores.concurrency.acquire(names, slots, lease_id=LEASE_ID, now=T0)
    assert (active(stores, "tag:a"), active(stores, "tag:b")) == (1, 0)
    assert stores.concurrency.read_lease(LEASE_ID) == first


def test_racing_repeats_of_one_lease_id_hold_one_slot(stores: Stores) -> None:
    """16 threads send the same acquire at once: one slot is taken, all get that lease."""
    make(stores, "tag:race", 5)
    barrier = threading.Barrier(16)
    got: list[Lease | None] = []

    def attempt() -> None:
        barrier.wait()
        got.append(stores.concurrency.acquire(["tag:race"], lease_id=LEASE_ID))

    threads = [threading.Thread(target=attempt) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 16 and all(lease is not None and lease.id == LEASE_ID for lease in got)
    assert len({lease.expires_at for lease in got if lease}) == 1
    assert active(stores, "tag:race") == 1


def test_waiters_polling_a_full_limit_do_not_sweep_every_lease_shard_each_time(
    stores: Stores,
) -> None:
    # A full acquire sweeps expired leases, which queries every lease shard: at most
    # once a second per store, since waiters on a full limit poll many times a second
    # (sweeping on each poll made a 2 s hand-off of 20 tasks under a limit of 2 take 6 s).
    from runtime.stores.metrics import RequestCounter

    make(stores, "tag:full", 1)
    take(stores, ["tag:full"], 1, seconds=60)
    counter = RequestCounter().attach(stores.db.client)
    moment = T0 + timedelta(seconds=1)
    for poll in range(10):  # ten polls within 0.9 s
        at = moment + timedelta(milliseconds=100 * poll)
        assert stores.concurrency.acquire(["tag:full"], 1, now=at) is None
    queries = counter.counts["dynamodb.Query"]
    assert 0 < queries <= 8, counter.counts  # one sweep: one query per lease shard
    # a second later the next full acquire sweeps again
    assert stores.concurrency.acquire(["tag:full"], 1, now=moment + timedelta(seconds=2)) is None
    assert counter.counts["dynamodb.Query"] > queries


# ============================================================================ global limits


def test_rate_limit_grants_a_burst_then_decay_per_second(stores: Stores) -> None:
    """Prefect: a limit of 5 decaying 1 slot/s admits 5 at once, then about one a second
    (docs/v3/concepts/global-concurrency-limits.mdx, "Slot decay"). Before the leaky
    bucket, every one of the 5 leases came back after 1 s: 5 grants a second."""
    make(stores, "rate:burst", 5, decay=1.0)
    grants = 0
    for step in range(31):  # 3 s in 0.1 s steps; each step takes whatever it can
        moment = T0 + timedelta(milliseconds=100 * step)
        while stores.concurrency.acquire(["rate:burst"], 1, lease_seconds=1, now=moment):
            grants += 1
    assert grants <= 5 + 3 + 1, f"{grants} grants in 3 s on limit 5 decaying 1/s"
    assert grants >= 5 + 2


def test_inactive_limits_are_skipped_and_can_be_enabled(stores: Stores) -> None:
    """Prefect: an inactive limit "exists but has no effect" (global-concurrency-limits.mdx)."""
    stores.concurrency.create_limit(ConcurrencyLimitCreate(name="off", limit=1, active=False))
    make(stores, "on", 1)
    first = stores.concurrency.acquire(["off", "on"], 1, now=T0)
    assert first is not None and first.limit_names == ["on"]
    assert first.inactive_names == ["off"]
    assert active(stores, "off") == 0
    assert stores.concurrency.acquire(["off"], 1, now=T0) is not None, "never blocks"
    limit = stores.concurrency.update_limit("off", ConcurrencyLimitUpdate(active=True))
    assert limit.active is True
    held = stores.concurrency.acquire(["off"], 1, now=T0)
    assert held is not None and held.limit_names == ["off"], "the cached flag is not trusted"
    assert stores.concurrency.acquire(["off"], 1, now=T0) is None


def test_missing_limits_are_skipped_only_when_asked(stores: Stores) -> None:
    make(stores, "there", 1)
    with pytest.raises(NotFound):
        stores.concurrency.acquire(["there", "absent"], 1, now=T0)
    lease = stores.concurrency.acquire(["there", "absent"], 1, now=T0, missing_ok=True)
    assert lease is not None and lease.limit_names == ["there"]
    assert lease.missing_names == ["absent"]
    empty = stores.concurrency.acquire(["absent"], 1, now=T0, missing_ok=True)
    assert empty is not None and empty.limit_names == [] and empty.missing_names == ["absent"]
    assert stores.concurrency.release(empty.id, known=empty) is False


def test_rate_limit_mode_needs_slot_decay(stores: Stores) -> None:
    """Prefect answers 422 naming the limits without decay (server/api/concurrency_limits_v2.py)."""
    make(stores, "plain", 3)
    with pytest.raises(InvalidInput, match="do not have a decay configured: 'plain'"):
        stores.concurrency.acquire(["plain"], 1, now=T0, mode="rate_limit")
    assert active(stores, "plain") == 0


def test_a_changed_decay_or_size_is_never_granted_against(stores: Stores) -> None:
    """acquire conditions on the limit's config counter: a stale cached limit costs a retry."""
    make(stores, "cfg", 2)
    assert stores.concurrency.acquire(["cfg"], 1, now=T0) is not None  # caches the item
    other = ConcurrencyStore(stores.db, stores.specs.concurrency)
    other.update_limit("cfg", ConcurrencyLimitUpdate(slot_decay_per_second=1.0))
    lease = stores.concurrency.acquire(["cfg"], 1, lease_seconds=60, now=T0)
    assert lease is not None and lease.decays, "granted under the decay now configured"


def test_releasing_a_decaying_lease_early_lets_it_drain(stores: Stores) -> None:
    """concurrency() on a decaying limit: the slot is not held for the whole lease after exit."""
    make(stores, "decay", 1, decay=1.0)
    lease = take(stores, ["decay"], 1, seconds=300)
    assert lease.expires_at == T0 + timedelta(seconds=300)
    assert stores.concurrency.release(lease.id, now=T0 + timedelta(milliseconds=10)) is False
    assert stores.concurrency.read_lease(lease.id).expires_at == T0 + timedelta(seconds=1)
    assert stores.concurrency.sweep(now=T0 + timedelta(seconds=1)) == 1


def test_limits_carry_prefect_attribute_names(stores: Stores) -> None:
    make(stores, "tag:db", 3)
    limit = stores.concurrency.read_limit("tag:db")
    assert (limit.tag, limit.concurrency_limit, limit.active) == ("db", 3, True)
    assert str(uuid.UUID(limit.id)) == limit.id
    assert stores.concurrency.read_limit("tag:db").id == limit.id
