"""Engine overhead benchmark: prints figures, asserts nothing.

    .venv/bin/python bench/engine.py [--backend embedded|server|both] [--repeat 5]

Cases (medians over ``--repeat`` runs, each in a fresh flow run):

* plain:      1,000 calls of the undecorated function (the floor).
* sequential: a flow calling a trivial task 1,000 times; seconds per task run,
              counted from the flow call to its return (every record durable).
* map:        ``inc.map(range(1000)).result()`` inside a flow.
* requests:   AWS requests per task run in the sequential and map flows
              (reads and writes separately; botocore event hooks count them).
* limited:    20 tasks sleeping 0.2 s under a tag concurrency limit of 2
              (ideal: 2.0 s).
* durable:    after the flow call returns, are every task run and log line
              already readable? (time until they all are).
* trivial:    a flow run that does nothing: milliseconds per flow run, and the
              AWS requests it makes (create, transitions, log lines).
* cache:      a cached task whose key is new (a miss: lock, compute, record) and
              the same keys again (a hit: one read), per task run.
* memory:     10,000 task runs in 10 flows of 1,000 after a warm-up: growth of
              this process's traced Python memory per 1,000 task runs, the
              embedded database's own allocations (moto serving in this process)
              left out, and the resident set size growth beside it.

Backends: ``embedded`` is the default a plain script gets (a moto server on
127.0.0.1 in a thread of this process); ``server`` is a moto server in its own
process on 127.0.0.1 (the HTTP path LocalStack serves), so its request handling
does not share this process's interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import boto3

from runtime.engine.backend import embedded_stores, use_engine_client
from runtime.engine.client import DirectEngineClient
from runtime.errors import AlreadyExists
from runtime.models import TaskRunFilter
from runtime.stores import Stores
from runtime.stores.metrics import RequestCounter
from sdk import flow, get_client, get_run_logger, task

N = 1000


def inc(x: int) -> int:
    return x + 1


inc_task = task(inc)


@flow
def sequential(n: int) -> None:
    for i in range(n):
        inc_task(i)


@flow
def mapped(n: int) -> list[int]:
    return inc_task.map(range(n)).result()


@task(tags=["bench-limited"])
def sleepy(i: int) -> int:
    time.sleep(0.2)
    return i


@flow
def limited(n: int) -> list[int]:
    return sleepy.map(range(n)).result()


@task
def chatty(i: int) -> int:
    get_run_logger().info("task %s", i)
    return i


@flow
def durable(n: int) -> list[int]:
    get_run_logger().info("start")
    return chatty.map(range(n)).result()


@flow
def trivial() -> None:
    return None


CACHE_SALT = uuid.uuid4().hex
N_CACHE = 200


@task(cache_key_fn=lambda ctx, params: f"bench-{CACHE_SALT}-{params['i']}")
def cached(i: int) -> int:
    return i


@flow
def cache_flow(start: int, n: int) -> None:
    for i in range(start, start + n):
        cached(i)


def median_of(repeat: int, fn: Callable[[], float]) -> tuple[float, float]:
    samples = [fn() for _ in range(repeat)]
    return statistics.median(samples), min(samples)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def server_stores(prefix: str) -> tuple[Stores, subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.localaws", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert proc.stdout is not None
    endpoint = proc.stdout.readline().strip()
    session = boto3.session.Session(
        aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
    )
    stores = Stores.connect(
        prefix, session=session, endpoint_url=endpoint, provision_resources=True
    )
    return stores, proc


def run_backend(name: str, stores: Stores, repeat: int) -> None:
    counter = RequestCounter().attach(stores.db.client).attach(stores.results.s3)
    client = DirectEngineClient(stores)
    with use_engine_client(client):
        sequential(10)  # warm up: imports, connections, first table pages

        plain_med, _ = median_of(repeat, lambda: timed(lambda: [inc(i) for i in range(N)]))
        seq_med, seq_min = median_of(repeat, lambda: timed(lambda: sequential(N)))
        before = counter.snapshot()
        sequential(N)
        seq_reads, seq_writes = RequestCounter.split(counter.snapshot() - before)
        map_med, map_min = median_of(repeat, lambda: timed(lambda: mapped(N)))
        before = counter.snapshot()
        mapped(N)
        map_reads, map_writes = RequestCounter.split(counter.snapshot() - before)

        with get_client(sync_client=True) as sync, contextlib.suppress(AlreadyExists):
            sync.create_concurrency_limit(tag="bench-limited", concurrency_limit=2)
        lim_med, lim_min = median_of(max(1, repeat // 2), lambda: timed(lambda: limited(20)))

        trivial_med, trivial_min = median_of(
            repeat, lambda: timed(lambda: [trivial() for _ in range(50)]) / 50
        )
        before = counter.snapshot()
        for _ in range(20):
            trivial()
        trivial_reads, trivial_writes = RequestCounter.split(counter.snapshot() - before)

        cache_samples: list[tuple[float, float]] = []
        for r in range(repeat):
            start = (r + 1) * 10 * N_CACHE
            miss = timed(lambda: cache_flow(start, N_CACHE))  # noqa: B023
            hit = timed(lambda: cache_flow(start, N_CACHE))  # noqa: B023
            cache_samples.append((miss, hit))
        before = counter.snapshot()
        cache_flow(0, N_CACHE)
        miss_reads, miss_writes = RequestCounter.split(counter.snapshot() - before)
        before = counter.snapshot()
        cache_flow(0, N_CACHE)
        hit_reads, hit_writes = RequestCounter.split(counter.snapshot() - before)
        miss_med = statistics.median(m for m, _ in cache_samples) / N_CACHE
        hit_med = statistics.median(h for _, h in cache_samples) / N_CACHE

        state = durable(200, return_state=True)
        returned = time.perf_counter()
        flow_run_id = state.details.extra.get("flow_run_id") or _last_flow_run(stores, "durable")
        # one read, straight after the call returned: nothing may still be in flight
        task_page = stores.runs.list_task_runs(TaskRunFilter(flow_run_id=flow_run_id), limit=1000)
        tasks_seen = sum(1 for t in task_page.items if t.state.is_final())
        logs_seen = len(stores.logs.read(flow_run_id, limit=1000).items)
        durable_after = time.perf_counter() - returned
    client.close()

    per_plain_us = plain_med / N * 1e6
    print(f"\n== backend: {name} (median of {repeat}; min in brackets) ==")
    print(f"plain function call        {per_plain_us:8.2f} us per call")
    print(
        f"sequential task run        {seq_med / N * 1e3:8.3f} ms per task run "
        f"[{seq_min / N * 1e3:.3f}]  ({seq_med / plain_med:,.0f}x a plain call)  goal <= 1 ms"
    )
    print(f"map over {N} items         {map_med:8.3f} s  [{map_min:.3f}]  goal <= 1.5 s")
    print(
        f"requests per task run      sequential: {seq_reads / N:.3f} reads, "
        f"{seq_writes / N:.3f} writes;  map: {map_reads / N:.3f} reads, {map_writes / N:.3f} writes"
    )
    print(
        f"20 x 0.2 s under limit 2   {lim_med:8.3f} s  [{lim_min:.3f}]  ideal 2.0 s, goal <= 2.4 s"
    )
    print(
        f"durable at return          {tasks_seen}/200 final task runs and {logs_seen}/203 log "
        f"lines in the first read after the call returned (the read took {durable_after:.2f} s)"
    )
    print(
        f"trivial flow run           {trivial_med * 1e3:8.3f} ms per flow run "
        f"[{trivial_min * 1e3:.3f}]  goal <= 10 ms;  requests: {trivial_reads / 20:.2f} reads, "
        f"{trivial_writes / 20:.2f} writes  goal <= 3"
    )
    print(
        f"cached task run            miss {miss_med * 1e3:.3f} ms, hit {hit_med * 1e3:.3f} ms "
        f"per task run  goals <= 3 ms, <= 1 ms;  requests per miss: "
        f"{miss_reads / N_CACHE:.2f} reads, {miss_writes / N_CACHE:.2f} writes; per hit: "
        f"{hit_reads / N_CACHE:.2f} reads, {hit_writes / N_CACHE:.2f} writes"
    )


MEMORY_FLOWS = 10

_DATABASE_FRAMES = [  # what the embedded database (moto serving in this process) allocates
    tracemalloc.Filter(False, pattern, all_frames=True)
    for pattern in ("*/moto/*", "*/werkzeug/*", "*/socketserver.py", "*/http/server.py")
] + [tracemalloc.Filter(False, tracemalloc.__file__)]


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_memory(stores: Stores) -> None:
    """Growth per 1,000 task runs over MEMORY_FLOWS flows of N, after two warm-up flows.

    Two passes: the resident set size without tracing (the embedded database, when
    it serves in this process, included), then Python's traced memory with the
    database's own allocations left out (what the engine keeps).
    """
    client = DirectEngineClient(stores)
    with use_engine_client(client):
        sequential(N)
        sequential(N)
        rss: list[int] = []
        for _ in range(MEMORY_FLOWS):
            sequential(N)
            gc.collect()
            rss.append(_rss())
        tracemalloc.start(25)  # deep enough to see the database's frames under each trace
        traced: list[int] = []
        for _ in range(MEMORY_FLOWS):
            sequential(N)
            gc.collect()
            snapshot = tracemalloc.take_snapshot().filter_traces(_DATABASE_FRAMES)
            traced.append(sum(stat.size for stat in snapshot.statistics("filename")))
        tracemalloc.stop()
    client.close()
    per_traced = (traced[-1] - traced[0]) / (len(traced) - 1) / 1024
    per_rss = (rss[-1] - rss[0]) / (len(rss) - 1) / 1024 / 1024
    print(
        f"memory per 1,000 task runs {per_traced:8.1f} KB traced (the engine; the embedded "
        f"database left out)  goal: flat;  RSS {per_rss:+.2f} MB (a database serving in this "
        f"process included), each over {MEMORY_FLOWS * N:,} task runs"
    )


def _last_flow_run(stores: Stores, flow_name: str) -> str:
    from runtime.models import FlowRunFilter

    runs = stores.runs.list_flow_runs(FlowRunFilter(flow_name=flow_name), limit=1).items
    return runs[0].id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["embedded", "server", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.backend in ("embedded", "both"):
        stores = embedded_stores()
        run_backend("embedded (moto server thread in this process)", stores, args.repeat)
        run_memory(stores)
    if args.backend in ("server", "both"):
        stores, proc = server_stores(f"bench-{os.getpid()}")
        try:
            run_backend("moto server in its own process on 127.0.0.1", stores, args.repeat)
            run_memory(stores)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
