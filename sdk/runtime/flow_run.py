"""The current flow run: ``id``, ``name``, ``flow_name``, ``parameters``, ``tags``,
``run_count``, ``scheduled_start_time``, ``deployment_id``, ``parent_flow_run_id``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtime.engine.context import current_flow_run
from runtime.models import FlowRun

_FIELDS: dict[str, Callable[[FlowRun], Any]] = {
    "id": lambda r: r.id,
    "name": lambda r: r.name,
    "flow_name": lambda r: r.flow_name,
    "parameters": lambda r: dict(r.parameters),
    "tags": lambda r: list(r.tags),
    "run_count": lambda r: r.run_count,
    "scheduled_start_time": lambda r: r.expected_start_time,
    "deployment_id": lambda r: r.deployment_id,
    "parent_flow_run_id": lambda r: r.parent_flow_run_id,
}
_EMPTY: dict[str, Any] = {"parameters": {}, "tags": []}


def __getattr__(name: str) -> Any:
    if name not in _FIELDS:
        raise AttributeError(f"sdk.runtime.flow_run has no attribute {name!r}")
    ctx = current_flow_run()
    if ctx is None:
        return _EMPTY.get(name)
    if name == "parameters":
        return dict(ctx.parameters)
    return _FIELDS[name](ctx.flow_run)


def __dir__() -> list[str]:
    return sorted(_FIELDS)
