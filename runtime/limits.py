"""Every byte budget of Stratoflow in one place, and the two helpers that apply them.

A DynamoDB item holds at most 400 KB (attribute names and values, UTF-8). Run
items are built to stay below :data:`ITEM_BUDGET_BYTES` by construction:

* a state's ``message`` is truncated at the model (:data:`STATE_MESSAGE_MAX_BYTES`),
  ending with a visible marker (``... [truncated N bytes]``);
* an inline result is at most :data:`INLINE_RESULT_MAX_BYTES` (the largest value
  ``STRATOFLOW_INLINE_RESULT_MAX_BYTES`` accepts) and lives only in the run's
  current state, never in its history;
* a proposed state is at most :data:`STATE_MAX_BYTES` of JSON, the fields a run is
  created with at most :data:`RUN_FIELDS_MAX_BYTES`, so the run document stays
  well below the item budget;
* the state history gets what is left: its first state and as many of the most
  recent ones as fit (the item counts how many were dropped);
* batches are cut by bytes as well as by count (:data:`TRANSACTION_MAX_BYTES`,
  :data:`RECORD_BATCH_MAX_BYTES`).

:func:`item_size` counts an item the way DynamoDB does (documented rules, rounded
up), so a budget checked here holds on AWS, LocalStack and moto alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

DYNAMODB_ITEM_MAX_BYTES = 400 * 1024
"""DynamoDB's hard limit on one item (names and values)."""

ITEM_BUDGET_BYTES = 380_000
"""What a run item is sized against: below the limit, with room for estimation error."""

STATE_MESSAGE_MAX_BYTES = 16 * 1024
"""Longest state message kept whole (UTF-8); longer ones are cut with a marker."""

INLINE_RESULT_MAX_BYTES = 64 * 1024
"""Largest result kept inline in a state (the cap of ``inline_result_max_bytes``)."""

INLINE_RESULT_DEFAULT_BYTES = 16 * 1024
"""Default of ``STRATOFLOW_INLINE_RESULT_MAX_BYTES``: larger results go to S3."""

RESULT_UPLOAD_MAX_BYTES = 5 * 1024**3
"""Largest result uploaded through the API: one S3 PUT (presigned) holds at most 5 GiB."""

STATE_MAX_BYTES = 128 * 1024
"""Largest state (as JSON) accepted: a message, an inline result and details fit."""

RUN_FIELDS_MAX_BYTES = 192 * 1024
"""Largest run creation request (as JSON: parameters, job variables, tags, ...)."""

DOC_MAX_BYTES = 300_000
"""Largest other document (deployment, work pool, cache record) stored in one item."""

TRANSACTION_MAX_ITEMS = 100
"""Most operations in one ``TransactWriteItems``."""

TRANSACTION_MAX_BYTES = 3_500_000
"""Most bytes of items in one ``TransactWriteItems`` (DynamoDB refuses more than 4 MB)."""

BATCH_WRITE_MAX_ITEMS = 25
"""Most puts in one ``BatchWriteItem`` (16 MB at most: 25 items under 400 KB always fit)."""

RECORD_BATCH_MAX_RECORDS = 100
"""Most task-run records in one ``POST /task_runs/records``."""

RECORD_BATCH_MAX_BYTES = 1024 * 1024
"""Most bytes of JSON the engine sends in one ``POST /task_runs/records``."""

LOG_MESSAGE_MAX_BYTES = 64 * 1024
"""Longest log message stored whole (UTF-8); longer ones are cut with a marker."""

LOG_NAME_MAX_CHARS = 512
"""Longest logger name stored; longer names are cut."""

LOG_RUN_ID_MAX_BYTES = 1024
"""Longest flow or task run id a log line may name (a partition key holds 2048 bytes)."""

LOG_PAGE_MAX_BYTES = 4 * 1024 * 1024
"""A page of log lines ends once its messages reach this size (below Lambda's 6 MB)."""

LAMBDA_PAYLOAD_MAX_BYTES = 6 * 1024 * 1024
"""Lambda's synchronous invocation payload limit: the largest request body served."""

DEFAULT_RETENTION_DAYS = 30
"""Default of ``STRATOFLOW_RETENTION_DAYS``: how long finished runs and log lines are kept
(their TTL attribute) before DynamoDB deletes them."""

TRUNCATION_MARKER = "... [truncated {dropped} bytes]"
"""Ends a truncated text; ``{dropped}`` is how many UTF-8 bytes were cut."""

LOG_TRUNCATION_MARKER = "\n...[truncated by stratoflow: message was {size} bytes]"
"""Ends a truncated log message; ``{size}`` is the original size in UTF-8 bytes."""


def truncate_text(text: str, max_bytes: int, marker: str = TRUNCATION_MARKER) -> str:
    """``text`` if it fits in ``max_bytes`` (UTF-8), else cut and ended with ``marker``.

    The result, marker included, is at most ``max_bytes`` long and never splits a
    character; lone surrogates (not storable) become ``?``. The marker may name
    ``{dropped}`` (bytes cut) and ``{size}`` (the text's size).
    """
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = text.encode("utf-8", errors="replace")
        text = data.decode("utf-8")
    if len(data) <= max_bytes:
        return text
    size = len(data)
    longest = len(marker.format(dropped=size, size=size).encode())
    head = data[: max(0, max_bytes - longest)].decode("utf-8", errors="ignore")
    return head + marker.format(dropped=size - len(head.encode()), size=size)


def _value_size(value: Any) -> int:
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, str):
        return len(value.encode("utf-8", errors="surrogatepass"))
    if isinstance(value, bytes | bytearray):
        return len(value)
    if isinstance(value, int | float | Decimal):
        return 1 + (len(str(value)) + 1) // 2 + 1
    if isinstance(value, Mapping):
        return 3 + sum(1 + len(str(k).encode()) + _value_size(v) for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return 3 + sum(1 + _value_size(v) for v in value)
    return len(str(value).encode())


def item_size(item: Mapping[str, Any]) -> int:
    """The size DynamoDB counts for an item of plain Python values (rounded up).

    Attribute names plus values: strings and binaries by their bytes, numbers by
    their digits, lists and maps with their per-element overhead; None values are
    left out, as the stores never write them.
    """
    return sum(len(k.encode()) + _value_size(v) for k, v in item.items() if v is not None)
