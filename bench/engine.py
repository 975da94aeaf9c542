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

Backends: ``embedded`` is the default a plain script gets (a moto server on
127.0.0.1 in a thread of this process); ``server`` is a moto server in its own
process on 127.0.0.1 (the HTTP path LocalStack serves), so its request handling
does not share this process's interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
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
        run_backend("embedded (moto server thread in this process)", embedded_stores(), args.repeat)
    if args.backend in ("server", "both"):
        stores, proc = server_stores(f"bench-{os.getpid()}")
        try:
            run_backend("moto server in its own process on 127.0.0.1", stores, args.repeat)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
