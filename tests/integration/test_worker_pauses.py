"""A worker running flows that pause or suspend: real worker subprocesses on the moto server.

Prefect 3 is the oracle (src/prefect/flow_runs.py, docs/v3/advanced/interactive.mdx):
``suspend_flow_run`` proposes Suspended and the flow's process exits (the
infrastructure is torn down); resuming schedules the run again and a worker runs
the flow from the start, where the same suspend returns the input at once.
``pause_flow_run`` keeps the process waiting; resumed, the flow goes on to its end.

What the worker must get right here: a suspended run is neither a lost run nor a
crash (the message is deleted, the run stays Suspended, the worker keeps polling),
and a paused run is still the worker's (it keeps heartbeating it), so the
maintenance sweep never crashes it while it waits or after it resumes.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from runtime.engine.client import DirectEngineClient
from runtime.models import DeploymentCreate, FlowRunCreate, WorkPoolCreate
from runtime.services import dispatch, pauses
from runtime.services.sweep import sweep
from runtime.states import Scheduled, StateType
from runtime.stores import Stores
from tests.conftest import Backend
from tests.integration.test_worker import wait_for, worker_env, workers

FLOWS = textwrap.dedent(
    """
    import pydantic

    from sdk import flow
    from sdk.flow_runs import pause_flow_run, suspend_flow_run


    class Approval(pydantic.BaseModel):
        approved: bool
        approver: str = "nobody"


    @flow(name="suspends")
    def suspends(ledger: str) -> str:
        with open(ledger, "a") as f:
            f.write("start\\n")
        answer = suspend_flow_run(wait_for_input=Approval, timeout=600)
        return f"{answer.approved} {answer.approver}"


    @flow(name="pauses")
    def pauses(ledger: str) -> str:
        with open(ledger, "a") as f:
            f.write("start\\n")
        pause_flow_run(timeout=600)
        return "resumed"
    """
)

HEARTBEAT_TIMEOUT = 2.0
"""The workers' and the sweep's heartbeat timeout: short, so a stale heartbeat shows."""


class PausePool:
    """A pool with one deployment per flow of :data:`FLOWS`."""

    def __init__(self, stores: Stores, tmp_path: Path) -> None:
        self.stores = stores
        self.name = "ppool"
        self.ledger = tmp_path / "ledger.txt"
        self.ledger.touch()
        stores.registry.create_work_pool(WorkPoolCreate(name=self.name))
        stores.queues.ensure_pool_queue(self.name)
        entry = tmp_path / "pausing_flows.py"
        entry.write_text(FLOWS)
        self.deployments = {
            name: stores.registry.upsert_deployment(
                DeploymentCreate(
                    name="d",
                    flow_name=name,
                    entrypoint=f"{entry}:{name}",
                    work_pool_name=self.name,
                    parameters={"ledger": str(self.ledger)},
                )
            )[0]
            for name in ("suspends", "pauses")
        }

    def submit(self, flow_name: str) -> str:
        run = self.stores.runs.create_flow_run(
            FlowRunCreate(
                flow_name=flow_name,
                deployment_id=self.deployments[flow_name].id,
                work_pool_name=self.name,
                state=Scheduled(),
            )
        )
        return dispatch.enqueue_flow_run(self.stores, run).id

    def state_name(self, run_id: str) -> str:
        return self.stores.runs.read_flow_run(run_id).state.name

    def starts(self) -> int:
        return self.ledger.read_text().count("start")


def test_a_suspended_run_lets_its_worker_go_and_runs_again_with_its_input_on_resume(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    """Suspended: message deleted, run not crashed, worker polls on; resumed: Completed."""
    pool = PausePool(stores, tmp_path)
    env = worker_env(
        aws_backend, prefix, STRATOFLOW_HEARTBEAT_TIMEOUT_SECONDS=str(HEARTBEAT_TIMEOUT)
    )
    with workers(env, pool.name) as [proc]:
        run_id = pool.submit("suspends")
        wait_for("the run suspended", lambda: pool.state_name(run_id) == "Suspended")
        # the child exited; the worker settles the run without crashing it
        wait_for(
            "the message deleted",
            lambda: (
                stores.queues.depth(pool.name).visible + stores.queues.depth(pool.name).in_flight
                == 0
            ),
        )
        time.sleep(HEARTBEAT_TIMEOUT + 1)  # long past the heartbeat timeout
        report = sweep(stores, heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)
        assert (report.crashed, report.errors) == (0, [])
        assert pool.state_name(run_id) == "Suspended"
        assert proc.poll() is None  # the worker is still polling

        pauses.resume_flow_run(stores, run_id, {"approved": True, "approver": "ann"})
        wait_for(
            "the resumed run final", lambda: stores.runs.read_flow_run(run_id).state.is_final()
        )
    done = stores.runs.read_flow_run(run_id)
    assert done.state.type is StateType.COMPLETED, done.state
    assert done.state.details.result is not None
    assert DirectEngineClient(stores).load_result(done.state.details.result) == "True ann"
    assert pool.starts() == 2  # run from the start again, as Prefect does
    names = [s.name for s in stores.runs.read_state_history(run_id)]
    assert "Suspended" in names and "Resuming" in names and "Crashed" not in names


def test_a_paused_run_is_never_crashed_by_the_sweep_and_completes_once_resumed(
    tmp_path: Path, aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    """Paused in its process past the heartbeat timeout, swept, resumed: Completed."""
    pool = PausePool(stores, tmp_path)
    env = worker_env(
        aws_backend, prefix, STRATOFLOW_HEARTBEAT_TIMEOUT_SECONDS=str(HEARTBEAT_TIMEOUT)
    )
    with workers(env, pool.name) as [proc]:
        run_id = pool.submit("pauses")
        wait_for("the run paused", lambda: pool.state_name(run_id) == "Paused")
        time.sleep(HEARTBEAT_TIMEOUT + 1)  # paused longer than the heartbeat timeout
        report = sweep(stores, heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)
        assert (report.crashed, report.errors) == (0, [])
        assert pool.state_name(run_id) == "Paused"

        pauses.resume_flow_run(stores, run_id)

        def swept_until_final() -> bool:
            # sweep while the resumed run finishes: it must never be crashed
            report = sweep(stores, heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT)
            assert report.crashed == 0
            assert proc.poll() is None
            return stores.runs.read_flow_run(run_id).state.is_final()

        wait_for("the resumed run final", swept_until_final)
    done = stores.runs.read_flow_run(run_id)
    assert done.state.type is StateType.COMPLETED, done.state
    assert pool.starts() == 1  # it waited in its process: one execution
    assert "Crashed" not in [s.name for s in stores.runs.read_state_history(run_id)]
