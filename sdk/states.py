"""``sdk.states``: state constructors and helpers (Prefect's ``prefect.states``)."""

from runtime.engine.results import state_exception
from runtime.engine.state_groups import is_state_iterable
from runtime.states import (
    AwaitingConcurrencySlot,
    AwaitingRetry,
    Cached,
    Cancelled,
    Cancelling,
    Completed,
    Crashed,
    Failed,
    Late,
    NotReady,
    Paused,
    Pending,
    Resuming,
    Retrying,
    Running,
    Scheduled,
    State,
    StateType,
    Suspended,
    TimedOut,
)


def get_state_exception(state: State) -> BaseException:
    """The exception a failed, crashed or cancelled state stands for (Prefect's rules).

    Raises ``ValueError`` for any other state, as Prefect does.
    """
    if not (state.is_failed() or state.is_crashed() or state.is_cancelled()):
        raise ValueError(f"Expected failed or crashed state got {state!r}.")
    return state_exception(state)


def raise_state_exception(state: State) -> None:
    """Raise the exception of a failed, crashed or cancelled state; do nothing otherwise."""
    if state.is_failed() or state.is_crashed() or state.is_cancelled():
        raise state_exception(state)


__all__ = [
    "AwaitingConcurrencySlot",
    "AwaitingRetry",
    "Cached",
    "Cancelled",
    "Cancelling",
    "Completed",
    "Crashed",
    "Failed",
    "Late",
    "NotReady",
    "Paused",
    "Pending",
    "Resuming",
    "Retrying",
    "Running",
    "Scheduled",
    "State",
    "StateType",
    "Suspended",
    "TimedOut",
    "get_state_exception",
    "is_state_iterable",
    "raise_state_exception",
]
