"""``sdk.context``: the run context (Prefect's ``prefect.context``).

    from sdk.context import FlowRunContext, TaskRunContext, get_run_context, tags

``get_run_context()`` raises ``MissingContextError`` outside a run;
``FlowRunContext.get()`` / ``TaskRunContext.get()`` return None there.
A flow run context has ``flow``, ``flow_run``, ``parameters``, ``client``,
``task_runner``, ``log_prints``, ``start_time``; a task run context has
``task``, ``task_run``, ``parameters``, ``log_prints``, ``start_time``.
"""

from runtime.engine.context import (
    FlowRunContext,
    MissingContextError,
    TaskRunContext,
    current_tags,
    get_run_context,
    tags,
)

__all__ = [
    "FlowRunContext",
    "MissingContextError",
    "TaskRunContext",
    "current_tags",
    "get_run_context",
    "tags",
]
