"""Background tasks across processes: ``.delay()`` here, task workers in subprocesses.

Prefect 3 is the oracle: docs/v3/advanced/background-tasks.mdx (``task.delay()`` returns
a future; ``prefect.task_worker.serve(task)`` runs it in another process;
``future.result()`` waits and returns the value), ``src/prefect/task_worker.py``.
Exactly once is proven with a ledger file each run appends to: two task workers on one
queue, every message also delivered twice, and every run is executed once.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from runtime.engine.background.queue import TaskRunMessage, task_run_queue
from runtime.engine.client import DirectEngineClient
from runtime.states import StateType
from runtime.stores import Stores
from tests.conftest import Backend

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0

TASKS = textwrap.dedent(
    """
    import os
    import sys
    import time
    from pathlib import Path

    from sdk import task
    from sdk.task_worker import serve


    @task
    def record(n: int, ledger: str) -> int:
        with open(ledger, "a") as out:
            out.write(f"{n} {os.getpid()}\\n")
        return n * n


    @task
    def slow(marker: str) -> str:
        Path(marker).write_text("started")
        time.sleep(2)
        return "finished"


    if __name__ == "__main__":
        serve(record, slow, limit=4, poll_seconds=1)
        sys.stdout.write("STOPPED\\n")
    """
)


@pytest.fixture
def tasks_module(tmp_path: Path) -> ModuleType:
    """The tasks, imported here as the workers import them (same task keys)."""
    path = tmp_path / "bg_tasks.py"
    path.write_text(TASKS)
    spec = importlib.util.spec_from_file_location("bg_tasks", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def start_worker(tmp_path: Path, aws_backend: Backend, prefix: str) -> Iterator[Any]:
    procs: list[subprocess.Popen[str]] = []
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

    def start() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(tmp_path / "bg_tasks.py")],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_delay_here_runs_on_a_task_worker_subprocess(
    tasks_module: ModuleType, start_worker: Any, engine: DirectEngineClient, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    worker = start_worker()
    future = tasks_module.record.delay(7, str(ledger))
    assert future.result(timeout=WAIT) == 49
    assert ledger.read_text().split()[1] == str(worker.pid)
    run = engine.stores.runs.read_task_run(future.task_run_id)
    assert run.state.type is StateType.COMPLETED


def test_two_workers_and_duplicate_deliveries_run_each_task_once(
    tasks_module: ModuleType,
    start_worker: Any,
    engine: DirectEngineClient,
    stores: Stores,
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger.txt"
    futures = [tasks_module.record.delay(n, str(ledger)) for n in range(30)]
    queue = task_run_queue(stores)
    for future in futures:  # every message delivered twice
        queue.send(
            TaskRunMessage(task_run_id=future.task_run_id, task_key=tasks_module.record.task_key)
        )
    first, second = start_worker(), start_worker()
    assert [f.result(timeout=WAIT) for f in futures] == [n * n for n in range(30)]
    # drain: the duplicates are received and dropped (nothing more is appended)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and queue.sqs.get_queue_attributes(
        QueueUrl=queue.url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"] != {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }:
        time.sleep(0.2)
    entries = [line.split() for line in ledger.read_text().splitlines()]
    assert sorted(int(n) for n, _ in entries) == list(range(30))  # each once
    pids = {pid for _, pid in entries}
    assert pids <= {str(first.pid), str(second.pid)}
    for proc in (first, second):
        proc.send_signal(signal.SIGTERM)
    for proc in (first, second):
        out, err = proc.communicate(timeout=WAIT)
        assert proc.returncode == 0, err[-2000:]
        assert "STOPPED" in out


def test_sigterm_lets_the_running_task_finish_and_exits_zero(
    tasks_module: ModuleType,
    start_worker: Any,
    engine: DirectEngineClient,
    tmp_path: Path,
) -> None:
    marker = tmp_path / "started"
    worker = start_worker()
    future = tasks_module.slow.delay(str(marker))
    deadline = time.monotonic() + WAIT
    while not marker.exists():
        assert time.monotonic() < deadline and worker.poll() is None
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=WAIT)
    assert worker.returncode == 0, err[-2000:]
    assert "STOPPED" in out
    assert future.state.type is StateType.COMPLETED  # finished before the worker exited
    assert future.result() == "finished"

    # the stopped worker took nothing more: a new run waits for the next worker
    later = tasks_module.record.delay(3, str(tmp_path / "ledger.txt"))
    assert later.state.type is StateType.SCHEDULED
    start_worker()
    assert later.result(timeout=WAIT) == 9
