"""``flow.serve``, ``flow.to_deployment`` and ``sdk.serve``: a process serving deployments.

Prefect (docs/v3/how-to-guides/deployment_infra/run-flows-in-local-processes.mdx):
``my_flow.serve(name=..., parameters=...)`` registers a deployment and runs its
runs in this process until it is stopped; ``serve(a.to_deployment(...),
b.to_deployment(...))`` serves several from one process. The serving process
here is a real subprocess against the session's moto server; runs are
submitted from the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runtime.engine.client import DirectEngineClient
from runtime.errors import NotFound
from runtime.models import Deployment, FlowRunCreate
from runtime.services import dispatch
from runtime.states import Scheduled, StateType
from runtime.stores import Stores
from runtime.worker.serve import SchedulesNotYetSupported, flow_entrypoint, serve_pool_name
from sdk import flow
from tests.conftest import Backend

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT = 90.0

SCRIPT = textwrap.dedent(
    """
    import sys

    from sdk import flow, serve


    @flow(name="greeter")
    def greet(name: str, punctuation: str = ".") -> str:
        return f"hello {name}{punctuation}"


    @flow(name="adder")
    def add(a: int, b: int) -> int:
        return a + b


    if __name__ == "__main__":
        if sys.argv[1] == "one":
            greet.serve(name="greet-served", parameters={"name": "world"}, tags=["served"])
        else:
            serve(
                greet.to_deployment("greet-many", parameters={"name": "many"}),
                add.to_deployment("add-many", parameters={"a": 1}),
                limit=2,
            )
    """
)


@flow(name="local-flow")
def local_flow(x: int = 1) -> int:
    return x


def start(tmp_path: Path, aws_backend: Backend, prefix: str, mode: str) -> subprocess.Popen[str]:
    script = tmp_path / "served.py"
    script.write_text(SCRIPT)
    assert aws_backend.endpoint_url is not None
    env = dict(os.environ)
    env.update(
        {
            "AWS_ENDPOINT_URL": aws_backend.endpoint_url,
            "STRATOFLOW_PREFIX": prefix,
            "STRATOFLOW_WORKER_POLL_WAIT_SECONDS": "1",
            "STRATOFLOW_SHUTDOWN_GRACE_SECONDS": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p),
        }
    )
    env.pop("STRATOFLOW_API_URL", None)
    return subprocess.Popen(
        [sys.executable, str(script), mode],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_deployment(stores: Stores, flow_name: str, name: str) -> Deployment:
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return stores.registry.read_deployment_by_name(flow_name, name)
        except NotFound:
            assert time.monotonic() < deadline, "the deployment was never registered"
            time.sleep(0.1)


def submit_and_wait(
    stores: Stores, deployment: Deployment, parameters: dict[str, object]
) -> object:
    run = stores.runs.create_flow_run(
        FlowRunCreate(
            flow_name=deployment.flow_name,
            deployment_id=deployment.id,
            work_pool_name=deployment.work_pool_name,
            parameters=parameters,
            state=Scheduled(),
        )
    )
    dispatch.enqueue_flow_run(stores, run)
    deadline = time.monotonic() + WAIT
    while not (current := stores.runs.read_flow_run(run.id)).state.is_final():
        assert time.monotonic() < deadline, "the run never ended"
        time.sleep(0.1)
    assert current.state.type is StateType.COMPLETED, current.state
    assert current.state.details.result is not None
    return DirectEngineClient(stores).load_result(current.state.details.result)


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_flow_serve_registers_a_deployment_and_runs_its_runs(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    proc = start(tmp_path, aws_backend, prefix, "one")
    try:
        deployment = wait_deployment(stores, "greeter", "greet-served")
        assert deployment.parameters == {"name": "world"}
        assert deployment.tags == ["served"]
        assert deployment.entrypoint == f"{(tmp_path / 'served.py').resolve()}:greet"
        assert deployment.parameter_openapi_schema is not None
        assert deployment.parameter_openapi_schema["required"] == ["name"]
        assert submit_and_wait(stores, deployment, {}) == "hello world."
        assert submit_and_wait(stores, deployment, {"punctuation": "!"}) == "hello world!"
    finally:
        code = stop(proc)
    assert code == 0
    out = proc.stdout.read() if proc.stdout else ""
    assert "stratoflow deployment run 'greeter/greet-served'" in out


def test_serve_runs_several_deployments_from_one_process(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    proc = start(tmp_path, aws_backend, prefix, "many")
    try:
        greet = wait_deployment(stores, "greeter", "greet-many")
        add = wait_deployment(stores, "adder", "add-many")
        assert greet.work_pool_name == add.work_pool_name
        assert (greet.work_pool_name or "").startswith("serve-")
        assert submit_and_wait(stores, add, {"b": 41}) == 42
        assert submit_and_wait(stores, greet, {}) == "hello many."
    finally:
        code = stop(proc)
    assert code == 0


def test_schedules_are_refused_until_phase_6() -> None:
    with pytest.raises(SchedulesNotYetSupported, match="phase 6"):
        local_flow.to_deployment("d", cron="* * * * *")
    with pytest.raises(SchedulesNotYetSupported, match="interval"):
        local_flow.serve(name="d", interval=60)
    with pytest.raises(TypeError, match="colour"):
        local_flow.to_deployment("d", colour="red")


def test_to_deployment_names_the_flow_where_it_is_defined() -> None:
    deployment = local_flow.to_deployment("d", parameters={"x": 2})
    assert deployment.entrypoint == f"{Path(__file__).resolve()}:local_flow"
    assert flow_entrypoint(local_flow) == deployment.entrypoint
    assert deployment.full_name == "local-flow/d"
    assert serve_pool_name((deployment,)) == serve_pool_name((deployment,))
    assert serve_pool_name((deployment,)).startswith("serve-")
