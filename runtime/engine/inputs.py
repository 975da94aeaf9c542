"""Task inputs: ``unmapped``, ``allow_failure``, ``quote``, and resolving futures in parameters.

Futures (and states) are found and resolved wherever they sit inside a
parameter: lists, tuples, sets, dicts, dataclasses and pydantic models, nested
(:mod:`runtime.engine.collections`), as Prefect's ``resolve_inputs`` does. The
runs behind them become the task run's upstream dependencies (``task_inputs``).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from runtime.engine.collections import BaseAnnotation, StopVisiting, is_plain, visit_collection
from runtime.engine.exceptions import UpstreamTaskError
from runtime.engine.futures import PrefectFuture
from runtime.states import State, StateType

T = TypeVar("T")


class unmapped(BaseAnnotation, Generic[T]):
    """Pass the same value to every call of ``task.map`` instead of iterating it."""

    __slots__ = ()

    def __init__(self, value: T) -> None:
        super().__init__(value)

    def __getitem__(self, _: Any) -> T:
        """Every index gives the wrapped value (what ``map`` relies on)."""
        value: T = self.value
        return value


class allow_failure(BaseAnnotation, Generic[T]):
    """Run the downstream task even if this upstream fails; it receives the exception."""

    __slots__ = ()

    def __init__(self, value: T) -> None:
        super().__init__(value)


class quote(BaseAnnotation, Generic[T]):
    """Pass this value to the task as it is: futures inside are neither resolved nor waited for."""

    __slots__ = ()

    def __init__(self, value: T) -> None:
        super().__init__(value)

    def unquote(self) -> T:
        """The wrapped value."""
        value: T = self.value
        return value


class opaque(BaseAnnotation, Generic[T]):
    """Resolve this future (or state) but do not look inside its result: no rebuilt copies."""

    __slots__ = ()
    traverse = False

    def __init__(self, value: T) -> None:
        super().__init__(value)


def _run_id_of(value: Any) -> str | None:
    if isinstance(value, PrefectFuture):
        return value.task_run_id
    if isinstance(value, State):
        return value._run_id
    return None


def upstream_run_ids(value: Any) -> list[str]:
    """The runs behind every future (and run state) inside ``value``, in order, once each.

    Nothing inside a ``quote(...)`` counts: it is passed as it is.
    """
    found: list[str] = []
    if is_plain(value):
        return found

    def collect(expr: Any, context: dict[str, Any]) -> Any:
        if isinstance(expr, quote):
            raise StopVisiting
        run_id = _run_id_of(expr)
        if run_id is not None and run_id not in found:
            found.append(run_id)
        return expr

    visit_collection(value, collect)
    return found


def upstream_futures(values: list[Any]) -> list[PrefectFuture[Any]]:
    """Every future inside ``values`` (nested, outside ``quote(...)``), in order, once each."""
    found: list[PrefectFuture[Any]] = []
    seen: set[str] = set()

    def collect(expr: Any, context: dict[str, Any]) -> Any:
        if isinstance(expr, quote):
            raise StopVisiting
        if isinstance(expr, PrefectFuture) and expr.task_run_id not in seen:
            seen.add(expr.task_run_id)
            found.append(expr)
        return expr

    for value in values:
        if not is_plain(value):
            visit_collection(value, collect)
    return found


def _describe(expr: Any, state: State) -> str:
    if isinstance(expr, PrefectFuture):
        who = f"upstream task run {expr.name or expr.task_run_id!r}"
    else:
        who = f"upstream state {state.name}" + (
            f" of run {state._run_id!r}" if state._run_id else ""
        )
    return f"{who} did not complete: it ended {state.name}" + (
        f" ({state.message})" if state.message else ""
    )


def _resolve_one(expr: Any, context: dict[str, Any]) -> Any:
    annotation = context.get("annotation")
    if isinstance(annotation, quote):
        raise StopVisiting
    if isinstance(expr, PrefectFuture):
        state: State = expr._future.result()  # waits for the upstream to be final
    elif isinstance(expr, State):
        state = expr
    else:
        return expr
    from runtime.engine.results import state_result

    if state.type is not StateType.COMPLETED:
        tolerated = isinstance(annotation, allow_failure) and (
            state.type is StateType.FAILED or state.name == "NotReady"
        )
        if not tolerated:
            raise UpstreamTaskError(_describe(expr, state))
        if not state.is_final():
            return state.data
    return state_result(state, raise_on_failure=False)


def resolve(value: Any) -> Any:
    """``value`` with futures (and states) inside replaced by their results.

    A future whose run did not complete raises :class:`UpstreamTaskError`;
    inside ``allow_failure(...)`` a failed one gives its exception instead.
    Annotations are removed; a ``quote``'s contents are passed as they are.
    """
    if is_plain(value):
        return value
    return visit_collection(value, _resolve_one, return_data=True, remove_annotations=True)
