"""DynamoDB on-demand capacity arithmetic: what a write or a read costs, index copies included.

Pure functions over items (plain Python values) and the table specs of
``runtime.resources``, following DynamoDB's documented rules:

* a write unit covers 1 KB of item, rounded up, at least one per item; a
  ``PutItem`` or ``UpdateItem`` is charged for the larger of the item before and
  after, a ``DeleteItem`` for the deleted item;
* a read unit covers 4 KB, rounded up; an eventually consistent read costs half;
* a global secondary index is written only when the write changes what the
  index holds for the item: an index key or a projected attribute. Adding an
  item to an index is one write of the index entry, removing it one write,
  changing an index key two (delete the old entry, put the new), changing only
  a projected attribute one. An index entry is the table key, the index key and
  the projected attributes;
* a transactional write (``TransactWriteItems``, a ``ConditionCheck`` too) costs
  twice the units of the same write outside a transaction; the index writes it
  causes are ordinary writes.

``bench/cost.py`` applies them to every request a flow run makes, and
docs/data-model.md quotes the results.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.limits import item_size
from runtime.resources import IndexSpec, TableSpec

WRITE_UNIT_BYTES = 1024
"""Bytes of item one write request unit covers."""

READ_UNIT_BYTES = 4096
"""Bytes of item one (strongly consistent) read request unit covers."""

PRICE_PER_MILLION_WRU = 0.625
"""On-demand price of a million write request units (us-east-1), dollars."""

PRICE_PER_MILLION_RRU = 0.125
"""On-demand price of a million read request units (us-east-1), dollars."""

PRICE_PER_MILLION_S3_PUT = 5.0
"""Price of a million S3 PUT requests (S3 Standard, us-east-1), dollars."""


def write_units(size: int) -> int:
    """Write units of one item write of ``size`` bytes (1 KB each, at least one)."""
    return max(1, math.ceil(size / WRITE_UNIT_BYTES))


def read_units(size: int, *, consistent: bool) -> float:
    """Read units of reading ``size`` bytes in one request (4 KB each, at least one).

    An eventually consistent read costs half.
    """
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2


def index_entry(item: Mapping[str, Any] | None, table: TableSpec, index: IndexSpec) -> Any:
    """What ``index`` holds for ``item``: None when the item lacks an index key (sparse).

    The table key, the index key and the projected attributes (all of them for
    ``ALL``, the listed ones for ``INCLUDE``, none for ``KEYS_ONLY``).
    """
    if item is None:
        return None
    keys = [index.partition_key.name] + ([index.sort_key.name] if index.sort_key else [])
    if any(item.get(k) is None for k in keys):
        return None
    if index.projection == "ALL":
        return {k: v for k, v in item.items() if v is not None}
    names = set(keys) | set(table.key_names())
    if index.projection == "INCLUDE":
        names |= set(index.include)
    return {k: item[k] for k in sorted(names) if item.get(k) is not None}


def index_write_units(
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    table: TableSpec,
    index: IndexSpec,
) -> int:
    """Write units ``index`` consumes when an item goes from ``old`` to ``new`` (None: absent)."""
    before = index_entry(old, table, index)
    after = index_entry(new, table, index)
    if before is None and after is None:
        return 0
    if before is None:
        return write_units(item_size(after))
    if after is None:
        return write_units(item_size(before))
    key_names = [index.partition_key.name] + ([index.sort_key.name] if index.sort_key else [])
    if any(before.get(k) != after.get(k) for k in key_names):
        return write_units(item_size(before)) + write_units(item_size(after))
    if before == after:
        return 0
    return write_units(item_size(after))


@dataclass
class WriteCost:
    """Write units of one item write: the table's and each index's."""

    table: int = 0
    indexes: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Table plus index units."""
        return self.table + sum(self.indexes.values())


def item_write_cost(
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    table: TableSpec,
    *,
    transactional: bool = False,
) -> WriteCost:
    """What writing ``new`` over ``old`` costs (``new`` None: a delete; ``old`` None: a create).

    The table is charged for the larger of the two items, twice inside a
    transaction; every index for the entries that change (:func:`index_write_units`).
    """
    size = max(item_size(old) if old else 0, item_size(new) if new else 0)
    units = write_units(size) * (2 if transactional else 1)
    return WriteCost(
        table=units,
        indexes={i.name: index_write_units(old, new, table, i) for i in table.indexes},
    )


def condition_check_units(item: Mapping[str, Any] | None) -> int:
    """Write units of a transaction's ``ConditionCheck`` on ``item`` (transactional: twice)."""
    return 2 * write_units(item_size(item) if item else 0)


def dollars_per_million(wru: float, rru: float, s3_puts: float) -> float:
    """On-demand dollars for a million of something that costs these units and PUTs each."""
    return (
        wru * PRICE_PER_MILLION_WRU
        + rru * PRICE_PER_MILLION_RRU
        + s3_puts * PRICE_PER_MILLION_S3_PUT
    )


__all__ = [
    "PRICE_PER_MILLION_RRU",
    "PRICE_PER_MILLION_S3_PUT",
    "PRICE_PER_MILLION_WRU",
    "READ_UNIT_BYTES",
    "WRITE_UNIT_BYTES",
    "WriteCost",
    "condition_check_units",
    "dollars_per_million",
    "index_entry",
    "index_write_units",
    "item_write_cost",
    "read_units",
    "write_units",
]
