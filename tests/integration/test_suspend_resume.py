"""A deployment's flow run suspends in one process, is resumed from another, and is re-queued.

Prefect 3 is the oracle: ``src/prefect/flow_runs.py`` (``suspend_flow_run`` proposes
Suspended, stores the input's schema and raises ``Pause`` so the process lets go of
the run; started again from the beginning, the same suspend, same key, returns the
input at once) and ``server/api/flow_runs.py`` (resuming a Suspended run schedules it
"Resuming" for a worker). Here "for a worker" is the work pool's SQS queue.

The worker's process is played by a subprocess that enters the claimed run's context
itself (the worker's child runner is another part of issue 10): first it suspends
(and stops with ``Pause``); after the resume and a second claim it runs the same
code again and gets the input.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from runtime.engine.client import DirectEngineClient
from runtime.models import DeploymentCreate, FlowRunCreate, WorkPoolCreate
from runtime.services import claims, pauses
from runtime.states import Scheduled, StateType
from runtime.stores import Stores
from tests.conftest import Backend

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT = 60

CHILD = textwrap.dedent(
    """
    import json
    import sys
    from concurrent.futures import ThreadPoolExecutor

    import pydantic

    from runtime.engine.backend import get_engine_client
    from runtime.engine.context import FlowRunContext, flow_run_scope
    from sdk import flow
    from sdk.exceptions import Pause
    from sdk.flow_runs import suspend_flow_run


    class Approval(pydantic.BaseModel):
        approved: bool
        approver: str = "nobody"


    @flow(name="suspends")
    def suspends() -> None: ...


    client = get_engine_client()
    run = client.read_flow_run(sys.argv[1])
    ctx = FlowRunContext(
        flow=suspends, flow_run=run, parameters={}, client=client, executor=ThreadPoolExecutor(1)
    )
    with flow_run_scope(ctx):
        try:
            answer = suspend_flow_run(wait_for_input=Approval)
        except Pause as stop:
            sys.stdout.write("SUSPENDED=" + stop.state.name + "\\n")
        else:
            sys.stdout.write("INPUT=" + json.dumps(answer.model_dump()) + "\\n")
    """
)


def child(tmp_path: Path, aws_backend: Backend, prefix: str, run_id: str) -> dict[str, str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
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
    done = subprocess.run(
        [sys.executable, str(script), run_id],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def resume_cli(api_url: str, run_id: str, run_input: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATOFLOW_")}
    env["STRATOFLOW_API_URL"] = api_url
    return subprocess.run(
        [sys.executable, "-m", "sdk.cli", "flow-run", "resume", run_id, "--input", run_input],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )


def test_a_suspended_deployment_run_is_requeued_on_resume_and_gets_its_input(
    tmp_path: Path,
    aws_backend: Backend,
    prefix: str,
    stores: Stores,
    engine: DirectEngineClient,
    api: str,
) -> None:
    stores.registry.create_work_pool(WorkPoolCreate(name="approvals"))
    stores.queues.ensure_pool_queue("approvals")
    deployment, _ = stores.registry.upsert_deployment(
        DeploymentCreate(name="approve", flow_name="suspends", work_pool_name="approvals")
    )
    run = stores.runs.create_flow_run(
        FlowRunCreate(
            flow_name="suspends",
            deployment_id=deployment.id,
            work_pool_name="approvals",
            state=Scheduled(),
        )
    )
    assert claims.claim_flow_run(stores, run.id, "worker-1").won

    # the worker's child suspends: the run is Suspended, the process lets go
    assert child(tmp_path, aws_backend, prefix, run.id) == {"SUSPENDED": "Suspended"}
    suspended = stores.runs.read_flow_run(run.id)
    assert (suspended.state.type, suspended.state.name) == (StateType.PAUSED, "Suspended")
    keyset = suspended.state.details.run_input_keyset
    assert keyset == pauses.keyset_from_base_key("suspended-1")
    assert stores.queues.receive("approvals", wait_seconds=0) == []

    # a bad input from another process: refused, nothing queued, still suspended
    bad = resume_cli(api, run.id, '{"approved": "later"}')
    assert bad.returncode == 1 and "run_input.approved" in bad.stderr, bad
    assert stores.runs.read_flow_run(run.id).state.name == "Suspended"
    assert stores.queues.receive("approvals", wait_seconds=0) == []

    # the resume: back on the pool's queue, with its input stored
    ok = resume_cli(api, run.id, '{"approved": true, "approver": "ann"}')
    assert ok.returncode == 0, ok
    (message,) = stores.queues.receive("approvals", wait_seconds=2)
    assert message.body is not None
    assert (message.body.flow_run_id, message.body.deployment_id) == (run.id, deployment.id)
    assert pauses.read_flow_run_input(stores, run.id, keyset["response"]) == {
        "approved": True,
        "approver": "ann",
    }
    requeued = stores.runs.read_flow_run(run.id)
    assert requeued.state.type is StateType.PENDING and requeued.resuming

    # a worker claims it again and runs the flow from the start: the suspend returns the input
    again = claims.claim_flow_run(stores, run.id, "worker-2")
    assert again.won and again.run is not None
    assert again.run.state.name == "Running"  # a resume, not a retry
    assert again.run.run_count == 1
    out = child(tmp_path, aws_backend, prefix, run.id)
    assert json.loads(out["INPUT"]) == {"approved": True, "approver": "ann"}
    assert stores.runs.read_flow_run(run.id).state.type is StateType.RUNNING
