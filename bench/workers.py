"""Worker benchmark: start latency, throughput, idle memory and SQS requests per run.

    .venv/bin/python bench/workers.py [--runs 50] [--burst 60]

Prints figures, asserts nothing. Starts a moto server on 127.0.0.1 (as the
integration tests do), a work pool and a deployment of a trivial flow, then:

* **idle RSS** of a ``stratoflow worker start`` process after it started polling;
* **start latency**: ``--runs`` runs submitted one at a time to an idle worker
  (``dispatch.enqueue_flow_run``, what ``run_deployment(timeout=0)`` does after
  creating the run): time from the submission to RUNNING (the claim) and to
  COMPLETED, p50/p95;
* **throughput**: ``--burst`` runs submitted at once, completed per minute with
  1 and with 3 workers (``--limit 4`` each);
* **SQS requests per run**: a worker in this process (its SQS client metered by
  botocore event hooks; children use no SQS) executing ``--runs`` runs, plus the
  one ``SendMessage`` of each submission.

Goals (issue 10): start p50 <= 0.5 s, p95 <= 1 s; idle RSS <= 80 MB; <= 6 SQS
requests per run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402

from runtime.localaws import LockedMotoServer  # noqa: E402
from runtime.models import DeploymentCreate, FlowRunCreate, WorkPoolCreate  # noqa: E402
from runtime.services import dispatch  # noqa: E402
from runtime.states import Scheduled, StateType  # noqa: E402
from runtime.stores import Stores  # noqa: E402

FLOW = """
from sdk import flow


@flow(name="bench-flow")
def bench_flow(i: int = 0) -> int:
    return i
"""

POOL = "bench"
PREFIX = "bench-workers"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Bench:
    def __init__(self, endpoint: str, workdir: Path) -> None:
        self.env = dict(os.environ)
        self.env.update(
            {
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": "us-east-1",
                "STRATOFLOW_PREFIX": PREFIX,
                "STRATOFLOW_PAYLOAD_KEY_FILE": str(workdir / "payload.key"),
                "PYTHONPATH": str(ROOT),
            }
        )
        self.env.pop("STRATOFLOW_API_URL", None)
        os.environ.update({k: v for k, v in self.env.items() if k.startswith(("AWS_", "STRATO"))})
        self.stores = Stores.connect(PREFIX, provision_resources=True)
        self.stores.registry.create_work_pool(WorkPoolCreate(name=POOL))
        self.stores.queues.ensure_pool_queue(POOL)
        (workdir / "bench_flow.py").write_text(FLOW)
        self.deployment, _ = self.stores.registry.upsert_deployment(
            DeploymentCreate(
                name="d",
                flow_name="bench-flow",
                entrypoint=f"{workdir / 'bench_flow.py'}:bench_flow",
                work_pool_name=POOL,
            )
        )

    def submit(self, i: int) -> str:
        run = self.stores.runs.create_flow_run(
            FlowRunCreate(
                flow_name="bench-flow",
                deployment_id=self.deployment.id,
                work_pool_name=POOL,
                parameters={"i": i},
                state=Scheduled(),
            )
        )
        dispatch.enqueue_flow_run(self.stores, run)
        return run.id

    def state(self, run_id: str) -> StateType:
        return self.stores.runs.read_flow_run(run_id).state.type

    def worker(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sdk.cli",
                "worker",
                "start",
                "--pool",
                POOL,
                "--name",
                name,
                *args,
            ],
            env=self.env,
            cwd=ROOT,
            stderr=subprocess.DEVNULL,
        )

    def wait_polling(self, count: int) -> None:
        from runtime.stores.workers import WorkerStore

        workers = WorkerStore(self.stores.db, self.stores.specs.registry)
        while len([w for w in workers.list(POOL) if w.last_poll is not None]) < count:
            time.sleep(0.1)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def latency(bench: Bench, runs: int) -> None:
    proc = bench.worker("latency")
    try:
        bench.wait_polling(1)
        time.sleep(2.0)
        print(f"worker idle RSS: {rss_mb(proc.pid):.1f} MB")
        to_running: list[float] = []
        to_completed: list[float] = []
        for i in range(runs):
            start = time.perf_counter()
            run_id = bench.submit(i)
            running = None
            while (kind := bench.state(run_id)) not in (
                StateType.COMPLETED,
                StateType.FAILED,
                StateType.CRASHED,
            ):
                if running is None and kind is StateType.RUNNING:
                    running = time.perf_counter() - start
                time.sleep(0.01)
            done = time.perf_counter() - start
            to_running.append(running if running is not None else done)
            to_completed.append(done)
        for label, values in (("-> RUNNING", to_running), ("-> COMPLETED", to_completed)):
            print(
                f"submission {label}: p50 {statistics.median(values):.3f} s, "
                f"p95 {percentile(values, 0.95):.3f} s over {runs} runs"
            )
    finally:
        stop([proc])


def throughput(bench: Bench, burst: int, workers: int) -> None:
    procs = [bench.worker(f"tp{i}", "--limit", "4") for i in range(workers)]
    try:
        bench.wait_polling(workers)
        start = time.perf_counter()
        ids = [bench.submit(i) for i in range(burst)]
        pending = set(ids)
        while pending:
            pending = {
                r for r in pending if not bench.stores.runs.read_flow_run(r).state.is_final()
            }
            time.sleep(0.1)
        elapsed = time.perf_counter() - start
        rate = 60 * burst / elapsed
        print(f"{workers} worker(s): {burst} runs in {elapsed:.1f} s = {rate:.0f} runs/min")
    finally:
        stop(procs)


def sqs_requests(bench: Bench, runs: int) -> None:
    from runtime.worker.worker import Worker, WorkerOptions

    calls: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        calls[event_name.rsplit(".", 1)[-1]] += 1

    stores = Stores.connect(PREFIX)
    stores.queues.sqs.meta.events.register("before-call.sqs", count)
    bench.stores.queues.sqs.meta.events.register("before-call.sqs", count)
    worker = Worker(stores, WorkerOptions(pool=POOL))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    time.sleep(1.0)
    calls.clear()
    for i in range(runs):
        run_id = bench.submit(i)
        while not bench.stores.runs.read_flow_run(run_id).state.is_final():
            time.sleep(0.01)
    time.sleep(0.5)  # the last message's delete
    total = sum(calls.values())
    detail = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
    print(f"SQS requests per run: {total / runs:.2f} ({detail}; over {runs} runs)")
    worker.request_stop()
    thread.join(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--burst", type=int, default=60)
    args = parser.parse_args()
    with LockedMotoServer() as server, tempfile.TemporaryDirectory() as tmp:
        bench = Bench(server.endpoint, Path(tmp))
        boto3.setup_default_session()
        latency(bench, args.runs)
        throughput(bench, args.burst, 1)
        throughput(bench, args.burst, 3)
        sqs_requests(bench, min(args.runs, 20))


if __name__ == "__main__":
    main()
