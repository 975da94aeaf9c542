"""The maintenance sweep against moto in-process: crashed workers, Late runs, leases.

Time is moved with ``now=``, never by sleeping. Expectations come from Prefect:
a run that stops heartbeating is marked Crashed (docs/v3/advanced/detect-zombie-flows.mdx),
a run still Scheduled ``after_seconds`` (15 s) past its start is renamed Late, keeping its
scheduled time (src/prefect/server/services/late_runs.py, MarkLateRuns), and ARCHITECTURE.md
("Crashes are detected"): leases released, retries re-enqueued as AwaitingRetry.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from runtime.models import ConcurrencyLimitCreate, FlowRun, FlowRunCreate, RetryPolicy
from runtime.services.sweep import SweepReport, sweep
from runtime.states import Pending, Running, Scheduled, StateType, utcnow
from runtime.stores import Stores

T0 = utcnow().replace(microsecond=0)
TIMEOUT = 30.0


def running_run(
    stores: Stores, *, retries: int = 0, heartbeat: datetime | None = T0, at: datetime = T0
) -> FlowRun:
    """A flow run claimed by a worker at ``at`` (RUNNING, with a heartbeat at ``heartbeat``)."""
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


def hold_slot(stores: Stores, limit: str, holder: str) -> None:
    stores.concurrency.create_limit(ConcurrencyLimitCreate(name=limit, limit=1))
    lease = stores.concurrency.acquire([limit], lease_seconds=3600, holder=holder, now=T0)
    assert lease is not None


def swept(stores: Stores, seconds: float) -> SweepReport:
    return sweep(
        stores,
        now=T0 + timedelta(seconds=seconds),
        heartbeat_timeout_seconds=TIMEOUT,
        late_after_seconds=15,
    )


def test_expired_heartbeat_crashes_the_run_and_frees_its_leases(stores: Stores) -> None:
    """No heartbeat for longer than the timeout: Crashed with a message saying so, slots back."""
    run = running_run(stores)
    hold_slot(stores, "pool:default", holder=run.id)

    assert swept(stores, TIMEOUT - 1).crashed == 0  # still within the timeout
    report = swept(stores, TIMEOUT + 1)

    crashed = stores.runs.read_flow_run(run.id)
    assert crashed.state.type is StateType.CRASHED
    assert crashed.state.message is not None and "heartbeat" in crashed.state.message
    assert (report.crashed, report.leases_released, report.retried) == (1, 1, 0)
    assert stores.concurrency.read_limit("pool:default").active_slots == 0
    assert not report.errors


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


def test_crashed_run_with_retries_left_awaits_retry(stores: Stores) -> None:
    """A flow with retries: Crashed, then AwaitingRetry (history shows both)."""
    run = running_run(stores, retries=1)
    report = swept(stores, TIMEOUT + 1)
    assert (report.crashed, report.retried) == (1, 1)
    current = stores.runs.read_flow_run(run.id)
    assert (current.state.type, current.state.name) == (StateType.SCHEDULED, "AwaitingRetry")
    names = [s.name for s in stores.runs.read_state_history(run.id)]
    assert names[-2:] == ["Crashed", "AwaitingRetry"]


def test_cancelling_run_whose_worker_died_ends_cancelled(stores: Stores) -> None:
    """Nobody is left to stop a Cancelling run whose worker died: it ends Cancelled."""
    run = running_run(stores)
    stores.runs.cancel_flow_run(run.id, now=T0)
    report = swept(stores, TIMEOUT + 1)
    assert (report.cancelled, report.crashed) == (1, 0)
    assert stores.runs.read_flow_run(run.id).state.type is StateType.CANCELLED


def test_a_second_sweep_changes_nothing(stores: Stores) -> None:
    """Idempotent: sweeping again finds nothing more to do."""
    running_run(stores, retries=1)
    stores.runs.create_flow_run(
        FlowRunCreate(flow_name="etl", state=Scheduled(scheduled_time=T0 - timedelta(seconds=60)))
    )  # created seconds after T0: the sweeps below run 15 s or more after it
    first = swept(stores, TIMEOUT + 60)
    second = swept(stores, TIMEOUT + 60)
    assert (first.crashed, first.retried, first.late) == (1, 1, 1)
    assert second.changed() == 0


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
