"""Flows, deployments and work pools (``/flows``, ``/deployments``, ``/work_pools``).

Thin: every route validates its input with the models of ``runtime.models`` and
calls a use case of :mod:`runtime.services` (or, to read one object,
:class:`runtime.stores.registry.RegistryStore`); domain errors become the
API's error shape in ``handlers.api``.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.event_handler.router import Router

from handlers.deps import get_stores
from runtime.models import (
    Deployment,
    DeploymentCreate,
    DeploymentFlowRunCreate,
    DeploymentUpdate,
    FlowRun,
    FlowSummary,
    Page,
    WorkPool,
    WorkPoolCreate,
    WorkPoolStatus,
    WorkPoolUpdate,
)
from runtime.services import deployments, pages, work_pools

router = Router()

DeploymentId = Annotated[str, Path(min_length=1, max_length=100, description="Deployment id")]
PoolName = Annotated[str, Path(min_length=1, max_length=100, description="Work pool name")]
NamePart = Annotated[str, Path(min_length=1, max_length=200)]

Limit = Annotated[int, Query(ge=1, le=1000, description="Page size (1..1000)")]
Cursor = Annotated[str | None, Query(description="next_cursor of the previous page")]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=512, description="Retry-safe key"),
]


def _json(status: int, body: Any) -> Response[Any]:
    return Response(status_code=status, content_type="application/json", body=body)


def _no_content() -> Response[None]:
    return Response(status_code=204, content_type="application/json", body=None)


# ----------------------------------------------------------------------------- flows


@router.get("/flows", summary="List flows", tags=["flows"])
def list_flows(limit: Limit = 200, cursor: Cursor = None) -> Page[FlowSummary]:
    """Flows that have deployments or runs, by name."""
    return pages.list_flows(get_stores(), limit=limit, cursor=cursor)


# ----------------------------------------------------------------------------- deployments


@router.post("/deployments", summary="Create or update a deployment", tags=["deployments"])
def upsert_deployment(body: Annotated[DeploymentCreate, Body()]) -> Response[Deployment]:
    """Upsert by ``flow_name`` + ``name``: 201 when created, 200 when it replaced one."""
    deployment, created = deployments.upsert_deployment(get_stores(), body)
    return _json(201 if created else 200, deployment)


@router.get("/deployments", summary="List deployments", tags=["deployments"])
def list_deployments(
    flow_name: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    work_pool_name: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    limit: Limit = 200,
    cursor: Cursor = None,
) -> Page[Deployment]:
    """Deployments by flow name then name, optionally of one flow and/or work pool."""
    return pages.list_deployments(
        get_stores(), flow_name, work_pool_name, limit=limit, cursor=cursor
    )


@router.get(
    "/deployments/name/<flow_name>/<name>",
    summary="Read a deployment by name",
    tags=["deployments"],
)
def read_deployment_by_name(flow_name: NamePart, name: NamePart) -> Deployment:
    """The deployment ``name`` of flow ``flow_name``."""
    return get_stores().registry.read_deployment_by_name(flow_name, name)


@router.get("/deployments/<id>", summary="Read a deployment", tags=["deployments"])
def read_deployment(id: DeploymentId) -> Deployment:
    """One deployment by id."""
    return get_stores().registry.read_deployment(id)


@router.patch("/deployments/<id>", summary="Update a deployment", tags=["deployments"])
def update_deployment(
    id: DeploymentId,
    body: Annotated[DeploymentUpdate, Body()],
) -> Deployment:
    """Change the fields given; the others stay."""
    return deployments.update_deployment(get_stores(), id, body)


@router.delete("/deployments/<id>", summary="Delete a deployment", tags=["deployments"])
def delete_deployment(id: DeploymentId) -> Response[None]:
    """204; its runs stay."""
    get_stores().registry.delete_deployment(id)
    return _no_content()


@router.post(
    "/deployments/<id>/create_flow_run",
    summary="Run a deployment",
    tags=["deployments"],
)
def create_flow_run_from_deployment(
    id: DeploymentId,
    body: Annotated[DeploymentFlowRunCreate | None, Body()] = None,
    idempotency_key: IdempotencyKey = None,
) -> Response[FlowRun]:
    """A flow run of the deployment, sent to its work pool's queue: 201 (200 on a repeat).

    Parameters are merged over the deployment's and, when it enforces its
    parameter schema, validated against it (422 naming each bad parameter); a
    deployment without a work pool, or whose pool does not exist, is 409. Nothing
    is created when refused. A run due now is returned PENDING (queued), one due
    later SCHEDULED (queued with a delay within 15 minutes, else by the sweep).
    """
    run, created = deployments.run_deployment_once(
        get_stores(), id, body, idempotency_key=idempotency_key
    )
    return _json(201 if created else 200, run)


# ----------------------------------------------------------------------------- work pools


@router.post("/work_pools", summary="Create a work pool", tags=["work pools"])
def create_work_pool(body: Annotated[WorkPoolCreate, Body()]) -> Response[WorkPool]:
    """201, with its SQS queue and dead-letter queue; 409 ``already_exists`` when taken."""
    return _json(201, work_pools.create_work_pool(get_stores(), body))


@router.get("/work_pools", summary="List work pools", tags=["work pools"])
def list_work_pools(limit: Limit = 200, cursor: Cursor = None) -> Page[WorkPool]:
    """Work pools by name."""
    return pages.list_work_pools(get_stores(), limit=limit, cursor=cursor)


@router.get("/work_pools/<name>", summary="Read a work pool", tags=["work pools"])
def read_work_pool(name: PoolName) -> WorkPool:
    """One work pool."""
    return get_stores().registry.read_work_pool(name)


@router.get(
    "/work_pools/<name>/status",
    summary="Inspect a work pool's queue",
    tags=["work pools"],
)
def inspect_work_pool(name: PoolName) -> WorkPoolStatus:
    """The pool, its queue's backlog (visible, in flight, delayed, dead letters), its runs
    waiting and running, and its concurrency slots in use."""
    return work_pools.inspect_work_pool(get_stores(), name)


@router.patch("/work_pools/<name>", summary="Update a work pool", tags=["work pools"])
def update_work_pool(name: PoolName, body: Annotated[WorkPoolUpdate, Body()]) -> WorkPool:
    """Change the fields given; the others stay."""
    return work_pools.update_work_pool(get_stores(), name, body)


@router.post("/work_pools/<name>/pause", summary="Pause a work pool", tags=["work pools"])
def pause_work_pool(name: PoolName) -> WorkPool:
    """Workers stop starting the pool's runs; they stay queued."""
    return work_pools.pause_work_pool(get_stores(), name)


@router.post("/work_pools/<name>/resume", summary="Resume a work pool", tags=["work pools"])
def resume_work_pool(name: PoolName) -> WorkPool:
    """Workers start the pool's queued runs again."""
    return work_pools.resume_work_pool(get_stores(), name)


@router.delete("/work_pools/<name>", summary="Delete a work pool", tags=["work pools"])
def delete_work_pool(
    name: PoolName,
    force: Annotated[
        bool, Query(description="Delete even with runs waiting (they are cancelled)")
    ] = False,
) -> Response[None]:
    """204, with its queues; 409 while it has runs waiting or running, unless ``force``."""
    work_pools.delete_work_pool(get_stores(), name, force=force)
    return _no_content()
