"""What a run's return value means for its final state (Prefect's ``return_value_to_state``).

- A state made by hand (``return Failed(message=...)``, ``Completed(name="Skipped")``)
  is the run's final state as it is: type, name and message; its data is the result.
- A state that a run produced (``task(return_state=True)``, a future's state, a
  subflow's state), or a non-empty list/tuple/set made only of states, gives
  an aggregate: COMPLETED when all completed ("All states completed."),
  else CANCELLED when any was cancelled ("N/M states cancelled."), else
  PAUSED when any paused ("N/M states paused."), else FAILED ("N/M states
  failed.", or "N/M states are not final."). Its data is the returned value.
- Anything else is COMPLETED with the value as its result (a generator is
  turned into a list first).

A flow's return value has its futures replaced by their final states first
(:func:`resolve_futures_to_states`); a task's is taken as it is, as in Prefect.
"""

from __future__ import annotations

import types
from typing import Any

from runtime.engine.collections import StopVisiting, visit_collection
from runtime.engine.futures import PrefectFuture, PrefectFutureList
from runtime.engine.state_groups import aggregate_message, is_state_iterable
from runtime.states import Completed, State, StateType


def mark_run_state(state: State, run_id: str) -> State:
    """Note that ``state`` is a state of run ``run_id`` (not one made by hand)."""
    state._run_id = run_id
    return state


def is_manual(state: State) -> bool:
    """True for a state the user's code made (no run produced it)."""
    return state._run_id is None


def resolve_futures_to_states(value: Any) -> Any:
    """``value`` with every future inside replaced by its final state (waiting for it).

    Contents of ``quote(...)`` are left alone; a ``PrefectFutureList`` becomes a list.
    """
    found = False

    def replace(expr: Any, context: dict[str, Any]) -> Any:
        nonlocal found
        from runtime.engine.inputs import quote

        if isinstance(context.get("annotation"), quote):
            raise StopVisiting
        if isinstance(expr, PrefectFuture):
            found = True
            expr.wait()
            return expr.state
        return expr

    result = visit_collection(value, replace, return_data=True)
    if found and isinstance(result, PrefectFutureList):
        result = list(result)
    return result


_TYPE_NAMES = {t: t.value.capitalize() for t in StateType}


def return_value_to_state(value: Any) -> tuple[State, Any]:
    """The final state a run's return value calls for, and the data it stands for.

    The state is proposed as the run's final state; the data is what is
    persisted as the run's result (and attached to the state in memory).
    """
    if isinstance(value, State) and is_manual(value):
        data = value.data if value.has_data else None
        state = value.fresh_copy()
        return state.with_data(data), data
    if isinstance(value, State) or is_state_iterable(value):
        states = [value] if isinstance(value, State) else list(value)
        type_, message = aggregate_message(states)
        state = State(type=type_, name=_TYPE_NAMES[type_], message=message)
        return state.with_data(value), value
    data = list(value) if isinstance(value, types.GeneratorType) else value
    return Completed().with_data(data), data
