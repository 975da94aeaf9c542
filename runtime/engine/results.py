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

        value = load_value(get_engine_client(), ref)
        state.with_data(value)
        return value
    if state.type in (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED):
        exc = _exception_for(state)
        if raise_on_failure:
            raise exc
        return exc
    raise UnfinishedRun(f"the run is {state.name}, not finished: it has no result yet")
