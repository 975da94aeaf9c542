"""A flow run in one process, read back from another, over the moto server's HTTP API.

The flow runs in a subprocess configured only by environment (``AWS_ENDPOINT_URL`` of
the session's moto server and ``STRATOFLOW_PREFIX``), as a worker's child would be. The
test process then reads the flow run, its task runs, their state histories, the run
logs and the persisted results, with nothing in memory from the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime.engine.client import DirectEngineClient
from runtime.engine.exceptions import FailedRun, MissingResult
from runtime.models import TaskRunFilter
from runtime.states import StateType
from runtime.stores import Stores
from sdk import get_client
from tests.conftest import Backend

REPO_ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    from sdk import flow, get_run_logger, task

    attempts = {"flaky": 0}


    @task(persist_result=True, result_serializer="json")
    def double(x: int) -> int:
        get_run_logger().info("doubling %d", x)
        return x * 2


    @task(persist_result=True)
    def big(n: int) -> str:
        return "y" * n


    @task(persist_result=True, result_storage_key="cross-{parameters[name]}")
    def keyed(name: str) -> dict:
        return {"name": name}


    @task(retries=1, retry_delay_seconds=0.01, persist_result=True)
    def flaky() -> str:
        attempts["flaky"] += 1
        if attempts["flaky"] == 1:
            raise ValueError("first attempt fails")
        return "second attempt"


    @task
    def fails() -> None:
        raise RuntimeError("this task fails for good")


    @task
    def unpersisted() -> int:
        return 5


    @flow(name="cross-process", persist_result=True, log_prints=True)
    def cross(n: int = 3) -> dict:
        from runtime.engine.context import current_flow_run

        print("printed inside the flow")
        values = [f.result() for f in double.map(range(n))]
        size = len(big(20_000))
        keyed("alpha")
        flaky()
        fails(return_state=True)
        unpersisted()
        return {"id": current_flow_run().flow_run.id, "values": values, "size": size}


    result = cross(n=3)
    sys.stdout.write("RESULT=" + json.dumps(result) + "\\n")
    """
)


def run_script(tmp_path: Path, aws_backend: Backend, prefix: str) -> dict[str, object]:
    script = tmp_path / "cross_process_flow.py"
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
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT=")]
    assert len(lines) == 1, done.stdout[-2000:]
    assert "printed inside the flow" not in done.stdout  # log_prints made it a log line
    result: dict[str, object] = json.loads(lines[0].removeprefix("RESULT="))
    return result


def test_flow_run_in_a_subprocess_is_readable_here(
    tmp_path: Path,
    aws_backend: Backend,
    prefix: str,
    stores: Stores,
    engine: DirectEngineClient,
) -> None:
    result = run_script(tmp_path, aws_backend, prefix)
    flow_run_id = str(result["id"])
    assert result["values"] == [0, 2, 4]
    assert result["size"] == 20_000

    reader = Stores.connect(prefix)  # a fresh connection: nothing shared with the writer

    # the flow run, its states and its persisted result
    flow_run = reader.runs.read_flow_run(flow_run_id)
    assert flow_run.flow_name == "cross-process"
    assert flow_run.parameters == {"n": 3}
    assert flow_run.state.type is StateType.COMPLETED
    assert [s.name for s in reader.runs.read_state_history(flow_run_id)] == [
        "Pending",
        "Running",
        "Completed",
    ]
    assert not flow_run.state.has_data
    assert flow_run.state.result() == result

    # the task runs, their histories and results
    runs = reader.runs.list_task_runs(TaskRunFilter(flow_run_id=flow_run_id)).items
    by_name = {r.name: r for r in runs}
    expected = ["double-0", "double-1", "double-2", "big-0", "keyed-0", "flaky-0"]
    assert sorted(by_name) == sorted([*expected, "fails-0", "unpersisted-0"])
    doubled = []
    for i in range(3):  # map's runs are numbered as they start, so in any order
        state = by_name[f"double-{i}"].state
        assert state.name == "Completed"
        assert state.details.result is not None and state.details.result.inline is not None
        doubled.append(state.result())
    assert sorted(doubled) == [0, 2, 4]
    big_ref = by_name["big-0"].state.details.result
    assert big_ref is not None and big_ref.storage_key is not None
    assert big_ref.storage_key.startswith(f"s3://{reader.specs.results.name}/results/")
    assert by_name["big-0"].state.result() == "y" * 20_000
    keyed_ref = by_name["keyed-0"].state.details.result
    assert keyed_ref is not None
    assert keyed_ref.storage_key == f"s3://{reader.specs.results.name}/results/cross-alpha"
    assert by_name["keyed-0"].state.result() == {"name": "alpha"}

    flaky = by_name["flaky-0"]
    assert flaky.run_count == 2
    assert [s.name for s in reader.runs.read_state_history(flaky.id)] == [
        "Pending",
        "Running",
        "AwaitingRetry",
        "Retrying",
        "Completed",
    ]
    assert flaky.state.result() == "second attempt"

    failed = by_name["fails-0"].state
    assert failed.type is StateType.FAILED
    with pytest.raises(FailedRun, match="this task fails for good"):
        failed.result()

    with pytest.raises(MissingResult, match="persist_result=True"):
        by_name["unpersisted-0"].state.result()

    # the same through get_client, with Prefect's method names
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(flow_run_id).state.name == "Completed"
        assert {r.id for r in client.read_task_runs(flow_run_id=flow_run_id)} == {
            r.id for r in runs
        }
        assert [s.name for s in client.read_task_run_states(flaky.id)][-1] == "Completed"
        logs = client.read_logs(flow_run_id, limit=1000)

    messages = [r.message for r in logs]
    assert all(r.flow_run_id == flow_run_id for r in logs)
    assert "printed inside the flow" in messages
    doubling = [r for r in logs if r.message.startswith("doubling ")]
    assert sorted(r.message for r in doubling) == ["doubling 0", "doubling 1", "doubling 2"]
    assert {r.task_run_id for r in doubling} == {by_name[f"double-{i}"].id for i in range(3)}
    assert any(
        r.task_run_id == by_name["fails-0"].id
        and "Traceback" in r.message
        and "this task fails for good" in r.message
        for r in logs
    )
    assert messages[-1].startswith("Finished in state Completed")
    stamps = [r.timestamp for r in logs]
    assert stamps == sorted(stamps)
