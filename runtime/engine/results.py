"""``state.result()``: the value (or the exception) a final state stands for."""

from __future__ import annotations

from typing import Any

from runtime.engine.exceptions import CancelledRun, CrashedRun, FailedRun, MissingResult
from runtime.states import State, StateType


def _exception_for(state: State) -> BaseException:
    """The exception a failed, crashed or cancelled state stands for (Prefect's rules).

    Its data when that is an exception; the first failure's exception when the
    data is a state or a collection of states (an aggregate); else a
    ``FailedRun`` / ``CrashedRun`` / ``CancelledRun`` with a string datum, or
    else the state's message.
    """
    from runtime.engine.state_groups import is_state_iterable

    data: Any = state.data if state.has_data else None
    if isinstance(data, BaseException):
        return data
    if isinstance(data, State) and data.type in _FAILURE_TYPES:
        return _exception_for(data)
    if is_state_iterable(data):
        for inner in data:
            if inner.type in _FAILURE_TYPES:
                return _exception_for(inner)
    message = (data if isinstance(data, str) else None) or state.message
    message = message or f"run ended {state.name}"
    if state.type is StateType.CRASHED:
        return CrashedRun(message)
    if state.type in (StateType.CANCELLED, StateType.CANCELLING):
        return CancelledRun(message)
    return FailedRun(message)


_FAILURE_TYPES = (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)


def state_exception(state: State) -> BaseException:
    """The exception ``state.result()`` raises for a failed, crashed or cancelled state."""
    return _exception_for(state)


def state_result(state: State, raise_on_failure: bool = True) -> Any:
    """The value of a COMPLETED state, or the exception of a failed one.

    In the process that ran it, the value is in memory. Elsewhere it is loaded
    from the persisted result reference (inline in the record, or S3). A state
    that failed raises its exception (the original one in the process that ran
    it) unless ``raise_on_failure=False``, which returns the state's data instead
    (a returned ``Failed(data=...)``'s, as in Prefect) or else the exception.
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
        return state.data if state.has_data and state.data is not None else exc
    raise MissingResult(f"the run is {state.name}, not finished: it has no result yet")
