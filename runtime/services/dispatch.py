"""Putting flow runs on their work pool's queue (SQS), once.

A flow run of a work pool is sent to the pool's queue as a
:class:`runtime.stores.queues.RunMessage`:

* due now (its scheduled time has come): SCHEDULED -> PENDING with one
  conditional transition, then sent; only the caller whose transition was
  accepted sends;
* due within 15 minutes (SQS's longest ``DelaySeconds``): left SCHEDULED and sent
  with a delay that ends at its scheduled time; the claim accepts a due
  SCHEDULED run. A conditional marker reserves the send first, so two callers
  never both send it;
* further ahead: left SCHEDULED; :func:`enqueue_due_runs` (run by the
  maintenance sweep) sends it once it is within 15 minutes.

The run's ``enqueued_at`` records the send; a run already queued in its current
state is never sent again by these functions (a duplicate would be harmless
anyway: the claim starts a run once). A paused pool or deployment still gets
its runs queued; the claim refuses to start them (``runtime.services.claims``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from runtime.errors import InvalidInput
from runtime.models import FlowRun, FlowRunFilter
from runtime.states import Pending, StateType, utcnow
from runtime.stores.queues import MAX_DELAY_SECONDS, ReceivedMessage, RunMessage

if TYPE_CHECKING:
    from runtime.stores import Stores

__all__ = [
    "DELAY_HORIZON",
    "STALE_PENDING",
    "defer_message",
    "enqueue_due_runs",
    "enqueue_flow_run",
    "is_queued",
    "run_message",
]

DELAY_HORIZON = timedelta(seconds=MAX_DELAY_SECONDS)
"""How far ahead a run is sent with an SQS delay (15 minutes); later ones wait for the sweep."""

STALE_PENDING = timedelta(seconds=60)
"""A PENDING run of a pool never marked as sent after this long is sent again by the sweep
(its sender died between its transition and its send)."""


def run_message(run: FlowRun, now: datetime | None = None) -> RunMessage:
    """The queue message that announces ``run`` to its pool's workers."""
    assert run.work_pool_name is not None
    return RunMessage(
        flow_run_id=run.id,
        deployment_id=run.deployment_id,
        work_pool_name=run.work_pool_name,
        enqueued_at=now or utcnow(),
    )


def is_queued(run: FlowRun) -> bool:
    """True when the run was sent to its queue since it entered its current state."""
    return run.enqueued_at is not None and run.enqueued_at >= run.state.timestamp


def _scheduled_time(run: FlowRun, moment: datetime) -> datetime:
    return run.state.details.scheduled_time or moment


def enqueue_flow_run(stores: Stores, run: FlowRun | str, *, now: datetime | None = None) -> FlowRun:
    """Send a SCHEDULED (or unsent PENDING) flow run to its work pool's queue; the run after.

    See the module docstring. ``run`` is the run or its id (NotFound). A run
    without a work pool is InvalidInput naming ``work_pool_name``. A run in any
    other state, or already queued in its current state, is returned as it is
    and nothing is sent. Idempotent: a repeat sends nothing more.
    """
    if isinstance(run, str):
        run = stores.runs.read_flow_run(run)
    if run.work_pool_name is None:
        raise InvalidInput(
            f"flow run {run.id} has no work pool: only runs of a deployment with a work pool "
            "can be sent to a queue",
            field="work_pool_name",
            id=run.id,
        )
    moment = now or utcnow()
    if is_queued(run) or run.state.type not in (StateType.SCHEDULED, StateType.PENDING):
        return run
    pool = run.work_pool_name
    if run.state.type is StateType.PENDING:
        return _send_and_mark(stores, run, pool, moment, 0.0)
    when = _scheduled_time(run, moment)
    ahead = (when - moment).total_seconds()
    if ahead > MAX_DELAY_SECONDS:
        return run  # the sweep sends it when it is close enough
    if ahead > 0:
        # reserve the send on the run as it is: of two callers, one sends
        if not stores.runs.mark_enqueued(
            run.id, run.state_version, now=moment, unless_since=run.state.timestamp
        ):
            return stores.runs.read_flow_run(run.id)
        stores.queues.send(pool, run_message(run, moment), delay_seconds=ahead)
        return run.model_copy(update={"enqueued_at": moment})
    result = stores.runs.set_state("flow_run", run.id, Pending(), now=moment)
    if result.status != "ACCEPT":
        # another caller moved it first (it sends), or it was cancelled meanwhile
        return stores.runs.read_flow_run(run.id)
    pending = run.model_copy(
        update={"state": result.state, "state_version": result.state_version, "updated": moment}
    )
    return _send_and_mark(stores, pending, pool, moment, 0.0)


def _send_and_mark(
    stores: Stores, run: FlowRun, pool: str, moment: datetime, delay: float
) -> FlowRun:
    stores.queues.send(pool, run_message(run, moment), delay_seconds=delay)
    marked = utcnow()
    stores.runs.mark_enqueued(run.id, run.state_version, now=marked)
    return run.model_copy(update={"enqueued_at": marked})


def enqueue_due_runs(
    stores: Stores, now: datetime | None = None, *, max_runs: int = 1000
) -> list[FlowRun]:
    """Send every work-pool run that is due within 15 minutes and not queued yet.

    For the maintenance sweep: SCHEDULED runs of a pool (future ones that were
    too far ahead when submitted, AwaitingRetry and Late ones) whose scheduled
    time is within :data:`DELAY_HORIZON`, and PENDING runs of a pool never marked
    as sent for :data:`STALE_PENDING`. Returns the runs it sent (at most
    ``max_runs`` per call). Idempotent: two sweeps at once send each run once
    (the transition or the reservation decides).
    """
    moment = now or utcnow()
    sent: list[FlowRun] = []
    for state_type in (StateType.SCHEDULED, StateType.PENDING):
        cursor: str | None = None
        while len(sent) < max_runs:
            page = stores.runs.list_flow_runs(
                FlowRunFilter(state_types=[state_type]), cursor=cursor
            )
            for run in page.items:
                if run.work_pool_name is None or is_queued(run):
                    continue
                if state_type is StateType.SCHEDULED:
                    if _scheduled_time(run, moment) - moment > DELAY_HORIZON:
                        continue
                elif moment - run.state.timestamp < STALE_PENDING:
                    continue
                after = enqueue_flow_run(stores, run, now=moment)
                if is_queued(after) and not is_queued(run):
                    sent.append(after)
                if len(sent) >= max_runs:
                    break
            cursor = page.next_cursor
            if cursor is None:
                break
    return sent


def defer_message(
    stores: Stores, pool: str, received: ReceivedMessage, delay_seconds: float
) -> None:
    """Put a received message back, visible again after ``delay_seconds`` (a refused claim).

    Releases it (one ``ChangeMessageVisibility``) while it has receives to spare;
    a message one receive short of the DLQ's ``max_receive_count`` is sent again
    fresh and deleted instead (:meth:`QueueStore.requeue`), so a run waiting on a
    paused pool or a full limit never ends in the DLQ.
    """
    if received.receive_count < stores.queues.max_receive_count - 1:
        # False: the handle is stale (someone else holds the message now): leave it
        stores.queues.release(pool, received.receipt_handle, delay_seconds)
        return
    stores.queues.requeue(pool, received, delay_seconds)
