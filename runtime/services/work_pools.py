"""Work-pool use cases: a pool is a registry record plus its SQS queue and dead-letter queue.

* :func:`create_work_pool` creates the queue and its DLQ (redrive after
  ``STRATOFLOW_POOL_MAX_RECEIVE_COUNT`` receives, names from
  :func:`runtime.resources.pool_queue_spec`), then the record;
* :func:`delete_work_pool` refuses (Conflict, with the counts) while the pool has
  runs waiting or running, unless ``force``: then its waiting runs are cancelled,
  and the record, its concurrency limit and its queues are deleted;
* :func:`pause_work_pool` / :func:`resume_work_pool`: a paused pool keeps its runs
  queued (the claim puts them back, ``runtime.services.claims``); resuming lets
  the workers take them again;
* :func:`inspect_work_pool`: the pool, its backlog and its slots.

Called by the ``/work_pools`` routes, ``stratoflow work-pool`` (through the API)
and ``stratoflow dev`` / workers (:func:`ensure_work_pool`).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from runtime.errors import AlreadyExists, Conflict, NotFound
from runtime.models import (
    FlowRun,
    FlowRunFilter,
    WorkPool,
    WorkPoolCreate,
    WorkPoolStatus,
    WorkPoolUpdate,
)
from runtime.services import worker_runs
from runtime.services.claims import pool_limit_name
from runtime.states import StateType

if TYPE_CHECKING:
    from runtime.stores import Stores

__all__ = [
    "RUNNING_TYPES",
    "WAITING_TYPES",
    "create_work_pool",
    "delete_work_pool",
    "ensure_work_pool",
    "inspect_work_pool",
    "pause_work_pool",
    "pool_runs",
    "resume_work_pool",
    "update_work_pool",
]

WAITING_TYPES = (StateType.SCHEDULED, StateType.PENDING)
"""States of a run waiting for a worker."""

RUNNING_TYPES = (StateType.RUNNING, StateType.CANCELLING, StateType.PAUSED)
"""States of a run a worker holds."""


def create_work_pool(stores: Stores, request: WorkPoolCreate) -> WorkPool:
    """Create the pool's queue and DLQ, then its record (AlreadyExists if the name is taken).

    The queues come first and creating them is idempotent, so a refused or failed
    creation never leaves a record without its queue.
    """
    stores.queues.ensure_pool_queue(request.name)
    return stores.registry.create_work_pool(request)


def ensure_work_pool(stores: Stores, name: str = "default") -> WorkPool:
    """The pool ``name``, created (with its queues) when missing; idempotent."""
    try:
        return stores.registry.read_work_pool(name)
    except NotFound:
        pass
    try:
        return create_work_pool(stores, WorkPoolCreate(name=name))
    except AlreadyExists:
        return stores.registry.read_work_pool(name)


def update_work_pool(stores: Stores, name: str, update: WorkPoolUpdate) -> WorkPool:
    """Change the fields given (a new ``concurrency_limit`` applies from the next claim)."""
    return stores.registry.update_work_pool(name, update)


def pause_work_pool(stores: Stores, name: str) -> WorkPool:
    """Pause the pool: its runs stay queued and visible; workers do not start them."""
    return stores.registry.pause_work_pool(name)


def resume_work_pool(stores: Stores, name: str) -> WorkPool:
    """Resume the pool: workers start its queued runs again (within ``paused_retry_seconds``)."""
    return stores.registry.resume_work_pool(name)


def pool_runs(stores: Stores, name: str, state_types: tuple[StateType, ...]) -> list[FlowRun]:
    """Every flow run of pool ``name`` in one of ``state_types`` (the ``by_state`` index)."""
    runs: list[FlowRun] = []
    for state_type in state_types:
        flt = FlowRunFilter(state_types=[state_type], work_pool_name=name)
        cursor: str | None = None
        while True:
            page = stores.runs.list_flow_runs(flt, cursor=cursor)
            runs.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    return runs


def delete_work_pool(stores: Stores, name: str, *, force: bool = False) -> None:
    """Delete the pool, its concurrency limit and its queues (NotFound if it does not exist).

    Refused with Conflict while the pool has flow runs waiting (SCHEDULED,
    PENDING) or held by a worker (RUNNING, CANCELLING, PAUSED), or messages in its
    queue; the message gives the counts. With ``force`` the waiting runs are
    cancelled first (nothing is left stranded in a queue that no longer exists);
    running ones finish on their workers.
    """
    stores.registry.read_work_pool(name)
    waiting = pool_runs(stores, name, WAITING_TYPES)
    running = pool_runs(stores, name, RUNNING_TYPES)
    depth = stores.queues.depth(name)
    queued = depth.visible + depth.delayed
    if not force and (waiting or running or queued):
        raise Conflict(
            f"work pool {name!r} has {len(waiting)} queued and {len(running)} running flow "
            f"run(s) ({queued} message(s) in its queue): wait for them or cancel them, or "
            "delete it with force (waiting runs are then cancelled)",
            name=name,
            queued_runs=len(waiting),
            running_runs=len(running),
            queued_messages=queued,
        )
    for run in waiting:
        stores.runs.cancel_flow_run(run.id)
    stores.registry.delete_work_pool(name)
    with contextlib.suppress(NotFound):
        stores.concurrency.delete_limit(pool_limit_name(name))
    stores.queues.delete_pool_queue(name)


def inspect_work_pool(stores: Stores, name: str) -> WorkPoolStatus:
    """The pool, its queue's backlog, its runs waiting and running, its slots in use.

    ``workers``: the live workers polling the pool (the worker registry).
    """
    pool = stores.registry.read_work_pool(name)
    spec = stores.queues.spec(name)
    active_slots = None
    if pool.concurrency_limit is not None:
        try:
            active_slots = stores.concurrency.read_limit(pool_limit_name(name)).active_slots
        except NotFound:
            active_slots = 0
    return WorkPoolStatus(
        **pool.model_dump(),
        queue_name=spec.name,
        dlq_name=spec.dlq_name,
        backlog=stores.queues.depth(name),
        runs_waiting=len(pool_runs(stores, name, WAITING_TYPES)),
        runs_running=len(pool_runs(stores, name, RUNNING_TYPES)),
        active_slots=active_slots,
        workers=worker_runs.pool_workers(stores, name),
    )
