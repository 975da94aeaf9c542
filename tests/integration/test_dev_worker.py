"""``stratoflow dev`` starts a worker on the default pool (issue 10, item 7).

Prefect's local loop is ``prefect server start`` plus ``prefect worker start --pool
POOL`` in another shell (docs/v3/deploy/index.mdx); here ``dev`` starts the worker
itself (``--worker POOL``, default one on ``default``), creating the pool when
missing. A deployment run submitted through dev's API completes on that worker,
and Ctrl-C stops the worker process too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runtime.errors import NotFound
from runtime.models import DeploymentCreate
from runtime.states import StateType
from runtime.stores import Stores
from runtime.stores.workers import WorkerStore
from sdk.http_client import StratoflowClient
from tests.conftest import Backend
from tests.integration.test_cli import ROOT, Server, base_env, free_port, parse_exports
from tests.integration.test_worker import worker_env, workers

FLOW_FILE = textwrap.dedent(
    """
    from sdk import flow


    @flow(name="dev-hello")
    def hello(name: str) -> str:
        return f"hello {name}"
    """
)
WAIT = 90.0


def _workers(exports: dict[str, str]) -> list[dict[str, object]]:
    shown = subprocess.run(
        [sys.executable, "-m", "sdk.cli", "worker", "ls", "--json"],
        env={**base_env(), **exports},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    listed: list[dict[str, object]] = json.loads(shown.stdout)
    return listed


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_dev_runs_a_deployment_on_its_own_worker_and_stops_it(tmp_path: Path, prefix: str) -> None:
    (tmp_path / "hello.py").write_text(FLOW_FILE)
    env = base_env(STRATOFLOW_WORKER_POLL_WAIT_SECONDS="1", STRATOFLOW_SHUTDOWN_GRACE_SECONDS="2")
    server = Server(
        ["dev", "--port", str(free_port()), "--moto-port", str(free_port()), "--prefix", prefix],
        env,
    )
    try:
        exports = parse_exports(server.wait_line("export "))
        assert any("workers" in line and "default" in line for line in server.seen)
        [worker] = _workers(exports)  # registered before dev printed its exports
        assert worker["work_pool_name"] == "default"
        pid = worker["pid"]
        assert isinstance(pid, int)
        with StratoflowClient(exports["STRATOFLOW_API_URL"]) as client:
            assert client.read_work_pool("default").name == "default"
            deployment = client.create_deployment(
                DeploymentCreate(
                    name="local",
                    flow_name="dev-hello",
                    entrypoint=f"{tmp_path / 'hello.py'}:hello",
                    work_pool_name="default",
                )
            )
            run = client.create_flow_run_from_deployment(deployment.id, parameters={"name": "dev"})
            deadline = time.monotonic() + WAIT
            while not client.read_flow_run(run.id).state.is_final():
                assert time.monotonic() < deadline, "the run never ended"
                time.sleep(0.2)
            done = client.read_flow_run(run.id)
            assert done.state.type is StateType.COMPLETED, done.state
            assert done.worker_id is not None and done.worker_id.startswith(str(worker["name"]))
        # the CLI sees dev's worker polling: no "no worker" warning, watched to Completed
        command = ["deployment", "run", "dev-hello/local", "--param", "name=cli", "--watch"]
        watched = subprocess.run(
            [sys.executable, "-m", "sdk.cli", *command],
            env={**base_env(), **exports},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        assert watched.returncode == 0, watched.stderr
        assert "no worker" not in watched.stderr, watched.stderr
        assert "Completed" in watched.stdout + watched.stderr
        assert server.stop(signal.SIGINT, timeout=60) == 0, server.stderr
    finally:
        server.kill()
    assert "Traceback" not in server.stderr, server.stderr
    assert _gone(pid)  # dev stopped its worker


def test_a_worker_on_the_default_pool_creates_it_when_missing(
    aws_backend: Backend, prefix: str, stores: Stores
) -> None:
    """``stratoflow worker start --pool default`` on a fresh stack: the pool is made, it polls.

    (Prefect's ``prefect worker start --pool P`` creates a missing pool too; here only
    the default one is, another unknown pool stays a clear error.)
    """
    with pytest.raises(NotFound):
        stores.registry.read_work_pool("default")
    registry = WorkerStore(stores.db, stores.specs.registry)
    with workers(worker_env(aws_backend, prefix), "default") as [proc]:
        deadline = time.monotonic() + WAIT
        while not any(w.pid == proc.pid for w in registry.list("default")):
            assert proc.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "the worker never polled"
            time.sleep(0.2)
    assert stores.registry.read_work_pool("default").name == "default"
