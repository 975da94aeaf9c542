"""The rule framework: context, decision and the base rule class."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Literal

from runtime.states import ALL_TYPES, State, StateType, utcnow


class Status(StrEnum):
    """What orchestration decided about a proposed state.

    ACCEPT: the (possibly rewritten) state is written.
    REJECT: nothing is written; the run keeps its current state.
    WAIT:   nothing is written; propose again after ``Decision.delay_seconds``.
    ABORT:  nothing is written; the proposal makes no sense and must not be retried.
    """

    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    WAIT = "WAIT"
    ABORT = "ABORT"


@dataclass(frozen=True)
class RunView:
    """The facts about a run that rules may read (a snapshot, never written by rules)."""

    kind: Literal["flow_run", "task_run"]
    run_count: int = 0
    retries: int = 0
    retry_delay_seconds: float | list[float] = 0.0
    retry_jitter_factor: float | None = None
    flow_run_state: State | None = None
    """For task runs inside a flow: the enclosing flow run's current state."""
    has_deployment: bool = False
    is_subflow: bool = False
    """A flow run started by a task of another flow run (it cannot be suspended)."""
    pause_keys: frozenset[str] = frozenset()
    """Keys of the pauses the run has taken: a pause fires once per key."""
    resuming: bool = False
    """True between a suspended run's Resuming state and its next RUNNING."""


@dataclass
class OrchestrationContext:
    """A proposed transition ``initial -> proposed`` plus what rules decided so far.

    Rules read ``initial``, ``proposed``, ``run`` and ``now``; they act only through
    :meth:`reject`, :meth:`wait`, :meth:`abort` and :meth:`rewrite`.
    """

    initial: State | None
    proposed: State
    run: RunView
    now: datetime = field(default_factory=utcnow)
    force: bool = False
    jitter_sample: float = field(default_factory=random.random)
    """A number in [0, 1) used for retry jitter: injected so rules stay deterministic in tests."""

    status: Status = Status.ACCEPT
    reason: str | None = None
    delay_seconds: float = 0.0

    @property
    def initial_type(self) -> StateType | None:
        """The current state's type, None for a run with no state yet."""
        return self.initial.type if self.initial is not None else None

    @property
    def proposed_type(self) -> StateType:
        """The proposed state's type."""
        return self.proposed.type

    @property
    def decided(self) -> bool:
        """True once a rule has rejected, delayed or aborted the transition."""
        return self.status is not Status.ACCEPT

    def reject(self, reason: str) -> None:
        """Refuse the transition; the run keeps its current state."""
        self.status, self.reason = Status.REJECT, reason

    def wait(self, delay_seconds: float, reason: str) -> None:
        """Refuse for now; the caller should propose again after ``delay_seconds``."""
        self.status, self.reason, self.delay_seconds = Status.WAIT, reason, max(0.0, delay_seconds)

    def abort(self, reason: str) -> None:
        """Refuse for good: the proposal is invalid and retrying it cannot succeed."""
        self.status, self.reason = Status.ABORT, reason

    def rewrite(self, state: State, reason: str) -> None:
        """Accept, but write ``state`` instead of the proposed one (Failed -> AwaitingRetry)."""
        if self.proposed.has_data and not state.has_data:
            state.with_data(self.proposed.data)
        self.proposed, self.reason = state, reason


@dataclass(frozen=True)
class Decision:
    """The outcome of orchestration, ready to be compiled into a conditional write."""

    status: Status
    state: State
    """The state to write on ACCEPT (possibly rewritten); the proposed one otherwise."""
    reason: str | None = None
    delay_seconds: float = 0.0

    @property
    def accepted(self) -> bool:
        """True when the state is to be written."""
        return self.status is Status.ACCEPT


class Rule:
    """One orchestration rule, applied when ``initial`` and ``proposed`` types match.

    ``FROM_STATES`` may contain ``None`` (a run with no state yet). Subclasses
    implement :meth:`before_transition` and act through the context.
    """

    FROM_STATES: ClassVar[Iterable[StateType | None]] = (*ALL_TYPES, None)
    TO_STATES: ClassVar[Iterable[StateType]] = ALL_TYPES
    _from: ClassVar[frozenset[StateType | None]] = frozenset((*ALL_TYPES, None))
    _to: ClassVar[frozenset[StateType]] = frozenset(ALL_TYPES)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._from = frozenset(cls.FROM_STATES)
        cls._to = frozenset(cls.TO_STATES)

    @classmethod
    def applies(cls, ctx: OrchestrationContext) -> bool:
        """Whether this rule governs the context's transition."""
        return ctx.initial_type in cls._from and ctx.proposed_type in cls._to

    def before_transition(self, ctx: OrchestrationContext) -> None:
        """Inspect the transition and accept (do nothing), reject, wait, abort or rewrite."""
        raise NotImplementedError  # pragma: no cover - every concrete rule overrides it
