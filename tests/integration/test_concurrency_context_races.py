"""``concurrency()`` and ``rate_limit()`` under real thread and process contention.

Holders run in subprocesses (each with several threads) configured only by
environment, against the session's locked moto server (atomic conditional
writes, runtime/localaws.py). Each holder records when it entered and left the
``with`` block (or when ``rate_limit`` returned) with the machine's wall clock,
shared by every process; the tests check the bounds Prefect's semantics imply,
never a speed:

* ``concurrency(name)`` on a limit of N: never more than N holders at once
  (docs/v3/concepts/global-concurrency-limits.mdx, "Slot-based system");
* ``rate_limit(name)`` on a limit of L decaying d slots/s: at most
  ``L + d * T`` grants in any window of T seconds (same page, "Slot decay");
* a holder killed by SIGKILL or SIGTERM leaks nothing: its lease expires (no
  renewal after death) and the sweep reclaims it ("Timed leases").
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from runtime.engine.backend import use_engine_client
from runtime.engine.client import DirectEngineClient, EngineClient
from runtime.engine.http_engine_client import ApiEngineClient
from runtime.models import ConcurrencyLimitCreate, ConcurrencyLimitUpdate
from runtime.states import utcnow
from runtime.stores import Stores
from sdk.concurrency.sync import (
    AcquireConcurrencySlotTimeoutError,
    ConcurrencySlotAcquisitionError,
    concurrency,
    rate_limit,
)
from tests.conftest import Backend

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]

HOLDERS = textwrap.dedent(
    """
    import json, sys, threading, time
    from sdk.concurrency.sync import concurrency, rate_limit

    mode, name, threads, rounds, hold = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:6])
    out, lock = [], threading.Lock()

    def work():
        for _ in range(int(rounds)):
            before = time.time()
            if mode == "concurrency":
                with concurrency(name, occupy=1, timeout_seconds=120):
                    entered = time.time()
                    time.sleep(hold)
                    left = time.time()
                record = [entered, left]
            else:
                rate_limit(name, timeout_seconds=120)
                record = [before, time.time()]
            with lock:
                out.append(record)

    pool = [threading.Thread(target=work) for _ in range(int(threads))]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    print("RESULT=" + json.dumps(out))
    """
)

HOLD_FOREVER = textwrap.dedent(
    """
    import sys, time
    from sdk import flow, task
    from sdk.concurrency.sync import concurrency

    @task
    def hold(name: str) -> None:
        with concurrency(name, lease_duration=60):
            print("held", flush=True)
            time.sleep(600)

    @flow
    def holder(name: str) -> None:
        hold(name)

    holder(sys.argv[1])
    """
)


def _env(aws_backend: Backend, prefix: str) -> dict[str, str]:
    assert aws_backend.endpoint_url is not None
    env = dict(os.environ)
    env.update(
        {
            "AWS_ENDPOINT_URL": aws_backend.endpoint_url,
            "STRATOFLOW_PREFIX": prefix,
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p),
        }
    )
    env.pop("STRATOFLOW_API_URL", None)
    return env


def run_holders(
    tmp_path: Path,
    aws_backend: Backend,
    prefix: str,
    *,
    mode: str,
    name: str,
    processes: int,
    threads: int,
    rounds: int,
    hold: float = 0.0,
) -> list[tuple[float, float]]:
    """Start ``processes`` holder processes at once; every (start, end) they recorded."""
    script = tmp_path / "holders.py"
    script.write_text(HOLDERS)
    args = [mode, name, str(threads), str(rounds), str(hold)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), *args],
            env=_env(aws_backend, prefix),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    records: list[tuple[float, float]] = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-4000:]
        line = next(x for x in out.splitlines() if x.startswith("RESULT="))
        records += [(a, b) for a, b in json.loads(line.removeprefix("RESULT="))]
    return records


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of [enter, leave] intervals that overlap at one instant."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    now = peak = 0
    for _, step in events:  # at equal times a leave (-1) sorts first: touching is not overlap
        now += step
        peak = max(peak, now)
    return peak


def test_concurrency_never_admits_more_holders_than_the_limit(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    stores.concurrency.create_limit(ConcurrencyLimitCreate(name="db", limit=2))
    records = run_holders(
        tmp_path, aws_backend, prefix, mode="concurrency", name="db",
        processes=3, threads=3, rounds=3, hold=0.05,
    )  # fmt: skip
    assert len(records) == 27
    peak = most_at_once(records)
    print(f"\n27 holds over 3 processes x 3 threads on a limit of 2: at most {peak} at once")
    assert peak <= 2
    assert peak == 2, "the two slots were both used at some point"
    assert stores.concurrency.read_limit("db").active_slots == 0, "every slot came back"


def test_rate_limit_grants_at_most_limit_plus_decay_per_window(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    limit, decay = 2, 4.0
    stores.concurrency.create_limit(
        ConcurrencyLimitCreate(name="api", limit=limit, slot_decay_per_second=decay)
    )
    records = run_holders(
        tmp_path, aws_backend, prefix, mode="rate_limit", name="api",
        processes=3, threads=2, rounds=3,
    )  # fmt: skip
    assert len(records) == 18
    # each grant happened between its call (b) and return (a): every set of grants whose
    # calls began at or after b_i and returned by a_j happened within [b_i, a_j]
    worst = 0.0
    for b_i, _ in records:
        for _, a_j in records:
            if a_j <= b_i:
                continue
            inside = sum(1 for b, a in records if b >= b_i and a <= a_j)
            bound = limit + decay * (a_j - b_i) + 1e-3
            assert inside <= bound, (inside, a_j - b_i)
            worst = max(worst, inside - decay * (a_j - b_i))
    span = max(a for _, a in records) - min(b for b, _ in records)
    print(f"\n18 grants in {span:.2f} s (limit {limit}, decay {decay}/s); worst excess {worst:.2f}")


def test_slots_are_released_on_exceptions_and_interrupts(
    stores: Stores, engine: DirectEngineClient
) -> None:
    stores.concurrency.create_limit(ConcurrencyLimitCreate(name="one", limit=1))
    for error in (ValueError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(error)), concurrency("one"):
            assert stores.concurrency.read_limit("one").active_slots == 1
            raise error
        assert stores.concurrency.read_limit("one").active_slots == 0


def test_a_waiting_thread_gets_the_slot_as_soon_as_it_is_released(
    stores: Stores, engine: DirectEngineClient
) -> None:
    """Threads of one process: a release wakes a waiter (no timed bound: it must not time out
    within a generous limit, and the hand-off order is enter-after-leave)."""
    stores.concurrency.create_limit(ConcurrencyLimitCreate(name="handoff", limit=1))
    left: list[float] = []
    entered: list[float] = []
    inside = threading.Event()

    def first() -> None:
        with concurrency("handoff"):
            inside.set()
            time.sleep(0.2)
            left.append(time.time())

    def second() -> None:
        inside.wait(30)
        with concurrency("handoff", timeout_seconds=60):
            entered.append(time.time())

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert entered and left and entered[0] >= left[0]


@pytest.fixture(params=["direct", "api"])
def any_engine(request: pytest.FixtureRequest, stores: Stores) -> Iterator[EngineClient]:
    """The engine client over the stores, or over the HTTP API (both must behave the same)."""
    client: EngineClient
    if request.param == "direct":
        client = DirectEngineClient(stores)
    else:
        client = ApiEngineClient(request.getfixturevalue("api"))
    with use_engine_client(client):
        yield client
    client.close()


def test_strict_timeout_inactive_and_rate_limit_errors(
    stores: Stores, any_engine: EngineClient
) -> None:
    """Prefect's documented errors (src/prefect/concurrency/_asyncio.py and
    server/api/concurrency_limits_v2.py): a missing limit is skipped unless ``strict``;
    ``timeout_seconds`` raises a ``TimeoutError``; ``occupy`` above the limit and
    ``rate_limit`` on a limit without decay raise ``ConcurrencySlotAcquisitionError``;
    an inactive limit is not enforced."""
    with concurrency("nowhere"):
        pass
    rate_limit("nowhere")
    with (
        pytest.raises(ConcurrencySlotAcquisitionError, match="must be created"),
        concurrency("nowhere", strict=True),
    ):
        pass
    with pytest.raises(ConcurrencySlotAcquisitionError, match="must be created"):
        rate_limit(["nowhere", "neither"], strict=True)

    stores.concurrency.create_limit(ConcurrencyLimitCreate(name="solo", limit=1))
    with concurrency("solo"):
        with (
            pytest.raises(AcquireConcurrencySlotTimeoutError) as waited,
            concurrency("solo", timeout_seconds=0.2),
        ):
            pass
        assert isinstance(waited.value, TimeoutError)
        with (
            pytest.raises(ConcurrencySlotAcquisitionError),
            concurrency("solo", max_retries=0),
        ):
            pass
    with (
        pytest.raises(ConcurrencySlotAcquisitionError, match="greater than the limit"),
        concurrency("solo", occupy=2),
    ):
        pass
    with pytest.raises(ConcurrencySlotAcquisitionError, match="slot decay"):
        rate_limit("solo")
    with (
        pytest.raises(ConcurrencySlotAcquisitionError, match="lease_duration"),
        concurrency("solo", lease_duration=5),
    ):
        pass

    stores.concurrency.create_limit(
        ConcurrencyLimitCreate(name="burst", limit=2, slot_decay_per_second=0.01)
    )
    rate_limit("burst", occupy=2)
    assert stores.concurrency.read_limit("burst").active_slots == 2, "held until they drain"
    with pytest.raises(AcquireConcurrencySlotTimeoutError):
        rate_limit("burst", timeout_seconds=0.2)

    stores.concurrency.update_limit("solo", ConcurrencyLimitUpdate(active=False))
    with concurrency("solo"), concurrency("solo", timeout_seconds=5):
        assert stores.concurrency.read_limit("solo").active_slots == 0, "not enforced"
    assert stores.concurrency.read_limit("solo").active_slots == 0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_holder_leaks_nothing(
    sig: signal.Signals,
    tmp_path: Path,
    aws_backend: Backend,
    prefix: str,
    stores: Stores,
    engine: DirectEngineClient,
) -> None:
    stores.concurrency.create_limit(ConcurrencyLimitCreate(name="kill", limit=1))
    script = tmp_path / "hold.py"
    script.write_text(HOLD_FOREVER)
    proc = subprocess.Popen(
        [sys.executable, str(script), "kill"],
        env=_env(aws_backend, prefix),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held", proc.stderr.read() if proc.stderr else ""
        (lease,) = stores.concurrency.expired_leases(now=utcnow() + timedelta(days=2))
        assert lease.holder is not None and lease.holder.startswith("task_run:"), lease.holder
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed_at = utcnow()
    held = stores.concurrency.read_limit("kill").active_slots
    if held:  # not released on the way out: the lease runs out, nobody renews it
        assert stores.concurrency.sweep(now=killed_at) == 0, "not expired yet"
        assert stores.concurrency.sweep(now=killed_at + timedelta(seconds=61)) == 1
    assert stores.concurrency.read_limit("kill").active_slots == 0
    with concurrency("kill", timeout_seconds=5):
        pass


def test_a_cancelled_async_wait_takes_no_slot(stores: Stores, any_engine: EngineClient) -> None:
    """An ``async with concurrency()`` cancelled while it waits (``asyncio.wait_for``) stops
    waiting, and a slot granted as it was cancelled is given back, never held on
    (Prefect's ``_release_lease_when_granted``, src/prefect/concurrency/_asyncio.py)."""
    import asyncio

    from sdk.concurrency.asyncio import concurrency as async_concurrency

    stores.concurrency.create_limit(ConcurrencyLimitCreate(name="busy", limit=1))

    async def wait_for_slot() -> None:
        async with async_concurrency("busy"):
            raise AssertionError("never entered: the slot is held elsewhere")

    async def main() -> None:
        with concurrency("busy"), pytest.raises(TimeoutError):
            await asyncio.wait_for(wait_for_slot(), timeout=0.3)

    asyncio.run(main())
    # the wait was told to stop before the slot was given back: it never takes it
    assert stores.concurrency.read_limit("busy").active_slots == 0
    assert stores.concurrency.expired_leases(now=utcnow() + timedelta(days=2)) == []
    with concurrency("busy", timeout_seconds=5):
        pass
