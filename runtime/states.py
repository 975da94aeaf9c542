"""Run states: Prefect 3's vocabulary of state types and names, as plain constructors.

A state has a *type* (what the orchestration rules reason about) and a *name*
(what people read): ``Late`` is a SCHEDULED state, ``Cached`` a COMPLETED one,
``TimedOut`` a FAILED one. Constructors mirror Prefect's: ``Completed()``,
``Failed(message=...)``, ``AwaitingRetry(scheduled_time=...)``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    field_validator,
    model_validator,
)

from runtime.limits import STATE_MESSAGE_MAX_BYTES, truncate_text
from runtime.names import check_printable

ResultLoader = Callable[["State", bool], Any]
"""``loader(state, raise_on_failure)``: the value (or exception) a state stands for."""

_result_loader: ResultLoader | None = None


class ResultLoaderNotRegistered(RuntimeError):
    """``State.result()`` was called in a process where the engine never registered its loader."""


def register_result_loader(loader: ResultLoader | None) -> ResultLoader | None:
    """Install the function ``State.result()`` delegates to; returns the previous one.

    States are plain data and ``runtime.states`` imports nothing of the engine:
    the engine (``runtime.engine``) registers its loader when it is imported, so
    the dependency points from the engine to the states, never back.
    """
    global _result_loader
    previous, _result_loader = _result_loader, loader
    return previous


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (every timestamp Stratoflow stores is UTC)."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC: a naive datetime is read as UTC, an aware one converted."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value if value.tzinfo is UTC else value.astimezone(UTC)


UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]
"""The type of every datetime field of every model: always timezone-aware UTC.

A naive value (``datetime(2026, 1, 1, 12)``, ``"2026-01-01T12:00:00"``) means UTC;
an aware one is converted (``12:00+02:00`` becomes ``10:00Z``)."""

StateName = Annotated[
    str, StringConstraints(min_length=1, max_length=200), AfterValidator(check_printable)
]
"""A state's display name: 1..200 printable characters (no control or format characters)."""


class StateType(StrEnum):
    """The nine state types; orchestration rules are written against these."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CANCELLING = "CANCELLING"
    CRASHED = "CRASHED"
    PAUSED = "PAUSED"


TERMINAL_TYPES: frozenset[StateType] = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
)
ALL_TYPES: frozenset[StateType] = frozenset(StateType)


class ResultRef(BaseModel):
    """Where a run's result lives: inline (small, JSON-safe) or in S3 (``s3://bucket/key``)."""

    model_config = ConfigDict(extra="forbid")

    serializer: str = Field(description="'json' or 'pickle'")
    storage_key: str | None = Field(default=None, description="S3 URI when stored in S3")
    inline: str | None = Field(
        default=None, description="The serialized value (base64 for pickle) when small"
    )
    size: int = Field(default=0, ge=0, description="Serialized size in bytes")


class StateDetails(BaseModel):
    """Structured facts attached to a state (times, retry bookkeeping, cache, result)."""

    model_config = ConfigDict(extra="forbid")

    scheduled_time: UtcDateTime | None = None
    retry_count: int | None = Field(default=None, ge=0)
    retriable: bool = True
    cache_key: str | None = None
    cache_expiration: UtcDateTime | None = None
    result: ResultRef | None = None
    pause_timeout: UtcDateTime | None = None
    pause_reschedule: bool = False
    pause_key: str | None = None
    run_input_keyset: dict[str, str] | None = None
    """The input keys of a pause waiting for input (Prefect's ``run_input_keyset``)."""
    transition_id: str | None = None
    untrackable_result: bool = False
    extra: dict[str, Any] = Field(default_factory=dict)


class State(BaseModel):
    """One state of a flow or task run.

    ``type`` drives the orchestration rules, ``name`` is for display; ``details``
    holds scheduled time, retry count, cache key and the result reference.
    """

    model_config = ConfigDict(extra="forbid")

    type: StateType
    name: StateName
    timestamp: UtcDateTime = Field(default_factory=utcnow)
    message: str | None = None
    details: StateDetails = Field(default_factory=StateDetails)

    @field_validator("message")
    @classmethod
    def _bounded_message(cls, value: str | None) -> str | None:
        """A message over STATE_MESSAGE_MAX_BYTES is cut, ending ``... [truncated N bytes]``."""
        return None if value is None else truncate_text(value, STATE_MESSAGE_MAX_BYTES)

    # The in-memory value or exception this state carries in the process that made it.
    _data: Any = PrivateAttr(default=None)
    _has_data: bool = PrivateAttr(default=False)
    # The run whose engine produced this state (None: made by hand, e.g. returned by user code).
    _run_id: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _name_fits_type(self) -> State:
        """A known name (``Running``, ``Cached``, a type's own name) must be of its type.

        Custom names stay free (``Skipped`` for a COMPLETED state, as in Prefect)."""
        known = _NAME_TYPES.get(self.name.lower())
        if known is not None and known is not self.type:
            raise ValueError(
                f"name {self.name!r} is the name of a {known.value} state, not "
                f"{self.type.value}: use type {known.value}, or a name of your own"
            )
        return self

    def with_data(self, data: Any) -> State:
        """Attach an in-memory value (or exception) to this state and return it."""
        self._data = data
        self._has_data = True
        return self

    @property
    def data(self) -> Any:
        """The in-memory value or exception attached by the process that made this state."""
        return self._data

    @property
    def has_data(self) -> bool:
        """Whether an in-memory value is attached."""
        return self._has_data

    def is_scheduled(self) -> bool:
        """True for SCHEDULED states (Scheduled, Late, AwaitingRetry, ...)."""
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        """True for PENDING states."""
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        """True for RUNNING states (Running, Retrying)."""
        return self.type is StateType.RUNNING

    def is_completed(self) -> bool:
        """True for COMPLETED states (Completed, Cached)."""
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        """True for FAILED states (Failed, TimedOut, NotReady)."""
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        """True for CRASHED states."""
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        """True for CANCELLED states."""
        return self.type is StateType.CANCELLED

    def is_cancelling(self) -> bool:
        """True for CANCELLING states."""
        return self.type is StateType.CANCELLING

    def is_paused(self) -> bool:
        """True for PAUSED states (Paused, Suspended)."""
        return self.type is StateType.PAUSED

    def is_final(self) -> bool:
        """True for terminal states: COMPLETED, FAILED, CANCELLED, CRASHED."""
        return self.type in TERMINAL_TYPES

    def result(self, raise_on_failure: bool = True) -> Any:
        """The run's return value, or its exception (raised unless ``raise_on_failure=False``).

        Works in another process too when the result was persisted. The loading is
        the engine's (see :func:`register_result_loader`): a process that never
        imported ``runtime.engine`` (or ``sdk``) gets :class:`ResultLoaderNotRegistered`.
        """
        if _result_loader is None:
            raise ResultLoaderNotRegistered(
                "State.result() needs the engine's result loader: import sdk "
                "(or runtime.engine) in this process first"
            )
        return _result_loader(self, raise_on_failure)

    def fresh_copy(self, **updates: Any) -> State:
        """A copy with a new timestamp (and the given field updates), keeping attached data."""
        copy = self.model_copy(update={"timestamp": utcnow(), **updates})
        copy.details = self.details.model_copy()
        if self._has_data:
            copy.with_data(self._data)
        return copy

    def __repr__(self) -> str:
        """Prefect's style: ``Completed()``, ``Failed('boom')``, ``Cached(type=COMPLETED)``."""
        parts = [repr(self.message)] if self.message else []
        if self.name.upper() != self.type.value:
            parts.append(f"type={self.type.value}")
        return f"{self.name}({', '.join(parts)})"

    __str__ = __repr__


def _make(
    type_: StateType,
    name: str,
    message: str | None,
    scheduled_time: datetime | None = None,
    **details: Any,
) -> State:
    return State(
        type=type_,
        name=name,
        message=message,
        details=StateDetails(scheduled_time=scheduled_time, **details),
    )


def Scheduled(
    scheduled_time: datetime | None = None, message: str | None = None, name: str = "Scheduled"
) -> State:
    """A SCHEDULED state; ``scheduled_time`` defaults to now."""
    return _make(StateType.SCHEDULED, name, message, scheduled_time or utcnow())


def Late(scheduled_time: datetime | None = None, message: str | None = None) -> State:
    """A SCHEDULED state named Late: the run missed its start time."""
    return Scheduled(scheduled_time, message, name="Late")


def AwaitingRetry(
    scheduled_time: datetime | None = None, message: str | None = None, retry_count: int = 0
) -> State:
    """A SCHEDULED state named AwaitingRetry: the run failed and will run again at the time."""
    state = Scheduled(scheduled_time, message, name="AwaitingRetry")
    state.details.retry_count = retry_count
    return state


def AwaitingConcurrencySlot(
    scheduled_time: datetime | None = None, message: str | None = None
) -> State:
    """A SCHEDULED state named AwaitingConcurrencySlot: waiting for a concurrency slot."""
    return Scheduled(scheduled_time, message, name="AwaitingConcurrencySlot")


def Resuming(scheduled_time: datetime | None = None, message: str | None = None) -> State:
    """A SCHEDULED state named Resuming: a suspended run that is to run again."""
    return Scheduled(scheduled_time, message, name="Resuming")


def Pending(message: str | None = None, name: str = "Pending") -> State:
    """A PENDING state."""
    return _make(StateType.PENDING, name, message)


def NotReady(message: str | None = None) -> State:
    """A PENDING state named NotReady: an upstream dependency has not completed."""
    return Pending(message, name="NotReady")


def Running(message: str | None = None, name: str = "Running") -> State:
    """A RUNNING state."""
    return _make(StateType.RUNNING, name, message)


def Retrying(message: str | None = None) -> State:
    """A RUNNING state named Retrying: a run that failed before is running again."""
    return Running(message, name="Retrying")


def Completed(message: str | None = None, name: str = "Completed") -> State:
    """A COMPLETED state."""
    return _make(StateType.COMPLETED, name, message)


def Cached(message: str | None = None) -> State:
    """A COMPLETED state named Cached: the result came from the cache."""
    return Completed(message, name="Cached")


def Failed(message: str | None = None, name: str = "Failed") -> State:
    """A FAILED state."""
    return _make(StateType.FAILED, name, message)


def TimedOut(message: str | None = None) -> State:
    """A FAILED state named TimedOut: the run exceeded its ``timeout_seconds``."""
    return Failed(message, name="TimedOut")


def Crashed(message: str | None = None) -> State:
    """A CRASHED state: the infrastructure died or the process stopped heartbeating."""
    return _make(StateType.CRASHED, "Crashed", message)


def Cancelling(message: str | None = None) -> State:
    """A CANCELLING state: cancellation requested, the infrastructure must stop."""
    return _make(StateType.CANCELLING, "Cancelling", message)


def Cancelled(message: str | None = None) -> State:
    """A CANCELLED state."""
    return _make(StateType.CANCELLED, "Cancelled", message)


def Paused(
    timeout_seconds: float | None = None,
    pause_key: str | None = None,
    message: str | None = None,
    reschedule: bool = False,
    name: str = "Paused",
) -> State:
    """A PAUSED state; with ``timeout_seconds`` it fails if not resumed in time."""
    timeout = None
    if timeout_seconds is not None:
        from datetime import timedelta

        timeout = utcnow() + timedelta(seconds=timeout_seconds)
    return _make(
        StateType.PAUSED,
        name,
        message,
        pause_timeout=timeout,
        pause_key=pause_key or str(uuid.uuid4()),
        pause_reschedule=reschedule,
    )


def Suspended(
    timeout_seconds: float | None = None, pause_key: str | None = None, message: str | None = None
) -> State:
    """A PAUSED state named Suspended: the process exits and the run is rescheduled on resume."""
    return Paused(timeout_seconds, pause_key, message, reschedule=True, name="Suspended")


STATE_NAMES: dict[str, StateType] = {
    "Scheduled": StateType.SCHEDULED,
    "Late": StateType.SCHEDULED,
    "AwaitingRetry": StateType.SCHEDULED,
    "AwaitingConcurrencySlot": StateType.SCHEDULED,
    "Resuming": StateType.SCHEDULED,
    "Pending": StateType.PENDING,
    "NotReady": StateType.PENDING,
    "Running": StateType.RUNNING,
    "Retrying": StateType.RUNNING,
    "Completed": StateType.COMPLETED,
    "Cached": StateType.COMPLETED,
    "Failed": StateType.FAILED,
    "TimedOut": StateType.FAILED,
    "Crashed": StateType.CRASHED,
    "Cancelling": StateType.CANCELLING,
    "Cancelled": StateType.CANCELLED,
    "Paused": StateType.PAUSED,
    "Suspended": StateType.PAUSED,
}
"""Every state name Stratoflow uses, with its type."""

_NAME_TYPES: dict[str, StateType] = {
    **{t.value.lower(): t for t in StateType},
    **{name.lower(): t for name, t in STATE_NAMES.items()},
}
"""Known state names (and the type names themselves), lowercased, with their type."""
