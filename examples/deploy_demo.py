"""The remote-execution demo: a deployment run by a worker, on the embedded default.

Run it with ``make demo`` (after ``etl_demo.py``) or ``.venv/bin/python
examples/deploy_demo.py``. It:

1. creates the work pool ``demo-pool`` (an SQS queue and its dead-letter queue),
2. deploys ``examples/deploy_demo/flows.py:invoice``: that directory is packed into a
   code bundle, uploaded to S3 once per content hash,
3. starts a worker (``stratoflow worker start --pool demo-pool``) in a subprocess
   talking to this script's embedded moto server,
4. submits three runs through the SDK (``run_deployment(..., timeout=0)``) and waits
   for them,
5. prints each run's state history, the worker that ran it and its result,
6. stops the worker with SIGTERM (what ECS sends), which exits 0.

Against a real stack the same steps are ``stratoflow work-pool create demo-pool``,
``stratoflow deploy flows.py:invoice --name demo --pool demo-pool``, ``stratoflow
worker start --pool demo-pool`` and ``stratoflow deployment run invoice/demo --watch``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from runtime.errors import AlreadyExists
from runtime.models import WorkPoolCreate
from runtime.services.work_pools import create_work_pool
from runtime.stores import Stores
from sdk import Flow, get_client
from sdk.deployments import run_deployment
from sdk.deployments.run import wait_for_final_state

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
POOL = "demo-pool"
ORDERS = [
    {"customer": "ada", "items": {"apple": 3, "pear": 2}},
    {"customer": "grace", "items": {"kiwi": 10}, "currency": "USD"},
    {"customer": "linus", "items": {"fig": 1, "plum": 4, "lime": 2}},
]


def start_worker(stores: Stores, cache_dir: str) -> subprocess.Popen[bytes]:
    """``stratoflow worker start`` in a subprocess, on this process's embedded moto server."""
    env = dict(os.environ)
    env.pop("STRATOFLOW_API_URL", None)
    env.update(
        {
            "AWS_ENDPOINT_URL": stores.endpoint_url,  # type: ignore[attr-defined]
            "AWS_ACCESS_KEY_ID": "embedded",
            "AWS_SECRET_ACCESS_KEY": "embedded",
            "AWS_DEFAULT_REGION": "us-east-1",
            "STRATOFLOW_PREFIX": stores.specs.prefix,
            "STRATOFLOW_WORKER_POLL_WAIT_SECONDS": "1",  # stops within a second of SIGTERM
            "STRATOFLOW_WORKER_CACHE_DIR": cache_dir,
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
        }
    )
    command = [sys.executable, "-m", "sdk.cli", "worker", "start", "--pool", POOL]
    return subprocess.Popen([*command, "--name", "demo-worker", "--limit", "3"], env=env, cwd=ROOT)


def main() -> None:
    console = Console(width=120)
    console.print("\n[bold]Deployments, a work pool on SQS and a worker[/bold]")
    with get_client(sync_client=True) as client:
        stores = client.stores
        with contextlib.suppress(AlreadyExists):
            create_work_pool(stores, WorkPoolCreate(name=POOL))
        console.print(f"work pool {POOL!r}: queue {stores.queues.ensure_pool_queue(POOL).url}")

        deployment_id = Flow.from_source(str(HERE / "deploy_demo"), "flows.py:invoice").deploy(
            name="demo", work_pool_name=POOL, parameters={"currency": "EUR"}
        )
        deployment = stores.registry.read_deployment(str(deployment_id))
        bundle = deployment.code_bundle
        console.print(
            f"deployed 'invoice/demo' ({deployment_id}): bundle "
            f"{bundle.sha256[:12] if bundle else '-'}…, {bundle.size if bundle else 0} bytes"
        )

        with tempfile.TemporaryDirectory() as cache_dir:
            worker = start_worker(stores, cache_dir)
            try:
                started = time.perf_counter()
                submitted = [
                    run_deployment("invoice/demo", parameters=order, timeout=0) for order in ORDERS
                ]
                console.print(
                    f"submitted {len(submitted)} runs: " + ", ".join(r.name for r in submitted)
                )
                finished = [wait_for_final_state(client, run, 120, 0.5) for run in submitted]
                elapsed = time.perf_counter() - started
                for run in finished:
                    history = " -> ".join(s.name for s in client.read_flow_run_states(run.id))
                    console.print(
                        f"\n[bold]flow run {run.name}[/bold]: {history}\n"
                        f"  worker: {run.worker_id}\n  result: {run.state.result()!r}"
                    )
                    logs = [line.message for line in client.read_logs(run.id)]
                    console.print(f"  log: {next(m for m in logs if 'pricing' in m)!r}")
                console.print(f"\n3 runs completed by the worker in {elapsed:.1f} s")
                cached = [p.name[:12] for p in Path(cache_dir).iterdir() if p.is_dir()]
                console.print(f"bundles unpacked in the worker's cache: {len(cached)}")
            finally:
                worker.send_signal(signal.SIGTERM)
                code = worker.wait(60)
        console.print(f"worker stopped (SIGTERM), exit code {code}")
    if code != 0 or any(not run.state.is_completed() for run in finished):
        sys.exit(1)


if __name__ == "__main__":
    main()
