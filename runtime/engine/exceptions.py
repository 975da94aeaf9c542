"""Exceptions a flow author may see (Prefect's ``prefect.exceptions`` names)."""

from __future__ import annotations

from typing import Any


class StratoflowException(Exception):
    """Base of the engine's exceptions."""


class MissingResult(StratoflowException):
    """The state has no result to return (it was not persisted, or is not final yet)."""


class FailedRun(StratoflowException):
    """A run failed in another process; only its message is known here."""


class CrashedRun(StratoflowException):
    """The run crashed: its infrastructure died or it stopped heartbeating."""


class CancelledRun(StratoflowException):
    """The run was cancelled."""


class UpstreamTaskError(StratoflowException):
    """A task did not run because a task it depends on did not complete."""


class ParameterTypeError(StratoflowException, TypeError):
    """A flow's parameters do not match its signature; the message names the parameter."""


class ConcurrencySlotAcquisitionError(StratoflowException):
    """A task's concurrency limit can never admit it (for example a limit of 0)."""


class CacheKeyFailure(StratoflowException):
    """Computing a task's cache key raised: the task fails rather than share a wrong entry."""


class UnfinishedRun(MissingResult):
    """``state.result()`` of a run that is not final yet (scheduled, pending, running).

    Prefect's ``UnfinishedRun``; also a :class:`MissingResult`, which Stratoflow raised
    for it before, so existing ``except MissingResult`` blocks still catch it.
    """


class ParameterBindError(StratoflowException, TypeError):
    """A flow or task was called with arguments its signature does not accept."""


class SignatureMismatchError(StratoflowException, TypeError):
    """Parameters given for a function do not match its signature."""


class MappingLengthMismatch(StratoflowException, ValueError):
    """``task.map()`` got iterables of different lengths."""


class MappingMissingIterable(StratoflowException, ValueError):
    """``task.map()`` got no iterable argument to map over."""


class PausedRun(StratoflowException):
    """The result of a paused run was asked for (Prefect's ``PausedRun``)."""

    def __init__(self, *args: Any, state: Any = None) -> None:
        super().__init__(*args)
        self.state = state


class NotPausedError(StratoflowException):
    """A run that is not paused was asked to resume (Prefect's ``NotPausedError``)."""


class FlowPauseTimeout(StratoflowException):
    """A pause was never resumed within its timeout (Prefect's ``FlowPauseTimeout``)."""


class Pause(BaseException):
    """A flow run suspended itself: its process stops the run without ending it.

    Prefect's ``Pause`` signal: a ``BaseException`` (``except Exception`` in user code
    does not swallow it). The flow engine proposes no state when it sees it: the run
    stays Suspended until ``resume_flow_run`` sends it back to its work pool.
    """

    def __init__(self, *args: Any, state: Any = None) -> None:
        super().__init__(*args)
        self.state = state
