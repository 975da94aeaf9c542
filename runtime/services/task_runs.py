"""Task-run use cases: create one, and record a batch of the engine's task-run snapshots.

Called by ``POST /task_runs`` and ``POST /task_runs/records`` and by the direct
engine client's background recorder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from runtime.models import TaskRun, TaskRunCreate
from runtime.services.references import must_exist
from runtime.states import State

if TYPE_CHECKING:
    from runtime.stores import Stores

__all__ = ["TaskRunRecord", "create_task_run", "record_task_runs"]

TaskRunRecord = tuple[TaskRun, list[State]]
"""One task-run snapshot: the run (with its latest state) and its state history."""


def create_task_run(
    stores: Stores, request: TaskRunCreate, *, check_references: bool = True
) -> tuple[TaskRun, bool]:
    """Create a task run: ``(run, created)``, ``created`` False for an idempotent repeat.

    ``check_references``: its ``flow_run_id`` must name an existing flow run
    (InvalidInput naming ``flow_run_id`` otherwise; nothing is written).
    """
    if check_references:
        must_exist("flow_run_id", request.flow_run_id, stores.runs.read_flow_run)
    return stores.runs.create_task_run_once(request)


def record_task_runs(
    stores: Stores, records: Sequence[TaskRunRecord], *, guard: bool = False
) -> int:
    """Store a batch of task-run snapshots; how many were written.

    The engine's own process records unguarded (one ``BatchWriteItem`` per 25,
    the cheapest). Records that come from elsewhere (the API) are ``guard``-ed:
    each only creates its task run or replaces the same run of the same flow run
    with a strictly newer ``state_version``, and its flow run must exist and not be
    final; Conflict names every refused record and nothing of the batch is written
    (see ``RunStore.write_task_run_records``).
    """
    return stores.runs.write_task_run_records(list(records), guard=guard)
