"""Flow runs, task runs and run logs: the ``/flow_runs``, ``/task_runs``, ``/logs`` routes.

Thin routes: the schemas validate, a use case of :mod:`runtime.services` does the
work on :func:`handlers.deps.get_stores`, ``handlers.api`` maps domain errors to
the one error shape. What the routes add:

* ``Idempotency-Key`` on creates becomes the request's ``idempotency_key``; 201 for
  a new run, 200 when the key returned an existing one (the store says which).
* ``set_state`` and ``cancel`` answer 200 for ACCEPT and WAIT; REJECT and ABORT are
  409 ``transition_rejected`` with ``details: {"status", "reason", "state"}``.
* ``cancel`` proposes Cancelled for a run that has not started (SCHEDULED, PENDING,
  PAUSED) and Cancelling for a RUNNING one, through the normal rules (never
  forced): a final run, or one already Cancelling, gets 409.
* A new run's references (``parent_flow_run_id``, ``parent_task_run_id``,
  ``deployment_id``, ``work_pool_name``; a task run's ``flow_run_id``) must
  exist: otherwise 422 naming the field, and nothing is created.
* Inputs the schemas let through but DynamoDB would refuse (empty index keys,
  oversized requests and states, see ``runtime.limits``) are refused here with a
  422 naming the field, and naive datetimes are read as UTC, so bad input never
  reaches the store as a 500. A run that still cannot fit its item is 413
  ``item_too_large`` (the store sizes every item; state messages are cut at the
  model with a ``... [truncated N bytes]`` marker).
* ``POST /task_runs/records`` is guarded: a record creates a task run or replaces
  the same run of the same flow run with a strictly newer ``state_version``; a
  finished (or missing) flow run takes no records. Refusals are 409 ``conflict``
  naming each record and why; a transaction DynamoDB cancelled for concurrent
  writes is 409 ``transaction_conflict`` (retry).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, TypeVar

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.event_handler.router import Router
from pydantic import AfterValidator, BaseModel, ConfigDict

from handlers.deps import get_stores
from runtime.api_schemas import SetStateRequest, TaskRunRecords, Written
from runtime.errors import InvalidInput
from runtime.limits import RUN_FIELDS_MAX_BYTES, STATE_MAX_BYTES
from runtime.models import (
    FlowRun,
    FlowRunCreate,
    FlowRunFilter,
    LogRecord,
    OrchestrationResult,
    Page,
    TaskRun,
    TaskRunCreate,
    TaskRunFilter,
)
from runtime.services import flow_runs, pages, task_runs
from runtime.states import State, StateType, as_utc

router = Router()

M = TypeVar("M", bound=BaseModel)

MAX_RUN_JSON_BYTES = RUN_FIELDS_MAX_BYTES
"""Largest run creation request (as JSON): the run item also holds its state and history."""

MAX_STATE_JSON_BYTES = STATE_MAX_BYTES
"""Largest proposed state (as JSON); its message is already cut at the model."""

MAX_LOG_RECORDS = 1000
"""Most log lines one ``POST /logs`` may carry."""


def _uuid_text(value: str) -> str:
    try:
        uuid.UUID(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a UUID") from None
    return value


RunId = Annotated[str, Path(description="The run's id (a UUID)"), AfterValidator(_uuid_text)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=512,
        description="A retry with the same key returns the first run (200) and creates nothing",
    ),
]
Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page")]
Cursor = Annotated[str | None, Query(description="The next_cursor of the previous page")]
Created = Annotated[datetime | None, Query(description="ISO 8601 (UTC when no offset)")]
Repeated = Annotated[list[str] | None, Query()]


class LogRecordIn(LogRecord):
    """One log line to store (unknown fields are errors)."""

    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------- helpers


def _json_size(model: BaseModel) -> int:
    return len(model.model_dump_json().encode())


def _check_size(model: BaseModel, field: str, limit: int) -> None:
    size = _json_size(model)
    if size > limit:
        raise InvalidInput(
            f"{field}: {size} bytes of JSON, more than the {limit} a run item can hold",
            field=field,
        )


def _check_id(value: str | None, field: str) -> None:
    if value is not None:
        try:
            _uuid_text(value)
        except ValueError as exc:
            raise InvalidInput(f"{field}: {exc}", field=field) from None


def _idempotent(body: M, header_key: str | None) -> M:
    """The request with the header's key as ``idempotency_key`` (422 if both differ)."""
    if header_key is None:
        return body
    current = getattr(body, "idempotency_key", None)
    if current is not None and current != header_key:
        raise InvalidInput(
            "body.idempotency_key: differs from the Idempotency-Key header (send one of them)",
            field="idempotency_key",
        )
    return body.model_copy(update={"idempotency_key": header_key})


def _created(run: BaseModel, created: bool) -> Response[Any]:
    return Response(
        status_code=201 if created else 200,
        content_type="application/json",
        body=run,
    )


def _window(after: datetime | None, before: datetime | None) -> tuple[datetime | None, ...]:
    after = as_utc(after) if after is not None else None
    before = as_utc(before) if before is not None else None
    if after is not None and before is not None and after > before:
        raise InvalidInput(
            "query.created_after: must not be later than created_before", field="created_after"
        )
    return after, before


# ----------------------------------------------------------------------------- flow runs


@router.post("/flow_runs", summary="Create a flow run", tags=["flow runs"])
def create_flow_run(
    body: Annotated[FlowRunCreate, Body()],
    idempotency_key: IdempotencyKey = None,
) -> Response[FlowRun]:
    """201 with the new run; 200 with the first run when the idempotency key was used before."""
    request = _idempotent(body, idempotency_key)
    _check_id(request.deployment_id, "body.deployment_id")
    _check_size(request, "body", MAX_RUN_JSON_BYTES)
    run, created = flow_runs.create_flow_run(get_stores(), request)
    return _created(run, created)


@router.get("/flow_runs", summary="List flow runs (newest first)", tags=["flow runs"])
def list_flow_runs(
    flow_name: Annotated[str | None, Query()] = None,
    deployment_id: Annotated[str | None, Query()] = None,
    parent_flow_run_id: Annotated[str | None, Query()] = None,
    work_pool_name: Annotated[str | None, Query()] = None,
    state_type: Annotated[list[StateType] | None, Query()] = None,
    state_name: Repeated = None,
    tag: Annotated[list[str] | None, Query(description="Runs having every one of these")] = None,
    created_after: Created = None,
    created_before: Created = None,
    limit: Limit = 200,
    cursor: Cursor = None,
) -> Page[FlowRun]:
    """Flow runs matching every given filter, ``limit`` per page."""
    after, before = _window(created_after, created_before)
    flt = FlowRunFilter(
        flow_name=flow_name or None,
        deployment_id=deployment_id or None,
        parent_flow_run_id=parent_flow_run_id or None,
        work_pool_name=work_pool_name or None,
        state_types=state_type or None,
        state_names=state_name or None,
        tags_all=tag or None,
        created_after=after,
        created_before=before,
    )
    return pages.list_flow_runs(get_stores(), flt, limit=limit, cursor=cursor)


@router.get("/flow_runs/<id>", summary="Read a flow run", tags=["flow runs"])
def read_flow_run(id: RunId) -> FlowRun:
    """The flow run, or 404."""
    return get_stores().runs.read_flow_run(id)


@router.post("/flow_runs/<id>/set_state", summary="Propose a flow run state", tags=["flow runs"])
def set_flow_run_state(id: RunId, body: Annotated[SetStateRequest, Body()]) -> OrchestrationResult:
    """200 for ACCEPT and WAIT; 409 ``transition_rejected`` (with the current state) otherwise."""
    request = body
    _check_size(request.state, "body.state", MAX_STATE_JSON_BYTES)
    return flow_runs.set_run_state(
        get_stores(),
        "flow_run",
        id,
        request.state,
        force=request.force,
        expected_version=request.expected_version,
        raise_on_reject=True,
    )


@router.post("/flow_runs/<id>/cancel", summary="Cancel a flow run", tags=["flow runs"])
def cancel_flow_run(id: RunId) -> OrchestrationResult:
    """Cancelled if it has not started, Cancelling if it runs; 409 if it is final already."""
    return flow_runs.cancel_flow_run(get_stores(), id, raise_on_reject=True)


@router.get("/flow_runs/<id>/states", summary="A flow run's states", tags=["flow runs"])
def flow_run_states(id: RunId) -> list[State]:
    """Every state the flow run has had, oldest first."""
    return get_stores().runs.read_state_history(id, "flow_run")


@router.get("/flow_runs/<id>/logs", summary="A flow run's logs", tags=["logs"])
def flow_run_logs(
    id: RunId,
    task_run_id: Annotated[str | None, Query()] = None,
    level_ge: Annotated[int | None, Query(ge=0, le=100)] = None,
    limit: Limit = 200,
    cursor: Cursor = None,
) -> Page[LogRecord]:
    """The flow run's log lines (and its task runs') in time order."""
    return pages.read_logs(
        get_stores(),
        id,
        task_run_id=task_run_id or None,
        level_ge=level_ge,
        limit=limit,
        cursor=cursor,
    )


# ----------------------------------------------------------------------------- task runs


@router.post("/task_runs", summary="Create a task run", tags=["task runs"])
def create_task_run(
    body: Annotated[TaskRunCreate, Body()],
    idempotency_key: IdempotencyKey = None,
) -> Response[TaskRun]:
    """201 with the new run; 200 with the first run when the idempotency key was used before."""
    request = _idempotent(body, idempotency_key)
    _check_size(request, "body", MAX_RUN_JSON_BYTES)
    run, created = task_runs.create_task_run(get_stores(), request)
    return _created(run, created)


@router.post(
    "/task_runs/records", summary="Write task-run snapshots (the engine)", tags=["task runs"]
)
def write_task_run_records(body: Annotated[TaskRunRecords, Body()]) -> Response[Written]:
    """Store the engine's batched task-run snapshots (run and history): 202, or 409 naming
    every stale, foreign or late record (nothing of the batch is written then)."""
    request = body
    seen: dict[str, int] = {}
    for i, record in enumerate(request.records):
        run, where = record.run, f"body.records.{i}"
        _check_id(run.id, f"{where}.run.id")
        _check_id(run.flow_run_id, f"{where}.run.flow_run_id")
        if not run.task_key or not run.name:
            field = "task_key" if not run.task_key else "name"
            raise InvalidInput(f"{where}.run.{field}: must not be empty", field=field)
        if run.id in seen:
            raise InvalidInput(
                f"{where}.run.id: {run.id} is also body.records.{seen[run.id]}: one per run",
                field="id",
            )
        seen[run.id] = i
        _check_size(run.state, f"{where}.run.state", MAX_STATE_JSON_BYTES)
        _check_size(run, f"{where}.run", MAX_RUN_JSON_BYTES + MAX_STATE_JSON_BYTES)
        for j, entry in enumerate(record.history):  # the store keeps what fits of it
            _check_size(entry, f"{where}.history.{j}", MAX_STATE_JSON_BYTES)
    written = task_runs.record_task_runs(
        get_stores(), [(r.run, r.history) for r in request.records], guard=True
    )
    return Response(status_code=202, content_type="application/json", body=Written(written=written))


@router.get("/task_runs", summary="List task runs (newest first)", tags=["task runs"])
def list_task_runs(
    flow_run_id: Annotated[str | None, Query()] = None,
    task_key: Annotated[str | None, Query()] = None,
    state_type: Annotated[list[StateType] | None, Query()] = None,
    state_name: Repeated = None,
    tag: Annotated[list[str] | None, Query(description="Runs having every one of these")] = None,
    created_after: Created = None,
    created_before: Created = None,
    limit: Limit = 200,
    cursor: Cursor = None,
) -> Page[TaskRun]:
    """Task runs matching every given filter, ``limit`` per page."""
    after, before = _window(created_after, created_before)
    flt = TaskRunFilter(
        flow_run_id=flow_run_id or None,
        task_key=task_key or None,
        state_types=state_type or None,
        state_names=state_name or None,
        tags_all=tag or None,
        created_after=after,
        created_before=before,
    )
    return pages.list_task_runs(get_stores(), flt, limit=limit, cursor=cursor)


@router.get("/task_runs/<id>", summary="Read a task run", tags=["task runs"])
def read_task_run(id: RunId) -> TaskRun:
    """The task run, or 404."""
    return get_stores().runs.read_task_run(id)


@router.get("/task_runs/<id>/states", summary="A task run's states", tags=["task runs"])
def task_run_states(id: RunId) -> list[State]:
    """Every state the task run has had, oldest first."""
    return get_stores().runs.read_state_history(id, "task_run")


@router.post("/task_runs/<id>/set_state", summary="Propose a task run state", tags=["task runs"])
def set_task_run_state(id: RunId, body: Annotated[SetStateRequest, Body()]) -> OrchestrationResult:
    """200 for ACCEPT and WAIT; 409 ``transition_rejected`` (with the current state) otherwise."""
    request = body
    _check_size(request.state, "body.state", MAX_STATE_JSON_BYTES)
    return flow_runs.set_run_state(
        get_stores(),
        "task_run",
        id,
        request.state,
        force=request.force,
        expected_version=request.expected_version,
        raise_on_reject=True,
    )


# ----------------------------------------------------------------------------- logs


@router.post("/logs", summary="Write log lines", tags=["logs"])
def write_logs(
    body: Annotated[list[LogRecordIn], Body(max_length=MAX_LOG_RECORDS)],
) -> Response[Written]:
    """Store up to 1000 log lines of flow and task runs (202).

    A line with an ``id`` is stored once however often it is sent (a repeat overwrites
    the same item); two lines of one request with the same timestamp and id are a 422.
    """
    records: list[LogRecord] = list(body)
    get_stores().logs.write(records)
    return Response(
        status_code=202, content_type="application/json", body=Written(written=len(records))
    )
