"""Persisted results (``/results``) and the task cache (``/cache``).

Results travel as base64 of their serialized bytes: the API stores and returns
bytes and never deserializes them (a pickle is only ever loaded by the client
that asked for it). References handed in or out must point into this
installation's results bucket.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.event_handler.router import Router
from pydantic import BaseModel, ValidationError

from handlers.deps import get_stores
from runtime.api_schemas import (
    CacheLockRequest,
    CacheWriteRequest,
    Deleted,
    Locked,
    ResultPayload,
    ResultUpload,
    Unlocked,
)
from runtime.errors import InvalidInput, NotFound
from runtime.limits import DOC_MAX_BYTES
from runtime.models import CacheRecord
from runtime.states import ResultRef

router = Router()

MAX_RECORD_BYTES = DOC_MAX_BYTES
"""Largest cache record (JSON) written (the item budget of ``runtime.limits``)."""

CacheKey = Annotated[str, Path(min_length=1, max_length=1024, description="The cache key")]


class CacheRecords(BaseModel):
    """``GET /cache``: one page of cache records, newest first within the page."""

    items: list[CacheRecord]
    next_cursor: str | None = None


def _check_bucket(storage_key: str | None, field: str) -> None:
    """Refuse an ``s3://`` URI outside this installation's results bucket."""
    if storage_key is None or not storage_key.startswith("s3://"):
        return
    from runtime.results import parse_s3_uri

    bucket = get_stores().results.bucket
    try:
        named, _ = parse_s3_uri(storage_key)
    except ValueError as exc:
        raise InvalidInput(f"{field}: {exc}", field=field) from None
    if named != bucket:
        raise InvalidInput(
            f"{field}: results live in s3://{bucket}/, not s3://{named}/", field=field
        )


# ----------------------------------------------------------------------------- results


@router.post("/results", summary="Store a result", tags=["results"])
def persist_result(body: Annotated[ResultUpload, Body()]) -> Response[ResultRef]:
    """201 ``ResultRef``: inline when small, else in S3 (always S3 with a ``storage_key``).

    Without a ``storage_key``, a large payload goes to ``results/<id>`` (the client's id:
    a repeat writes the same object) or to a fresh UUID.
    """
    try:
        data = base64.b64decode(body.payload.encode("ascii"), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("body.payload: not valid base64", field="payload") from None
    if body.serializer == "json":
        try:
            json.loads(data)
        except ValueError as exc:
            raise InvalidInput(
                f"body.payload: not valid JSON for the json serializer: {exc}", field="payload"
            ) from None
    if body.storage_key is not None:
        _check_bucket(body.storage_key, "body.storage_key")
        if not body.storage_key.strip("/"):
            raise InvalidInput("body.storage_key: must not be empty", field="storage_key")
    ref = get_stores().results.persist_bytes(
        data, serializer=body.serializer, storage_key=body.storage_key, result_id=body.id
    )
    return Response(status_code=201, content_type="application/json", body=ref)


@router.post("/results/load", summary="Load a result", tags=["results"])
def load_result(body: Annotated[ResultRef, Body()]) -> ResultPayload:
    """The stored bytes as base64; 404 ``result_not_found`` when the S3 object is gone."""
    if body.serializer not in ("json", "pickle"):
        raise InvalidInput(
            f"body.serializer: unknown serializer {body.serializer!r}: use json or pickle",
            field="serializer",
        )
    if body.inline is None and not body.storage_key:
        raise InvalidInput(
            "body: a result reference needs inline or storage_key", field="storage_key"
        )
    _check_bucket(body.storage_key if body.inline is None else None, "body.storage_key")
    data = get_stores().results.load_bytes(body)
    return ResultPayload(payload=base64.b64encode(data).decode("ascii"))


# ----------------------------------------------------------------------------- cache


@router.get("/cache", summary="List cache records", tags=["cache"])
def list_cache(
    task_key: Annotated[str | None, Query(min_length=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    cursor: Annotated[str | None, Query(description="The next_cursor of the previous page")] = None,
) -> CacheRecords:
    """One page of live cache records (of one task, or all): a bounded scan of the table.

    Pages follow the table's order, each newest first; a page may be short (even
    empty) and still have a ``next_cursor``. Read every page for the newest overall.
    """
    page = get_stores().cache.list_page(task_key, limit=limit, cursor=cursor)
    return CacheRecords(items=page.items, next_cursor=page.next_cursor)


@router.delete("/cache", summary="Clear cache records", tags=["cache"])
def clear_cache(
    key: Annotated[str | None, Query(min_length=1)] = None,
    task_key: Annotated[str | None, Query(min_length=1)] = None,
) -> Deleted:
    """Delete one key, a task's records, or (neither given) everything."""
    return Deleted(deleted=get_stores().cache.clear(key=key, task_key=task_key))


@router.get("/cache/<key>", summary="Read a cache record", tags=["cache"])
def read_cache(key: CacheKey) -> CacheRecord:
    """The live record; 404 on a miss (no record, a pending lock, or expired)."""
    record = get_stores().cache.read(key)
    if record is None:
        raise NotFound(f"no cache record for key {key!r}", key=key)
    return record


@router.post("/cache/<key>/lock", summary="Take the compute lock", tags=["cache"])
def lock_cache(key: CacheKey, body: Annotated[CacheLockRequest, Body()]) -> Locked:
    """``{"locked": true}`` when this owner now holds (or renewed) the key and should compute.

    ``{"locked": false}`` when a live record exists (read it, or lock with
    ``refresh``); 409 ``cache_key_locked`` naming the holder while another
    owner's lock is live, with or without ``refresh``: a live lock is never
    taken over before it expires.
    """
    attempt = get_stores().cache.try_lock(
        key, body.owner, lock_seconds=body.lock_seconds, refresh=body.refresh
    )
    if not attempt.acquired and attempt.holder is not None:
        raise attempt.locked_error(key)
    return Locked(locked=attempt.acquired)


@router.put("/cache/<key>", summary="Write a cache record", tags=["cache"])
def write_cache(key: CacheKey, body: Annotated[CacheWriteRequest, Body()]) -> CacheRecord:
    """Store the record in place of the owner's lock; 409 ``conflict`` unless the owner holds it.

    The API stores the record's result reference as given and never verifies
    it: a pickled payload carries a MAC that only the engine can make and check.
    """
    try:
        record = CacheRecord.model_validate(body.record)
    except ValidationError as exc:
        errors: list[dict[str, Any]] = [
            {**err, "loc": ("body", "record", *err["loc"])} for err in exc.errors()
        ]
        raise RequestValidationError(errors) from None
    if record.key != key:
        raise InvalidInput(
            f"body.record.key: {record.key!r} does not match the path's key {key!r}",
            field="record.key",
        )
    size = len(record.model_dump_json().encode())
    if size > MAX_RECORD_BYTES:
        raise InvalidInput(
            f"body.record: {size} bytes of JSON, more than the {MAX_RECORD_BYTES} a cache "
            "item can hold (persist large results to S3 and send the reference)",
            field="record",
        )
    get_stores().cache.write(key, record, body.owner)
    return record


@router.delete("/cache/<key>/lock", summary="Give up the compute lock", tags=["cache"])
def unlock_cache(
    key: CacheKey, owner: Annotated[str, Query(min_length=1, max_length=200)]
) -> Unlocked:
    """``{"unlocked": false}`` when the lock is gone or held by someone else."""
    return Unlocked(unlocked=get_stores().cache.unlock(key, owner))
