"""A deployed flow's retry policy reaches its runs, so worker runs are retried like local ones.

Prefect 3 is the oracle: a flow's ``retries``/``retry_delay_seconds`` apply to its
runs wherever they execute; when a worker's engine picks up a deployment run it
copies the flow's policy onto the run (src/prefect/flow_engine.py, ``begin_run``:
"Update the empirical policy to match the flow if it is not set"). Here deploy
stores the flow's policy on the deployment and every run of it gets it when it is
created, so the maintenance sweep (which retries crashed runs with retries left)
sees it before any worker has loaded the flow. ARCHITECTURE.md, "Crashes are
detected": a crashed run with retries left goes back to its queue as AwaitingRetry.
"""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from runtime.engine.client import DirectEngineClient
from runtime.models import DeploymentCreate, RetryPolicy, WorkPoolCreate
from runtime.services import claims, deployments
from runtime.services.sweep import sweep
from runtime.states import StateType, utcnow
from runtime.stores import Stores
from sdk import Flow

FLOW_FILE = textwrap.dedent(
    """
    from sdk import flow


    @flow(name="flaky", retries=1, retry_delay_seconds=5)
    def flaky() -> str:
        return "ok"
    """
)
POOL = "rpool"


@pytest.fixture
def pool(stores: Stores, engine: DirectEngineClient) -> str:
    stores.registry.create_work_pool(WorkPoolCreate(name=POOL))
    stores.queues.ensure_pool_queue(POOL)
    return POOL


def test_deploy_stores_the_flows_retry_policy_and_runs_get_it(
    stores: Stores, pool: str, tmp_path: Path
) -> None:
    """``flow.deploy`` keeps retries=1 / 5 s; a run of the deployment carries them."""
    (tmp_path / "flaky.py").write_text(FLOW_FILE)
    flow = Flow.from_source(tmp_path, "flaky.py:flaky")
    deployment = stores.registry.read_deployment(str(flow.deploy("d", work_pool_name=pool)))
    assert deployment.empirical_policy == RetryPolicy(retries=1, retry_delay_seconds=5)

    run = deployments.run_deployment(stores, deployment.id)
    assert run.empirical_policy.retries == 1
    assert run.empirical_policy.retry_delay_seconds == 5


def test_a_deployment_without_a_policy_gives_runs_no_retries(stores: Stores, pool: str) -> None:
    """A deployment registered without one (through the API, say): Prefect's default, 0."""
    deployment, _ = stores.registry.upsert_deployment(
        DeploymentCreate(name="d", flow_name="f", entrypoint="f.py:f", work_pool_name=pool)
    )
    assert deployment.empirical_policy is None
    run = deployments.run_deployment(stores, deployment.id)
    assert run.empirical_policy == RetryPolicy()


def test_a_deployment_run_whose_worker_died_is_retried_by_the_sweep(
    stores: Stores, pool: str
) -> None:
    """retries=1, the worker SIGKILLed after its claim: the sweep crashes the run, then
    AwaitingRetry, back on the pool's queue; a second death leaves it Crashed."""
    deployment, _ = stores.registry.upsert_deployment(
        DeploymentCreate(
            name="d",
            flow_name="flaky",
            entrypoint="f.py:flaky",
            work_pool_name=pool,
            empirical_policy=RetryPolicy(retries=1, retry_delay_seconds=0),
        )
    )
    run = deployments.run_deployment(stores, deployment.id)
    [message] = stores.queues.receive(pool, wait_seconds=0, visibility_timeout=3600)
    stores.queues.delete(pool, message.receipt_handle)  # as if it expired and was re-sent
    # claimed two minutes ago by a worker that died at once: nothing heartbeats since
    assert claims.claim_flow_run(stores, run.id, "w1", now=utcnow() - timedelta(minutes=2)).won
    report = sweep(stores, heartbeat_timeout_seconds=30)
    assert (report.crashed, report.retried, report.requeued, report.errors) == (1, 1, 1, [])
    retried = stores.runs.read_flow_run(run.id)
    assert retried.state.type is StateType.PENDING  # AwaitingRetry, due: sent again
    assert [s.name for s in stores.runs.read_state_history(run.id)][-3:] == [
        "Crashed",
        "AwaitingRetry",
        "Pending",
    ]
    [again] = stores.queues.receive(pool, wait_seconds=0, visibility_timeout=3600)
    assert again.body is not None and again.body.flow_run_id == run.id

    # a second worker claims the retry and dies too: no retries left, it stays Crashed
    assert claims.claim_flow_run(stores, run.id, "w2", now=utcnow() - timedelta(minutes=1)).won
    final = sweep(stores, heartbeat_timeout_seconds=30)
    assert (final.crashed, final.retried) == (1, 0)
    assert stores.runs.read_flow_run(run.id).state.type is StateType.CRASHED
