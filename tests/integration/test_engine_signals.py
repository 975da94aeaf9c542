"""SIGTERM to a process running a flow (what ECS, Kubernetes and systemd send to stop it).

The flow runs in a real subprocess against the session's moto server, as a
worker's child would. Two task runs hold slots of a tag limit: one submitted to
the task runner's threads, one called directly in the main thread. After
SIGTERM, the process must have ended its flow run and both task runs Crashed and
given their slots back at once (not after lease expiry), then died of SIGTERM.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from runtime.models import ConcurrencyLimitCreate, TaskRunFilter
from runtime.states import StateType
from runtime.stores import Stores
from tests.conftest import Backend

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0
"""Upper bound for the subprocess to reach a point (a hang fails instead of blocking)."""

SCRIPT = textwrap.dedent(
    """
    import asyncio
    import signal
    import sys
    import time

    from sdk import flow, task

    def started(i: int) -> None:
        # one write: print() writes the text and the newline separately, so two
        # tasks starting at once could interleave into "STARTED 1STARTED 2"
        sys.stdout.write(f"STARTED {i}\\n")
        sys.stdout.flush()

    @task(tags=["sigterm"])
    def long(i: int) -> None:
        started(i)
        time.sleep(300)

    @task(tags=["sigterm"])
    async def along(i: int) -> None:
        started(i)
        await asyncio.sleep(300)

    @flow(name="terminated-async")
    async def terminated_async() -> None:
        from runtime.engine.context import current_flow_run

        print("FLOW=" + current_flow_run().flow_run.id, flush=True)
        long.submit(1)
        await along(2)

    @flow(name="terminated")
    def terminated() -> None:
        from runtime.engine.context import current_flow_run

        print("FLOW=" + current_flow_run().flow_run.id, flush=True)
        if "--own-handler" not in sys.argv:
            long.submit(1)
        long(2)

    if "--own-handler" in sys.argv:
        def own(signum, frame):
            print("OWN HANDLER RAN", flush=True)
            sys.exit(3)

        signal.signal(signal.SIGTERM, own)
    if "--async" in sys.argv:
        asyncio.run(terminated_async())
    else:
        terminated()
    """
)


def start(tmp_path: Path, aws_backend: Backend, prefix: str, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / "terminated_flow.py"
    script.write_text(SCRIPT)
    assert aws_backend.endpoint_url is not None
    env = dict(os.environ)  # the fake credentials of the test session
    env.update(
        {
            "AWS_ENDPOINT_URL": aws_backend.endpoint_url,
            "STRATOFLOW_PREFIX": prefix,
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p),
        }
    )
    env.pop("STRATOFLOW_API_URL", None)
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def lines_of(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    """The process's stdout lines, read by a thread ("" at end of output)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put("")

    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_until_tasks_run(
    proc: subprocess.Popen[str], lines: queue.Queue[str], expected: set[str]
) -> str:
    flow_run_id, started = "", set[str]()
    while not (flow_run_id and started == expected):
        line = lines.get(timeout=WAIT)
        if line == "":
            _, err = proc.communicate(timeout=WAIT)
            raise AssertionError(f"the flow process ended early: {err[-3000:]}")
        if line.startswith("FLOW="):
            flow_run_id = line.removeprefix("FLOW=")
        elif line.startswith("STARTED"):
            started.add(line)
    return flow_run_id


def assert_crashed_and_slots_free(
    prefix: str, flow_run_id: str, names: list[str], cause: str
) -> None:
    reader = Stores.connect(prefix)  # nothing shared with the terminated process
    flow_run = reader.runs.read_flow_run(flow_run_id)
    assert flow_run.state.type is StateType.CRASHED, flow_run.state
    assert flow_run.state.message == f"execution was interrupted: {cause}"
    task_runs = reader.runs.list_task_runs(TaskRunFilter(flow_run_id=flow_run_id)).items
    assert sorted(r.name for r in task_runs) == names
    assert {r.state.type for r in task_runs} == {StateType.CRASHED}, [r.state for r in task_runs]
    assert reader.concurrency.read_limit("tag:sigterm").active_slots == 0


def test_sigterm_crashes_the_runs_and_frees_their_slots(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    stores.concurrency.create_limit(ConcurrencyLimitCreate(name="tag:sigterm", limit=2))
    proc = start(tmp_path, aws_backend, prefix)
    try:
        flow_run_id = wait_until_tasks_run(proc, lines_of(proc), {"STARTED 1", "STARTED 2"})
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=WAIT)
    finally:
        proc.kill()
    # died of SIGTERM once the runs were recorded (a shell reports 143)
    assert proc.returncode == -signal.SIGTERM, proc.stderr.read() if proc.stderr else ""
    assert_crashed_and_slots_free(prefix, flow_run_id, ["long-0", "long-1"], "TerminationSignal")


def test_sigterm_runs_the_users_own_handler_too(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    stores.concurrency.create_limit(ConcurrencyLimitCreate(name="tag:sigterm", limit=2))
    proc = start(tmp_path, aws_backend, prefix, "--own-handler")
    lines = lines_of(proc)
    try:
        flow_run_id = wait_until_tasks_run(proc, lines, {"STARTED 2"})
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=WAIT)
    finally:
        proc.kill()
    rest = []
    while (line := lines.get(timeout=WAIT)) != "":
        rest.append(line)
    assert "OWN HANDLER RAN" in rest
    assert proc.returncode == 3  # the user's handler, called after the runs were recorded
    assert_crashed_and_slots_free(prefix, flow_run_id, ["long-0"], "TerminationSignal")


def test_sigterm_to_an_async_flow_crashes_the_runs_and_frees_their_slots(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    stores.concurrency.create_limit(ConcurrencyLimitCreate(name="tag:sigterm", limit=2))
    proc = start(tmp_path, aws_backend, prefix, "--async")
    try:
        flow_run_id = wait_until_tasks_run(proc, lines_of(proc), {"STARTED 1", "STARTED 2"})
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=WAIT)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM, proc.stderr.read() if proc.stderr else ""
    reader = Stores.connect(prefix)
    flow_run = reader.runs.read_flow_run(flow_run_id)
    assert flow_run.state.type is StateType.CRASHED, flow_run.state
    task_runs = reader.runs.list_task_runs(TaskRunFilter(flow_run_id=flow_run_id)).items
    assert sorted(r.name for r in task_runs) == ["along-0", "long-0"]
    assert {r.state.type for r in task_runs} == {StateType.CRASHED}, [r.state for r in task_runs]
    assert reader.concurrency.read_limit("tag:sigterm").active_slots == 0
