"""A deployed flow's retries apply when a real worker runs it (Prefect's engine retries).

Prefect 3: a flow with ``retries=1`` that raises is retried by the engine in the
same process (AwaitingRetry, then Running again) wherever it runs, a worker's
flow-run process included (src/prefect/flow_engine.py ``handle_exception`` and
``begin_run``, which copies the flow's policy onto a deployment's run).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from runtime.engine.client import DirectEngineClient
from runtime.models import RetryPolicy, WorkPoolCreate
from runtime.services import deployments
from runtime.states import StateType
from runtime.stores import Stores
from sdk import Flow
from tests.conftest import Backend
from tests.integration.test_worker import wait_for, worker_env, workers

FLOW_FILE = textwrap.dedent(
    """
    from pathlib import Path

    from sdk import flow


    @flow(name="flaky", retries=1, retry_delay_seconds=0)
    def flaky(ledger: str) -> str:
        attempts = Path(ledger).read_text().count("try") + 1
        with open(ledger, "a") as f:
            f.write("try\\n")
        if attempts == 1:
            raise RuntimeError("first attempt fails")
        return f"ok after {attempts}"
    """
)


def test_a_failing_flow_is_retried_by_the_engine_on_the_worker(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores, engine: DirectEngineClient
) -> None:
    """Deployed with retries=1: the first attempt fails, the retry completes, same worker."""
    stores.registry.create_work_pool(WorkPoolCreate(name="retry-pool"))
    stores.queues.ensure_pool_queue("retry-pool")
    code = tmp_path / "code"
    code.mkdir()
    (code / "flaky.py").write_text(FLOW_FILE)
    ledger = tmp_path / "ledger.txt"
    ledger.touch()
    flow = Flow.from_source(code, "flaky.py:flaky")
    deployment_id = flow.deploy(
        "d", work_pool_name="retry-pool", parameters={"ledger": str(ledger)}, push=False
    )
    deployment = stores.registry.read_deployment(str(deployment_id))
    assert deployment.empirical_policy == RetryPolicy(retries=1, retry_delay_seconds=0)
    with workers(worker_env(aws_backend, prefix), "retry-pool"):
        run = deployments.run_deployment(stores, deployment.id)
        wait_for("the run final", lambda: stores.runs.read_flow_run(run.id).state.is_final())
    done = stores.runs.read_flow_run(run.id)
    assert done.state.type is StateType.COMPLETED, done.state
    assert done.state.details.result is not None
    assert engine.load_result(done.state.details.result) == "ok after 2"
    assert done.run_count == 2
    names = [s.name for s in stores.runs.read_state_history(run.id)]
    assert names[-3:] == ["AwaitingRetry", "Retrying", "Completed"]  # Prefect names it so
    assert ledger.read_text().count("try") == 2
