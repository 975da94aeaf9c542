"""``sdk.serve``: serve deployments from this process (Prefect's ``prefect.serve``).

``flow.to_deployment(name, ...)`` builds a deployment, ``serve(d1, d2, ...)``
registers them and executes their runs here until Ctrl-C or SIGTERM, and
``flow.serve(name, ...)`` does both for one flow (``runtime/worker/serve.py``,
imported on first use: a flow's process that never serves does not load it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.engine import remote

if TYPE_CHECKING:
    from runtime.engine.flows import Flow
    from runtime.worker.serve import RunnerDeployment, SchedulesNotYetSupported

__all__ = ["RunnerDeployment", "SchedulesNotYetSupported", "serve"]


def serve(*deployments: RunnerDeployment, **options: Any) -> None:
    """Register the deployments and execute their runs here until Ctrl-C or SIGTERM.

    Options: ``limit`` (most runs at once), ``print_starting_message``.
    """
    from runtime.worker import serve as implementation

    implementation.serve(*deployments, **options)


def _to_deployment(flow: Flow[..., Any], name: str, **options: Any) -> RunnerDeployment:
    from runtime.worker import serve as implementation

    return implementation.to_deployment(flow, name, **options)


def _serve_flow(flow: Flow[..., Any], name: str | None = None, **options: Any) -> None:
    from runtime.worker import serve as implementation

    implementation.serve_flow(flow, name, **options)


def __getattr__(name: str) -> Any:
    if name in ("RunnerDeployment", "SchedulesNotYetSupported"):
        from runtime.worker import serve as implementation

        return getattr(implementation, name)
    raise AttributeError(f"module 'sdk.serve' has no attribute {name!r}")


remote.register("to_deployment", _to_deployment)
remote.register("serve", _serve_flow)
