"""The DynamoDB layout of issue 8 (items 9-13): what a run costs to write, sharded listings,
the scan budget of a listing, and retention.

The write costs are computed from the stored items themselves with the capacity rules of
``runtime.stores.capacity`` (the ones ``bench/cost.py`` prints), never hard-coded sizes.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

import runtime.stores.runs as runs_module
from runtime.engine.backend import use_engine_client
from runtime.engine.client import DirectEngineClient
from runtime.errors import InvalidInput
from runtime.limits import item_size
from runtime.models import (
    CacheRecord,
    ConcurrencyLimitCreate,
    FlowRunCreate,
    FlowRunFilter,
    LogRecord,
    TaskRunCreate,
    TaskRunFilter,
)
from runtime.settings import get_settings
from runtime.states import Completed, Pending, ResultRef, Running, StateType
from runtime.stores import Stores
from runtime.stores.capacity import item_write_cost, write_units
from runtime.stores.concurrency import LEASE_SHARDS
from runtime.stores.dynamo import Item, decode_cursor, encode_cursor, epoch
from runtime.stores.runs import SHARDS, RunStore, shard_of
from sdk import flow, task

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs are created T0, T0+1s, T0+2s, ... (distinct, ordered creation times)."""
    ticks = itertools.count()
    monkeypatch.setattr(runs_module, "utcnow", lambda: T0 + timedelta(seconds=next(ticks)))


def raw(stores: Stores, run_id: str) -> Item:
    item = stores.db.get(stores.specs.runs.name, {"id": run_id})
    assert item is not None
    return item


# ============================================================================ item 10: indexes


def test_runs_indexes_project_keys_only(stores: Stores) -> None:
    described = stores.db.client.describe_table(TableName=stores.specs.runs.name)["Table"]
    projections = {
        g["IndexName"]: g["Projection"]["ProjectionType"]
        for g in described["GlobalSecondaryIndexes"]
    }
    assert projections == dict.fromkeys(
        ["by_kind", "by_flow", "by_parent", "by_deployment", "by_state"], "KEYS_ONLY"
    )


def test_a_transition_writes_only_the_state_index(stores: Stores) -> None:
    spec = stores.specs.runs
    run = stores.runs.create_flow_run(FlowRunCreate(flow_name="etl"))
    before = raw(stores, run.id)
    assert stores.runs.set_state("flow_run", run.id, Running()).accepted
    after = raw(stores, run.id)
    cost = item_write_cost(before, after, spec)
    # by_state's key moved (delete + put of a small entry); no other index is touched
    assert cost.indexes == {
        "by_kind": 0,
        "by_flow": 0,
        "by_parent": 0,
        "by_deployment": 0,
        "by_state": 2,
    }
    task_run = stores.runs.create_task_run(TaskRunCreate(task_key="t", flow_run_id=run.id))
    before = raw(stores, task_run.id)
    assert stores.runs.set_state("task_run", task_run.id, Running()).accepted
    assert sum(item_write_cost(before, raw(stores, task_run.id), spec).indexes.values()) == 0


# ============================================================================ item 9: the item


@task
def inc(x: int) -> int:
    return x + 1


@flow
def trivial(n: int) -> list[int]:
    return [inc(i) for i in range(n)]


def test_a_trivial_task_run_is_one_write_unit_with_its_history(stores: Stores) -> None:
    with use_engine_client(DirectEngineClient(stores)):
        trivial(2)
    (flow_run,) = stores.runs.list_flow_runs(FlowRunFilter(flow_name="trivial")).items
    runs = stores.runs.list_task_runs(TaskRunFilter(flow_run_id=flow_run.id)).items
    assert len(runs) == 2
    for task_run in runs:
        item = raw(stores, task_run.id)
        assert [h.type for h in stores.runs.read_state_history(task_run.id)] == [
            StateType.PENDING,
            StateType.RUNNING,
            StateType.COMPLETED,
        ]
        assert item_size(item) < 1000 and write_units(item_size(item)) == 1
        # a new task run enters two indexes: by_kind (its shard) and by_parent
        cost = item_write_cost(None, item, stores.specs.runs)
        assert (cost.table, cost.total) == (1, 3)


# ============================================================================ item 11: shards


def test_task_run_listing_merges_every_shard_newest_first(stores: Stores, clock: None) -> None:
    created = [stores.runs.create_task_run(TaskRunCreate(task_key=f"t{i}")) for i in range(40)]
    shards = {shard_of("task_run", r.id) for r in created}
    assert len(shards) >= 4, "40 ids should spread over several shards"
    assert {raw(stores, r.id)["kind_shard"] for r in created} == {f"task_run#{n}" for n in shards}

    listed, cursors, cursor = [], [], None
    for _ in range(20):
        page = stores.runs.list_task_runs(limit=7, cursor=cursor)
        listed += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
        cursors.append(cursor)
    assert [r.id for r in listed] == [r.id for r in reversed(created)], "order or a run lost"
    assert len(cursors) == 5  # 40 runs, 7 a page: 6 pages

    # the cursor holds one position per shard not yet exhausted
    after = decode_cursor(cursors[0])["after"]
    assert set(after) <= {f"task_run#{n}" for n in range(SHARDS["task_run"])}
    assert any(position is not None for position in after.values())
    # a position moved to another listing's partition is refused
    forged = encode_cursor({"index": "by_kind", "after": {"flow_run#0": None}})
    with pytest.raises(InvalidInput) as caught:
        stores.runs.list_task_runs(cursor=forged)
    assert caught.value.details["field"] == "cursor"


def test_flow_runs_by_state_page_across_shards(stores: Stores, clock: None) -> None:
    runs = [stores.runs.create_flow_run(FlowRunCreate(flow_name=f"f{i}")) for i in range(12)]
    for run in runs[::2]:
        assert stores.runs.set_state("flow_run", run.id, Running()).accepted
    assert len({shard_of("flow_run", r.id) for r in runs[::2]}) >= 2
    flt = FlowRunFilter(state_types=[StateType.RUNNING])
    found, cursor = [], None
    for _ in range(10):
        page = stores.runs.list_flow_runs(flt, limit=2, cursor=cursor)
        found += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    # by_state sorts by the state's time: the last run moved to RUNNING comes first
    assert [r.id for r in found] == [r.id for r in reversed(runs[::2])]


def test_leases_spread_over_shards_and_every_shard_is_swept(stores: Stores) -> None:
    stores.concurrency.create_limit(ConcurrencyLimitCreate(name="wide", limit=100))
    now = datetime.now(UTC)
    leases = [
        stores.concurrency.acquire(["wide"], lease_seconds=1, now=now - timedelta(minutes=1))
        for _ in range(24)
    ]
    types = {
        raw_lease["item_type"]
        for lease in leases
        if lease is not None
        for raw_lease in [stores.db.get(stores.specs.concurrency.name, {"pk": f"lease#{lease.id}"})]
        if raw_lease is not None
    }
    assert len(types) >= 3 and types <= {f"lease#{n}" for n in range(LEASE_SHARDS)}
    assert len(stores.concurrency.expired_leases(now)) == 24
    assert stores.concurrency.sweep(now) == 24
    assert stores.concurrency.read_limit("wide").active_slots == 0


# ============================================================================ item 12: budget


def test_a_selective_filter_returns_partial_pages_within_the_budget(
    stores: Stores, clock: None
) -> None:
    rare = stores.runs.create_flow_run(FlowRunCreate(flow_name="etl", tags=["rare"]))
    for _ in range(39):
        stores.runs.create_flow_run(FlowRunCreate(flow_name="etl"))
    flt = FlowRunFilter(tags_all=["rare"])
    pages, cursor = [], None
    for _ in range(20):
        page = stores.runs.list_flow_runs(flt, limit=5, cursor=cursor, budget=10)
        pages.append([r.id for r in page.items])
        cursor = page.next_cursor
        if cursor is None:
            break
    # 40 index entries, 10 examined per call: four calls; the oldest run is the match
    assert pages == [[], [], [], [rare.id]]
    # without a budget worth mentioning, one call finds it
    assert [r.id for r in stores.runs.list_flow_runs(flt, limit=5).items] == [rare.id]


# ============================================================================ item 13: retention


def test_final_runs_expire_after_the_retention_and_others_never(stores: Stores) -> None:
    short = RunStore(stores.db, stores.specs.runs, retention_days=2)
    run = short.create_flow_run(FlowRunCreate(flow_name="etl"))
    assert "expires_at" not in raw(stores, run.id)
    assert short.set_state("flow_run", run.id, Running()).accepted
    assert "expires_at" not in raw(stores, run.id)
    done = short.set_state("flow_run", run.id, Completed())
    assert done.accepted
    assert raw(stores, run.id)["expires_at"] == epoch(done.state.timestamp + timedelta(days=2))
    # moved out of a final state (forced), it must not expire under its next attempt
    assert short.set_state("flow_run", run.id, Pending(), force=True).accepted
    assert "expires_at" not in raw(stores, run.id)

    # task-run records written by the engine carry it too
    task_run = short.create_task_run(TaskRunCreate(task_key="t"))
    finished = task_run.model_copy(update={"state": Completed(), "state_version": 1})
    short.write_task_run_records([(finished, [task_run.state, finished.state])])
    expected = epoch(finished.state.timestamp + timedelta(days=2))
    assert raw(stores, task_run.id)["expires_at"] == expected

    with pytest.raises(InvalidInput) as caught:
        RunStore(stores.db, stores.specs.runs, retention_days=0)
    assert caught.value.details["field"] == "retention_days"


def test_retention_comes_from_stratoflow_retention_days(
    stores: Stores, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATOFLOW_RETENTION_DAYS", "7")
    get_settings.cache_clear()
    try:
        configured = Stores.connect(prefix)
    finally:
        monkeypatch.delenv("STRATOFLOW_RETENTION_DAYS")
        get_settings.cache_clear()
    assert (configured.runs.retention_days, configured.logs.retention_days) == (7, 7)
    assert (stores.runs.retention_days, stores.logs.retention_days) == (30, 30)
    run = configured.runs.create_flow_run(FlowRunCreate(flow_name="etl", state=Completed()))
    assert raw(stores, run.id)["expires_at"] == epoch(run.state.timestamp + timedelta(days=7))
    now = datetime.now(UTC)
    line = configured.logs.to_item(LogRecord(flow_run_id=run.id, message="m"), now=now)
    assert line["expires_at"] == epoch(now + timedelta(days=7))


# ============================================================================ item 12: cache


def test_cache_listing_pages_a_bounded_scan(stores: Stores) -> None:
    cache = stores.cache
    base = datetime.now(UTC) - timedelta(hours=1)
    for i in range(30):
        record = CacheRecord(
            key=f"k{i:02d}",
            result=ResultRef(serializer="json", inline=str(i), size=1),
            task_key="t1" if i % 10 == 0 else "t2",
            created=base + timedelta(seconds=i),
        )
        assert cache.lock(record.key, "o", 60)
        cache.write(record.key, record, "o")
    assert cache.lock("pending-only", "o", 60)  # a lock, never listed

    keys, pages, cursor = [], 0, None
    for _ in range(20):
        page = cache.list_page(limit=4, cursor=cursor)
        created = [r.created for r in page.items]
        assert created == sorted(created, reverse=True), "a page is newest first"
        keys += [r.key for r in page.items]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(keys) == [f"k{i:02d}" for i in range(30)] and len(keys) == 30
    assert pages >= 8

    # a selective filter within a small budget: short pages with a cursor, then everything
    found, calls, cursor = [], 0, None
    for _ in range(40):
        page = cache.list_page("t1", limit=2, cursor=cursor, budget=5)
        found += [r.key for r in page.items]
        calls += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(found) == ["k00", "k10", "k20"]
    assert calls >= 31 // 5  # 31 items, at most 5 examined per call

    # the whole-table call the SDK and CLI use keeps its answer: the newest, in order
    assert [r.key for r in cache.list(limit=3)] == ["k29", "k28", "k27"]
    assert [r.key for r in cache.list("t1")] == ["k20", "k10", "k00"]
    with pytest.raises(InvalidInput) as caught:
        cache.list_page(cursor=encode_cursor({"index": "by_kind", "after": {}}))
    assert caught.value.details["field"] == "cursor"
