"""Persisted results (``/results``) and the task cache (``/cache``).

Result bytes never travel through the API (Lambda's payloads stop at 6 MB): the
API hands out presigned S3 URLs, a PUT for a new result (``POST /results``) and a
GET for a stored one (``POST /results/download``), and the client sends or fetches
the bytes itself. The API never sees, let alone deserializes, a payload (a pickle is
only ever loaded by the engine, once its MAC checks out). References handed in or out
must point into this installation's results bucket, under ``results/``.
"""

from __future__ import annotations

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
    ResultDownloadTicket,
    ResultTransfer,
    ResultUpload,
    ResultUploadTicket,
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
    """Refuse an ``s3://`` URI outside this installation's results (bucket and prefix)."""
    if storage_key is None or not storage_key.startswith("s3://"):
        return
    from runtime.results import RESULTS_PREFIX, parse_s3_uri

    bucket = get_stores().results.bucket
    try:
        named, key = parse_s3_uri(storage_key)
    except ValueError as exc:
        raise InvalidInput(f"{field}: {exc}", field=field) from None
    if named != bucket:
        raise InvalidInput(
            f"{field}: results live in s3://{bucket}/, not s3://{named}/", field=field
        )
    if not key.startswith(RESULTS_PREFIX) or ".." in key.split("/"):
        raise InvalidInput(
            f"{field}: results live under s3://{bucket}/{RESULTS_PREFIX}, not at {key!r}",
            field=field,
        )


def _as_uri(storage_key: str) -> str:
    """The ``s3://`` URI of a storage key (a bare key lives under the bucket's ``results/``)."""
    if storage_key.startswith("s3://"):
        return storage_key
    return get_stores().results.uri(storage_key)


# ----------------------------------------------------------------------------- results


@router.post("/results", summary="Get an upload URL for a result", tags=["results"])
def upload_result(body: Annotated[ResultUpload, Body()]) -> Response[ResultUploadTicket]:
    """201: the new result's ``ref`` (in S3) and a presigned ``upload`` (PUT) for its bytes.

    The object is ``results/<storage_key>``, else ``results/<id>`` (the client's id: a
    repeat targets the same object), else a fresh UUID. Small results need no request:
    the engine keeps them inline in the reference.
    """
    if body.storage_key is not None:
        if not body.storage_key.strip("/"):
            raise InvalidInput("body.storage_key: must not be empty", field="storage_key")
        _check_bucket(_as_uri(body.storage_key), "body.storage_key")
    ref, transfer = get_stores().results.presign_upload(
        serializer=body.serializer,
        size=body.size,
        storage_key=body.storage_key,
        result_id=body.id,
    )
    ticket = ResultUploadTicket(ref=ref, upload=ResultTransfer(**vars(transfer)))
    return Response(status_code=201, content_type="application/json", body=ticket)


@router.post("/results/download", summary="Get a download URL for a result", tags=["results"])
def download_result(body: Annotated[ResultRef, Body()]) -> ResultDownloadTicket:
    """A presigned ``download`` (GET) of a result stored in S3.

    404 ``result_not_found`` when the object is gone; 422 for an inline reference
    (its bytes are in the reference) or one outside this installation's results.
    """
    if body.serializer not in ("json", "pickle"):
        raise InvalidInput(
            f"body.serializer: unknown serializer {body.serializer!r}: use json or pickle",
            field="serializer",
        )
    if body.inline is not None:
        raise InvalidInput(
            "body.inline: an inline result's bytes are in the reference: nothing to download",
            field="inline",
        )
    if not body.storage_key or not body.storage_key.strip("/"):
        raise InvalidInput("body.storage_key: a stored result needs one", field="storage_key")
    _check_bucket(_as_uri(body.storage_key), "body.storage_key")
    transfer = get_stores().results.presign_download(body)
    return ResultDownloadTicket(download=ResultTransfer(**vars(transfer)))


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
