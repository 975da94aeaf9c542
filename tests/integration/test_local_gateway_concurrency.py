"""The local API gateway under concurrent requests: each one gets its own route's answer.

Lambda runs one invocation at a time per container; the Powertools resolver behind
``handlers.api`` keeps the current event and its path parameters on the app object.
The local gateway serves HTTP on threads, so without care two requests at once could
read each other's path parameters (a ``GET /deployments/<id>`` answered ``422
path.id: Field required`` while a ``GET /flow_runs?...`` ran). Found by a CLI
watching a run while a worker polled the same gateway.
"""

from __future__ import annotations

import threading
from collections import Counter

from runtime.models import DeploymentCreate, WorkPoolCreate
from sdk.http_client import StratoflowClient

THREADS = 8
REQUESTS = 25


def test_concurrent_requests_to_routes_with_and_without_path_parameters(api: str) -> None:
    with StratoflowClient(api) as setup:
        setup.create_work_pool(WorkPoolCreate(name="gw"))
        deployment = setup.create_deployment(
            DeploymentCreate(name="d", flow_name="f", work_pool_name="gw")
        )
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def hammer(index: int) -> None:
        with StratoflowClient(api) as client:
            barrier.wait()
            for n in range(REQUESTS):
                try:
                    if (index + n) % 2:
                        assert client.read_deployment(deployment.id).id == deployment.id
                    else:
                        client.list_flow_runs(deployment_id=deployment.id)
                    outcome = "ok"
                except Exception as exc:
                    outcome = f"{type(exc).__name__}: {exc}"
                with lock:
                    outcomes[outcome] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert outcomes == Counter({"ok": THREADS * REQUESTS}), outcomes
