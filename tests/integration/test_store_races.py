"""The stores under real concurrency, over real HTTP, against the session's moto server.

The server is :class:`runtime.localaws.LockedMotoServer` on 127.0.0.1 (random
port), whose DynamoDB requests are serialized as real DynamoDB applies
conditional writes atomically (see docs/data-model.md, "Atomicity of the local
backends"). Every racer has its own boto3 client, like separate workers. Run
with ``-s`` to read the figures each test prints.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runtime.models import ConcurrencyLimitCreate, FlowRunCreate, OrchestrationResult
from runtime.states import Running, StateType, utcnow
from runtime.stores import Stores
from runtime.stores.dynamo import ConditionFailed, Dynamo
from tests.conftest import Backend

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fast_thread_switching() -> Iterator[None]:
    """Switch threads every 100 us (default 5 ms) while the test runs.

    The session's moto server runs in this process and shares its GIL with the
    racers: with 32 busy client threads at the default interval, every request
    the server handles waits in a GIL convoy (hundreds of ms). A short interval
    keeps the server responsive and interleaves the racers more finely.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(previous)


def connect(prefix: str) -> Stores:
    """A separate connection (own boto3 client and pool) to the test's installation."""
    return Stores.connect(prefix)


class CountLostWrites:
    """Counts conditional updates that lost (ConditionFailed) on one Dynamo instance."""

    def __init__(self, db: Dynamo) -> None:
        self.lost = 0
        self._lock = threading.Lock()
        self._update = db.update
        db.update = self  # type: ignore[method-assign]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._update(*args, **kwargs)
        except ConditionFailed:
            with self._lock:
                self.lost += 1
            raise


# ============================================================================ (a) one winner


def race_claims(racers: list[Stores], run_id: str) -> list[OrchestrationResult | BaseException]:
    """Every racer proposes Running for the run at once (released by a barrier)."""
    barrier = threading.Barrier(len(racers))
    results: list[OrchestrationResult | BaseException] = []
    results_lock = threading.Lock()

    def claim(racer: Stores) -> None:
        barrier.wait(timeout=30)
        outcome: OrchestrationResult | BaseException
        try:
            outcome = racer.runs.set_state("flow_run", run_id, Running())
        except BaseException as exc:  # recorded, asserted by the caller
            outcome = exc
        with results_lock:
            results.append(outcome)

    pool = [threading.Thread(target=claim, args=(r,)) for r in racers]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=60)
    return results


def test_racing_claims_have_exactly_one_winner(
    aws_backend: Backend, stores: Stores, prefix: str, fast_thread_switching: None
) -> None:
    threads, runs = 16, 10
    racers = [connect(prefix) for _ in range(threads)]
    counters = [CountLostWrites(r.db) for r in racers]
    attempts = 0
    winners = 0
    lost_writes = 0

    for n in range(runs):
        run = stores.runs.create_flow_run(FlowRunCreate(flow_name="race", name=f"race-{n}"))
        before = sum(c.lost for c in counters)
        results = race_claims(racers, run.id)

        assert len(results) == threads, f"run {n}: some racers never finished"
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"run {n}: {errors!r}"
        done = [r for r in results if isinstance(r, OrchestrationResult)]
        statuses = Counter(r.status for r in done)
        assert statuses == {"ACCEPT": 1, "REJECT": threads - 1}, f"run {n}: {statuses}"
        for rejected in (r for r in done if r.status == "REJECT"):
            assert rejected.state.type is StateType.RUNNING
            assert rejected.reason and "RUNNING" in rejected.reason
            assert rejected.state_version == 1

        stored = stores.runs.read_flow_run(run.id)
        assert stored.state.type is StateType.RUNNING
        assert (stored.state_version, stored.run_count) == (1, 1)
        assert [s.name for s in stores.runs.read_state_history(run.id)] == ["Pending", "Running"]

        attempts += len(done)
        winners += statuses["ACCEPT"]
        lost_writes += sum(c.lost for c in counters) - before

    print(
        f"\n[race a] {runs} runs x {threads} threads: attempts={attempts} winners={winners} "
        f"rejected={attempts - winners} (of which {lost_writes} lost the conditional write "
        f"and were re-decided on the current item)"
    )
    assert winners == runs


# ============================================================================ (b) slots


def test_slots_never_exceed_the_limit_under_contention(
    aws_backend: Backend, stores: Stores, prefix: str, fast_thread_switching: None
) -> None:
    threads, limit, duration, max_rounds = 32, 5, 3.0, 400
    name = "tag:race"
    stores.concurrency.create_limit(ConcurrencyLimitCreate(name=name, limit=limit))
    racers = [connect(prefix) for _ in range(threads)]
    monitor_store = connect(prefix)

    held = 0
    max_held = 0
    held_lock = threading.Lock()
    acquisitions = 0
    full = 0
    failed_releases = 0
    errors: list[BaseException] = []
    samples: list[int] = []
    stop = threading.Event()
    barrier = threading.Barrier(threads + 1)
    deadline = time.monotonic() + duration

    def worker(racer: Stores) -> None:
        nonlocal held, max_held, acquisitions, full, failed_releases
        barrier.wait(timeout=30)
        try:
            for _ in range(max_rounds):
                if time.monotonic() >= deadline:
                    return
                lease = racer.concurrency.acquire([name], 1, lease_seconds=60)
                if lease is None:
                    with held_lock:
                        full += 1
                    time.sleep(0.02)  # back off a little; correctness does not depend on it
                    continue
                with held_lock:
                    held += 1
                    acquisitions += 1
                    max_held = max(max_held, held)
                time.sleep(0.05)  # hold the slot a while: others find the limit full
                with held_lock:
                    held -= 1
                if not racer.concurrency.release(lease.id):
                    with held_lock:
                        failed_releases += 1
        except BaseException as exc:
            errors.append(exc)

    def monitor() -> None:
        barrier.wait(timeout=30)
        while not stop.is_set() and len(samples) < 100_000:
            samples.append(monitor_store.concurrency.read_limit(name).active_slots)

    pool = [threading.Thread(target=worker, args=(r,)) for r in racers]
    watcher = threading.Thread(target=monitor)
    for thread in [*pool, watcher]:
        thread.start()
    for thread in pool:
        thread.join(timeout=duration + 120)
    stop.set()
    watcher.join(timeout=30)

    final = stores.concurrency.read_limit(name)
    leftover = stores.concurrency.expired_leases(now=utcnow() + timedelta(days=1))
    print(
        f"\n[race b] {threads} threads, limit {limit}, {duration:.0f}s: "
        f"acquisitions={acquisitions} full={full} max_held={max_held} "
        f"max_active_sampled={max(samples, default=0)} samples={len(samples)} "
        f"final_active={final.active_slots} failed_releases={failed_releases}"
    )
    assert not errors, errors
    assert acquisitions > 0 and samples
    assert max_held <= limit
    assert max(samples) <= limit
    assert min(samples) >= 0
    assert failed_releases == 0
    assert final.active_slots == 0
    assert leftover == [], "a lease was left behind"


# ============================================================================ (c) a killed holder


HOLDER = """
import json, sys, time
from runtime.stores import Stores
stores = Stores.connect(sys.argv[1])
lease = stores.concurrency.acquire([sys.argv[2]], int(sys.argv[3]), lease_seconds=2.0,
                                   holder="doomed")
print(json.dumps({"id": lease.id, "expires_at": lease.expires_at.isoformat()}), flush=True)
time.sleep(600)
"""


def test_killed_holder_leaks_nothing_after_expiry(
    aws_backend: Backend, stores: Stores, prefix: str
) -> None:
    name, limit = "pool:crashy", 3
    stores.concurrency.create_limit(ConcurrencyLimitCreate(name=name, limit=limit))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    assert env["AWS_ENDPOINT_URL"] == aws_backend.endpoint_url
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, prefix, name, str(limit)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "the holder never reported its lease"
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "holder exited"
        held = json.loads(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    expires = datetime.fromisoformat(held["expires_at"])

    # Dead, but its slots stay held until the lease expires.
    assert stores.concurrency.read_limit(name).active_slots == limit
    lease = stores.concurrency.read_lease(held["id"])
    assert lease.holder == "doomed"
    just_before = expires - timedelta(milliseconds=1)
    assert stores.concurrency.sweep(now=just_before) == 0
    assert stores.concurrency.acquire([name], 1, now=just_before) is None
    assert stores.concurrency.read_limit(name).active_slots == limit

    # Wait for the expiry on the clock (bounded), then the sweep reclaims.
    started = time.monotonic()
    while utcnow() <= expires:
        assert time.monotonic() - started < 30, "clock did not reach the lease expiry"
        time.sleep(min(0.05, max(0.0, (expires - utcnow()).total_seconds())))
    waited = time.monotonic() - started
    reclaimed = stores.concurrency.sweep()
    after = stores.concurrency.read_limit(name).active_slots
    fresh = stores.concurrency.acquire([name], limit, lease_seconds=30)
    print(
        f"\n[race c] SIGKILLed holder of {limit}/{limit} slots: held until expiry "
        f"(waited {waited:.2f}s), sweep reclaimed {reclaimed} lease(s), active_slots={after}, "
        f"fresh acquire of {limit} {'succeeded' if fresh else 'FAILED'}"
    )
    assert reclaimed == 1
    assert after == 0
    assert fresh is not None
    assert stores.concurrency.release(fresh.id)
    assert stores.concurrency.read_limit(name).active_slots == 0


def test_racing_releases_and_sweeps_free_a_lease_once(
    aws_backend: Backend, stores: Stores, prefix: str
) -> None:
    """Releases and sweeps racing on the same expired leases give each slot back once."""
    threads = 8
    name = "tag:once"
    stores.concurrency.create_limit(ConcurrencyLimitCreate(name=name, limit=10))
    t0 = utcnow()
    leases = [stores.concurrency.acquire([name], 2, lease_seconds=1, now=t0) for _ in range(5)]
    assert all(leases) and stores.concurrency.read_limit(name).active_slots == 10
    later = t0 + timedelta(seconds=5)
    racers = [connect(prefix) for _ in range(threads)]
    barrier = threading.Barrier(threads)
    freed: list[int] = []
    freed_lock = threading.Lock()

    def race(i: int, racer: Stores) -> None:
        barrier.wait(timeout=30)
        if i % 2:
            count = racer.concurrency.sweep(now=later)
        else:
            count = sum(racer.concurrency.release(lease.id, now=later) for lease in leases if lease)
        with freed_lock:
            freed.append(count)

    pool = [threading.Thread(target=race, args=(i, r)) for i, r in enumerate(racers)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=60)
    print(f"\n[race d] {threads} sweepers/releasers on 5 expired leases: freed {sorted(freed)}")
    assert sum(freed) == 5, freed
    assert stores.concurrency.read_limit(name).active_slots == 0
