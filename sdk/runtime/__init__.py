"""``sdk.runtime``: facts about the current run as module attributes (``prefect.runtime``).

    from sdk.runtime import flow_run, task_run
    flow_run.id, flow_run.name, flow_run.parameters, task_run.run_count, ...
    deployment.name  # None: a flow called directly has no deployment

Outside a run every attribute is None (``parameters`` and ``tags`` are empty).
"""

from sdk.runtime import deployment, flow_run, task_run

__all__ = ["deployment", "flow_run", "task_run"]
