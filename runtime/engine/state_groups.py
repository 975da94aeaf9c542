"""Collections of states (Prefect's ``is_state_iterable`` and ``StateGroup`` counts)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from runtime.states import State, StateType


def is_state_iterable(value: Any) -> bool:
    """A non-empty list, tuple or set holding only states (Prefect's ``is_state_iterable``).

    Other containers (dicts, models) are data even when they hold states.
    """
    return (
        isinstance(value, list | tuple | set)
        and bool(value)
        and all(isinstance(item, State) for item in value)
    )


def aggregate_message(states: list[State]) -> tuple[StateType, str]:
    """The aggregate state's type and message for ``states`` (Prefect's ``StateGroup``).

    COMPLETED when all completed; else CANCELLED if any was cancelled; else
    PAUSED if any paused; else FAILED (failed and crashed counted together,
    or those not final).
    """
    counts = Counter(state.type for state in states)
    total = len(states)
    failed = counts[StateType.FAILED] + counts[StateType.CRASHED]
    not_final = sum(1 for state in states if not state.is_final())
    if counts[StateType.COMPLETED] == total:
        return StateType.COMPLETED, "All states completed."
    if counts[StateType.CANCELLED]:
        return StateType.CANCELLED, f"{counts[StateType.CANCELLED]}/{total} states cancelled."
    if counts[StateType.PAUSED]:
        return StateType.PAUSED, f"{counts[StateType.PAUSED]}/{total} states paused."
    if failed:
        return StateType.FAILED, f"{failed}/{total} states failed."
    if not_final:
        return StateType.FAILED, f"{not_final}/{total} states are not final."
    parts = [f"total={total}"] + [f"{t.value!r}={n}" for t, n in counts.items() if n]
    return StateType.FAILED, "Given states: " + ", ".join(parts)
