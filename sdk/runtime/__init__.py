"""``sdk.runtime``: facts about the current run as module attributes (``prefect.runtime``).

    from sdk.runtime import flow_run, task_run
    flow_run.id, flow_run.name, flow_run.parameters, task_run.run_count, ...

Outside a run every attribute is None (``parameters`` and ``tags`` are empty).
"""

from sdk.runtime import flow_run, task_run

__all__ = ["flow_run", "task_run"]
