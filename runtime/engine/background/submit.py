"""``task.delay()`` / ``task.apply_async()``: hand a task run to the task workers.

One submission: the parameters (and the ids of the runs to wait for) are persisted
as a pickle sealed with the installation's payload key (``runtime.payload_auth``:
a task worker never unpickles a payload whose MAC fails); the task run is created
SCHEDULED with that payload's reference in its state (``details.extra
["task_parameters"]``, Prefect's ``task_parameters_id``); then one message goes to
the task-run queue. The caller gets a :class:`PrefectDistributedFuture`.

Background task runs stand alone (no ``flow_run_id``), even when submitted from a
flow: they outlive the flow that submitted them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from runtime.engine.background.futures import PrefectDistributedFuture
from runtime.engine.background.queue import TaskRunMessage, task_run_queue
from runtime.engine.futures import PrefectFuture
from runtime.models import RetryPolicy, TaskRunCreate, new_id
from runtime.states import Scheduled

if TYPE_CHECKING:
    from runtime.engine.tasks import Task

__all__ = ["PARAMETERS_KEY", "submit_background"]

PARAMETERS_KEY = "task_parameters"
"""Where a background task run's Scheduled state keeps its parameters' reference."""


def _distributable(value: Any) -> Any:
    """A local future becomes a distributed one (its id): the task worker waits for it."""
    if isinstance(value, PrefectFuture) and not isinstance(value, PrefectDistributedFuture):
        return PrefectDistributedFuture(value.task_run_id, name=value.name)
    return value


def submit_background(
    task: Task[..., Any], parameters: dict[str, Any], wait_for: Iterable[Any] | None = None
) -> PrefectDistributedFuture[Any]:
    """Create a SCHEDULED task run for a task worker and queue it; its future."""
    from runtime.engine.backend import get_engine_client

    client: Any = get_engine_client()
    stores = getattr(client, "stores", None)
    if stores is None:
        raise RuntimeError(
            "task.delay()/apply_async() need the installation's stores and task queue "
            "(AWS_ENDPOINT_URL or STRATOFLOW_PREFIX, or the embedded default); they are not "
            "available through STRATOFLOW_API_URL yet"
        )
    task_run_id = new_id()
    payload = {
        "parameters": {name: _distributable(v) for name, v in parameters.items()},
        "wait_for": [f.task_run_id for f in (wait_for or ()) if isinstance(f, PrefectFuture)],
    }
    ref = client.persist_result(payload, serializer="pickle")
    state = Scheduled()
    state.details.extra = {"deferred": True, PARAMETERS_KEY: ref.model_dump(mode="json")}
    name = task.render_run_name(parameters, task_run_id[:8])
    stores.runs.create_task_run(
        TaskRunCreate(
            id=task_run_id,
            name=name,
            task_key=task.task_key,
            tags=list(task.tags),
            empirical_policy=RetryPolicy(
                retries=task.retries,
                retry_delay_seconds=task.retry_delay_seconds,
                retry_jitter_factor=task.retry_jitter_factor,
            ),
            state=state,
        )
    )
    task_run_queue(stores).send(TaskRunMessage(task_run_id=task_run_id, task_key=task.task_key))
    return PrefectDistributedFuture(task_run_id, name=name)
