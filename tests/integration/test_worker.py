"""Workers: real ``stratoflow worker start`` processes against the session's moto server.

Expectations from Prefect's docs and source: a worker polls its pool and
executes each run in a subprocess (docs/v3/concepts/workers.mdx);
a run whose infrastructure exits with a non-zero code is Crashed
(src/prefect/workers/base.py: "Flow run infrastructure exited with non-zero
status code"); cancelling a running run
moves it to Cancelling, the worker kills its process and the run ends
Cancelled (docs/v3/advanced/cancel-workflows.mdx). Where Prefect falls short (a run
executed twice by two workers, zombie runs when a worker stops), the issue's
rules apply: exactly-once start, hand-back on SIGTERM.

Every worker process is stopped by the test (SIGTERM, then SIGKILL), and the
children it started are checked gone by pid. Settings are shortened through
the environment (``STRATOFLOW_WORKER_POLL_WAIT_SECONDS`` etc.).
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from runtime.engine.client import DirectEngineClient
from runtime.models import DeploymentCreate, FlowRun, FlowRunCreate, FlowRunFilter, WorkPoolCreate
from runtime.services import dispatch, worker_runs
from runtime.services.claims import claim_flow_run, pool_limit_name
from runtime.services.flow_runs import cancel_flow_run
from runtime.services.work_pools import inspect_work_pool
from runtime.states import AwaitingRetry, Scheduled, StateType, utcnow
from runtime.stores import Stores
from runtime.stores.queues import RunMessage
from runtime.stores.workers import WorkerStore
from tests.conftest import Backend

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT = 90.0
"""Upper bound for anything to happen (a hang fails instead of blocking)."""

FLOW_FILE = textwrap.dedent(
    """
    import os
    import signal
    import time

    from sdk import flow, get_run_logger


    @flow(name="worker-flow")
    def worker_flow(ledger: str, key: str, mode: str = "ok", seconds: float = 0.0) -> str:
        with open(ledger, "a") as f:
            f.write(f"{key} {os.getpid()}\\n")
        get_run_logger().info("executing %s", key)
        if mode == "exit3":
            os._exit(3)
        if mode == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if seconds:
            time.sleep(seconds)
        return key
    """
)


def worker_env(aws_backend: Backend, prefix: str, **extra: str) -> dict[str, str]:
    assert aws_backend.endpoint_url is not None
    env = dict(os.environ)
    env.update(
        {
            "AWS_ENDPOINT_URL": aws_backend.endpoint_url,
            "STRATOFLOW_PREFIX": prefix,
            "STRATOFLOW_WORKER_POLL_WAIT_SECONDS": "1",
            "STRATOFLOW_WORKER_CANCEL_POLL_SECONDS": "0.5",
            "STRATOFLOW_HEARTBEAT_SECONDS": "0.5",
            "STRATOFLOW_HEARTBEAT_TIMEOUT_SECONDS": "10",
            "STRATOFLOW_CANCEL_GRACE_SECONDS": "2",
            "STRATOFLOW_SHUTDOWN_GRACE_SECONDS": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p),
        }
    )
    env.pop("STRATOFLOW_API_URL", None)
    env.update(extra)
    return env


class Pool:
    """A work pool with one deployment of ``worker_flow``, and the runs submitted to it."""

    def __init__(self, stores: Stores, tmp_path: Path, limit: int | None = None) -> None:
        self.stores = stores
        self.name = "wpool"
        self.ledger = tmp_path / "ledger.txt"
        self.ledger.touch()
        stores.registry.create_work_pool(WorkPoolCreate(name=self.name, concurrency_limit=limit))
        stores.queues.ensure_pool_queue(self.name)
        entry = tmp_path / "flows.py"
        entry.write_text(FLOW_FILE)
        self.deployment, _ = stores.registry.upsert_deployment(
            DeploymentCreate(
                name="d",
                flow_name="worker-flow",
                entrypoint=f"{entry}:worker_flow",
                work_pool_name=self.name,
                parameters={"ledger": str(self.ledger)},
            )
        )

    def submit(self, key: str, **parameters: object) -> FlowRun:
        run = self.stores.runs.create_flow_run(
            FlowRunCreate(
                flow_name="worker-flow",
                deployment_id=self.deployment.id,
                work_pool_name=self.name,
                parameters={"key": key, **parameters},
                state=Scheduled(),
            )
        )
        return dispatch.enqueue_flow_run(self.stores, run)

    def ledger_lines(self) -> list[tuple[str, int]]:
        lines = self.ledger.read_text().split()
        return [(lines[i], int(lines[i + 1])) for i in range(0, len(lines), 2)]

    def state(self, run_id: str) -> StateType:
        return self.stores.runs.read_flow_run(run_id).state.type


def wait_for(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def wait_final(pool: Pool, run_ids: list[str], timeout: float = WAIT) -> None:
    wait_for(
        "final states",
        lambda: all(pool.stores.runs.read_flow_run(r).state.is_final() for r in run_ids),
        timeout,
    )


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@contextmanager
def workers(
    env: dict[str, str], pool: str, count: int = 1, *args: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` worker processes on ``pool``; all stopped (and checked gone) at the end."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sdk.cli",
                "worker",
                "start",
                "--pool",
                pool,
                "--name",
                f"w{i}",
                *args,
            ],
            env=env,
            cwd=REPO_ROOT,
        )
        for i in range(count)
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        assert all(pid_gone(p.pid) for p in procs)


def test_a_submitted_run_completes_with_states_logs_and_result(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    pool = Pool(stores, tmp_path)
    with workers(worker_env(aws_backend, prefix), pool.name) as procs:
        run = pool.submit("one")
        wait_final(pool, [run.id])
        listed = WorkerStore(stores.db, stores.specs.registry).list(pool.name)
        assert [w.name for w in listed] == ["w0"]
        assert listed[0].pid == procs[0].pid
        shown = subprocess.run(
            [sys.executable, "-m", "sdk.cli", "worker", "ls", "--json"],
            env=worker_env(aws_backend, prefix),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert shown.returncode == 0, shown.stderr
        [info] = json.loads(shown.stdout)
        assert (info["name"], info["work_pool_name"], info["pid"]) == (
            "w0",
            pool.name,
            procs[0].pid,
        )
        assert info["last_poll"] is not None
        [shown_in_inspect] = inspect_work_pool(stores, pool.name).workers  # work-pool inspect
        assert (shown_in_inspect["name"], shown_in_inspect["pid"]) == ("w0", procs[0].pid)
        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(30) == 0
    done = stores.runs.read_flow_run(run.id)
    assert done.state.type is StateType.COMPLETED, done.state
    assert [s.name for s in stores.runs.read_state_history(run.id)] == [
        "Scheduled",
        "Pending",
        "Running",
        "Completed",
    ]
    assert done.state.details.result is not None
    assert DirectEngineClient(stores).load_result(done.state.details.result) == "one"
    assert "executing one" in [line.message for line in stores.logs.read(run.id).items]
    assert [key for key, _ in pool.ledger_lines()] == ["one"]
    assert stores.queues.depth(pool.name).visible == 0
    assert stores.queues.depth(pool.name).in_flight == 0  # deleted once final
    assert WorkerStore(stores.db, stores.specs.registry).list(pool.name) == []  # deregistered


def test_duplicate_deliveries_and_two_workers_execute_each_run_once(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    pool = Pool(stores, tmp_path)
    runs = [pool.submit(f"k{i}") for i in range(6)]
    for run in runs:  # the same message delivered again
        stores.queues.send(
            pool.name,
            RunMessage(
                flow_run_id=run.id, deployment_id=pool.deployment.id, work_pool_name=pool.name
            ),
        )
    with workers(worker_env(aws_backend, prefix), pool.name, 2):
        wait_final(pool, [r.id for r in runs])
        wait_for("the duplicates dropped", lambda: stores.queues.depth(pool.name).visible == 0)
    assert {pool.state(r.id) for r in runs} == {StateType.COMPLETED}
    keys = [key for key, _ in pool.ledger_lines()]
    assert sorted(keys) == sorted(f"k{i}" for i in range(6))  # each exactly once


def test_a_child_that_dies_crashes_its_run_and_the_worker_keeps_polling(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    pool = Pool(stores, tmp_path)
    with workers(worker_env(aws_backend, prefix), pool.name) as procs:
        exited = pool.submit("exit", mode="exit3")
        killed = pool.submit("kill", mode="sigkill")
        wait_final(pool, [exited.id, killed.id])
        after = pool.submit("after")
        wait_final(pool, [after.id])
        assert procs[0].poll() is None  # still polling
    exited_state = stores.runs.read_flow_run(exited.id).state
    assert exited_state.type is StateType.CRASHED
    assert exited_state.message == "The flow run's process exited with code 3 before the run ended."
    killed_state = stores.runs.read_flow_run(killed.id).state
    assert killed_state.type is StateType.CRASHED
    assert (killed_state.message or "").startswith("The flow run's process was killed by SIGKILL")
    assert "exit code -9" in (killed_state.message or "")
    assert pool.state(after.id) is StateType.COMPLETED
    assert all(pid_gone(pid) for _, pid in pool.ledger_lines())


def test_cancelling_a_running_flow_stops_its_process_and_frees_its_slot(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    pool = Pool(stores, tmp_path, limit=1)
    with workers(worker_env(aws_backend, prefix), pool.name):
        run = pool.submit("long", seconds=300)
        wait_for("the flow to start", lambda: len(pool.ledger_lines()) == 1)
        pid = pool.ledger_lines()[0][1]
        assert stores.concurrency.read_limit(pool_limit_name(pool.name)).active_slots == 1
        first_beat = stores.runs.read_flow_run(run.id).heartbeat_at
        assert first_beat is not None
        wait_for(  # the worker heartbeats the running run (every 0.5 s here)
            "a heartbeat",
            lambda: (stores.runs.read_flow_run(run.id).heartbeat_at or first_beat) > first_beat,
        )
        assert stores.queues.depth(pool.name).in_flight == 1  # its message kept hidden
        cancel_flow_run(stores, run.id)
        # the worker notices within its poll, SIGTERMs, SIGKILLs after the 2 s grace
        wait_for(
            "the run to end",
            lambda: pool.stores.runs.read_flow_run(run.id).state.is_final(),
            timeout=30,
        )
        state = stores.runs.read_flow_run(run.id).state
        assert state.type is StateType.CANCELLED, state
        wait_for("the child to be gone", lambda: pid_gone(pid), timeout=10)
        # the worker gives the slot back once the child is gone (not after the lease expires)
        wait_for(
            "the slot back",
            lambda: stores.concurrency.read_limit(pool_limit_name(pool.name)).active_slots == 0,
            timeout=5,
        )
        after = pool.submit("after")  # the slot is usable again
        wait_final(pool, [after.id])
    assert pool.state(after.id) is StateType.COMPLETED


def test_sigterm_hands_a_running_flow_back_to_another_worker(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    pool = Pool(stores, tmp_path)
    env = worker_env(aws_backend, prefix)
    with workers(env, pool.name) as first:
        run = pool.submit("handed", seconds=4)
        wait_for("the flow to start", lambda: len(pool.ledger_lines()) == 1)
        first[0].send_signal(signal.SIGTERM)
        assert first[0].wait(30) == 0  # grace 1 s, then handed back and stopped
        assert pool.state(run.id) is StateType.SCHEDULED
        assert stores.runs.read_flow_run(run.id).state.name == "AwaitingRetry"
        assert pid_gone(pool.ledger_lines()[0][1])
    with workers(env, pool.name):
        wait_final(pool, [run.id])
    assert pool.state(run.id) is StateType.COMPLETED
    names = [s.name for s in stores.runs.read_state_history(run.id)]
    # Retrying: Running after AwaitingRetry (Prefect's name)
    assert names == ["Scheduled", "Pending", "Running", "AwaitingRetry", "Retrying", "Completed"]
    assert [key for key, _ in pool.ledger_lines()] == [
        "handed",
        "handed",
    ]  # started twice, ran once


def test_forty_runs_on_three_workers_never_exceed_the_pool_limit(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    pool = Pool(stores, tmp_path, limit=4)
    runs = [pool.submit(f"r{i}", seconds=0.2) for i in range(40)]
    running: list[int] = []
    done = threading.Event()

    def sample() -> None:
        flt = FlowRunFilter(work_pool_name=pool.name, state_types=[StateType.RUNNING])
        while not done.is_set():
            running.append(len(stores.runs.list_flow_runs(flt).items))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with workers(worker_env(aws_backend, prefix), pool.name, 3, "--limit", "2"):
            wait_final(pool, [r.id for r in runs], timeout=240)
    finally:
        done.set()
        sampler.join(10)
    assert {pool.state(r.id) for r in runs} == {StateType.COMPLETED}
    keys = [key for key, _ in pool.ledger_lines()]
    assert sorted(keys) == sorted(f"r{i}" for i in range(40))  # none twice
    assert max(running) <= 4, max(running)
    assert max(running) >= 2  # the sampling saw runs in parallel


def test_a_run_cancelled_while_queued_is_dropped_without_running(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    """Prefect: cancelling a run that has not started ends it Cancelled at once (no
    process to stop, docs/v3/advanced/cancel-workflows.mdx); its queued message is dropped."""
    pool = Pool(stores, tmp_path)
    cancelled = pool.submit("never")
    assert cancel_flow_run(stores, cancelled.id).status == "ACCEPT"
    with workers(worker_env(aws_backend, prefix), pool.name):
        after = pool.submit("after")
        wait_final(pool, [after.id])
        wait_for("the message dropped", lambda: stores.queues.depth(pool.name).visible == 0)
        wait_for("nothing in flight", lambda: stores.queues.depth(pool.name).in_flight == 0)
    assert pool.state(cancelled.id) is StateType.CANCELLED
    assert [key for key, _ in pool.ledger_lines()] == ["after"]


def test_a_worker_on_an_unknown_pool_says_so(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sdk.cli", "worker", "start", "--pool", "nowhere"],
        env=worker_env(aws_backend, prefix),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 1
    assert "work pool 'nowhere' not found" in result.stderr
    assert "stratoflow work-pool create nowhere" in result.stderr


def test_a_worker_stops_its_process_when_another_worker_claimed_the_run(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    """The sweep crashed the run (its heartbeats were late) and another worker claimed
    its retry: the first worker's process must not keep executing it alongside."""
    pool = Pool(stores, tmp_path)
    with workers(worker_env(aws_backend, prefix), pool.name) as procs:
        run = pool.submit("slow", seconds=300)
        wait_for("the flow to start", lambda: len(pool.ledger_lines()) == 1)
        pid = pool.ledger_lines()[0][1]
        worker_runs.crash_run(stores, run.id, None, "heartbeat expired (as the sweep says)")
        retry = stores.runs.set_state("flow_run", run.id, AwaitingRetry(scheduled_time=utcnow()))
        assert retry.status == "ACCEPT"
        assert claim_flow_run(stores, run.id, "another-worker").won
        wait_for("the first worker's child to be gone", lambda: pid_gone(pid), timeout=30)
        assert procs[0].poll() is None  # the worker itself goes on
        current = stores.runs.read_flow_run(run.id)
        assert (current.state.type, current.worker_id) == (StateType.RUNNING, "another-worker")
