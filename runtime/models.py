"""The records Stratoflow keeps: runs, deployments, work pools, limits, leases, logs, events.

Inputs (``*Create``) are validated strictly (unknown fields are errors, messages
name the field); stored records round-trip through JSON.
"""

from __future__ import annotations

import os
import random
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from runtime.errors import CacheKeyLocked
from runtime.jsonvalues import JsonValueError, check_json_value
from runtime.names import check_printable, dedupe
from runtime.states import Pending, ResultRef, State, StateType, UtcDateTime, utcnow

# ----------------------------------------------------------------------------- field types

Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, strip_whitespace=True),
    AfterValidator(check_printable),
]
"""A name given in a request: 1..200 printable characters (no control or format characters)."""

Tag = Annotated[
    str, StringConstraints(min_length=1, max_length=100), AfterValidator(check_printable)
]
"""A tag given in a request: 1..100 printable characters."""

Tags = Annotated[list[Tag], AfterValidator(dedupe)]
"""Tags in a request: a repeated tag is kept once, first occurrences in order."""

Printable = Annotated[str, AfterValidator(check_printable)]
"""A stored name (any length): printable characters only."""

StoredTags = Annotated[list[Printable], AfterValidator(dedupe)]
"""Stored tags: printable, each once."""


def _json_dict(value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
    try:
        check_json_value(value)
    except JsonValueError as exc:
        where = ".".join(str(p) for p in (info.field_name, *exc.path))
        raise ValueError(f"{exc.reason} (at {where})") from None
    return value


JsonDict = Annotated[dict[str, Any], AfterValidator(_json_dict)]
"""Free-form JSON (parameters, job variables): finite numbers, at most 64 levels deep."""

_PATH_SEGMENT = re.compile(r"[\w\-.~()'!*:@,;=+&$%<>\[\]{}|^]+")
"""What the API's routes match as one path segment (``/concurrency_limits/{name}``)."""


def _limit_name(value: str) -> str:
    check_printable(value)
    if not _PATH_SEGMENT.fullmatch(value):
        bad = next(c for c in value if not _PATH_SEGMENT.fullmatch(c))
        raise ValueError(
            f"{bad!r} cannot be part of a limit name: it must fit one URL path segment "
            "(letters, digits and -._~()'!*:@,;=+&$%<>[]{}|^; no '/', '?', '#' or spaces)"
        )
    return value


LimitName = Annotated[
    str, StringConstraints(min_length=1, max_length=200), AfterValidator(_limit_name)
]
"""A concurrency limit's name, readable and deletable through ``/concurrency_limits/{name}``."""

RunKind = Literal["flow_run", "task_run"]
T = TypeVar("T")


def _seeded() -> random.Random:
    return random.Random(random.SystemRandom().getrandbits(128))


_fast_random = _seeded()


def _reseed_after_fork() -> None:
    # A forked child inherits the parent's PRNG state: without a new seed it would
    # draw exactly the parent's next ids (and hand out another process's run id).
    global _fast_random
    _fast_random = _seeded()


os.register_at_fork(after_in_child=_reseed_after_fork)


def new_id() -> str:
    """A fresh run or object id (a random UUID4 as text), unique across forked processes.

    Drawn from a PRNG seeded from the OS, and seeded again in every child a fork
    makes (``os.register_at_fork``), so a parent and its children never share ids:
    ids need to be unique, not secret, and ``uuid.uuid4()`` (an ``os.urandom`` call
    each) costs two to three times as much.
    """
    return str(uuid.UUID(int=_fast_random.getrandbits(128), version=4))


def _check_uuid(value: str | None) -> str | None:
    if value is not None:
        try:
            uuid.UUID(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a UUID") from None
    return value


class StrictModel(BaseModel):
    """Base for inputs: unknown fields are rejected rather than silently dropped."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RetryPolicy(StrictModel):
    """How a failed run is retried (Prefect's ``empirical_policy``)."""

    retries: int = Field(default=0, ge=0, le=10_000)
    retry_delay_seconds: float | list[float] = Field(default=0.0)
    retry_jitter_factor: float | None = Field(default=None, ge=0)

    @field_validator("retry_delay_seconds")
    @classmethod
    def _delays_valid(cls, value: float | list[float]) -> float | list[float]:
        delays = value if isinstance(value, list) else [value]
        if len(delays) > 50:
            raise ValueError("at most 50 retry delays may be given")
        if any(d < 0 for d in delays):
            raise ValueError("retry delays must be >= 0")
        return value


# ----------------------------------------------------------------------------- runs


class RunCreateBase(StrictModel):
    """Fields common to creating flow runs and task runs."""

    id: str | None = Field(default=None, description="Caller-chosen UUID (else generated)")
    name: Name | None = None
    tags: Tags = Field(default_factory=list)
    state: State | None = Field(default=None, description="Initial state (default Pending)")
    empirical_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None

    _check_id = field_validator("id")(classmethod(lambda cls, v: _check_uuid(v)))


class FlowRunCreate(RunCreateBase):
    """A request to create a flow run."""

    flow_name: Name
    parameters: JsonDict = Field(default_factory=dict)
    deployment_id: str | None = None
    work_pool_name: Name | None = None
    work_queue_name: Name | None = None
    job_variables: JsonDict = Field(
        default_factory=dict, description="Worker job settings (deployment's, then the run's)"
    )
    parent_flow_run_id: str | None = None
    parent_task_run_id: str | None = None
    expected_start_time: UtcDateTime | None = None

    _check_parents = field_validator("parent_flow_run_id", "parent_task_run_id")(
        classmethod(lambda cls, v: _check_uuid(v))
    )


class TaskRunCreate(RunCreateBase):
    """A request to create a task run."""

    task_key: Name
    flow_run_id: str | None = None
    dynamic_key: str = "0"
    cache_key: str | None = None
    task_inputs: dict[str, list[str]] = Field(
        default_factory=dict, description="Upstream task run ids per parameter"
    )

    _check_flow_run = field_validator("flow_run_id")(classmethod(lambda cls, v: _check_uuid(v)))


class RunBase(BaseModel):
    """Fields common to flow runs and task runs as stored."""

    model_config = ConfigDict(allow_inf_nan=False)

    id: str
    name: Printable
    tags: StoredTags = Field(default_factory=list)
    state: State = Field(default_factory=Pending)
    state_version: int = Field(default=0, ge=0, description="Incremented by every transition")
    run_count: int = 0
    empirical_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    idempotency_key: str | None = None
    created: UtcDateTime = Field(default_factory=utcnow)
    updated: UtcDateTime = Field(default_factory=utcnow)
    expected_start_time: UtcDateTime | None = None
    next_scheduled_start_time: UtcDateTime | None = None
    start_time: UtcDateTime | None = None
    end_time: UtcDateTime | None = None
    total_run_time: float = 0.0
    resuming: bool = Field(default=False, description="Set from Resuming until it runs again")

    @property
    def state_type(self) -> StateType:
        """The current state's type."""
        return self.state.type

    @property
    def state_name(self) -> str:
        """The current state's name."""
        return self.state.name


class FlowRun(RunBase):
    """A flow run as stored."""

    kind: Literal["flow_run"] = "flow_run"
    flow_name: Printable
    parameters: dict[str, Any] = Field(default_factory=dict)
    deployment_id: str | None = None
    work_pool_name: str | None = None
    work_queue_name: str | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)
    parent_flow_run_id: str | None = None
    parent_task_run_id: str | None = None
    worker_id: str | None = Field(
        default=None, description="The worker that claimed the run (set by the claim)"
    )
    heartbeat_at: UtcDateTime | None = Field(
        default=None, description="The claiming worker's last heartbeat (UTC)"
    )
    enqueued_at: UtcDateTime | None = Field(
        default=None, description="When the run was sent to its work pool's queue"
    )
    lease_id: str | None = Field(
        default=None,
        description="The lease on its pool's and deployment's concurrency limits, "
        "taken by the claim (released when the run ends)",
    )
    pause_keys: list[str] = Field(
        default_factory=list, description="Keys of the pauses this run has taken (Prefect's)"
    )


class TaskRun(RunBase):
    """A task run as stored."""

    kind: Literal["task_run"] = "task_run"
    task_key: Printable
    flow_run_id: str | None = None
    dynamic_key: str = "0"
    cache_key: str | None = None
    task_inputs: dict[str, list[str]] = Field(default_factory=dict)


class FlowRunFilter(StrictModel):
    """Filters for listing flow runs; all given filters must match."""

    flow_name: str | None = None
    deployment_id: str | None = None
    parent_flow_run_id: str | None = None
    work_pool_name: str | None = None
    state_types: list[StateType] | None = None
    state_names: list[str] | None = None
    tags_all: list[str] | None = Field(default=None, description="Runs having every one of these")
    created_after: UtcDateTime | None = None
    created_before: UtcDateTime | None = None

    @model_validator(mode="after")
    def _window_ordered(self) -> FlowRunFilter:
        if self.created_after and self.created_before and self.created_after > self.created_before:
            raise ValueError("created_after must not be later than created_before")
        return self


class TaskRunFilter(StrictModel):
    """Filters for listing task runs; all given filters must match."""

    flow_run_id: str | None = None
    task_key: str | None = None
    state_types: list[StateType] | None = None
    state_names: list[str] | None = None
    tags_all: list[str] | None = None
    created_after: UtcDateTime | None = None
    created_before: UtcDateTime | None = None


class Page(BaseModel, Generic[T]):
    """One page of a listing; pass ``next_cursor`` back to get the next page."""

    items: list[T]
    next_cursor: str | None = None


class OrchestrationResult(BaseModel):
    """What ``set_state`` did: the status, the state now current, and why."""

    status: Literal["ACCEPT", "REJECT", "WAIT", "ABORT"]
    state: State = Field(description="The run's state after the call (the written one on ACCEPT)")
    reason: str | None = None
    delay_seconds: float = 0.0
    run_count: int = 0
    state_version: int = 0

    @property
    def accepted(self) -> bool:
        """True when the proposed (or rewritten) state was written."""
        return self.status == "ACCEPT"


# ----------------------------------------------------------------------------- deployments


class CronSchedule(StrictModel):
    """A cron schedule in an IANA timezone (``day_or`` as in croniter)."""

    cron: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    timezone: str = "UTC"
    day_or: bool = True


class IntervalSchedule(StrictModel):
    """Every ``interval`` seconds from ``anchor_date``."""

    interval: float = Field(gt=0)
    anchor_date: UtcDateTime | None = None
    timezone: str = "UTC"


class DeploymentSchedule(StrictModel):
    """One schedule of a deployment, with its own parameters."""

    id: str = Field(default_factory=new_id)
    schedule: CronSchedule | IntervalSchedule
    active: bool = True
    parameters: JsonDict = Field(default_factory=dict)


class ConcurrencyLimitStrategy(StrEnum):
    """What happens to a run of a deployment whose concurrency limit is full (Prefect's names)."""

    ENQUEUE = "ENQUEUE"
    CANCEL_NEW = "CANCEL_NEW"


class ConcurrencyOptions(StrictModel):
    """A deployment's concurrency options (Prefect 3's ``ConcurrencyOptions``)."""

    collision_strategy: ConcurrencyLimitStrategy = ConcurrencyLimitStrategy.ENQUEUE


class BundleRef(StrictModel):
    """Where a deployment's code bundle lives: an S3 object named by its content hash."""

    uri: Annotated[str, StringConstraints(pattern=r"^s3://[^/]+/.+$", max_length=1024)] = Field(
        description="s3://bucket/bundles/<sha256>.zip"
    )
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] = Field(
        description="Hex SHA-256 of the archive's bytes (checked before it is unpacked)"
    )
    size: int = Field(ge=0, description="The archive's size in bytes")


#: A deployment's code location on the worker's machine (Prefect's ``path``).
CodePath = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class ConcurrencyLimitConfig(StrictModel):
    """A limit and its collision strategy in one (Prefect's ``ConcurrencyLimitConfig``).

    ``flow.deploy(concurrency_limit=ConcurrencyLimitConfig(...))`` takes it; it becomes
    the deployment's ``concurrency_limit`` and ``concurrency_options``.
    """

    limit: int = Field(ge=0)
    collision_strategy: ConcurrencyLimitStrategy = ConcurrencyLimitStrategy.ENQUEUE

    def split(self) -> tuple[int, ConcurrencyOptions]:
        """``(concurrency_limit, concurrency_options)`` for a deployment."""
        return self.limit, ConcurrencyOptions(collision_strategy=self.collision_strategy)


class Deployment(BaseModel):
    """A flow packaged to run on a work pool, by schedule or on demand."""

    id: str = Field(default_factory=new_id)
    name: Name
    flow_name: Name
    entrypoint: str | None = None
    path: CodePath | None = Field(
        default=None, description="Directory on the worker holding the code (entrypoint relative)"
    )
    code_bundle: BundleRef | None = Field(
        default=None, description="The code bundle in S3 the worker downloads, verifies, unpacks"
    )
    description: str | None = None
    version: str | None = None
    tags: Tags = Field(default_factory=list)
    parameters: JsonDict = Field(default_factory=dict)
    parameter_openapi_schema: JsonDict | None = None
    enforce_parameter_schema: bool = True
    work_pool_name: Name | None = None
    work_queue_name: Name | None = None
    job_variables: JsonDict = Field(default_factory=dict)
    schedules: list[DeploymentSchedule] = Field(default_factory=list)
    concurrency_limit: int | None = Field(default=None, ge=0)
    empirical_policy: RetryPolicy | None = Field(
        default=None,
        description="The flow's retries and retry delay (set by deploy), copied to each run",
    )
    concurrency_options: ConcurrencyOptions | None = None
    paused: bool = False
    created: UtcDateTime = Field(default_factory=utcnow)
    updated: UtcDateTime = Field(default_factory=utcnow)


class DeploymentCreate(StrictModel):
    """A request to create (or update, by ``flow_name`` + ``name``) a deployment."""

    name: Name
    flow_name: Name
    entrypoint: str | None = None
    path: CodePath | None = Field(
        default=None, description="Directory on the worker holding the code (entrypoint relative)"
    )
    code_bundle: BundleRef | None = Field(
        default=None, description="The code bundle in S3 the worker downloads, verifies, unpacks"
    )
    description: str | None = None
    version: str | None = None
    tags: Tags = Field(default_factory=list)
    parameters: JsonDict = Field(default_factory=dict)
    parameter_openapi_schema: JsonDict | None = None
    enforce_parameter_schema: bool = True
    work_pool_name: Name | None = None
    work_queue_name: Name | None = None
    job_variables: JsonDict = Field(default_factory=dict)
    schedules: list[DeploymentSchedule] = Field(default_factory=list)
    concurrency_limit: int | None = Field(default=None, ge=0)
    empirical_policy: RetryPolicy | None = Field(
        default=None,
        description="The flow's retries and retry delay (set by deploy), copied to each run",
    )
    concurrency_options: ConcurrencyOptions | None = None
    paused: bool = False


class DeploymentUpdate(StrictModel):
    """A partial update of a deployment: only the fields given change."""

    entrypoint: str | None = None
    path: CodePath | None = Field(
        default=None, description="Directory on the worker holding the code (entrypoint relative)"
    )
    code_bundle: BundleRef | None = Field(
        default=None, description="The code bundle in S3 the worker downloads, verifies, unpacks"
    )
    description: str | None = None
    version: str | None = None
    tags: Tags | None = None
    parameters: JsonDict | None = None
    parameter_openapi_schema: JsonDict | None = None
    enforce_parameter_schema: bool | None = None
    work_pool_name: Name | None = None
    work_queue_name: Name | None = None
    job_variables: JsonDict | None = None
    schedules: list[DeploymentSchedule] | None = None
    concurrency_limit: int | None = Field(default=None, ge=0)
    empirical_policy: RetryPolicy | None = Field(
        default=None,
        description="The flow's retries and retry delay (set by deploy), copied to each run",
    )
    concurrency_options: ConcurrencyOptions | None = None
    paused: bool | None = None


class DeploymentFlowRunCreate(StrictModel):
    """A request to run a deployment: parameters are merged over the deployment's."""

    parameters: JsonDict = Field(default_factory=dict)
    name: Name | None = None
    tags: Tags = Field(default_factory=list)
    scheduled_time: UtcDateTime | None = None
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None
    work_queue_name: Name | None = None
    job_variables: JsonDict = Field(default_factory=dict)
    parent_flow_run_id: str | None = Field(
        default=None, description="The flow run that started this one (run_deployment's as_subflow)"
    )
    _check_parent = field_validator("parent_flow_run_id")(
        classmethod(lambda cls, v: _check_uuid(v))
    )


class WorkPool(BaseModel):
    """A work pool: where runs wait for workers (an SQS queue per work queue)."""

    name: Name
    type: str = "process"
    description: str | None = None
    concurrency_limit: int | None = Field(default=None, ge=0)
    paused: bool = False
    base_job_template: JsonDict = Field(default_factory=dict)
    created: UtcDateTime = Field(default_factory=utcnow)
    updated: UtcDateTime = Field(default_factory=utcnow)


class WorkPoolCreate(StrictModel):
    """A request to create a work pool."""

    name: Annotated[
        str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
    ]
    type: str = "process"
    description: str | None = None
    concurrency_limit: int | None = Field(default=None, ge=0)
    paused: bool = False
    base_job_template: JsonDict = Field(default_factory=dict)


class QueueDepth(BaseModel):
    """SQS's approximate message counts of a work pool's queue (and of its DLQ)."""

    visible: int = Field(default=0, description="Ready to be received")
    in_flight: int = Field(default=0, description="Received, not yet deleted or visible again")
    delayed: int = Field(default=0, description="Sent with a delay not yet over")
    dead_letters: int = Field(default=0, description="Messages in the dead-letter queue")


class WorkPoolStatus(WorkPool):
    """A work pool's fields, then its queue's backlog and its slots (``work-pool inspect``)."""

    queue_name: str
    dlq_name: str
    backlog: QueueDepth
    runs_waiting: int = Field(description="Its SCHEDULED and PENDING flow runs")
    runs_running: int = Field(description="Its RUNNING, CANCELLING and PAUSED flow runs")
    active_slots: int | None = Field(
        default=None, description="Slots of its concurrency limit in use (None: no limit)"
    )
    workers: list[dict[str, Any]] = Field(
        default_factory=list,
        description="The workers polling the pool, as the worker registry records them",
    )


class WorkPoolUpdate(StrictModel):
    """A partial update of a work pool."""

    description: str | None = None
    concurrency_limit: int | None = Field(default=None, ge=0)
    paused: bool | None = None
    base_job_template: JsonDict | None = None


# ----------------------------------------------------------------------------- concurrency


class ConcurrencyLimitCreate(StrictModel):
    """A request to create a concurrency limit (task-tag limits are named ``tag:<tag>``)."""

    name: LimitName
    limit: int = Field(ge=0, le=1_000_000)
    slot_decay_per_second: float = Field(
        default=0.0,
        ge=0,
        le=1_000_000,
        description="> 0 makes a rate limit: slots free themselves over time",
    )
    active: bool = Field(
        default=True, description="False: the limit exists but is not enforced (no slot taken)"
    )


class ConcurrencyLimitUpdate(StrictModel):
    """A change to a concurrency limit: only the given fields change."""

    limit: int | None = Field(default=None, ge=0, le=1_000_000)
    active: bool | None = Field(default=None, description="Enforce the limit (True) or not")
    slot_decay_per_second: float | None = Field(default=None, ge=0, le=1_000_000)


LIMIT_ID_NAMESPACE = uuid.UUID("6f0c4e0e-6a55-4f57-9a4b-2f1d1c6b7a10")
"""Limits stored before they had an id get ``uuid5(LIMIT_ID_NAMESPACE, name)``."""


class ConcurrencyLimit(BaseModel):
    """A concurrency limit and the slots now held against it.

    The attribute names are Prefect's ``GlobalConcurrencyLimitResponse`` ones
    (``id``, ``name``, ``limit``, ``active``, ``active_slots``,
    ``slot_decay_per_second``, ``created``, ``updated``); a task-tag limit (named
    ``tag:<tag>``) also answers to the v1 names ``tag`` and ``concurrency_limit``.
    """

    id: str = Field(default="", description="The limit's id (a UUID)")
    name: Printable
    limit: int
    active: bool = Field(default=True, description="False: not enforced")
    active_slots: int = 0
    slot_decay_per_second: float = 0.0
    created: UtcDateTime = Field(default_factory=utcnow)
    updated: UtcDateTime = Field(default_factory=utcnow)

    @model_validator(mode="after")
    def _default_id(self) -> ConcurrencyLimit:
        if not self.id:
            self.id = str(uuid.uuid5(LIMIT_ID_NAMESPACE, self.name))
        return self

    @property
    def available(self) -> int:
        """Slots free right now."""
        return max(0, self.limit - self.active_slots)

    @property
    def tag(self) -> str:
        """Prefect's v1 name: the tag a task-tag limit governs (else the limit's name)."""
        return self.name.removeprefix("tag:")

    @property
    def concurrency_limit(self) -> int:
        """Prefect's v1 name for ``limit``."""
        return self.limit


class Lease(BaseModel):
    """Slots held on one or more limits until ``expires_at`` (renew to keep them)."""

    id: str
    limit_names: list[str]
    slots: int
    expires_at: UtcDateTime
    holder: str | None = None
    decays: bool = Field(default=False, description="On a rate limit: freed only by expiry")
    inactive_names: list[str] = Field(
        default_factory=list, description="Named limits that are inactive: no slot taken on them"
    )
    missing_names: list[str] = Field(
        default_factory=list,
        description="Named limits that do not exist (skipped when asked to tolerate them)",
    )


# ----------------------------------------------------------------------------- flows


class FlowSummary(BaseModel):
    """A flow known to the API (it has runs or deployments)."""

    name: str
    created: UtcDateTime


# ----------------------------------------------------------------------------- cache


class CacheRecord(BaseModel):
    """A cached task result: the key, where the result lives, who wrote it, until when."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, description="The cache key")
    result: ResultRef = Field(description="Where the cached result lives (inline or S3)")
    task_key: str = Field(description="The task that computed it")
    task_run_id: str | None = Field(default=None, description="The task run that computed it")
    created: UtcDateTime = Field(default_factory=utcnow)
    expires_at: UtcDateTime | None = Field(
        default=None, description="After this the record is a miss; None never expires"
    )

    def is_expired(self, now: datetime | None = None) -> bool:
        """True when ``expires_at`` has passed at ``now`` (default: the current time)."""
        return self.expires_at is not None and self.expires_at <= (now or utcnow())


@dataclass(frozen=True)
class LockAttempt:
    """The outcome of taking a cache key's compute lock (``CacheStore.try_lock``).

    ``acquired``: the caller holds the key and computes. Otherwise ``holder`` is
    the owner of the live lock that stopped it (with ``lock_until``, epoch
    seconds), or None when a live record stopped it (read it instead).
    """

    acquired: bool
    holder: str | None = None
    lock_until: float | None = None

    def locked_error(self, key: str) -> CacheKeyLocked:
        """The 409 an API caller gets for this refused attempt (held by someone else)."""
        until = (
            datetime.fromtimestamp(self.lock_until, UTC).isoformat()
            if self.lock_until is not None
            else "unknown"
        )
        return CacheKeyLocked(
            f"cache key {key!r} is locked by {self.holder!r} until {until}; a live lock "
            f"cannot be taken over (not even with refresh) before it expires",
            key=key,
            holder=self.holder,
            lock_until=until,
        )


# ----------------------------------------------------------------------------- logs & events

LogLevel = Annotated[int, Field(ge=0, le=100)]


class LogRecord(BaseModel):
    """One log line of a flow or task run."""

    flow_run_id: str
    task_run_id: str | None = None
    name: str = "stratoflow"
    level: LogLevel = 20
    message: str
    timestamp: UtcDateTime = Field(default_factory=utcnow)
    id: str | None = Field(
        default=None,
        pattern=r"^[0-9A-Za-z_-]{1,64}$",
        description="The line's client-chosen id: with the timestamp, its key. Writing a "
        "line with the same id and timestamp again overwrites it (a retry stores it once)",
    )


class Event(BaseModel):
    """Something that happened, e.g. ``stratoflow.flow-run.Completed``."""

    id: str = Field(default_factory=new_id)
    event: str
    occurred: UtcDateTime = Field(default_factory=utcnow)
    resource: dict[str, str]
    related: list[dict[str, str]] = Field(default_factory=list)
    payload: dict[str, Any] = Field(default_factory=dict)
