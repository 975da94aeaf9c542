"""A thin layer over the low-level DynamoDB client: Python values in and out, errors mapped.

Every store talks to DynamoDB through :class:`Dynamo`. It converts items with
boto3's type (de)serializers, turns ``ConditionalCheckFailedException`` into
:class:`ConditionFailed` carrying the item as it is now (via
``ReturnValuesOnConditionCheckFailure``), and can serialize every request behind
one lock: an in-process moto backend is not atomic under threads, real DynamoDB
is, and the lock makes the first behave like the second.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from runtime.backoff import Backoff
from runtime.errors import ItemTooLarge, StratoflowError

_ser = TypeSerializer()
_deser = TypeDeserializer()

Item = dict[str, Any]

UNPROCESSED_BACKOFF = Backoff(base=0.05, cap=2.0)
"""How ``BatchWriteItem`` leftovers are retried (AWS: exponential backoff with jitter)."""

MAX_BATCH_ATTEMPTS = 10
"""Requests per ``BatchWriteItem`` chunk before the leftovers are given up on (an error)."""


class Unprocessed(StratoflowError):
    """DynamoDB kept returning some items of a batch as unprocessed (throttling): retry later."""

    status_code = 503
    error_type = "unprocessed_items"


class ConditionFailed(Exception):
    """A conditional write lost; ``current`` is the item as it is now (None if absent)."""

    def __init__(self, current: Item | None) -> None:
        super().__init__("condition check failed")
        self.current = current


class TransactionFailed(Exception):
    """A transaction was cancelled; ``reasons`` has one code per item ('None' where it passed)."""

    def __init__(self, reasons: list[str], items: list[Item | None]) -> None:
        super().__init__(f"transaction cancelled: {reasons}")
        self.reasons = reasons
        self.items = items

    @property
    def condition_failed(self) -> bool:
        """True when at least one item's condition failed (as opposed to a conflict)."""
        return "ConditionalCheckFailed" in self.reasons


def item_size_error(exc: ClientError) -> ItemTooLarge | None:
    """ItemTooLarge for DynamoDB's "item size has exceeded" ValidationException, else None.

    DynamoDB refuses an item over 400 KB (and a transaction over 4 MB) with a
    ValidationException; the stores size items below that, so reaching it means a
    value that can never be stored: a 413 for the caller, never a 500.
    """
    error = exc.response.get("Error", {})
    message = str(error.get("Message", ""))
    if error.get("Code") == "ValidationException" and "size" in message.lower():
        return ItemTooLarge(
            f"DynamoDB refused the write: {message} (an item holds at most 400 KB)",
            dynamodb_message=message,
        )
    return None


def to_attr(value: Any) -> dict[str, Any]:
    """One Python value as a DynamoDB attribute value (floats become Decimals)."""
    if isinstance(value, float):
        value = Decimal(repr(value))
    out: dict[str, Any] = dict(_ser.serialize(value))
    return out


def serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    """A Python mapping as a DynamoDB item; None values are left out."""
    return {k: to_attr(v) for k, v in item.items() if v is not None}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def deserialize(item: Mapping[str, Any]) -> Item:
    """A DynamoDB item as plain Python (numbers as int or float)."""
    return {k: _plain(_deser.deserialize(v)) for k, v in item.items()}


def iso(dt: datetime) -> str:
    """A sortable UTC timestamp: every stored time uses this one fixed format."""
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


def epoch(dt: datetime) -> int:
    """Seconds since the epoch (DynamoDB TTL attributes)."""
    return int(dt.timestamp())


def encode_cursor(key: Mapping[str, Any]) -> str:
    """An opaque pagination cursor for a DynamoDB key (plain values)."""
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode()


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The key inside a cursor made by :func:`encode_cursor`."""
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError):
        raise ValueError("cursor is not one this API returned") from None
    if not isinstance(value, dict):
        raise ValueError("cursor is not one this API returned")
    return value


def _raise_unavailable(exc: Exception, client: Any, table: str | None) -> None:
    """Raise one clear AwsUnavailable for an unreachable endpoint or a missing table."""
    from runtime.stores.connection import explain_aws_error

    unavailable = explain_aws_error(exc, client=client, table=table)
    if unavailable is not None:
        raise unavailable from None


class Dynamo:
    """The DynamoDB client every store uses, with optional request serialization."""

    def __init__(
        self,
        client: Any,
        *,
        serialize_requests: bool = False,
        backoff: Backoff = UNPROCESSED_BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.backoff = backoff
        """The wait between retries of a batch's unprocessed items."""
        self.sleep = sleep
        self._lock: AbstractContextManager[Any] = (
            threading.RLock() if serialize_requests else nullcontext()
        )

    def _call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        with self._lock:
            try:
                return getattr(self.client, op)(**kwargs)  # type: ignore[no-any-return]
            except Exception as exc:
                _raise_unavailable(exc, self.client, kwargs.get("TableName"))
                raise

    def get(
        self,
        table: str,
        key: Mapping[str, Any],
        *,
        projection: str | None = None,
        names: Mapping[str, str] | None = None,
    ) -> Item | None:
        """A strongly consistent read of one item, or None."""
        kwargs: dict[str, Any] = {"TableName": table, "Key": serialize(key), "ConsistentRead": True}
        if projection:
            kwargs["ProjectionExpression"] = projection
        if names:
            kwargs["ExpressionAttributeNames"] = dict(names)
        found = self._call("get_item", **kwargs).get("Item")
        return deserialize(found) if found else None

    def put(
        self,
        table: str,
        item: Mapping[str, Any],
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        """Write a whole item, optionally only if ``condition`` holds (else ConditionFailed)."""
        self._write("put_item", table, {"Item": serialize(item)}, condition, names, values)

    def update(
        self,
        table: str,
        key: Mapping[str, Any],
        update: str,
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        return_new: bool = True,
    ) -> Item | None:
        """Apply an update expression, optionally conditional; returns the new item."""
        extra: dict[str, Any] = {"Key": serialize(key), "UpdateExpression": update}
        if return_new:
            extra["ReturnValues"] = "ALL_NEW"
        out = self._write("update_item", table, extra, condition, names, values)
        attrs = out.get("Attributes")
        return deserialize(attrs) if attrs else None

    def delete(
        self,
        table: str,
        key: Mapping[str, Any],
        *,
        condition: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> Item | None:
        """Delete one item, optionally conditional; returns the deleted item (None if absent)."""
        out = self._write(
            "delete_item",
            table,
            {"Key": serialize(key), "ReturnValues": "ALL_OLD"},
            condition,
            names,
            values,
        )
        attrs = out.get("Attributes")
        return deserialize(attrs) if attrs else None

    def _write(
        self,
        op: str,
        table: str,
        extra: dict[str, Any],
        condition: str | None,
        names: Mapping[str, str] | None,
        values: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"TableName": table, **extra}
        if condition:
            kwargs["ConditionExpression"] = condition
            kwargs["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        if names:
            kwargs["ExpressionAttributeNames"] = dict(names)
        if values:
            kwargs["ExpressionAttributeValues"] = serialize(values)
        try:
            return self._call(op, **kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                old: Any = exc.response.get("Item")
                raise ConditionFailed(deserialize(old) if old else None) from None
            raise item_size_error(exc) or exc from None

    def transact(self, items: list[dict[str, Any]]) -> None:
        """``TransactWriteItems`` over items written as Python values.

        Each entry is ``{"Put"|"Update"|"Delete"|"ConditionCheck": {...}}`` with
        ``Item``/``Key``/``ExpressionAttributeValues`` as plain Python; they are
        serialized here. Raises :class:`TransactionFailed` with per-item reasons.
        """
        wire = []
        for entry in items:
            ((op, body),) = entry.items()
            body = dict(body)
            for field in ("Item", "Key", "ExpressionAttributeValues"):
                if field in body:
                    body[field] = serialize(body[field])
            if "ConditionExpression" in body:
                body["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
            wire.append({op: body})
        try:
            self._call("transact_write_items", TransactItems=wire)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise item_size_error(exc) or exc from None
            reasons = exc.response.get("CancellationReasons") or []
            codes = [r.get("Code", "None") for r in reasons]
            olds = [deserialize(r["Item"]) if r.get("Item") else None for r in reasons]  # type: ignore[arg-type]
            raise TransactionFailed(codes, olds) from None

    def query(
        self,
        table: str,
        *,
        key_condition: str,
        index: str | None = None,
        filter_expression: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        forward: bool = True,
        start_key: Mapping[str, Any] | None = None,
        page_size: int | None = None,
        consistent: bool = False,
    ) -> Iterator[Item]:
        """Every item matching the query, page after page (lazily)."""
        kwargs: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": key_condition,
            "ScanIndexForward": forward,
        }
        if index:
            kwargs["IndexName"] = index
        elif consistent:
            kwargs["ConsistentRead"] = True
        if filter_expression:
            kwargs["FilterExpression"] = filter_expression
        if names:
            kwargs["ExpressionAttributeNames"] = dict(names)
        if values:
            kwargs["ExpressionAttributeValues"] = serialize(values)
        if page_size:
            kwargs["Limit"] = page_size
        if start_key:
            kwargs["ExclusiveStartKey"] = serialize(start_key)
        while True:
            out = self._call("query", **kwargs)
            for raw in out.get("Items", []):
                yield deserialize(raw)
            last = out.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def scan(
        self,
        table: str,
        filter_expression: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> Iterator[Item]:
        """Every item of a table (optionally filtered), page after page: admin use only."""
        kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        if filter_expression:
            kwargs["FilterExpression"] = filter_expression
        if names:
            kwargs["ExpressionAttributeNames"] = dict(names)
        if values:
            kwargs["ExpressionAttributeValues"] = serialize(values)
        while True:
            out = self._call("scan", **kwargs)
            for raw in out.get("Items", []):
                yield deserialize(raw)
            last = out.get("LastEvaluatedKey")
            if not last:
                return
            kwargs["ExclusiveStartKey"] = last

    def batch_write(self, table: str, items: Sequence[Mapping[str, Any]]) -> None:
        """Put many items, 25 per request, retrying unprocessed ones with backoff.

        DynamoDB returns the items it could not write (throttling) as
        ``UnprocessedItems``; they are sent again after an exponential backoff with
        full jitter (:attr:`backoff`), as AWS asks. After :data:`MAX_BATCH_ATTEMPTS`
        requests for one chunk, :class:`Unprocessed` names how many are left (the
        puts are idempotent: sending the batch again later is safe).
        """
        for start in range(0, len(items), 25):
            requests: list[dict[str, Any]] = [
                {"PutRequest": {"Item": serialize(i)}} for i in items[start : start + 25]
            ]
            pending: dict[str, Any] = {table: requests}
            for attempt in range(MAX_BATCH_ATTEMPTS):
                if attempt:
                    self.backoff.sleep(attempt - 1, sleep=self.sleep)
                try:
                    out = self._call("batch_write_item", RequestItems=pending)
                except ClientError as exc:
                    raise item_size_error(exc) or exc from None
                pending = out.get("UnprocessedItems") or {}
                if not pending:
                    break
            else:
                left = sum(len(v) for v in pending.values())
                raise Unprocessed(
                    f"DynamoDB left {left} item(s) of a batch unprocessed after "
                    f"{MAX_BATCH_ATTEMPTS} requests (throttled); nothing is lost by sending "
                    "the batch again",
                    unprocessed=left,
                )
