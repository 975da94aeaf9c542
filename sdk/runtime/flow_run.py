"""The current flow run: ``id``, ``name``, ``flow_name``, ``flow_version``, ``parameters``,
``tags``, ``run_count``, ``scheduled_start_time``, ``deployment_id``, ``parent_flow_run_id``,
``api_url``, ``ui_url``.

Outside a flow run every attribute is None (``parameters`` {}, ``tags`` [],
``run_count`` 0, ``scheduled_start_time`` now), as Prefect's
``prefect.runtime.flow_run``. ``ui_url`` is always None: Stratoflow has no
UI. A flow called directly (not scheduled) has its start time as
``scheduled_start_time``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtime.engine.context import FlowRunContext, current_flow_run
from runtime.states import utcnow
from sdk.runtime._urls import run_api_url

_FIELDS: dict[str, Callable[[FlowRunContext], Any]] = {
    "id": lambda c: c.flow_run.id,
    "name": lambda c: c.flow_run.name,
    "flow_name": lambda c: c.flow_run.flow_name,
    "flow_version": lambda c: getattr(c.flow, "version", None),
    "parameters": lambda c: dict(c.parameters),
    "tags": lambda c: list(c.flow_run.tags),
    "run_count": lambda c: c.flow_run.run_count,
    "scheduled_start_time": lambda c: (
        c.flow_run.expected_start_time or c.flow_run.start_time or c.flow_run.created
    ),
    "deployment_id": lambda c: c.flow_run.deployment_id,
    "parent_flow_run_id": lambda c: c.flow_run.parent_flow_run_id,
    "api_url": lambda c: run_api_url("flow_runs", c.flow_run.id),
    "ui_url": lambda c: None,
}
_EMPTY: dict[str, Any] = {"parameters": {}, "tags": [], "run_count": 0}


def __getattr__(name: str) -> Any:
    if name not in _FIELDS:
        raise AttributeError(f"sdk.runtime.flow_run has no attribute {name!r}")
    ctx = current_flow_run()
    if ctx is None and name == "scheduled_start_time":
        return utcnow()  # Prefect: "now" outside a run
    if ctx is None:
        empty = _EMPTY.get(name)
        return type(empty)() if empty is not None else None
    return _FIELDS[name](ctx)


def __dir__() -> list[str]:
    return sorted(_FIELDS)
