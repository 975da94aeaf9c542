"""Claims of work-pool runs under real concurrency, over HTTP, against the locked moto server.

Every racer has its own :class:`Stores` (own boto3 clients), like separate
workers; the session's :class:`runtime.localaws.LockedMotoServer` applies
DynamoDB's conditional writes atomically, as real DynamoDB does. Prefect's
oracle: only one party starts a run (``PreventDuplicateClaims``,
src/prefect/server/orchestration/core_policy.py), and a work pool's
``concurrency_limit`` caps its runs in progress (docs/v3/concepts/work-pools.mdx,
"Work pool concurrency"). Run with ``-s`` to read the figures.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from runtime.models import FlowRunCreate, WorkPoolCreate
from runtime.services import claims, dispatch
from runtime.services.claims import Claim
from runtime.states import Completed, Scheduled, StateType
from runtime.stores import Stores
from tests.conftest import Backend


@pytest.fixture
def fast_thread_switching() -> Iterator[None]:
    """Switch threads every 100 us: the in-process server shares the racers' GIL."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(previous)


def new_run(stores: Stores, pool: str, name: str) -> str:
    run = stores.runs.create_flow_run(
        FlowRunCreate(flow_name="race", name=name, work_pool_name=pool, state=Scheduled())
    )
    return dispatch.enqueue_flow_run(stores, run).id


def race_claims(racers: list[Stores], run_id: str) -> list[Claim | BaseException]:
    """Every racer claims the run at once (released by a barrier), as its own worker."""
    barrier = threading.Barrier(len(racers))
    results: list[Claim | BaseException] = []
    lock = threading.Lock()

    def claim(racer: Stores, worker: str) -> None:
        barrier.wait(timeout=30)
        outcome: Claim | BaseException
        try:
            outcome = claims.claim_flow_run(racer, run_id, worker)
        except BaseException as exc:  # asserted by the caller
            outcome = exc
        with lock:
            results.append(outcome)

    pool = [threading.Thread(target=claim, args=(r, f"w{i}")) for i, r in enumerate(racers)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    return results


@pytest.mark.parametrize("limit", [None, 16], ids=["no-limit", "limit-16"])
def test_sixteen_claims_of_one_run_have_exactly_one_winner(
    aws_backend: Backend,
    stores: Stores,
    prefix: str,
    fast_thread_switching: None,
    limit: int | None,
) -> None:
    """With a limit of 16 every racer takes a slot first: the losers must give theirs back."""
    threads, runs = 16, 5
    stores.registry.create_work_pool(WorkPoolCreate(name="race", concurrency_limit=limit))
    racers = [Stores.connect(prefix) for _ in range(threads)]
    for n in range(runs):
        run_id = new_run(stores, "race", f"race-{n}")
        results = race_claims(racers, run_id)

        assert len(results) == threads, f"run {n}: some racers never finished"
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"run {n}: {errors!r}"
        done = [r for r in results if isinstance(r, Claim)]
        winners = [r for r in done if r.won]
        assert len(winners) == 1, f"run {n}: {len(winners)} winners"
        for lost in (r for r in done if not r.won):
            assert (lost.reason, lost.drop_message) == ("already claimed", True), lost
        won = winners[0].run
        assert won is not None
        stored = stores.runs.read_flow_run(run_id)
        assert stored.state.type is StateType.RUNNING and stored.run_count == 1
        assert (stored.worker_id, stored.lease_id) == (won.worker_id, won.lease_id)
        assert [s.name for s in stores.runs.read_state_history(run_id)] == [
            "Scheduled",
            "Pending",
            "Running",
        ]
        if limit is not None:
            assert won.lease_id is not None
            slots = stores.concurrency.read_limit(claims.pool_limit_name("race")).active_slots
            assert slots == 1, f"run {n}: {slots} slots held after the race"
        stores.runs.set_state("flow_run", run_id, Completed())
        assert claims.release_run_lease(stores, stored) == (limit is not None)
    print(f"\n[claims, limit {limit}] {runs} runs x {threads} claims: exactly 1 winner each")


def test_a_pool_limit_of_two_never_holds_more_than_two_slots(
    aws_backend: Backend, stores: Stores, prefix: str, fast_thread_switching: None
) -> None:
    threads, limit = 12, 2
    stores.registry.create_work_pool(WorkPoolCreate(name="capped", concurrency_limit=limit))
    run_ids = [new_run(stores, "capped", f"capped-{n}") for n in range(threads)]
    racers = [Stores.connect(prefix) for _ in range(threads)]
    monitor_store = Stores.connect(prefix)
    lock = threading.Lock()
    held = 0
    max_held = 0
    wins: Counter[str] = Counter()
    busy = 0
    errors: list[BaseException] = []
    samples: list[int] = []
    stop = threading.Event()
    barrier = threading.Barrier(threads + 1)

    def worker(racer: Stores, run_id: str, name: str) -> None:
        nonlocal held, max_held, busy
        barrier.wait(timeout=30)
        try:
            for _ in range(2000):
                got = claims.claim_flow_run(racer, run_id, name)
                if not got.won:
                    assert got.reason == "slots busy", got
                    with lock:
                        busy += 1
                    time.sleep(0.01)  # correctness does not depend on it
                    continue
                assert got.run is not None
                with lock:
                    held += 1
                    max_held = max(max_held, held)
                    wins[run_id] += 1
                time.sleep(0.05)  # run a while: the others find the pool full
                with lock:
                    held -= 1
                racer.runs.set_state("flow_run", run_id, Completed())
                assert claims.release_run_lease(racer, got.run)
                return
            raise AssertionError(f"{run_id} never got a slot")
        except BaseException as exc:
            errors.append(exc)

    def monitor() -> None:
        barrier.wait(timeout=30)
        name = claims.pool_limit_name("capped")
        while not stop.is_set() and len(samples) < 100_000:
            try:
                samples.append(monitor_store.concurrency.read_limit(name).active_slots)
            except Exception:  # the limit is created by the first claim
                time.sleep(0.005)

    pool = [
        threading.Thread(target=worker, args=(r, run_id, f"w{i}"))
        for i, (r, run_id) in enumerate(zip(racers, run_ids, strict=True))
    ]
    watcher = threading.Thread(target=monitor)
    watcher.start()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=300)
    stop.set()
    watcher.join(timeout=30)

    assert not errors, errors
    print(
        f"\n[pool limit] {threads} runs, limit {limit}: max held {max_held}, "
        f"max sampled slots {max(samples, default=0)} over {len(samples)} samples, "
        f"{busy} claims found the pool full"
    )
    assert max_held <= limit and max(samples, default=0) <= limit
    assert max_held == limit  # the limit was reached, so the test could have failed
    assert wins == Counter({run_id: 1 for run_id in run_ids})  # each ran exactly once
    for run_id in run_ids:
        assert stores.runs.read_flow_run(run_id).state.type is StateType.COMPLETED
    assert stores.concurrency.read_limit(claims.pool_limit_name("capped")).active_slots == 0
