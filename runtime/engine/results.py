"""``state.result()``: the value (or the exception) a final state stands for.

Also where the engine persists and loads results: :func:`persist_value` and
:func:`load_value` send a result with a ``result_storage`` (a local directory,
:mod:`runtime.local_results`) to its files, and every other one to the engine
client (inline or S3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.engine.exceptions import (
    CancelledRun,
    CrashedRun,
    FailedRun,
    MissingResult,
    PausedRun,
    UnfinishedRun,
)
from runtime.local_results import LocalResultStorage, is_local_ref, load_local_result
from runtime.states import ResultRef, State, StateType

if TYPE_CHECKING:
    from runtime.engine.client import EngineClient
    from runtime.payload_auth import PayloadKey


def result_file_key(client: EngineClient | None) -> PayloadKey:
    """The key result files are sealed with (every file, whatever its serializer)."""
    holder = getattr(client, "payload_keys", None)
    key = holder.for_serializer("pickle") if holder is not None else None
    if key is None:
        from runtime.payload_auth import load_payload_key

        key = load_payload_key()
    return key


def persist_value(
    client: EngineClient,
    value: Any,
    *,
    serializer: str,
    storage_key: str | None = None,
    storage: LocalResultStorage | None = None,
) -> ResultRef:
    """Persist a run's result: to ``storage``'s files when given, else through ``client``."""
    if storage is not None:
        return storage.persist(
            value, serializer=serializer, key=storage_key, payload_key=result_file_key(client)
        )
    return client.persist_result(value, serializer=serializer, storage_key=storage_key)


def load_value(client: EngineClient, ref: ResultRef) -> Any:
    """The value ``ref`` stands for: from its file (MAC checked) or through ``client``."""
    if is_local_ref(ref):
        return load_local_result(ref, result_file_key(client))
    return client.load_result(ref)


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

        value = load_value(get_engine_client(), ref)
        state.with_data(value)
        return value
    if state.type in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED):
        exc = _exception_for(state)
        if raise_on_failure:
            raise exc
        return state.data if state.has_data and state.data is not None else exc
    if state.type is StateType.PAUSED:  # not final, and no result (Prefect's PausedRun)
        raise PausedRun("Run is paused, its result is not available.", state=state)
    raise UnfinishedRun(f"the run is {state.name}, not finished: it has no result yet")
