"""The current task run: ``id``, ``name``, ``task_name``, ``parameters``, ``tags``,
``run_count``, ``flow_run_id``."""

from __future__ import annotations

from typing import Any

from runtime.engine.context import current_task_run

_NAMES = ("id", "name", "task_name", "parameters", "tags", "run_count", "flow_run_id")


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"sdk.runtime.task_run has no attribute {name!r}")
    ctx = current_task_run()
    if ctx is None:
        return {"parameters": {}, "tags": []}.get(name)
    run = ctx.task_run
    values: dict[str, Any] = {
        "id": run.id,
        "name": run.name,
        "task_name": ctx.task.name,
        "parameters": dict(ctx.parameters),
        "tags": list(run.tags),
        "run_count": run.run_count,
        "flow_run_id": run.flow_run_id,
    }
    return values[name]


def __dir__() -> list[str]:
    return list(_NAMES)
