"""A worker claims a flow run it received from its pool's queue: exactly one start.

:func:`claim_flow_run` decides what a worker does with a message:

* run it (``won``): ONE conditional transition PENDING (or a due SCHEDULED) ->
  RUNNING wrote the worker's id, the first heartbeat and the run's concurrency
  lease; of any number of concurrent claims (a duplicate delivery, two workers)
  exactly one wins;
* drop the message (``drop_message``): the run is gone, final, cancelled, or
  already claimed by someone else; a CANCELLING/CANCELLED run still in the queue
  is ended CANCELLED here;
* put it back for later (``retry_after`` seconds): the pool or the deployment is
  paused, the run is not due yet, or a concurrency slot is busy with the
  ENQUEUE collision strategy; the run stays as it is (see
  :func:`runtime.services.dispatch.defer_message`).

Concurrency limits of pools and deployments are Phase 1 leases: limits named
``work-pool:<pool>`` and ``deployment:<deployment id>`` (Prefect 3 names a
deployment's limit the same way), kept in step with the pool's and the
deployment's ``concurrency_limit`` at each claim. The claim takes one lease on
both at once (holder: the run id), lasting ``heartbeat_timeout_seconds``: the
worker renews it with each heartbeat (:func:`renew_run_lease`) and releases it
when the run ends (:func:`release_run_lease`); a dead worker's lease expires.
With CANCEL_NEW a run finding its deployment's limit full ends CANCELLED (as in
Prefect's ``SecureFlowConcurrencySlots``, src/prefect/server/orchestration/
core_policy.py); with ENQUEUE (the default) it waits in the queue.
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from runtime.errors import AlreadyExists, LimitExceeded, NotFound
from runtime.models import (
    ConcurrencyLimitCreate,
    ConcurrencyLimitStrategy,
    ConcurrencyLimitUpdate,
    Deployment,
    FlowRun,
    WorkPool,
)
from runtime.settings import get_settings
from runtime.states import TERMINAL_TYPES, Cancelled, StateType, utcnow

if TYPE_CHECKING:
    from runtime.stores import Stores

__all__ = [
    "Claim",
    "claim_flow_run",
    "deployment_limit_name",
    "pool_limit_name",
    "release_run_lease",
    "renew_run_lease",
]

POOL_LIMIT_PREFIX = "work-pool:"
DEPLOYMENT_LIMIT_PREFIX = "deployment:"


def pool_limit_name(pool_name: str) -> str:
    """The concurrency limit that holds a work pool's ``concurrency_limit``."""
    return f"{POOL_LIMIT_PREFIX}{pool_name}"


def deployment_limit_name(deployment_id: str) -> str:
    """The concurrency limit that holds a deployment's ``concurrency_limit``."""
    return f"{DEPLOYMENT_LIMIT_PREFIX}{deployment_id}"


@dataclass(frozen=True)
class Claim:
    """What a worker does with a received run (see the module docstring).

    ``reason`` when not won: ``"gone"``, ``"final"``, ``"cancelled"``,
    ``"already claimed"``, ``"pool paused"``, ``"deployment paused"``,
    ``"slots busy"`` or ``"not due"``.
    """

    won: bool
    run: FlowRun | None
    reason: str | None = None
    retry_after: float | None = None
    drop_message: bool = False


def claim_flow_run(
    stores: Stores, run_id: str, worker_id: str, *, now: datetime | None = None
) -> Claim:
    """Claim flow run ``run_id`` for ``worker_id`` (see the module docstring)."""
    settings = get_settings()
    try:
        run = stores.runs.read_flow_run(run_id)
    except NotFound:
        return Claim(False, None, "gone", drop_message=True)
    refusal = _refusal(stores, run, now)
    if refusal is not None:
        return refusal
    pool = _read_pool(stores, run.work_pool_name)
    deployment = _read_deployment(stores, run.deployment_id)
    if pool is not None and pool.paused:
        return Claim(False, run, "pool paused", retry_after=settings.paused_retry_seconds)
    if deployment is not None and deployment.paused:
        return Claim(False, run, "deployment paused", retry_after=settings.paused_retry_seconds)
    lease_id, busy = _take_slots(stores, run, pool, deployment, now)
    if busy:
        if deployment is not None and _cancel_new(stores, deployment):
            cancelled = _cancel(stores, run, "Deployment concurrency limit reached.", now)
            return Claim(False, cancelled, "slots busy", drop_message=True)
        return Claim(False, run, "slots busy", retry_after=settings.slots_retry_seconds)
    result = stores.runs.claim_flow_run(run.id, worker_id, lease_id=lease_id, now=now)
    if result.status == "ACCEPT":
        moment = now or utcnow()
        won = run.model_copy(
            update={
                "state": result.state,
                "state_version": result.state_version,
                "run_count": result.run_count,
                "worker_id": worker_id,
                "heartbeat_at": moment,
                "lease_id": lease_id,
            }
        )
        return Claim(True, won, None)
    if lease_id is not None:
        stores.concurrency.release(lease_id)
    # it changed since it was read: decide again on what it is now
    try:
        current = stores.runs.read_flow_run(run_id)
    except NotFound:
        return Claim(False, None, "gone", drop_message=True)
    refusal = _refusal(stores, current, now)
    if refusal is not None:
        return refusal
    return Claim(False, current, "already claimed", drop_message=True)


def _refusal(stores: Stores, run: FlowRun, now: datetime | None) -> Claim | None:
    """The claim's answer for a run that is not claimable as it is (None: it is)."""
    state = run.state.type
    if state is StateType.CANCELLED:
        return Claim(False, run, "cancelled", drop_message=True)
    if state in TERMINAL_TYPES:
        return Claim(False, run, "final", drop_message=True)
    if state is StateType.CANCELLING:
        ended = _cancel(stores, run, "Cancelled while waiting in the queue.", now)
        return Claim(False, ended, "cancelled", drop_message=True)
    if state in (StateType.RUNNING, StateType.PAUSED):
        return Claim(False, run, "already claimed", drop_message=True)
    if state is StateType.SCHEDULED:
        when = run.state.details.scheduled_time
        moment = now or utcnow()
        if when is not None and when > moment:
            return Claim(False, run, "not due", retry_after=(when - moment).total_seconds())
    return None


def _cancel(stores: Stores, run: FlowRun, message: str, now: datetime | None) -> FlowRun:
    """End the run CANCELLED (the rules decide; a lost race leaves what won) and free its lease."""
    stores.runs.set_state("flow_run", run.id, Cancelled(message=message), now=now)
    current = stores.runs.read_flow_run(run.id)
    if current.state.type in TERMINAL_TYPES:
        release_run_lease(stores, current)
    return current


def _read_pool(stores: Stores, name: str | None) -> WorkPool | None:
    if name is None:
        return None
    try:
        return stores.registry.read_work_pool(name)
    except NotFound:
        return None


def _read_deployment(stores: Stores, deployment_id: str | None) -> Deployment | None:
    if deployment_id is None:
        return None
    try:
        return stores.registry.read_deployment(deployment_id)
    except NotFound:
        return None


def _sync_limit(stores: Stores, name: str, limit: int) -> None:
    """Make the limit ``name`` exist with ``limit`` slots (created or updated as needed)."""
    try:
        current = stores.concurrency.read_limit(name)
    except NotFound:
        with contextlib.suppress(AlreadyExists):
            stores.concurrency.create_limit(ConcurrencyLimitCreate(name=name, limit=limit))
        return
    if current.limit != limit or not current.active:
        stores.concurrency.update_limit(name, ConcurrencyLimitUpdate(limit=limit, active=True))


def _limits(pool: WorkPool | None, deployment: Deployment | None) -> dict[str, int]:
    """The limits a run of ``pool`` and ``deployment`` takes a slot on, and their sizes."""
    limits: dict[str, int] = {}
    if pool is not None and pool.concurrency_limit is not None:
        limits[pool_limit_name(pool.name)] = pool.concurrency_limit
    if deployment is not None and deployment.concurrency_limit is not None:
        limits[deployment_limit_name(deployment.id)] = deployment.concurrency_limit
    return limits


def _take_slots(
    stores: Stores,
    run: FlowRun,
    pool: WorkPool | None,
    deployment: Deployment | None,
    now: datetime | None,
) -> tuple[str | None, bool]:
    """One lease on every limit of the run: ``(lease id or None, busy)``."""
    limits = _limits(pool, deployment)
    if not limits:
        return None, False
    for name, limit in limits.items():
        _sync_limit(stores, name, limit)
    lease_id = f"flow-run:{run.id}:{uuid.uuid4().hex[:12]}"
    try:
        lease = stores.concurrency.acquire(
            list(limits),
            lease_seconds=get_settings().heartbeat_timeout_seconds,
            holder=run.id,
            lease_id=lease_id,
            now=now,
            missing_ok=True,
        )
    except LimitExceeded:  # a limit of 0: nothing of it ever runs
        return None, True
    if lease is None:
        return None, True
    return (lease.id if lease.limit_names else None), False


def _cancel_new(stores: Stores, deployment: Deployment) -> bool:
    """True when the deployment says CANCEL_NEW and its own limit is the full one."""
    options = deployment.concurrency_options
    if deployment.concurrency_limit is None or options is None:
        return False
    if options.collision_strategy is not ConcurrencyLimitStrategy.CANCEL_NEW:
        return False
    if deployment.concurrency_limit == 0:
        return True
    try:
        limit = stores.concurrency.read_limit(deployment_limit_name(deployment.id))
    except NotFound:
        return False
    return limit.active_slots >= limit.limit


def renew_run_lease(stores: Stores, run: FlowRun, *, now: datetime | None = None) -> bool:
    """Keep the run's concurrency slots another ``heartbeat_timeout_seconds`` (the heartbeat's).

    False when the run holds no lease or its lease was already reclaimed.
    """
    if run.lease_id is None:
        return False
    try:
        stores.concurrency.renew(run.lease_id, get_settings().heartbeat_timeout_seconds, now=now)
    except NotFound:
        return False
    return True


def release_run_lease(stores: Stores, run: FlowRun) -> bool:
    """Give the run's concurrency slots back (idempotent; False when it held none)."""
    if run.lease_id is None:
        return False
    return stores.concurrency.release(run.lease_id)
