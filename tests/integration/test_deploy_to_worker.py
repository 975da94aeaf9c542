"""The journey a user drives: deploy a flow, start a worker, run the deployment, read it back.

Prefect's reference for each step: ``flow.from_source(source, entrypoint).deploy(name=...,
work_pool_name=...)`` (docs/v3/deploy/index.mdx, src/prefect/flows.py ``from_source`` /
``deploy``); ``run_deployment(name, parameters=..., timeout=...)`` returning the flow run,
final unless the timeout ran out (src/prefect/deployments/flow_runs.py); a worker polling
its pool and executing each run in a subprocess (docs/v3/concepts/workers.mdx);
``prefect deploy path/file.py:flow --name N --pool P`` and ``prefect deployment run
FLOW/N --watch``, which exits non-zero unless the run completed
(docs/v3/api-ref/cli/deployment.mdx). Stratoflow's default code location is an S3 bundle
of the entrypoint's directory (honouring ``.stratoflowignore``), downloaded once per
content hash by the worker.

Everything is a real process against the session's loopback moto server: the worker is
``python -m sdk.cli worker start``, the CLI commands are subprocesses, the API is the
local gateway (``api`` fixture).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from runtime.bundles import BundleError
from runtime.engine.client import DirectEngineClient
from runtime.errors import InvalidInput
from runtime.models import FlowRunFilter, WorkPoolCreate
from runtime.services.work_pools import create_work_pool
from runtime.states import StateType
from runtime.stores import Stores
from sdk import Flow
from sdk.client import ApiSyncClient, ObjectNotFound
from sdk.deployments import run_deployment
from sdk.deployments.deploy import DeploymentError
from sdk.http_client import StratoflowClient
from tests.conftest import Backend
from tests.integration.test_cli import run_cli
from tests.integration.test_worker import WAIT, worker_env, workers

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120

FLOWS = textwrap.dedent(
    """
    from pathlib import Path

    from sdk import flow, get_run_logger


    @flow(name="etl")
    def etl(rows: int, table: str = "sales", fail: bool = False) -> dict:
        get_run_logger().info("loading %s rows into %s", rows, table)
        if fail:
            raise ValueError(f"table {table} is locked")
        return {"loaded": rows * 10, "table": table, "code": str(Path(__file__).resolve().parent)}
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The user's code: ``flows.py`` plus scratch files ``.stratoflowignore`` leaves out."""
    root = tmp_path / "project"
    (root / "scratch").mkdir(parents=True)
    (root / "flows.py").write_text(FLOWS)
    (root / "scratch" / "dump.csv").write_text("a,b\n" * 100)
    (root / ".stratoflowignore").write_text("scratch/\n")
    return root


@pytest.fixture
def pool(stores: Stores) -> str:
    """A work pool with its SQS queue (as ``stratoflow work-pool create etl-pool`` makes it)."""
    create_work_pool(stores, WorkPoolCreate(name="etl-pool"))
    return "etl-pool"


@pytest.fixture
def api_client(api: str) -> Any:
    """The SDK's client over the HTTP API (what ``get_client()`` gives with STRATOFLOW_API_URL)."""
    with StratoflowClient(api) as http:
        yield ApiSyncClient(http)


def queue_empty(stores: Stores, pool: str) -> bool:
    depth = stores.queues.depth(pool)
    return (depth.visible, depth.in_flight, depth.delayed) == (0, 0, 0)


def test_deploy_from_source_run_on_a_worker_and_read_it_back(
    tmp_path: Path,
    aws_backend: Backend,
    prefix: str,
    stores: Stores,
    engine: DirectEngineClient,
    pool: str,
    project: Path,
    api: str,
    api_client: Any,
) -> None:
    deployment_id = Flow.from_source(str(project), "flows.py:etl").deploy(
        name="nightly", work_pool_name=pool, parameters={"table": "orders"}
    )
    deployment = stores.registry.read_deployment(str(deployment_id))
    assert deployment.code_bundle is not None  # the default: an S3 bundle
    cache = tmp_path / "worker-cache"
    env = worker_env(aws_backend, prefix, STRATOFLOW_WORKER_CACHE_DIR=str(cache))
    with workers(env, pool):
        first = run_deployment("etl/nightly", parameters={"rows": 3}, timeout=WAIT)
        assert first.state.type is StateType.COMPLETED, first.state
        value = first.state.result()
        second = run_deployment("etl/nightly", parameters={"rows": 5, "table": "x"}, timeout=WAIT)
        assert second.state.type is StateType.COMPLETED, second.state
        other = second.state.result()

    # the deployment's parameters under the run's; the code ran from the worker's cache
    assert (value["loaded"], value["table"]) == (30, "orders")
    assert (other["loaded"], other["table"]) == (50, "x")
    [unpacked] = [p for p in cache.iterdir() if p.is_dir()]  # downloaded once, reused
    assert value["code"] == other["code"] == str(unpacked.resolve())
    assert sorted(p.name for p in unpacked.iterdir()) == [".stratoflowignore", "flows.py"]
    assert queue_empty(stores, pool)

    # the API: states, logs, the run itself
    read = api_client.read_flow_run(first.id)
    assert (read.state.type, read.deployment_id, read.work_pool_name) == (
        StateType.COMPLETED,
        str(deployment_id),
        pool,
    )
    assert read.worker_id is not None
    assert [s.name for s in api_client.read_flow_run_states(first.id)] == [
        "Scheduled",
        "Pending",
        "Running",
        "Completed",
    ]
    assert "loading 3 rows into orders" in [r.message for r in api_client.read_logs(first.id)]

    # the CLI
    shown = run_cli("flow-run", "inspect", first.id, "--json", api_url=api).json()
    assert (shown["state"]["type"], shown["deployment_id"]) == ("COMPLETED", str(deployment_id))
    logs = run_cli("flow-run", "logs", first.id, api_url=api).ok()
    assert "loading 3 rows into orders" in logs.out


def test_bad_input_is_refused_before_anything_is_created_or_enqueued(
    stores: Stores, engine: DirectEngineClient, pool: str, project: Path
) -> None:
    source = Flow.from_source(str(project), "flows.py:etl")
    deployment_id = str(source.deploy(name="nightly", work_pool_name=pool))

    def runs() -> list[str]:
        listed = stores.runs.list_flow_runs(FlowRunFilter(deployment_id=deployment_id))
        return [r.id for r in listed.items]

    with pytest.raises(InvalidInput, match="rows"):  # not an integer
        run_deployment("etl/nightly", parameters={"rows": "many"}, timeout=0)
    with pytest.raises(InvalidInput, match="rows"):  # required, no default
        run_deployment("etl/nightly", parameters={}, timeout=0)
    with pytest.raises(ObjectNotFound, match="etl/weekly"):
        run_deployment("etl/weekly", parameters={"rows": 1}, timeout=0)
    assert runs() == []
    assert queue_empty(stores, pool)

    with pytest.raises(DeploymentError, match="work pool 'nowhere' does not exist"):
        source.deploy(name="elsewhere", work_pool_name="nowhere")
    (project / ".stratoflowignore").write_text("scratch/\nflows.py\n")  # the entrypoint left out
    with pytest.raises((DeploymentError, BundleError), match=r"flows\.py"):
        source.deploy(name="unbundled", work_pool_name=pool)
    (project / ".stratoflowignore").write_text("scratch/\n")
    with pytest.raises((DeploymentError, InvalidInput), match="missing_flow"):
        Flow.from_source(str(project), "flows.py:missing_flow")
    assert [d.name for d in stores.registry.list_deployments().items] == ["nightly"]
    assert stores.runs.list_flow_runs(FlowRunFilter()).items == []
    assert queue_empty(stores, pool)


def cli(
    *args: str, cwd: Path, env: dict[str, str], timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sdk.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_cli_deploy_then_deployment_run_watch_exits_with_the_run(
    aws_backend: Backend, prefix: str, stores: Stores, pool: str, project: Path, api: str
) -> None:
    direct = {k: v for k, v in os.environ.items() if not k.startswith("STRATOFLOW_")}
    direct.update({"STRATOFLOW_PREFIX": prefix, "PYTHONPATH": str(ROOT)})
    deployed = cli(
        "deploy", "flows.py:etl", "--name", "cli", "--pool", pool, cwd=project, env=direct
    )
    assert deployed.returncode == 0, deployed.stderr
    assert "Deployed 'etl/cli'" in deployed.stdout
    over_api = {**direct, "STRATOFLOW_API_URL": api, "COLUMNS": "250"}
    with workers(worker_env(aws_backend, prefix), pool):
        ok = cli(
            "deployment", "run", "etl/cli", "--param", "rows=2", "--watch", cwd=ROOT, env=over_api
        )
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "Completed" in ok.stdout + ok.stderr
        assert "loading 2 rows into sales" in ok.stdout + ok.stderr
        failed = cli(
            "deployment",
            "run",
            "etl/cli",
            "--param",
            "rows=2",
            "--param",
            "fail=true",
            "--watch",
            cwd=ROOT,
            env=over_api,
        )
        assert failed.returncode != 0, failed.stdout + failed.stderr
        assert "Failed" in failed.stdout + failed.stderr
        assert "Traceback" not in failed.stderr
    finished = stores.runs.list_flow_runs(FlowRunFilter()).items
    assert sorted(r.state.type.value for r in finished) == ["COMPLETED", "FAILED"]
    assert queue_empty(stores, pool)

    # bad input from the shell: one clear line, exit non-zero, nothing created
    nowhere = cli(
        "deploy", "flows.py:etl", "--name", "x", "--pool", "nowhere", cwd=project, env=direct
    )
    assert nowhere.returncode != 0 and "Traceback" not in nowhere.stderr
    assert "work pool 'nowhere' does not exist" in nowhere.stderr
    bad = cli("deployment", "run", "etl/cli", "--param", "rows=many", cwd=ROOT, env=over_api)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "rows" in bad.stderr
    unknown = cli("deployment", "run", "etl/weekly", cwd=ROOT, env=over_api)
    assert unknown.returncode != 0 and "Traceback" not in unknown.stderr
    assert "etl/weekly" in unknown.stderr
    assert [d.name for d in stores.registry.list_deployments().items] == ["cli"]
    assert len(stores.runs.list_flow_runs(FlowRunFilter()).items) == 2
    assert queue_empty(stores, pool)
