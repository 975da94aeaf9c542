"""``sdk.runtime.flow_run`` / ``task_run``: what the running code can ask about itself."""

from __future__ import annotations

from runtime.engine.client import DirectEngineClient
from sdk import flow, task
from sdk.runtime import flow_run, task_run


def test_runtime_attributes_inside_and_outside_runs(engine: DirectEngineClient) -> None:
    seen: dict[str, object] = {}

    @task(tags=["t"])
    def inner(x: int) -> None:
        seen.update(
            task_id=task_run.id,
            task_name=task_run.task_name,
            task_params=task_run.parameters,
            task_count=task_run.run_count,
            task_flow=task_run.flow_run_id,
        )

    @flow(flow_run_name="run-{n}")
    def outer(n: int) -> str:
        seen.update(
            flow_id=flow_run.id,
            flow_name=flow_run.flow_name,
            name=flow_run.name,
            params=flow_run.parameters,
            count=flow_run.run_count,
        )
        inner(n)
        return str(flow_run.id)

    flow_id = outer(3)
    assert seen["flow_id"] == flow_id == seen["task_flow"]
    assert seen["name"] == "run-3" and seen["flow_name"] == "outer"
    assert seen["params"] == {"n": 3} and seen["task_params"] == {"x": 3}
    assert seen["count"] == 1 and seen["task_count"] == 1 and seen["task_name"] == "inner"
    assert flow_run.id is None and task_run.parameters == {} and flow_run.tags == []
