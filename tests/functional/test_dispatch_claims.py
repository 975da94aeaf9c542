"""Enqueueing flow runs on their pool's queue and claiming them (moto in-process).

The oracle is Prefect 3's orchestration: a run enters PENDING once
(``PreventPendingTransitions``), only one party starts it
(``PreventDuplicateClaims``), and a deployment's concurrency limit either makes
the run wait (ENQUEUE) or cancels it (CANCEL_NEW) — src/prefect/server/
orchestration/core_policy.py (``SecureFlowConcurrencySlots``) and
docs/v3/concepts/deployments.mdx ("concurrency_limit", "collision_strategy").
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from runtime.errors import InvalidInput
from runtime.models import (
    ConcurrencyLimitStrategy,
    ConcurrencyOptions,
    Deployment,
    DeploymentCreate,
    FlowRun,
    FlowRunCreate,
    WorkPoolCreate,
    WorkPoolUpdate,
)
from runtime.services import claims, dispatch
from runtime.settings import get_settings
from runtime.states import Cancelling, Scheduled, StateType, utcnow
from runtime.stores import Stores


@pytest.fixture
def pool(stores: Stores) -> str:
    stores.registry.create_work_pool(WorkPoolCreate(name="p"))
    stores.queues.ensure_pool_queue("p")
    return "p"


def deployment(stores: Stores, pool: str, **fields: object) -> Deployment:
    request = DeploymentCreate(name="d", flow_name="f", work_pool_name=pool, **fields)  # type: ignore[arg-type]
    return stores.registry.upsert_deployment(request)[0]


def scheduled_run(
    stores: Stores, pool: str | None, dep: Deployment | None = None, *, ahead: float = 0
) -> FlowRun:
    return stores.runs.create_flow_run(
        FlowRunCreate(
            flow_name="f",
            work_pool_name=pool,
            deployment_id=dep.id if dep else None,
            state=Scheduled(scheduled_time=utcnow() + timedelta(seconds=ahead)),
        )
    )


def queued_ids(stores: Stores, pool: str) -> list[str]:
    got = stores.queues.receive(pool, max_messages=10, wait_seconds=0, visibility_timeout=0)
    return [m.body.flow_run_id for m in got if m.body]


# ----------------------------------------------------------------------------- enqueue


def test_a_due_run_becomes_pending_and_is_sent_once(stores: Stores, pool: str) -> None:
    run = scheduled_run(stores, pool)
    queued = dispatch.enqueue_flow_run(stores, run.id)
    assert queued.state.type is StateType.PENDING and queued.enqueued_at is not None
    stored = stores.runs.read_flow_run(run.id)
    assert stored.state.type is StateType.PENDING and dispatch.is_queued(stored)
    again = dispatch.enqueue_flow_run(stores, stored)
    assert again.state_version == stored.state_version
    assert stores.queues.depth(pool).visible == 1  # the repeat sent nothing
    assert queued_ids(stores, pool) == [run.id]


def test_a_run_due_within_15_minutes_is_sent_with_a_delay(stores: Stores, pool: str) -> None:
    run = scheduled_run(stores, pool, ahead=120)
    queued = dispatch.enqueue_flow_run(stores, run)
    assert queued.state.type is StateType.SCHEDULED and dispatch.is_queued(queued)
    assert dispatch.is_queued(stores.runs.read_flow_run(run.id))
    dispatch.enqueue_flow_run(stores, run.id)
    depth = stores.queues.depth(pool)
    assert (depth.visible, depth.delayed) == (0, 1)


def test_a_run_further_ahead_waits_for_the_sweep(stores: Stores, pool: str) -> None:
    run = scheduled_run(stores, pool, ahead=3600)
    left = dispatch.enqueue_flow_run(stores, run.id)
    assert left.enqueued_at is None and stores.queues.depth(pool).delayed == 0
    assert dispatch.enqueue_due_runs(stores) == []
    later = utcnow() + timedelta(minutes=50)  # 10 minutes before its start
    sent = dispatch.enqueue_due_runs(stores, later)
    assert [r.id for r in sent] == [run.id]
    assert dispatch.enqueue_due_runs(stores, later) == []  # idempotent
    assert stores.queues.depth(pool).delayed + stores.queues.depth(pool).visible == 1


def test_the_sweep_resends_a_pending_run_whose_sender_died(stores: Stores, pool: str) -> None:
    run = scheduled_run(stores, pool)
    from runtime.states import Pending

    stores.runs.set_state("flow_run", run.id, Pending())  # moved, never sent
    assert dispatch.enqueue_due_runs(stores) == []  # too recent: maybe still being sent
    sent = dispatch.enqueue_due_runs(stores, utcnow() + timedelta(minutes=2))
    assert [r.id for r in sent] == [run.id] and queued_ids(stores, pool) == [run.id]


def test_a_run_without_a_pool_cannot_be_enqueued(stores: Stores) -> None:
    run = scheduled_run(stores, None)
    with pytest.raises(InvalidInput, match="no work pool") as err:
        dispatch.enqueue_flow_run(stores, run.id)
    assert err.value.details["field"] == "work_pool_name"
    assert stores.runs.read_flow_run(run.id).state.type is StateType.SCHEDULED


def test_defer_releases_then_requeues_before_the_dlq(stores: Stores, pool: str) -> None:
    run = scheduled_run(stores, pool)
    dispatch.enqueue_flow_run(stores, run.id)
    limit = stores.queues.max_receive_count
    for count in range(1, limit + 2):
        got = stores.queues.receive(pool, wait_seconds=0, visibility_timeout=30)
        assert len(got) == 1, f"lost at receive {count}"
        assert got[0].receive_count <= limit - 1
        dispatch.defer_message(stores, pool, got[0], 0)
    assert stores.queues.depth(pool).dead_letters == 0


# ----------------------------------------------------------------------------- claims


def pending_run(stores: Stores, pool: str, dep: Deployment | None = None) -> FlowRun:
    return dispatch.enqueue_flow_run(stores, scheduled_run(stores, pool, dep))


def test_one_claim_wins_and_records_the_worker(stores: Stores, pool: str) -> None:
    run = pending_run(stores, pool)
    won = claims.claim_flow_run(stores, run.id, "w1")
    assert won.won and won.run is not None and won.run.state.type is StateType.RUNNING
    stored = stores.runs.read_flow_run(run.id)
    assert stored.worker_id == "w1" and stored.heartbeat_at is not None
    assert stored.state_version == won.run.state_version
    lost = claims.claim_flow_run(stores, run.id, "w2")
    assert (lost.won, lost.reason, lost.drop_message) == (False, "already claimed", True)
    assert stores.runs.read_flow_run(run.id).worker_id == "w1"


def test_heartbeat_is_conditional_on_the_worker(stores: Stores, pool: str) -> None:
    run = pending_run(stores, pool)
    assert not stores.runs.heartbeat(run.id, "w1")  # not claimed yet
    claims.claim_flow_run(stores, run.id, "w1")
    later = utcnow() + timedelta(seconds=30)
    assert stores.runs.heartbeat(run.id, "w1", now=later)
    assert stores.runs.read_flow_run(run.id).heartbeat_at == later
    assert not stores.runs.heartbeat(run.id, "w2")
    assert stores.runs.read_flow_run(run.id).heartbeat_at == later
    listed = stores.runs.list_flow_runs().items
    assert [r.heartbeat_at for r in listed] == [later]


def test_a_due_scheduled_run_can_be_claimed_a_future_one_not(stores: Stores, pool: str) -> None:
    due = scheduled_run(stores, pool)
    assert claims.claim_flow_run(stores, due.id, "w").won
    ahead = scheduled_run(stores, pool, ahead=60)
    early = claims.claim_flow_run(stores, ahead.id, "w")
    assert (early.won, early.reason, early.drop_message) == (False, "not due", False)
    assert early.retry_after is not None and 0 < early.retry_after <= 60


def test_final_cancelled_cancelling_and_gone_runs_drop_the_message(
    stores: Stores, pool: str
) -> None:
    gone = claims.claim_flow_run(stores, "no-such-run", "w")
    assert (gone.reason, gone.drop_message) == ("gone", True)
    cancelled = pending_run(stores, pool)
    stores.runs.cancel_flow_run(cancelled.id)
    got = claims.claim_flow_run(stores, cancelled.id, "w")
    assert (got.won, got.reason, got.drop_message) == (False, "cancelled", True)
    cancelling = pending_run(stores, pool)
    stores.runs.set_state("flow_run", cancelling.id, Cancelling(), force=True)
    got = claims.claim_flow_run(stores, cancelling.id, "w")
    assert (got.reason, got.drop_message) == ("cancelled", True)
    assert stores.runs.read_flow_run(cancelling.id).state.type is StateType.CANCELLED


def test_a_paused_pool_keeps_its_runs_until_resumed(stores: Stores, pool: str) -> None:
    run = pending_run(stores, pool)
    stores.registry.pause_work_pool(pool)
    held = claims.claim_flow_run(stores, run.id, "w")
    assert (held.won, held.reason, held.drop_message) == (False, "pool paused", False)
    assert held.retry_after == get_settings().paused_retry_seconds
    assert stores.runs.read_flow_run(run.id).state.type is StateType.PENDING
    stores.registry.resume_work_pool(pool)
    assert claims.claim_flow_run(stores, run.id, "w").won


def test_a_paused_deployment_keeps_its_runs(stores: Stores, pool: str) -> None:
    dep = deployment(stores, pool, paused=True)
    run = pending_run(stores, pool, dep)
    held = claims.claim_flow_run(stores, run.id, "w")
    assert (held.won, held.reason) == (False, "deployment paused")
    assert stores.runs.read_flow_run(run.id).state.type is StateType.PENDING


def test_a_pool_limit_is_a_lease_taken_at_claim(stores: Stores, pool: str) -> None:
    stores.registry.update_work_pool(pool, WorkPoolUpdate(concurrency_limit=1))
    first, second = pending_run(stores, pool), pending_run(stores, pool)
    won = claims.claim_flow_run(stores, first.id, "w")
    assert won.won and won.run is not None and won.run.lease_id is not None
    limit = stores.concurrency.read_limit(claims.pool_limit_name(pool))
    assert (limit.limit, limit.active_slots) == (1, 1)
    assert stores.concurrency.read_lease(won.run.lease_id).holder == first.id
    busy = claims.claim_flow_run(stores, second.id, "w")
    assert (busy.won, busy.reason, busy.drop_message) == (False, "slots busy", False)
    assert busy.retry_after == get_settings().slots_retry_seconds
    assert stores.runs.read_flow_run(second.id).state.type is StateType.PENDING
    assert claims.renew_run_lease(stores, won.run)
    assert claims.release_run_lease(stores, won.run)
    assert claims.claim_flow_run(stores, second.id, "w").won


def test_deployment_limit_cancel_new_cancels_the_second_run(stores: Stores, pool: str) -> None:
    options = ConcurrencyOptions(collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)
    dep = deployment(stores, pool, concurrency_limit=1, concurrency_options=options)
    first, second = pending_run(stores, pool, dep), pending_run(stores, pool, dep)
    assert claims.claim_flow_run(stores, first.id, "w").won
    got = claims.claim_flow_run(stores, second.id, "w")
    assert (got.won, got.reason, got.drop_message) == (False, "slots busy", True)
    ended = stores.runs.read_flow_run(second.id)
    assert ended.state.type is StateType.CANCELLED
    assert ended.state.message == "Deployment concurrency limit reached."


def test_deployment_limit_enqueue_is_the_default(stores: Stores, pool: str) -> None:
    dep = deployment(stores, pool, concurrency_limit=1)
    first, second = pending_run(stores, pool, dep), pending_run(stores, pool, dep)
    assert claims.claim_flow_run(stores, first.id, "w").won
    got = claims.claim_flow_run(stores, second.id, "w")
    assert (got.won, got.reason, got.drop_message) == (False, "slots busy", False)
    assert stores.runs.read_flow_run(second.id).state.type is StateType.PENDING


def test_a_claim_of_a_running_run_takes_no_slot(stores: Stores, pool: str) -> None:
    stores.registry.update_work_pool(pool, WorkPoolUpdate(concurrency_limit=5))
    run = pending_run(stores, pool)
    assert claims.claim_flow_run(stores, run.id, "w1").won
    # a second claim on a RUNNING run is refused before it takes a slot
    assert not claims.claim_flow_run(stores, run.id, "w2").won
    limit = stores.concurrency.read_limit(claims.pool_limit_name(pool))
    assert limit.active_slots == 1
