"""Sweeps at once change each run once: threads against the locked moto server (real HTTP).

ARCHITECTURE.md ("State is changed only by conditional writes", "Crashes are detected")
and issue 10, item 6: "Idempotent: two sweeps at once change nothing twice". Each racer
has its own connection (boto3 clients), like two Lambda invocations of the maintenance
handler that EventBridge fired close together.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

from runtime.models import FlowRunCreate, RetryPolicy, WorkPoolCreate
from runtime.services import claims, dispatch
from runtime.services.sweep import SweepReport, sweep
from runtime.states import Scheduled, StateType, utcnow
from runtime.stores import Stores

RACERS = 4
POOL = "racy"


def test_concurrent_sweeps_crash_retry_and_mark_late_each_run_once(
    stores: Stores, prefix: str
) -> None:
    stores.registry.create_work_pool(WorkPoolCreate(name=POOL, concurrency_limit=20))
    stores.queues.ensure_pool_queue(POOL)
    claimed_at = utcnow() - timedelta(seconds=30)
    stale: dict[str, int] = {}
    for index in range(8):
        retries = index % 2  # half of them may retry once
        run = stores.runs.create_flow_run(
            FlowRunCreate(
                flow_name="etl",
                work_pool_name=POOL,
                state=Scheduled(scheduled_time=claimed_at),
                empirical_policy=RetryPolicy(retries=retries),
            )
        )
        dispatch.enqueue_flow_run(stores, run, now=claimed_at)
        assert claims.claim_flow_run(stores, run.id, f"dead-worker-{index}", now=claimed_at).won
        stale[run.id] = retries
    # their messages were taken by the workers that died (no longer visible)
    stores.queues.receive(POOL, max_messages=10, wait_seconds=0, visibility_timeout=3600)
    late = [
        stores.runs.create_flow_run(
            FlowRunCreate(flow_name="etl", state=Scheduled(scheduled_time=claimed_at))
        ).id
        for _ in range(4)
    ]

    barrier = threading.Barrier(RACERS)
    reports: list[SweepReport] = []
    failures: list[BaseException] = []
    sweep_at = utcnow() + timedelta(seconds=16)  # every late run is 15 s past its creation

    def racer() -> None:
        own = Stores.connect(prefix)  # own clients, as another invocation
        barrier.wait()
        try:
            reports.append(
                sweep(own, now=sweep_at, heartbeat_timeout_seconds=10, late_after_seconds=15)
            )
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=racer) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert len(reports) == RACERS and not any(r.errors for r in reports), reports

    total = Counter[str]()
    for report in reports:
        total.update({k: v for k, v in report.as_dict().items() if isinstance(v, int)})
    with_retries = [run_id for run_id, retries in stale.items() if retries]
    assert total["crashed"] == len(stale)
    assert total["retried"] == len(with_retries)
    assert total["late"] == len(late)
    assert total["leases_released"] == len(stale)
    assert stores.concurrency.read_limit(claims.pool_limit_name(POOL)).active_slots == 0

    for run_id, retries in stale.items():
        names = [s.name for s in stores.runs.read_state_history(run_id)]
        assert names.count("Crashed") == 1, names
        assert names.count("AwaitingRetry") == retries, names
        state = stores.runs.read_flow_run(run_id).state
        if not retries:
            assert state.type is StateType.CRASHED
    for run_id in late:
        names = [s.name for s in stores.runs.read_state_history(run_id)]
        assert names == ["Scheduled", "Late"], names

    # the retried runs are back in the queue, once each (whoever sent them)
    queued: list[str] = []
    while True:
        got = stores.queues.receive(POOL, max_messages=10, wait_seconds=0, visibility_timeout=60)
        if not got:
            break
        queued += [m.body.flow_run_id for m in got if m.body]
    assert sorted(queued) == sorted(with_retries)
