"""The current run's deployment: ``id``, ``flow_run_id``, ``name``, ``version``, ``parameters``.

A flow run started by calling the flow has no deployment: ``id``, ``name`` and
``version`` are None and ``parameters`` is {} (as Prefect's
``prefect.runtime.deployment`` outside a deployment). ``id`` is the flow run's
``deployment_id`` once deployments start runs; the deployment's name, version
and parameters are read from it then.
"""

from __future__ import annotations

from typing import Any

from runtime.engine.context import current_flow_run

_NAMES = ("id", "flow_run_id", "name", "version", "parameters")


def _deployment(deployment_id: str) -> Any:
    """The deployment record (None when it cannot be read)."""
    from sdk.client import get_client

    try:
        return get_client().read_deployment(deployment_id)
    except Exception:
        return None


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"sdk.runtime.deployment has no attribute {name!r}")
    ctx = current_flow_run()
    if name == "flow_run_id":
        return ctx.flow_run.id if ctx is not None else None
    deployment_id = ctx.flow_run.deployment_id if ctx is not None else None
    if deployment_id is None:
        return {} if name == "parameters" else None
    if name == "id":
        return deployment_id
    record = _deployment(deployment_id)
    if name == "parameters":
        return dict(getattr(record, "parameters", None) or {})
    return getattr(record, name, None)


def __dir__() -> list[str]:
    return list(_NAMES)
