"""What a worker does to the flow runs it claimed: heartbeat, hand back, crash, cancel, free.

Every change is a transition through the orchestration rules (one conditional
write on the run's ``state_version``), taken only while the run is this
worker's (its ``worker_id``, written by the claim): a run the sweep already
crashed, or another worker claimed since, is left alone. The maintenance sweep
ends a dead worker's runs through :func:`crash_stale_run` and frees slots with
:func:`release_run_leases`, the same code the worker uses.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from runtime.errors import NotFound
from runtime.models import FlowRun, OrchestrationResult
from runtime.services.claims import release_run_lease, renew_run_lease
from runtime.states import AwaitingRetry, Cancelled, Crashed, State, StateType, utcnow
from runtime.stores.workers import WorkerStore

if TYPE_CHECKING:
    from runtime.stores import Stores

__all__ = [
    "crash_run",
    "crash_stale_run",
    "finish_cancelled",
    "hand_back",
    "heartbeat",
    "pool_workers",
    "release_run_leases",
]


def heartbeat(stores: Stores, run: FlowRun, worker_id: str, *, now: datetime | None = None) -> bool:
    """Record that ``worker_id`` still runs ``run`` and keep its concurrency slots.

    False when the run is no longer this worker's to run (handed back, crashed by
    the sweep, claimed by another worker, or ended): its slots are not renewed.
    """
    if not stores.runs.heartbeat(run.id, worker_id, now=now):
        return False
    renew_run_lease(stores, run, now=now)
    return True


def release_run_leases(stores: Stores, run: FlowRun) -> int:
    """Give back the concurrency leases the flow run holds: how many this call freed.

    The claim records its lease on the run (``lease_id``, holder the run id): that
    one is released directly. A run without one is looked up by holder (a claim
    whose write of ``lease_id`` was lost still named the run as holder). Each
    release is conditional, so a lease freed by someone else meanwhile counts once.
    """
    if run.lease_id is not None:
        return int(release_run_lease(stores, run))
    leases = stores.db.scan(
        stores.concurrency.table.name,
        "begins_with(item_type, :t) AND holder = :h",
        values={":t": "lease#", ":h": run.id},
    )
    return sum(1 for lease in list(leases) if stores.concurrency.release(lease["lease_id"]))


def _owned(stores: Stores, run_id: str, worker_id: str | None) -> FlowRun | None:
    """The run, when ``worker_id`` (if given) is the one that claimed it; else None."""
    try:
        run = stores.runs.read_flow_run(run_id)
    except NotFound:
        return None
    if worker_id is not None and run.worker_id != worker_id:
        return None
    return run


def hand_back(
    stores: Stores,
    run_id: str,
    worker_id: str,
    *,
    message: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Give a RUNNING run back (a stopping worker): AwaitingRetry due now, slots released.

    Another worker claims it from its message (which the caller makes visible
    again). True when this call handed it back; False when the run is not this
    worker's or no longer RUNNING (it ended, or is being cancelled).
    """
    run = _owned(stores, run_id, worker_id)
    if run is None or run.state.type is not StateType.RUNNING:
        return False
    moment = now or utcnow()
    state = AwaitingRetry(
        scheduled_time=moment,
        message=message or f"Its worker {worker_id} shut down: handed back to run again.",
    )
    result = stores.runs.set_state(
        "flow_run", run_id, state, now=moment, expected_version=run.state_version
    )
    if result.status != "ACCEPT":
        return False
    release_run_leases(stores, run)
    return True


def crash_run(stores: Stores, run_id: str, worker_id: str | None, message: str) -> FlowRun | None:
    """End a run CRASHED with ``message`` (its process died) and release its slots.

    With ``worker_id``, only while the run is that worker's. A run already final
    keeps its state (its slots are still released). Returns the run as it is
    after, or None when it is gone or not this worker's.
    """
    run = _owned(stores, run_id, worker_id)
    if run is None:
        return None
    if not run.state.is_final():
        stores.runs.set_state(
            "flow_run", run_id, Crashed(message=message), expected_version=run.state_version
        )
        run = stores.runs.read_flow_run(run_id)
    if run.state.is_final():
        release_run_leases(stores, run)
    return run


def crash_stale_run(
    stores: Stores,
    run: FlowRun,
    message: str,
    *,
    heartbeat_before: datetime,
    now: datetime | None = None,
) -> tuple[OrchestrationResult, int] | None:
    """End a run whose worker stopped heartbeating, at most once: ``(result, leases freed)``.

    A RUNNING run becomes CRASHED with ``message``; a CANCELLING one CANCELLED
    (nobody is left to stop it). One conditional write on the run as the caller
    read it (``run.state_version``) and on its heartbeat still being older than
    ``heartbeat_before``: a heartbeat that lands first, the worker ending the run,
    or another sweep wins, and then nothing is written and None comes back. On an
    accepted change its leases are released (:func:`release_run_leases`).
    """
    ended: State = Crashed(message=message)
    if run.state.type is StateType.CANCELLING:
        ended = Cancelled(message=f"{message} It was being cancelled.")
    result = stores.runs.set_state_if_unchanged(
        "flow_run",
        run.id,
        ended,
        expected_version=run.state_version,
        condition="heartbeat_at < :hb_cutoff",
        values={":hb_cutoff": heartbeat_before.timestamp()},
        now=now,
    )
    if result is None or result.status != "ACCEPT":
        return None
    return result, release_run_leases(stores, run)


def finish_cancelled(
    stores: Stores, run_id: str, worker_id: str | None, message: str
) -> FlowRun | None:
    """End a CANCELLING run CANCELLED once its process is gone, and release its slots.

    A run that ended meanwhile keeps its final state (slots released too).
    """
    run = _owned(stores, run_id, worker_id)
    if run is None:
        return None
    if not run.state.is_final():
        stores.runs.set_state(
            "flow_run", run_id, Cancelled(message=message), expected_version=run.state_version
        )
        run = stores.runs.read_flow_run(run_id)
    if run.state.is_final():
        release_run_leases(stores, run)
    return run


def pool_workers(stores: Stores, pool: str) -> list[dict[str, Any]]:
    """The live workers polling ``pool``, as ``work-pool inspect`` shows them (JSON values)."""
    return [
        {
            "name": w.name,
            "host": w.host,
            "pid": w.pid,
            "version": w.version,
            "last_poll": w.last_poll.isoformat() if w.last_poll else None,
            "running": ", ".join(w.running) or "-",
        }
        for w in WorkerStore(stores.db, stores.specs.registry).list(pool)
    ]
