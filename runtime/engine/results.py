"""``state.result()``: the value (or the exception) a final state stands for."""

from __future__ import annotations

from typing import Any

from runtime.engine.exceptions import (
    CancelledRun,
    CrashedRun,
    FailedRun,
    MissingResult,
    UnfinishedRun,
)
from runtime.states import State, StateType


def _exception_for(state: State) -> BaseException:
    if state.has_data and isinstance(state.data, BaseException):
        return state.data
    message = state.message or f"run ended {state.name}"
    if state.type is StateType.CRASHED:
        return CrashedRun(message)
    if state.type in (StateType.CANCELLED, StateType.CANCELLING):
        return CancelledRun(message)
    return FailedRun(message)


def state_result(state: State, raise_on_failure: bool = True) -> Any:
    """The value of a COMPLETED state, or the exception of a failed one.

    In the process that ran it, the value is in memory. Elsewhere it is loaded
    from the persisted result reference (inline in the record, or S3). A state
    that failed raises its exception (the original one in the process that ran
    it) unless ``raise_on_failure=False``, which returns it instead.
    """
    if state.type is StateType.COMPLETED:
        if state.has_data:
            return state.data
        ref = state.details.result
        if ref is None:
            raise MissingResult(
                f"the {state.name} state has no persisted result: "
                "set persist_result=True to read it from another process"
            )
        from runtime.engine.backend import get_engine_client

        value = get_engine_client().load_result(ref)
        state.with_data(value)
        return value
    if state.type in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED):
        exc = _exception_for(state)
        if raise_on_failure:
            raise exc
        return exc
    raise UnfinishedRun(f"the run is {state.name}, not finished: it has no result yet")
