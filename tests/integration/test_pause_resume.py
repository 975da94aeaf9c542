"""A flow paused in one process, resumed from others (SDK, CLI, HTTP API), over loopback moto.

Prefect 3 is the oracle: ``src/prefect/flow_runs.py`` (``pause_flow_run`` waits in
process and returns the validated input, ``FlowPauseTimeout`` fails the flow when
nobody resumes it), ``server/api/flow_runs.py`` (``resume_flow_run`` validates the
input against the stored schema and leaves the run paused when it fails) and
docs/v3/advanced/interactive.mdx ("Pause a flow and wait for input"). Stratoflow
answers a bad input with a 422 naming the field, where Prefect's API answers 200
with a REJECT status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from runtime.engine.client import DirectEngineClient
from runtime.errors import InvalidInput
from runtime.models import FlowRun, FlowRunFilter
from runtime.states import StateType
from runtime.stores import Stores
from sdk.flow_runs import resume_flow_run
from sdk.http_client import StratoflowClient
from tests.conftest import Backend

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0

PAUSING_FLOW = textwrap.dedent(
    """
    import json
    import sys

    import pydantic

    from sdk import flow, get_run_logger
    from sdk.flow_runs import pause_flow_run


    class Approval(pydantic.BaseModel):
        approved: bool
        approver: str


    @flow(name="needs-approval", persist_result=True, result_serializer="json")
    def needs_approval(timeout: int) -> dict:
        answer = pause_flow_run(wait_for_input=Approval, timeout=timeout, poll_interval=1)
        get_run_logger().info("approved by %s", answer.approver)
        return answer.model_dump()


    state = needs_approval(int(sys.argv[1]), return_state=True)
    sys.stdout.write("STATE=" + state.type.value + "\\n")
    if state.type.value == "COMPLETED":
        sys.stdout.write("RESULT=" + json.dumps(state.result()) + "\\n")
    else:
        sys.stdout.write("ERROR=" + repr(state.result(raise_on_failure=False)) + "\\n")
    """
)


def start_flow(
    tmp_path: Path, aws_backend: Backend, prefix: str, timeout: int
) -> subprocess.Popen[str]:
    script = tmp_path / "pausing_flow.py"
    script.write_text(PAUSING_FLOW)
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
    return subprocess.Popen(
        [sys.executable, str(script), str(timeout)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_paused(stores: Stores, proc: subprocess.Popen[str]) -> FlowRun:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        page = stores.runs.list_flow_runs(FlowRunFilter(flow_name="needs-approval"))
        for run in page.items:
            if run.state.type is StateType.PAUSED:
                return run
        time.sleep(0.1)
    raise AssertionError("the flow never paused")


def finish(proc: subprocess.Popen[str]) -> tuple[int, dict[str, str]]:
    out, err = proc.communicate(timeout=WAIT)
    lines = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    lines["stderr"] = err[-3000:]
    return proc.returncode, lines


def cli(*args: str, api_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATOFLOW_")}
    env["STRATOFLOW_API_URL"] = api_url
    return subprocess.run(
        [sys.executable, "-m", "sdk.cli", *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def test_a_paused_flow_is_resumed_with_input_from_other_processes(
    tmp_path: Path,
    aws_backend: Backend,
    prefix: str,
    stores: Stores,
    api: str,
    engine: DirectEngineClient,
) -> None:
    proc = start_flow(tmp_path, aws_backend, prefix, timeout=600)
    try:
        run = wait_until_paused(stores, proc)
        assert run.state.name == "Paused"
        assert run.state.details.run_input_keyset is not None

        # the CLI, through the HTTP API: bad input is refused naming the field
        bad = cli(
            "flow-run",
            "resume",
            run.id,
            "--input",
            '{"approved": "perhaps", "approver": "x"}',
            api_url=api,
        )
        assert bad.returncode == 1, bad
        assert "run_input.approved" in bad.stderr and "Traceback" not in bad.stderr
        not_json = cli("flow-run", "resume", run.id, "--input", "{nope", api_url=api)
        assert not_json.returncode == 2 and "not JSON" in not_json.stderr

        # the HTTP API directly: 422, and nothing moved
        with StratoflowClient(api) as client, pytest.raises(InvalidInput) as caught:
            client.resume_flow_run(run.id, {"approved": True})
        assert "approver" in str(caught.value)
        still = stores.runs.read_flow_run(run.id)
        assert still.state.type is StateType.PAUSED
        assert still.state_version == run.state_version
        assert proc.poll() is None  # the flow still waits

        # the SDK, from this process: valid input resumes it
        resume_flow_run(run.id, {"approved": True, "approver": "ann"})
        code, lines = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, lines
    assert lines["STATE"] == "COMPLETED"
    assert json.loads(lines["RESULT"]) == {"approved": True, "approver": "ann"}
    final = stores.runs.read_flow_run(run.id)
    assert [s.name for s in stores.runs.read_state_history(run.id)] == [
        "Pending",
        "Running",
        "Paused",
        "Running",
        "Completed",
    ]
    assert final.run_count == 1  # a resume is not a new attempt


def test_the_cli_resumes_a_paused_flow(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores, api: str
) -> None:
    proc = start_flow(tmp_path, aws_backend, prefix, timeout=600)
    try:
        run = wait_until_paused(stores, proc)
        done = cli(
            "flow-run",
            "resume",
            run.id,
            "--input",
            '{"approved": false, "approver": "bob"}',
            api_url=api,
        )
        assert done.returncode == 0, done
        assert "is now Running" in done.stdout
        code, lines = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0 and json.loads(lines["RESULT"]) == {"approved": False, "approver": "bob"}
    again = cli("flow-run", "resume", run.id, api_url=api)
    assert again.returncode == 1 and "not paused" in again.stderr


def test_a_pause_nobody_resumes_fails_the_flow(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    proc = start_flow(tmp_path, aws_backend, prefix, timeout=2)
    try:
        run = wait_until_paused(stores, proc)
        code, lines = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, lines  # the script reports the state; the flow itself failed
    assert lines["STATE"] == "FAILED"
    assert "FlowPauseTimeout" in lines["ERROR"]
    assert stores.runs.read_flow_run(run.id).state.type is StateType.FAILED


def test_a_flow_writing_through_the_api_pauses_and_resumes(stores: Stores, api: str) -> None:
    """The engine over ``STRATOFLOW_API_URL``: the pause stores its schema and reads its
    input through ``/flow_runs/<id>/input``, and the resume goes through ``/resume``."""
    import threading

    import pydantic

    from runtime.engine.backend import use_engine_client
    from runtime.engine.http_engine_client import ApiEngineClient
    from sdk import flow
    from sdk.flow_runs import pause_flow_run

    class Choice(pydantic.BaseModel):
        option: int

    @flow(name="over-the-api")
    def choose() -> int:
        answer = pause_flow_run(wait_for_input=Choice, timeout=600, poll_interval=1)
        return answer.option

    out: dict[str, Any] = {}
    client = ApiEngineClient(api)
    with use_engine_client(client):

        def run() -> None:
            out["value"] = choose()

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + WAIT
        run_id = None
        while run_id is None and time.monotonic() < deadline:
            page = stores.runs.list_flow_runs(FlowRunFilter(state_types=[StateType.PAUSED]))
            run_id = page.items[0].id if page.items else None
            time.sleep(0.05)
        assert run_id is not None
        with StratoflowClient(api) as http:
            schema = http.read_flow_run_input(run_id, "paused-1-schema")
            assert schema["required"] == ["option"]
            with pytest.raises(InvalidInput):
                http.resume_flow_run(run_id, {"option": "two"})
            http.resume_flow_run(run_id, {"option": 2})
        thread.join(WAIT)
    client.close()
    assert out == {"value": 2}


def test_input_routes(stores: Stores, api: str) -> None:
    """Prefect's ``/flow_runs/{id}/input`` routes: written once, read, deleted."""
    from runtime.errors import AlreadyExists, NotFound
    from runtime.models import FlowRunCreate

    run = stores.runs.create_flow_run(FlowRunCreate(flow_name="inputs"))
    with StratoflowClient(api) as http:
        http.create_flow_run_input(run.id, "greeting", {"hello": ["world"]})
        http.create_flow_run_input(run.id, "greeting", {"hello": ["world"]})  # a retry
        with pytest.raises(AlreadyExists):
            http.create_flow_run_input(run.id, "greeting", "other")
        assert http.read_flow_run_input(run.id, "greeting") == {"hello": ["world"]}
        http.delete_flow_run_input(run.id, "greeting")
        with pytest.raises(NotFound):
            http.read_flow_run_input(run.id, "greeting")
        with pytest.raises(NotFound):
            http.create_flow_run_input("00000000-0000-4000-8000-000000000000", "k", 1)
        with pytest.raises(InvalidInput):
            http.create_flow_run_input(run.id, "bad#key", 1)
