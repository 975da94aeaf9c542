"""``sdk.serve``: serve deployments from this process (Prefect's ``prefect.serve``).

``flow.to_deployment(name, ...)`` builds a deployment, ``serve(d1, d2, ...)``
registers them and executes their runs here until Ctrl-C or SIGTERM, and
``flow.serve(name, ...)`` does both for one flow (``runtime/worker/serve.py``).
"""

from __future__ import annotations

from runtime.engine import remote
from runtime.worker.serve import (
    RunnerDeployment,
    SchedulesNotYetSupported,
    serve,
    serve_flow,
    to_deployment,
)

remote.register("to_deployment", to_deployment)
remote.register("serve", serve_flow)

__all__ = ["RunnerDeployment", "SchedulesNotYetSupported", "serve"]
