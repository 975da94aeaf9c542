"""Request and response bodies of the HTTP API that are not stored records.

Shared by the handlers (validation, OpenAPI) and the SDK's HTTP client.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runtime.limits import RESULT_UPLOAD_MAX_BYTES
from runtime.models import Lease, TaskRun
from runtime.states import ResultRef, State


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
"""A client-chosen id: a UUID in its text form."""


class SetStateRequest(_Strict):
    """``POST /flow_runs/{id}/set_state`` and ``/task_runs/{id}/set_state``."""

    state: State
    force: bool = False
    expected_version: int | None = Field(
        default=None,
        ge=0,
        description="The state_version the caller last wrote: lets the API skip reading the "
        "run first when it wrote that version itself (the write is conditional either way)",
    )


class TaskRunRecord(_Strict):
    """One task-run snapshot written by the engine (its latest state and full history)."""

    run: TaskRun
    history: list[State] = Field(min_length=1)


class TaskRunRecords(_Strict):
    """``POST /task_runs/records``: the engine's batched task-run snapshots."""

    records: list[TaskRunRecord] = Field(min_length=1, max_length=100)


class Written(BaseModel):
    """How many records a batch write stored."""

    written: int


class LeaseRequest(_Strict):
    """``POST /concurrency_limits/leases``."""

    names: list[str] = Field(min_length=1, max_length=20)
    slots: int = Field(default=1, ge=1)
    lease_seconds: float = Field(default=60.0, gt=0, le=86_400)
    holder: str | None = Field(default=None, max_length=200)
    missing_ok: bool = Field(
        default=False,
        description="Skip limits that do not exist (the lease names them in missing_names) "
        "instead of answering 404",
    )
    mode: Literal["concurrency", "rate_limit"] = Field(
        default="concurrency",
        description="rate_limit: every active limit must have slot decay (else 422)",
    )
    id: str | None = Field(
        default=None,
        pattern=UUID_PATTERN,
        description="The lease's id, chosen by the client (a UUID): a repeat of the request "
        "returns the lease the first one took instead of taking more slots",
    )


class LeaseResponse(BaseModel):
    """The lease, or null when no slot is free right now."""

    lease: Lease | None


class RenewRequest(_Strict):
    """``POST /concurrency_limits/leases/{id}/renew``."""

    lease_seconds: float = Field(default=60.0, gt=0, le=86_400)


class Released(BaseModel):
    """Whether this call released the lease (False: it was already gone)."""

    released: bool


class LimitUpdate(_Strict):
    """``PATCH /concurrency_limits/{name}``: only the fields given change."""

    limit: int | None = Field(default=None, ge=0, le=1_000_000)
    active: bool | None = Field(default=None, description="Enforce the limit (true) or not")
    slot_decay_per_second: float | None = Field(default=None, ge=0, le=1_000_000)


class ResultUpload(_Strict):
    """``POST /results``: a result the client is about to upload (its bytes go to S3)."""

    serializer: Literal["json", "pickle"]
    size: int = Field(
        ge=0,
        le=RESULT_UPLOAD_MAX_BYTES,
        description="Bytes the client will PUT (at most 5 GiB: one S3 PUT)",
    )
    storage_key: str | None = Field(default=None, max_length=900)
    id: str | None = Field(
        default=None,
        pattern=UUID_PATTERN,
        description="The result's id, chosen by the client (a UUID): the object is "
        "results/<id>, so a repeat targets the same object",
    )


class ResultTransfer(BaseModel):
    """A presigned S3 request: send ``method`` to ``url`` with exactly ``headers``."""

    url: str = Field(description="Presigned S3 URL (at the installation's S3 endpoint)")
    method: Literal["PUT", "GET"]
    headers: dict[str, str] = Field(
        default_factory=dict, description="Headers to send as given (they are signed)"
    )
    expires_in: int = Field(description="Seconds the URL stays valid")


class ResultUploadTicket(BaseModel):
    """``POST /results``: the new result's reference and where to PUT its bytes."""

    ref: ResultRef
    upload: ResultTransfer


class ResultDownloadTicket(BaseModel):
    """``POST /results/download``: where to GET a stored result's bytes."""

    download: ResultTransfer


class CacheLockRequest(_Strict):
    """``POST /cache/{key}/lock``."""

    owner: str = Field(min_length=1, max_length=200)
    lock_seconds: float = Field(default=300.0, gt=0, le=86_400)
    refresh: bool = False


class CacheWriteRequest(_Strict):
    """``PUT /cache/{key}``."""

    record: dict[str, Any]
    owner: str = Field(min_length=1, max_length=200)


class Locked(BaseModel):
    """Whether the caller now holds the cache key."""

    locked: bool


class Unlocked(BaseModel):
    """Whether the caller's lock was removed."""

    unlocked: bool


class Deleted(BaseModel):
    """How many records were deleted."""

    deleted: int
