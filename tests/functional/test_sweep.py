"""The maintenance sweep against moto in-process: crashed workers, Late runs, leases.

Time is moved with ``now=``, never by sleeping. Expectations come from Prefect:
a run that stops heartbeating is marked Crashed (docs/v3/advanced/detect-zombie-flows.mdx),
a run still Scheduled ``after_seconds`` (15 s) past its start is renamed Late, keeping its
scheduled time (src/prefect/server/services/late_runs.py, MarkLateRuns), and ARCHITECTURE.md
("Crashes are detected"): leases released, retries re-enqueued as AwaitingRetry.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from runtime.models import (
    ConcurrencyLimitCreate,
    FlowRun,
    FlowRunCreate,
    RetryPolicy,
    WorkPoolCreate,
)
from runtime.services import claims, dispatch
from runtime.services.sweep import SweepReport, sweep
from runtime.states import Pending, Running, Scheduled, StateType, utcnow
from runtime.stores import Stores

T0 = utcnow().replace(microsecond=0) - timedelta(hours=1)
"""When the runs of a test were claimed: in the past, so that the sweeps' ``now`` is too."""
TIMEOUT = 30.0
POOL = "p"


@pytest.fixture
def pool(stores: Stores) -> str:
    """A work pool with its queue, at most 2 runs at once (so a claim takes a lease)."""
    stores.registry.create_work_pool(WorkPoolCreate(name=POOL, concurrency_limit=2))
    stores.queues.ensure_pool_queue(POOL)
    return POOL


def claimed_run(
    stores: Stores, pool: str, *, retries: int = 0, ago: float = 60, worker: str = "w1"
) -> FlowRun:
    """A run of ``pool`` sent to its queue, received and claimed by ``worker`` ``ago`` s ago.

    The claim writes the worker id, the first heartbeat and the pool's lease; the worker
    then dies: nothing heartbeats any more. (Runs sent to a queue are swept at the real
    time: the queue marker is written at the time of the send.)
    """
    at = utcnow() - timedelta(seconds=ago)
    run = stores.runs.create_flow_run(
        FlowRunCreate(
            flow_name="etl",
            work_pool_name=pool,
            state=Scheduled(scheduled_time=at),
            empirical_policy=RetryPolicy(retries=retries, retry_delay_seconds=0),
        )
    )
    dispatch.enqueue_flow_run(stores, run, now=at)
    [message] = stores.queues.receive(pool, wait_seconds=0, visibility_timeout=3600)
    assert message.body is not None and message.body.flow_run_id == run.id
    claim = claims.claim_flow_run(stores, run.id, worker, now=at)
    assert claim.won and claim.run is not None
    return claim.run


def queued_ids(stores: Stores, pool: str) -> list[str]:
    got = stores.queues.receive(pool, max_messages=10, wait_seconds=0, visibility_timeout=0)
    return [m.body.flow_run_id for m in got if m.body]


def running_run(
    stores: Stores, *, retries: int = 0, heartbeat: datetime | None = T0, at: datetime = T0
) -> FlowRun:
    """A run of no pool, RUNNING since ``at``, with a heartbeat at ``heartbeat`` (or none)."""
    run = stores.runs.create_flow_run(
        FlowRunCreate(
            flow_name="etl",
            state=Pending(),
            empirical_policy=RetryPolicy(retries=retries, retry_delay_seconds=0),
        )
    )
    result = stores.runs.set_state("flow_run", run.id, Running(), now=at)
    assert result.status == "ACCEPT"
    if heartbeat is not None:
        stores.db.update(
            stores.runs.table.name,
            {"id": run.id},
            "SET heartbeat_at = :hb",
            values={":hb": heartbeat.timestamp()},
        )
    return stores.runs.read_flow_run(run.id)


def swept_now(stores: Stores, timeout: float = TIMEOUT) -> SweepReport:
    """A sweep at the real time, with heartbeat ``timeout``."""
    return sweep(stores, heartbeat_timeout_seconds=timeout, late_after_seconds=15)


def swept(stores: Stores, seconds: float) -> SweepReport:
    return sweep(
        stores,
        now=T0 + timedelta(seconds=seconds),
        heartbeat_timeout_seconds=TIMEOUT,
        late_after_seconds=15,
    )


def test_expired_heartbeat_crashes_the_run_and_frees_its_leases(stores: Stores, pool: str) -> None:
    """No heartbeat for longer than the timeout: Crashed with a message saying so, slots back."""
    run = claimed_run(stores, pool, ago=20)  # its lease lasts 60 s: not expired yet
    limit = claims.pool_limit_name(pool)
    assert stores.concurrency.read_limit(limit).active_slots == 1

    assert swept_now(stores, timeout=600).crashed == 0  # still within that timeout
    report = swept_now(stores, timeout=10)

    crashed = stores.runs.read_flow_run(run.id)
    assert crashed.state.type is StateType.CRASHED
    assert crashed.state.message is not None and "heartbeat" in crashed.state.message
    assert (report.crashed, report.leases_released, report.retried) == (1, 1, 0)
    assert stores.concurrency.read_limit(limit).active_slots == 0
    assert not report.errors


def test_a_heartbeat_that_lands_first_wins(stores: Stores, pool: str) -> None:
    """The worker's heartbeat (RunStore.heartbeat) keeps its run alive past the first timeout."""
    run = claimed_run(stores, pool, ago=60)
    assert stores.runs.heartbeat(run.id, "w1", now=utcnow() - timedelta(seconds=10))
    assert swept_now(stores, timeout=30).crashed == 0
    assert stores.runs.read_flow_run(run.id).state.type is StateType.RUNNING
    assert swept_now(stores, timeout=5).crashed == 1  # older than that: crashed


def test_a_fresh_heartbeat_keeps_the_run_running(stores: Stores) -> None:
    """The heartbeat is what counts, not the start time: a run beating recently is alive."""
    run = running_run(stores, heartbeat=T0 + timedelta(seconds=100))
    report = swept(stores, 110)
    assert report.crashed == 0
    assert stores.runs.read_flow_run(run.id).state.type is StateType.RUNNING


def test_runs_without_a_heartbeat_are_never_crashed(stores: Stores) -> None:
    """A flow called in a process (no worker, no heartbeat) is not the sweep's to judge."""
    run = running_run(stores, heartbeat=None)
    assert swept(stores, 3600).crashed == 0
    assert stores.runs.read_flow_run(run.id).state.type is StateType.RUNNING


def test_crashed_run_with_retries_left_awaits_retry_back_in_the_queue(
    stores: Stores, pool: str
) -> None:
    """A flow with retries: Crashed, then AwaitingRetry, and its message is in the queue again."""
    run = claimed_run(stores, pool, retries=1)
    report = swept_now(stores)
    assert (report.crashed, report.retried, report.requeued) == (1, 1, 1)
    current = stores.runs.read_flow_run(run.id)
    names = [s.name for s in stores.runs.read_state_history(run.id)]
    assert names[-3:] == ["Crashed", "AwaitingRetry", "Pending"]  # due at once: sent
    assert current.state.type is StateType.PENDING and dispatch.is_queued(current)
    assert queued_ids(stores, pool) == [run.id]
    # a second worker claims the retry (Retrying: its second run)
    retry = claims.claim_flow_run(stores, run.id, "w2")
    assert retry.won and retry.run is not None and retry.run.state.name == "Retrying"


def test_crashed_run_without_retries_left_stays_crashed(stores: Stores, pool: str) -> None:
    run = claimed_run(stores, pool, retries=1)
    swept_now(stores)
    assert queued_ids(stores, pool) == [run.id]
    assert claims.claim_flow_run(stores, run.id, "w2").won  # attempt 2 of 2
    report = swept_now(stores, timeout=0.001)
    assert (report.crashed, report.retried) == (1, 0)
    assert stores.runs.read_flow_run(run.id).state.type is StateType.CRASHED


def test_cancelling_run_whose_worker_died_ends_cancelled(stores: Stores) -> None:
    """Nobody is left to stop a Cancelling run whose worker died: it ends Cancelled."""
    run = running_run(stores)
    stores.runs.cancel_flow_run(run.id, now=T0)
    report = swept(stores, TIMEOUT + 1)
    assert (report.cancelled, report.crashed) == (1, 0)
    assert stores.runs.read_flow_run(run.id).state.type is StateType.CANCELLED


def test_a_second_sweep_changes_nothing(stores: Stores, pool: str) -> None:
    """Idempotent: sweeping again finds nothing more to do."""
    claimed_run(stores, pool, retries=1)
    running_run(stores)
    now = utcnow()  # the runs were claimed an hour or a minute ago
    stores.runs.create_flow_run(
        FlowRunCreate(flow_name="etl", state=Scheduled(scheduled_time=now - timedelta(seconds=60)))
    )
    later = now + timedelta(seconds=20)
    first = sweep(stores, now=later, heartbeat_timeout_seconds=TIMEOUT, late_after_seconds=15)
    second = sweep(stores, now=later, heartbeat_timeout_seconds=TIMEOUT, late_after_seconds=15)
    assert (first.crashed, first.retried, first.late) == (2, 1, 1), first
    assert second.changed() == 0, second


def test_scheduled_run_past_its_start_becomes_late(stores: Stores) -> None:
    """Past the grace period: renamed Late, still SCHEDULED, same scheduled time."""
    base = utcnow()
    start = base - timedelta(seconds=20)
    late = stores.runs.create_flow_run(
        FlowRunCreate(flow_name="etl", state=Scheduled(scheduled_time=start))
    )
    on_time = stores.runs.create_flow_run(
        FlowRunCreate(flow_name="etl", state=Scheduled(scheduled_time=base + timedelta(seconds=5)))
    )
    # late's start is 36 s before the sweep, on_time's 11 s (< 15 s)
    report = sweep(stores, now=base + timedelta(seconds=16), late_after_seconds=15)

    assert report.late == 1
    marked = stores.runs.read_flow_run(late.id)
    assert (marked.state.type, marked.state.name) == (StateType.SCHEDULED, "Late")
    assert marked.state.details.scheduled_time == start
    assert stores.runs.read_flow_run(on_time.id).state.name == "Scheduled"


def test_expired_leases_are_reclaimed(stores: Stores) -> None:
    """A lease nobody renewed is given back by the sweep (the concurrency store's sweep)."""
    stores.concurrency.create_limit(ConcurrencyLimitCreate(name="tag:db", limit=2))
    assert stores.concurrency.acquire(["tag:db"], lease_seconds=10, now=T0) is not None
    report = swept(stores, 11)
    assert report.leases_reclaimed == 1
    assert stores.concurrency.read_limit("tag:db").active_slots == 0


class LambdaContext:
    """The parts of a Lambda context Powertools reads."""

    function_name = "stratoflow-maintenance"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:stratoflow-maintenance"
    aws_request_id = "7d1b7e4b-0f4d-4b8a-9d53-000000000002"


def test_lambda_handler_sweeps_and_returns_the_report(
    stores: Stores, capsys: pytest.CaptureFixture[str]
) -> None:
    """The EventBridge-scheduled handler runs the same sweep and answers its counts."""
    from handlers.deps import set_stores
    from handlers.maintenance import lambda_handler

    an_hour_ago = utcnow() - timedelta(hours=1)
    run = running_run(stores, heartbeat=an_hour_ago, at=an_hour_ago)
    event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    set_stores(stores)
    try:
        report = lambda_handler(event, LambdaContext())
    finally:
        set_stores(None)
    assert report["crashed"] == 1 and report["errors"] == []
    assert stores.runs.read_flow_run(run.id).state.type is StateType.CRASHED
    assert '"RunsCrashed"' in capsys.readouterr().out  # the EMF metrics line


def test_run_whose_message_reached_the_dlq_is_crashed_with_the_reason(
    stores: Stores, pool: str
) -> None:
    """Received max_receive_count times, never claimed (workers died first): Crashed, DLQ empty."""
    run = stores.runs.create_flow_run(
        FlowRunCreate(flow_name="etl", work_pool_name=pool, state=Scheduled())
    )
    dispatch.enqueue_flow_run(stores, run)
    for _ in range(stores.queues.max_receive_count):
        got = stores.queues.receive(pool, wait_seconds=0, visibility_timeout=0)
        assert [m.body.flow_run_id for m in got if m.body] == [run.id]
    assert stores.queues.receive(pool, wait_seconds=0) == []  # SQS moved it to the DLQ

    report = swept_now(stores)

    assert report.dead_lettered == 1
    crashed = stores.runs.read_flow_run(run.id)
    assert crashed.state.type is StateType.CRASHED
    assert crashed.state.message is not None and "dead-letter queue" in crashed.state.message
    assert stores.queues.receive_dead_letters(pool) == []
    assert swept_now(stores).dead_lettered == 0


def test_a_dead_letter_of_a_started_run_is_dropped_and_the_run_kept(
    stores: Stores, pool: str
) -> None:
    """A run that did start (or ended) is not the DLQ's to judge: only the message goes."""
    run = claimed_run(stores, pool, ago=1)
    stores.queues.send(pool, dispatch.run_message(run))
    for _ in range(stores.queues.max_receive_count):
        stores.queues.receive(pool, wait_seconds=0, visibility_timeout=0)
    stores.queues.receive(pool, wait_seconds=0)
    report = swept_now(stores, timeout=600)
    assert report.dead_lettered == 0
    assert stores.runs.read_flow_run(run.id).state.type is StateType.RUNNING
    assert stores.queues.receive_dead_letters(pool) == []


def test_a_late_run_already_in_the_queue_is_not_sent_again(stores: Stores, pool: str) -> None:
    """Sent with a delay, nobody took it: Late, and the queue still holds exactly one message."""
    start = utcnow() + timedelta(seconds=1)
    run = stores.runs.create_flow_run(
        FlowRunCreate(flow_name="etl", work_pool_name=pool, state=Scheduled(scheduled_time=start))
    )
    assert dispatch.is_queued(dispatch.enqueue_flow_run(stores, run))  # 1 s delay
    report = sweep(stores, now=start + timedelta(seconds=16), late_after_seconds=15)
    late = stores.runs.read_flow_run(run.id)
    assert report.late == 1 and late.state.name == "Late" and dispatch.is_queued(late)
    assert report.enqueued == 0
    depth = stores.queues.depth(pool)
    assert depth.visible + depth.delayed == 1


def test_a_heartbeat_landing_between_the_sweeps_read_and_write_wins(
    stores: Stores, pool: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crash is conditioned on the heartbeat still being old, not only on the version:
    a heartbeat does not bump the version, yet one that lands after the sweep read the run
    keeps it running."""
    run = claimed_run(stores, pool, ago=60)
    original = stores.runs.set_state_if_unchanged

    def beat_first(*args: Any, **kwargs: Any) -> Any:
        assert stores.runs.heartbeat(run.id, "w1")  # the worker was only slow
        return original(*args, **kwargs)

    monkeypatch.setattr(stores.runs, "set_state_if_unchanged", beat_first)
    report = swept_now(stores, timeout=30)
    assert report.crashed == 0
    assert stores.runs.read_flow_run(run.id).state.type is StateType.RUNNING
