"""The capacity arithmetic (runtime.stores.capacity) that bench/cost.py and the docs rely on."""

from __future__ import annotations

from runtime.limits import item_size
from runtime.resources import IndexSpec, Key, TableSpec
from runtime.stores.capacity import (
    condition_check_units,
    dollars_per_million,
    index_entry,
    index_write_units,
    item_write_cost,
    read_units,
    write_units,
)

KEYS = IndexSpec("by_kind", Key("kind"), Key("created"), projection="KEYS_ONLY")
ALL = IndexSpec("by_all", Key("kind"), Key("created"))
STATE = IndexSpec("by_state", Key("kind_state"), Key("created"), "INCLUDE", ("tags",))
TABLE = TableSpec("runs", "t-runs", Key("id"), indexes=(KEYS, ALL, STATE))


def run(state: str, doc: str = "x", **extra: object) -> dict[str, object]:
    return {
        "id": "r1",
        "kind": "task_run",
        "created": "2026-01-01",
        "kind_state": f"task_run#{state}",
        "doc": doc,
        **extra,
    }


def test_units_round_up_per_kilobyte_and_four_kilobytes() -> None:
    assert [write_units(s) for s in (0, 1, 1024, 1025, 4096)] == [1, 1, 1, 2, 4]
    assert read_units(4096, consistent=True) == 1.0
    assert read_units(4097, consistent=True) == 2.0
    assert read_units(100, consistent=False) == 0.5


def test_index_entry_projects_keys_include_or_all() -> None:
    item = run("RUNNING", tags=["a"], doc="y" * 10)
    assert index_entry(item, TABLE, KEYS) == {
        "id": "r1",
        "kind": "task_run",
        "created": "2026-01-01",
    }
    assert index_entry(item, TABLE, STATE) == {
        "id": "r1",
        "kind_state": "task_run#RUNNING",
        "created": "2026-01-01",
        "tags": ["a"],
    }
    assert index_entry(item, TABLE, ALL) == item
    assert index_entry({"id": "r1", "created": "c"}, TABLE, KEYS) is None  # sparse


def test_index_writes_only_when_the_entry_changes() -> None:
    old, new = run("RUNNING", doc="a"), run("RUNNING", doc="b" * 3000)
    assert index_write_units(old, new, TABLE, KEYS) == 0  # only a non-projected attribute
    assert index_write_units(old, new, TABLE, ALL) == write_units(item_size(new))  # 3 KB: 3
    assert index_write_units(None, new, TABLE, KEYS) == 1  # added
    assert index_write_units(old, None, TABLE, KEYS) == 1  # removed
    moved = run("COMPLETED", doc="a")
    assert index_write_units(old, moved, TABLE, STATE) == 2  # key changed: delete + put
    assert index_write_units(old, run("RUNNING", doc="a", tags=["t"]), TABLE, STATE) == 1


def test_item_write_cost_charges_the_larger_item_and_doubles_transactions() -> None:
    small, big = run("RUNNING"), run("COMPLETED", doc="z" * 1500)
    cost = item_write_cost(small, big, TABLE)
    assert cost.table == 2  # the larger item, 1.5 KB
    # by_all: same keys, the new 1.5 KB entry; by_state: key moved, two 1 KB entries
    assert cost.indexes == {"by_kind": 0, "by_all": 2, "by_state": 2}
    assert cost.total == 6
    assert item_write_cost(small, big, TABLE, transactional=True).table == 4
    assert item_write_cost(None, small, TABLE).total == 1 + 1 + 1 + 1
    assert condition_check_units(small) == 2


def test_dollars_per_million_at_on_demand_prices() -> None:
    assert dollars_per_million(1.6, 0, 0) == 1.0
    assert dollars_per_million(0, 8, 0) == 1.0
    assert dollars_per_million(0, 0, 1) == 5.0
