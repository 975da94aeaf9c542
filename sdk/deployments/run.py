"""``run_deployment``: submit a run of a deployment and, unless told not to, wait for its end.

Prefect 3's ``prefect.deployments.run_deployment`` (src/prefect/deployments/flow_runs.py)::

    from sdk.deployments import run_deployment

    flow_run = run_deployment("etl/nightly", parameters={"day": "2026-12-01"}, timeout=0)

``name`` is ``"flow-name/deployment-name"`` or the deployment's id. The run is
created through the configured backend (the API when ``STRATOFLOW_API_URL`` is set,
the stores otherwise), where the deployment-run service checks the parameters
against the deployment's schema before anything is written (an error naming each bad
parameter; nothing is created or enqueued) and sends the run to its pool's queue.

``timeout=None`` waits for a final state, ``timeout=0`` returns the new run at once,
``timeout=N`` returns the run as it is after at most N seconds. Waiting polls the
run with a capped backoff (0.1 s doubling up to ``poll_interval``): a run a worker
finishes quickly is seen quickly, a long one costs one read every ``poll_interval``.
The returned run's ``state.result()`` loads the flow's result.

Called inside a flow run (``as_subflow=True``, the default), the new run records the
calling flow run as its ``parent_flow_run_id``. Prefect also creates a placeholder
task run in the parent to stand for the subflow; Stratoflow links the flow runs only.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from runtime.backoff import Backoff
from runtime.errors import NotFound
from runtime.models import Deployment, DeploymentFlowRunCreate, FlowRun

if TYPE_CHECKING:
    from sdk.client import SyncClient

__all__ = ["arun_deployment", "run_deployment"]

DEFAULT_POLL_INTERVAL = 5.0
"""Prefect's default ``poll_interval``: the longest wait between two reads of the run."""

FIRST_POLL = 0.1
"""The first wait between two reads of the run; it doubles up to ``poll_interval``."""


def _deployment_id(name: str | uuid.UUID) -> str | None:
    if isinstance(name, uuid.UUID):
        return str(name)
    try:
        return str(uuid.UUID(name))
    except ValueError:
        return None


def _split_name(name: str) -> tuple[str, str]:
    flow_name, sep, deployment_name = name.partition("/")
    if not sep or not flow_name or not deployment_name:
        raise ValueError(
            f"run_deployment needs 'flow-name/deployment-name' or a deployment id, got {name!r}"
        )
    return flow_name, deployment_name


def _read_deployment(client: SyncClient, name: str | uuid.UUID) -> Deployment:
    """The deployment called ``name`` (ObjectNotFound naming it when there is none)."""
    from sdk.client import ApiSyncClient, ObjectNotFound

    deployment_id = _deployment_id(name)
    try:
        if isinstance(client, ApiSyncClient):
            if deployment_id is not None:
                return client.api.read_deployment(deployment_id)
            return client.api.read_deployment_by_name(*_split_name(str(name)))
        registry = client.stores.registry
        if deployment_id is not None:
            return registry.read_deployment(deployment_id)
        return registry.read_deployment_by_name(*_split_name(str(name)))
    except NotFound:
        raise ObjectNotFound(f"deployment {str(name)!r} not found", name=str(name)) from None


def _create_run(
    client: SyncClient, deployment: Deployment, request: DeploymentFlowRunCreate
) -> FlowRun:
    """Create (and enqueue) the run through the client's backend: the API or the service."""
    from sdk.client import ApiSyncClient

    if isinstance(client, ApiSyncClient):
        given = request.model_dump(exclude_unset=True)
        return client.api.create_flow_run_from_deployment(deployment.id, **given)
    from runtime.services.deployments import run_deployment as run_deployment_service

    return run_deployment_service(client.stores, deployment, request)


def _calling_flow_run_id() -> str | None:
    """The flow run this code runs in (directly or in one of its tasks), if any."""
    from runtime.engine.context import FlowRunContext, TaskRunContext

    flow_ctx = FlowRunContext.get()
    if flow_ctx is not None:
        return flow_ctx.flow_run.id
    task_ctx = TaskRunContext.get()
    return task_ctx.task_run.flow_run_id if task_ctx is not None else None


def wait_for_final_state(
    client: SyncClient,
    flow_run: FlowRun,
    timeout: float | None,
    poll_interval: float,
    *,
    sleep: Any = time.sleep,
) -> FlowRun:
    """Read ``flow_run`` until it is final or ``timeout`` seconds passed; the run as last read.

    The waits between reads start at :data:`FIRST_POLL` and double up to
    ``poll_interval``; the last one is cut so the call returns at the timeout.
    """
    backoff = Backoff(base=min(FIRST_POLL, poll_interval), cap=poll_interval, jitter=False)
    deadline = None if timeout is None else time.monotonic() + timeout
    attempt = 0
    while not flow_run.state.is_final():
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        backoff.sleep(attempt, sleep=sleep, limit=left)
        attempt += 1
        flow_run = client.read_flow_run(flow_run.id)
    return flow_run


def run_deployment(
    name: str | uuid.UUID,
    client: Any = None,
    parameters: dict[str, Any] | None = None,
    scheduled_time: datetime | None = None,
    flow_run_name: str | None = None,
    timeout: float | None = None,
    poll_interval: float | None = DEFAULT_POLL_INTERVAL,
    tags: Iterable[str] | None = None,
    idempotency_key: str | None = None,
    work_queue_name: str | None = None,
    as_subflow: bool | None = True,
    job_variables: dict[str, Any] | None = None,
) -> FlowRun:
    """Create a flow run of a deployment and return it when final, or after ``timeout`` seconds.

    ``name``: ``"flow-name/deployment-name"`` or the deployment's id. ``parameters``
    are merged over the deployment's and checked against its parameter schema (an
    InvalidInput naming each bad parameter; nothing is created). ``scheduled_time``
    defaults to now; a run more than 15 minutes ahead waits for the maintenance sweep
    to enqueue it. ``timeout``: None waits for a final state, 0 returns at once, N
    returns the run as it is after N seconds (final or not). ``poll_interval`` is the
    longest wait between two reads of the run. ``idempotency_key`` makes a repeat of
    the same request return the first run. ``client`` is a client from
    ``get_client(sync_client=True)`` (default: the configured backend's).
    ObjectNotFound when there is no such deployment.

    In async code (an async flow or task, or a running event loop) this returns a
    coroutine to await, as Prefect's ``run_deployment`` does (``await
    run_deployment(...)``); :func:`arun_deployment` is that coroutine function.
    """
    args = (name, client, parameters, scheduled_time, flow_run_name, timeout, poll_interval,
            tags, idempotency_key, work_queue_name, as_subflow, job_variables)  # fmt: skip
    if in_async_context():
        # as Prefect's async_dispatch: in async code the same call is a coroutine to await
        return cast("FlowRun", arun_deployment(*args))
    return _run_deployment(*args)


def in_async_context() -> bool:
    """True in async code: an async flow or task run, or (outside runs) a running event loop.

    Prefect's ``is_in_async_context`` (src/prefect/_internal/compatibility/async_dispatch.py):
    inside a run, whether its function is async decides; a sync flow called from async
    code is sync.
    """
    from runtime.engine.context import TaskRunContext, current_flow_run

    task_ctx = TaskRunContext.get()
    if task_ctx is not None:
        return bool(getattr(task_ctx.task, "isasync", False))
    flow_ctx = current_flow_run()
    if flow_ctx is not None:
        return bool(getattr(flow_ctx.flow, "isasync", False))
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _run_deployment(
    name: str | uuid.UUID,
    client: Any,
    parameters: dict[str, Any] | None,
    scheduled_time: datetime | None,
    flow_run_name: str | None,
    timeout: float | None,
    poll_interval: float | None,
    tags: Iterable[str] | None,
    idempotency_key: str | None,
    work_queue_name: str | None,
    as_subflow: bool | None,
    job_variables: dict[str, Any] | None,
) -> FlowRun:
    """:func:`run_deployment` in the calling thread (blocking while it waits)."""
    if timeout is not None and timeout < 0:
        raise ValueError("`timeout` cannot be negative")
    interval = DEFAULT_POLL_INTERVAL if poll_interval is None else float(poll_interval)
    if interval <= 0:
        raise ValueError("`poll_interval` must be positive")
    fields: dict[str, Any] = {
        "parameters": dict(parameters or {}),
        "name": flow_run_name,
        "tags": list(tags) if tags is not None else None,
        "scheduled_time": scheduled_time,
        "idempotency_key": idempotency_key,
        "work_queue_name": work_queue_name,
        "job_variables": job_variables,
        "parent_flow_run_id": _calling_flow_run_id() if as_subflow else None,
    }
    request = DeploymentFlowRunCreate(**{k: v for k, v in fields.items() if v is not None})
    if client is not None:
        return _submit_and_wait(client, name, request, timeout, interval)
    from sdk.client import get_client

    with get_client(sync_client=True) as made:
        return _submit_and_wait(made, name, request, timeout, interval)


def _submit_and_wait(
    client: SyncClient,
    name: str | uuid.UUID,
    request: DeploymentFlowRunCreate,
    timeout: float | None,
    poll_interval: float,
) -> FlowRun:
    flow_run = _create_run(client, _read_deployment(client, name), request)
    if timeout == 0:
        return flow_run
    return wait_for_final_state(client, flow_run, timeout, poll_interval)


async def arun_deployment(
    name: str | uuid.UUID,
    client: Any = None,
    parameters: dict[str, Any] | None = None,
    scheduled_time: datetime | None = None,
    flow_run_name: str | None = None,
    timeout: float | None = None,
    poll_interval: float | None = DEFAULT_POLL_INTERVAL,
    tags: Iterable[str] | None = None,
    idempotency_key: str | None = None,
    work_queue_name: str | None = None,
    as_subflow: bool | None = True,
    job_variables: dict[str, Any] | None = None,
) -> FlowRun:
    """:func:`run_deployment` for async code (Prefect's ``arun_deployment``), awaited.

    The blocking work (the requests, the waits between polls) runs on a worker thread,
    so the event loop is never blocked.

    The thread runs in a copy of the caller's context, so ``as_subflow`` still sees the
    calling flow run.
    """
    if timeout is not None and timeout < 0:
        raise ValueError("`timeout` cannot be negative")
    return await asyncio.to_thread(
        _run_deployment,
        name,
        client,
        parameters,
        scheduled_time,
        flow_run_name,
        timeout,
        poll_interval,
        tags,
        idempotency_key,
        work_queue_name,
        as_subflow,
        job_variables,
    )
