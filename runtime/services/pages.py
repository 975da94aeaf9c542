"""Reading one page of a listing: runs, task runs, a flow run's logs, flows, deployments, pools.

Every listing is newest first (runs) or by name (the registry), ``limit`` items
per page, and continues from the ``next_cursor`` of the previous page. A cursor
the listing did not hand out is BadRequest naming ``cursor`` (a malformed value,
not a bad choice of filters).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from runtime.errors import BadRequest, InvalidInput
from runtime.models import (
    Deployment,
    FlowRun,
    FlowRunFilter,
    FlowSummary,
    LogRecord,
    Page,
    TaskRun,
    TaskRunFilter,
    WorkPool,
)

if TYPE_CHECKING:
    from runtime.stores import Stores

__all__ = [
    "list_deployments",
    "list_flow_runs",
    "list_flows",
    "list_task_runs",
    "list_work_pools",
    "read_logs",
    "read_page",
]

T = TypeVar("T")


def read_page(list_page: Callable[[], Page[T]]) -> Page[T]:
    """Run one listing; a refused cursor becomes BadRequest naming ``cursor``."""
    try:
        return list_page()
    except InvalidInput as exc:
        if exc.details.get("field") == "cursor":
            raise BadRequest(f"query.cursor: {exc.message}", field="cursor") from None
        raise


def list_flow_runs(
    stores: Stores, flt: FlowRunFilter | None = None, *, limit: int = 200, cursor: str | None = None
) -> Page[FlowRun]:
    """One page of the flow runs matching every field of ``flt``, newest first."""
    return read_page(lambda: stores.runs.list_flow_runs(flt, limit=limit, cursor=cursor))


def list_task_runs(
    stores: Stores, flt: TaskRunFilter | None = None, *, limit: int = 200, cursor: str | None = None
) -> Page[TaskRun]:
    """One page of the task runs matching every field of ``flt``, newest first."""
    return read_page(lambda: stores.runs.list_task_runs(flt, limit=limit, cursor=cursor))


def read_logs(
    stores: Stores,
    flow_run_id: str,
    *,
    task_run_id: str | None = None,
    level_ge: int | None = None,
    limit: int = 200,
    cursor: str | None = None,
) -> Page[LogRecord]:
    """One page of a flow run's log lines (and its task runs'), in time order.

    NotFound when the flow run does not exist (an empty page would hide a typo).
    """
    stores.runs.read_flow_run(flow_run_id)
    return read_page(
        lambda: stores.logs.read(
            flow_run_id, task_run_id=task_run_id, level_ge=level_ge, limit=limit, cursor=cursor
        )
    )


def list_flows(stores: Stores, *, limit: int = 200, cursor: str | None = None) -> Page[FlowSummary]:
    """One page of the flows that have runs or deployments, by name."""
    return read_page(lambda: stores.registry.list_flows(limit=limit, cursor=cursor))


def list_deployments(
    stores: Stores,
    flow_name: str | None = None,
    work_pool_name: str | None = None,
    *,
    limit: int = 200,
    cursor: str | None = None,
) -> Page[Deployment]:
    """One page of deployments by flow name then name (of one flow and/or pool)."""
    return read_page(
        lambda: stores.registry.list_deployments(
            flow_name, work_pool_name, limit=limit, cursor=cursor
        )
    )


def list_work_pools(
    stores: Stores, *, limit: int = 200, cursor: str | None = None
) -> Page[WorkPool]:
    """One page of work pools by name."""
    return read_page(lambda: stores.registry.list_work_pools(limit=limit, cursor=cursor))
