"""The worker's child process: executes one claimed flow run, or dies without taking others.

A deployment's run, claimed (RUNNING) as a worker claims it, executed by
``python -m runtime.worker.child`` against the session's moto server: the
engine adopts the existing run (no second run is created), merges the run's
parameters over the deployment's (Prefect: ``run_deployment`` parameters
override the deployment's defaults, docs/v3/concepts/deployments.mdx),
validates them against the signature, and writes states, logs and the result.
A child that calls ``os._exit(3)`` or is SIGKILLed just ends with that status.
"""

from __future__ import annotations

import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from runtime.engine.client import DirectEngineClient
from runtime.models import DeploymentCreate, FlowRunCreate
from runtime.services.claims import claim_flow_run
from runtime.services.worker_runs import crash_run
from runtime.states import AwaitingRetry, Pending, Running, StateType, utcnow
from runtime.stores import Stores
from runtime.worker.child import Job
from runtime.worker.code import CodeNotFound, load_flow
from runtime.worker.runner import ChildProcess, exit_message
from tests.conftest import Backend

WAIT = 60.0

FLOW_FILE = textwrap.dedent(
    """
    import os
    import time

    from sdk import flow, get_run_logger, task


    @task
    def double(x: int) -> int:
        return 2 * x


    @flow(name="child-flow", log_prints=True)
    def child_flow(x: int, label: str = "none", mode: str = "ok") -> dict:
        get_run_logger().info("label is %s", label)
        print("printed by the flow")
        if mode == "exit3":
            os._exit(3)
        if mode == "sleep":
            print("PID", os.getpid())
            time.sleep(300)
        return {"double": double(x), "label": label, "cwd": os.getcwd()}
    """
)


def make_run(stores: Stores, code: Path, run_parameters: dict[str, object]) -> tuple[str, Job]:
    entry = code / "flows.py"
    entry.write_text(FLOW_FILE)
    deployment, _ = stores.registry.upsert_deployment(
        DeploymentCreate(
            name="d",
            flow_name="child-flow",
            entrypoint=f"{entry}:child_flow",
            parameters={"x": 1, "label": "from the deployment"},
        )
    )
    run = stores.runs.create_flow_run(
        FlowRunCreate(
            flow_name="child-flow",
            deployment_id=deployment.id,
            parameters=run_parameters,
            state=Pending(),
        )
    )
    claimed = stores.runs.set_state("flow_run", run.id, Running())  # as a worker's claim does
    assert claimed.status == "ACCEPT"
    job = Job(run.id, f"{entry}:child_flow", str(code), dict(deployment.parameters))
    return run.id, job


def child_env(aws_backend: Backend, prefix: str) -> dict[str, str]:
    assert aws_backend.endpoint_url is not None
    return {"AWS_ENDPOINT_URL": aws_backend.endpoint_url, "STRATOFLOW_PREFIX": prefix}


def test_the_child_executes_the_claimed_run_with_merged_parameters(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    run_id, job = make_run(stores, tmp_path, {"x": "21"})  # "21": coerced by the signature
    child = ChildProcess(job, child_env(aws_backend, prefix))
    try:
        assert child.wait(WAIT) == 0
    finally:
        child.stop(1.0)
    run = stores.runs.read_flow_run(run_id)
    assert run.state.type is StateType.COMPLETED, run.state
    assert run.state.details.result is not None
    value = DirectEngineClient(stores).load_result(run.state.details.result)
    assert value == {"double": 42, "label": "from the deployment", "cwd": str(tmp_path.resolve())}
    names = [s.name for s in stores.runs.read_state_history(run_id)]
    assert names == ["Pending", "Running", "Completed"]  # adopted: no second Running, no new run
    assert len(stores.runs.list_flow_runs().items) == 1
    messages = [line.message for line in stores.logs.read(run_id).items]
    assert "label is from the deployment" in messages
    assert "printed by the flow" in messages


def test_bad_parameters_fail_the_run(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    run_id, job = make_run(stores, tmp_path, {"x": "not a number"})
    child = ChildProcess(job, child_env(aws_backend, prefix))
    try:
        assert child.wait(WAIT) == 0
    finally:
        child.stop(1.0)
    state = stores.runs.read_flow_run(run_id).state
    assert state.type is StateType.FAILED
    assert "Validation of flow parameters failed" in (state.message or "")
    assert "x:" in (state.message or "")


def test_a_missing_entrypoint_crashes_the_run_naming_it(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    run_id, job = make_run(stores, tmp_path, {})
    missing = Job(job.flow_run_id, f"{tmp_path}/nope.py:child_flow", job.code_dir)
    child = ChildProcess(missing, child_env(aws_backend, prefix))
    try:
        assert child.wait(WAIT) == 1
    finally:
        child.stop(1.0)
    state = stores.runs.read_flow_run(run_id).state
    assert state.type is StateType.CRASHED
    assert "nope.py" in (state.message or "")


def test_os_exit_ends_only_the_child_with_its_status(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    run_id, job = make_run(stores, tmp_path, {"mode": "exit3"})
    child = ChildProcess(job, child_env(aws_backend, prefix))
    try:
        code = child.wait(WAIT)
    finally:
        child.stop(1.0)
    assert code == 3
    assert exit_message(3) == "The flow run's process exited with code 3 before the run ended."
    assert stores.runs.read_flow_run(run_id).state.type is StateType.RUNNING  # worker's to end


def test_stop_sigkills_a_child_that_ignores_sigterm(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    run_id, _ = make_run(stores, tmp_path, {})
    (tmp_path / "stubborn.py").write_text(
        textwrap.dedent(
            """
            import pathlib, signal, time
            from sdk import flow

            @flow
            def stubborn() -> None:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                pathlib.Path("ignoring").write_text("yes")
                time.sleep(300)
            """
        )
    )
    child = ChildProcess(
        Job(run_id, "stubborn.py:stubborn", str(tmp_path)), child_env(aws_backend, prefix)
    )
    try:
        deadline = time.monotonic() + WAIT
        while not (tmp_path / "ignoring").exists():
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        code = child.stop(0.5)
    assert code == -signal.SIGKILL
    assert exit_message(code).startswith("The flow run's process was killed by SIGKILL")
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)


def test_load_flow_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text("def f():\n    return 1\n")
    with pytest.raises(CodeNotFound, match="not a flow"):
        load_flow("plain.py:f", tmp_path)
    with pytest.raises(CodeNotFound, match="has no 'g'"):
        load_flow("plain.py:g", tmp_path)
    with pytest.raises(CodeNotFound, match="no module 'nowhere_xyz'"):
        load_flow("nowhere_xyz.mod:f", tmp_path)
    with pytest.raises(CodeNotFound, match="must be"):
        load_flow("plain.py", tmp_path)


def test_a_child_never_ends_a_run_another_worker_claimed_since(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    """A child stalled past its heartbeat: the sweep crashed its run and another worker
    claimed the retry. When the stalled flow returns, its Completed must not land on
    the other worker's run."""
    run_id, _ = make_run(stores, tmp_path, {})
    (tmp_path / "stalled.py").write_text(
        textwrap.dedent(
            """
            import pathlib, time
            from sdk import flow

            @flow
            def stalled() -> str:
                pathlib.Path("started").write_text("yes")
                while not pathlib.Path("go").exists():
                    time.sleep(0.05)
                return "done"
            """
        )
    )
    job = Job(run_id, "stalled.py:stalled", str(tmp_path))
    child = ChildProcess(job, child_env(aws_backend, prefix))
    try:
        deadline = time.monotonic() + WAIT
        while not (tmp_path / "started").exists():
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        crash_run(stores, run_id, None, "heartbeat expired")
        stores.runs.set_state("flow_run", run_id, AwaitingRetry(scheduled_time=utcnow()))
        assert claim_flow_run(stores, run_id, "another-worker").won
        (tmp_path / "go").write_text("now")
        assert child.wait(WAIT) == 0
    finally:
        child.stop(1.0)
    run = stores.runs.read_flow_run(run_id)
    assert (run.state.type, run.worker_id) == (StateType.RUNNING, "another-worker")
    assert "Completed" not in [s.name for s in stores.runs.read_state_history(run_id)]
