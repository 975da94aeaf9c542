"""``state.result()``: the value (or the exception) a final state stands for."""

from __future__ import annotations

from typing import Any

from runtime.engine.exceptions import CancelledRun, CrashedRun, FailedRun, MissingResult
from runtime.states import State, StateType

_FAILURE_TYPES = (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)


def _wrapper(state: State, message: str | None) -> BaseException:
    text = message or state.message or f"run ended {state.name}"
    if state.type is StateType.CRASHED:
        return CrashedRun(text)
    if state.type in (StateType.CANCELLED, StateType.CANCELLING):
        return CancelledRun(text)
    return FailedRun(text)


def _data(state: State) -> Any:
    """The state's data: in memory, else loaded from its persisted result (None if neither)."""
    if state.has_data:
        return state.data
    ref = state.details.result
    if ref is None:
        return None
    from runtime.engine.backend import get_engine_client

    value = get_engine_client().load_result(ref)
    state.with_data(value)
    return value


def is_state_iterable(value: Any) -> bool:
    """A non-empty list, tuple or set holding only states (Prefect's ``is_state_iterable``)."""
    return (
        isinstance(value, list | tuple | set)
        and bool(value)
        and all(isinstance(item, State) for item in value)
    )


def state_exception(state: State) -> BaseException:
    """The exception a failed, crashed or cancelled state stands for (Prefect's rules).

    Its data when that is an exception; the first failure's exception when the
    data is a state or a collection of states (an aggregate); a ``FailedRun`` /
    ``CrashedRun`` / ``CancelledRun`` carrying a string datum or else the
    state's message.
    """
    data = _data(state)
    if isinstance(data, BaseException):
        return data
    if isinstance(data, str):
        return _wrapper(state, data)
    if isinstance(data, State) and data.type in _FAILURE_TYPES:
        return state_exception(data)
    if is_state_iterable(data):
        for inner in data:
            if inner.type in _FAILURE_TYPES:
                return state_exception(inner)
    return _wrapper(state, None)


def state_result(state: State, raise_on_failure: bool = True) -> Any:
    """The value of a COMPLETED state, or the exception of a failed one.

    In the process that ran it, the value is in memory. Elsewhere it is loaded
    from the persisted result reference (inline in the record, or S3). A state
    that failed raises its exception (the original one in the process that ran
    it) unless ``raise_on_failure=False``, which returns its data (a returned
    ``Failed(data=...)``'s) or else the exception, as Prefect does.
    """
    if state.type is StateType.COMPLETED:
        if state.has_data:
            return state.data
        if state.details.result is None:
            raise MissingResult(
                f"the {state.name} state has no persisted result: "
                "set persist_result=True to read it from another process"
            )
        return _data(state)
    if state.type in _FAILURE_TYPES:
        if raise_on_failure:
            raise state_exception(state)
        data = _data(state)
        return data if data is not None else state_exception(state)
    raise MissingResult(f"the run is {state.name}, not finished: it has no result yet")
