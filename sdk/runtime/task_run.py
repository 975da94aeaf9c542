"""The current task run: ``id``, ``name``, ``task_name``, ``parameters``, ``tags``,
``run_count``, ``flow_run_id``, ``api_url``, ``ui_url``.

Outside a task run every attribute is None (``parameters`` {}, ``tags`` [],
``run_count`` 0), as Prefect's ``prefect.runtime.task_run``. ``ui_url`` is
always None: Stratoflow has no UI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtime.engine.context import TaskRunContext, current_task_run
from sdk.runtime._urls import run_api_url

_FIELDS: dict[str, Callable[[TaskRunContext], Any]] = {
    "id": lambda c: c.task_run.id,
    "name": lambda c: c.task_run.name,
    "task_name": lambda c: c.task.name,
    "parameters": lambda c: dict(c.parameters),
    "tags": lambda c: list(c.task_run.tags),
    "run_count": lambda c: c.task_run.run_count,
    "flow_run_id": lambda c: c.task_run.flow_run_id,
    "api_url": lambda c: run_api_url("task_runs", c.task_run.id),
    "ui_url": lambda c: None,
}
_EMPTY: dict[str, Any] = {"parameters": {}, "tags": [], "run_count": 0}


def __getattr__(name: str) -> Any:
    if name not in _FIELDS:
        raise AttributeError(f"sdk.runtime.task_run has no attribute {name!r}")
    ctx = current_task_run()
    if ctx is None:
        empty = _EMPTY.get(name)
        return type(empty)() if empty is not None else None
    return _FIELDS[name](ctx)


def __dir__() -> list[str]:
    return sorted(_FIELDS)
