"""Run logs in DynamoDB: written in batches, read back in time order a page at a time.

One item per log line in the logs table: partition key ``flow_run_id``, sort key
``seq`` = ``<iso timestamp>#<8 hex digits>``. The timestamp (``iso()``: fixed
width, UTC) makes a query return lines in time order; the suffix makes keys
unique. It is the record's client-chosen ``id`` when it has one (so a retried
write overwrites the same items and never stores a line twice), else
:func:`new_log_id`: a random per-process start (drawn again in a forked child)
plus a counter, so two lines with the same microsecond keep the order in which
they were written (a log line's order within one thread survives) and lines
written by different processes do not collide. Each item also carries
``task_run_id``, ``level``, ``name``, ``message``, ``timestamp`` and
``expires_at`` (epoch seconds, the table's TTL attribute). DynamoDB deletes
expired items only eventually (days), and moto never does, so reads also skip
items already past ``expires_at``.

Messages longer than :data:`MAX_MESSAGE_BYTES` (UTF-8) are cut and end with a
marker saying how long they were: a DynamoDB item holds at most 400 KB.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from runtime.errors import InvalidInput
from runtime.limits import (
    DEFAULT_RETENTION_DAYS,
    LOG_MESSAGE_MAX_BYTES,
    LOG_NAME_MAX_CHARS,
    LOG_PAGE_MAX_BYTES,
    LOG_RUN_ID_MAX_BYTES,
    LOG_TRUNCATION_MARKER,
    truncate_text,
)
from runtime.log_ids import new_log_id
from runtime.models import LogRecord, Page
from runtime.resources import TableSpec
from runtime.states import utcnow
from runtime.stores.dynamo import Dynamo, Item, epoch, iso
from runtime.stores.paging import Listing, check_limit, read_page

MAX_MESSAGE_BYTES = LOG_MESSAGE_MAX_BYTES
"""Longest message stored whole, in UTF-8 bytes; longer ones are truncated with a marker."""

MAX_NAME_CHARS = LOG_NAME_MAX_CHARS
"""Longest logger name stored; longer names are cut."""

MAX_ID_BYTES = LOG_RUN_ID_MAX_BYTES
"""Longest flow or task run id accepted (DynamoDB partition keys hold at most 2048 bytes)."""

MAX_PAGE_MESSAGE_BYTES = LOG_PAGE_MAX_BYTES
"""A page of :meth:`LogStore.read` ends early once its messages reach this size (a Lambda
response holds at most 6 MB); the cursor continues from there."""

TRUNCATION_MARKER = LOG_TRUNCATION_MARKER
"""Appended to a truncated message; ``{size}`` is the original size in UTF-8 bytes."""


def truncate_message(message: str, max_bytes: int = MAX_MESSAGE_BYTES) -> str:
    """``message`` unchanged if it fits in ``max_bytes`` (UTF-8), else cut with a marker.

    The result, marker included, is at most ``max_bytes`` long and never splits a
    character. Lone surrogates (not encodable as UTF-8) become ``?``.
    """
    return truncate_text(message, max_bytes, LOG_TRUNCATION_MARKER)


def _check_id(value: str | None, field: str) -> None:
    if value is None:
        return
    if not value:
        raise InvalidInput(f"{field} must not be empty", field=field)
    if len(value.encode("utf-8", errors="surrogatepass")) > MAX_ID_BYTES:
        raise InvalidInput(f"{field} is longer than {MAX_ID_BYTES} bytes", field=field)


class LogStore:
    """Writing and reading the log lines of flow runs and their task runs."""

    def __init__(
        self, db: Dynamo, table: TableSpec, retention_days: int = DEFAULT_RETENTION_DAYS
    ) -> None:
        if retention_days < 1:
            raise InvalidInput("retention_days must be at least 1", field="retention_days")
        self.db = db
        self.table = table
        self.retention_days = retention_days

    # ------------------------------------------------------------------ items

    def to_item(self, record: LogRecord, *, now: datetime | None = None) -> Item:
        """The DynamoDB item for one log line, with a fresh unique ``seq``.

        Raises InvalidInput (naming the field) for an empty or oversized run id.
        ``now`` is the write time the retention counts from (default: now).
        """
        _check_id(record.flow_run_id, "flow_run_id")
        _check_id(record.task_run_id, "task_run_id")
        stamp = iso(record.timestamp)
        expires = (now or utcnow()) + timedelta(days=self.retention_days)
        return {
            "flow_run_id": record.flow_run_id,
            "seq": f"{stamp}#{record.id or new_log_id()}",
            "task_run_id": record.task_run_id,
            "level": record.level,
            "name": record.name[:MAX_NAME_CHARS],
            "message": truncate_message(record.message),
            "timestamp": stamp,
            "expires_at": epoch(expires),
        }

    def to_items(self, records: Iterable[LogRecord], *, now: datetime | None = None) -> list[Item]:
        """The items for ``records``, in order (every record is checked before any is made).

        Raises InvalidInput naming ``records[i].id`` when two records of the batch
        have the same run, timestamp and id (they would be one item).
        """
        now = now or utcnow()
        items = [self.to_item(r, now=now) for r in records]
        seen: dict[tuple[str, str], int] = {}
        for index, item in enumerate(items):
            key = (item["flow_run_id"], item["seq"])
            if key in seen:
                raise InvalidInput(
                    f"records[{index}].id: {item['seq'].partition('#')[2]!r} is also the id of "
                    f"records[{seen[key]}] with the same timestamp: ids must be unique",
                    field=f"records[{index}].id",
                )
            seen[key] = index
        return items

    @staticmethod
    def from_item(item: Item) -> LogRecord:
        """The log line stored in an item."""
        return LogRecord(
            flow_run_id=item["flow_run_id"],
            task_run_id=item.get("task_run_id"),
            name=item.get("name", "stratoflow"),
            level=item.get("level", 20),
            message=item.get("message", ""),
            timestamp=datetime.fromisoformat(item["timestamp"]),
            id=item["seq"].partition("#")[2] or None,
        )

    # ------------------------------------------------------------------ write

    def write(self, records: list[LogRecord]) -> None:
        """Store log lines (``BatchWriteItem``, 25 per request).

        Every record is validated before anything is written. Not atomic: if a
        request fails, earlier requests stay written. Records with an ``id`` can be
        written again without duplicating a line (the same key overwrites the same
        item); for records without one, make the items once with :meth:`to_items`
        and retry :meth:`write_items`.
        """
        self.write_items(self.to_items(records))

    def write_items(self, items: list[Item]) -> None:
        """Store items made by :meth:`to_item`; writing the same items again is harmless."""
        if items:
            self.db.batch_write(self.table.name, list[Mapping[str, Any]](items))

    # ------------------------------------------------------------------ read

    def read(
        self,
        flow_run_id: str,
        *,
        task_run_id: str | None = None,
        level_ge: int | None = None,
        limit: int = 200,
        cursor: str | None = None,
    ) -> Page[LogRecord]:
        """A flow run's log lines in time order, ``limit`` per page (strongly consistent).

        ``task_run_id`` keeps one task run's lines, ``level_ge`` lines at or above a
        level (``logging.WARNING`` = 30 ...). Pass ``next_cursor`` back with the same
        filters for the next page; it is None on the last page. A page may hold fewer
        than ``limit`` lines when their messages are large (see
        :data:`MAX_PAGE_MESSAGE_BYTES`). Lines past their retention are left out.
        """
        check_limit(limit)
        if level_ge is not None and (isinstance(level_ge, bool) or not isinstance(level_ge, int)):
            raise InvalidInput("level_ge must be an integer", field="level_ge")
        _check_id(flow_run_id, "flow_run_id")
        now = epoch(utcnow())

        def matches(item: Item) -> bool:
            expires = item.get("expires_at")
            return (
                (expires is None or expires > now)
                and (task_run_id is None or item.get("task_run_id") == task_run_id)
                and (level_ge is None or item.get("level", 0) >= level_ge)
            )

        page = read_page(
            self.db,
            Listing(self.table, None, (flow_run_id,), forward=True, consistent=True),
            limit=limit,
            cursor=cursor,
            fetch=lambda entries: entries,
            matches=matches,
            weigh=lambda item: len(item.get("message", "").encode("utf-8", errors="replace")),
            max_weight=MAX_PAGE_MESSAGE_BYTES,
        )
        return Page[LogRecord](
            items=[self.from_item(i) for i in page.items], next_cursor=page.next_cursor
        )


__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_PAGE_MESSAGE_BYTES",
    "TRUNCATION_MARKER",
    "LogStore",
    "new_log_id",
    "truncate_message",
]
