"""Task inputs: ``unmapped``, ``allow_failure``, ``quote``, ``opaque``; resolving futures."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from runtime.engine.exceptions import UpstreamTaskError
from runtime.engine.futures import PrefectFuture
from runtime.states import StateType

T = TypeVar("T")


class unmapped(Generic[T]):
    """Pass the same value to every call of ``task.map`` instead of iterating it."""

    def __init__(self, value: T) -> None:
        self.value = value


class allow_failure(Generic[T]):
    """Run the downstream task even if this upstream fails; it receives the exception."""

    def __init__(self, value: T) -> None:
        self.value = value


class quote(Generic[T]):
    """Pass the value as it is: its contents are neither resolved nor tracked as upstreams.

    The task receives the wrapped value itself (futures inside stay futures), and a large
    collection is not walked (Prefect's ``prefect.utilities.annotations.quote``).
    """

    def __init__(self, value: T) -> None:
        self.value = value

    def unquote(self) -> T:
        """The wrapped value."""
        return self.value

    def unwrap(self) -> T:
        """The wrapped value."""
        return self.value


class opaque(Generic[T]):
    """Resolve the wrapped future (its result reaches the task) but never look inside it.

    Prefect's ``prefect.utilities.annotations.opaque``: the future is an upstream and is
    waited for; its result is passed as it is, without a walk through its contents.
    """

    def __init__(self, value: T) -> None:
        self.value = value

    def unwrap(self) -> T:
        """The wrapped value."""
        return self.value


def _visit(value: Any, fn: Callable[[Any], Any]) -> Any:
    """Apply ``fn`` to every future inside lists, tuples, sets and dicts (not deeper objects)."""
    if isinstance(value, quote):  # never looked into: passed on unwrapped, as it is
        return value.value
    if isinstance(value, opaque):  # the future resolved, its result never looked into
        return fn(value.value) if isinstance(value.value, PrefectFuture) else value.value
    if isinstance(value, PrefectFuture | allow_failure):
        return fn(value)
    if isinstance(value, list):
        return [_visit(v, fn) for v in value]
    if isinstance(value, tuple):
        return (
            type(value)(*(_visit(v, fn) for v in value))
            if hasattr(value, "_fields")
            else tuple(_visit(v, fn) for v in value)
        )
    if isinstance(value, set | frozenset):
        return type(value)(_visit(v, fn) for v in value)
    if isinstance(value, dict):
        return {k: _visit(v, fn) for k, v in value.items()}
    if isinstance(value, unmapped):
        return _visit(value.value, fn)
    return value


def upstream_futures(values: Iterable[Any]) -> list[PrefectFuture[Any]]:
    """Every future found in ``values`` (parameters and ``wait_for``)."""
    found: list[PrefectFuture[Any]] = []

    def collect(v: Any) -> Any:
        inner = v.value if isinstance(v, allow_failure) else v
        if isinstance(inner, PrefectFuture):
            found.append(inner)
        else:
            _visit(inner, collect)
        return v

    for value in values:
        _visit(value, collect)
    return found


def resolve(value: Any) -> Any:
    """Replace futures by their results; a failed upstream raises UpstreamTaskError.

    Inside ``allow_failure(...)`` a failed upstream gives its exception instead.
    """

    def one(v: Any) -> Any:
        if isinstance(v, allow_failure):
            inner = v.value
            if isinstance(inner, PrefectFuture):
                return inner.result(raise_on_failure=False)
            return _visit(inner, lambda f: f.result(raise_on_failure=False))
        future: PrefectFuture[Any] = v
        state = future._future.result()
        if state.type is not StateType.COMPLETED:
            raise UpstreamTaskError(
                f"upstream task run {future.name or future.task_run_id!r} did not complete: "
                f"it ended {state.name}" + (f" ({state.message})" if state.message else "")
            )
        return future.result()

    return _visit(value, one)


def check_wait_for(wait_for: Iterable[Any]) -> None:
    """Wait for every ``wait_for`` future; raise UpstreamTaskError if one did not complete."""
    for item in wait_for:
        resolve(item)
