"""Concurrency limits and their leases (``/concurrency_limits``).

A limit is a counter; a lease holds slots on one or more limits until it
expires (see :mod:`runtime.stores.concurrency`). Acquiring answers
``{"lease": null}`` when no slot is free right now and 429 ``limit_exceeded``
when the request can never fit (e.g. a limit of 0).
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import Router

from handlers.deps import get_stores
from runtime.api_schemas import (
    LeaseRequest,
    LeaseResponse,
    LimitUpdate,
    Released,
    RenewRequest,
)
from runtime.models import (
    ConcurrencyLimit,
    ConcurrencyLimitCreate,
    ConcurrencyLimitUpdate,
    Lease,
    Page,
)

router = Router()

TAGS = ["concurrency limits"]
LeaseId = Annotated[str, Path(min_length=1, max_length=100, description="Lease id")]
LimitName = Annotated[str, Path(min_length=1, max_length=200, description="Limit name")]


def _json(status: int, body: Any) -> Response[Any]:
    return Response(status_code=status, content_type="application/json", body=body)


# ----------------------------------------------------------------------------- leases
# (declared before /concurrency_limits/<name> so the literal paths read first)


@router.post("/concurrency_limits/leases", summary="Acquire slots", tags=TAGS)
def acquire_lease(body: Annotated[LeaseRequest, Body()]) -> LeaseResponse:
    """Take ``slots`` on every named limit at once, or none: ``{"lease": null}`` when full.

    With a client-chosen ``id``, a repeat returns the lease the first request took.
    """
    lease = get_stores().concurrency.acquire(
        body.names,
        body.slots,
        lease_seconds=body.lease_seconds,
        holder=body.holder,
        lease_id=body.id,
        missing_ok=body.missing_ok,
        mode=body.mode,
    )
    return LeaseResponse(lease=lease)


@router.post("/concurrency_limits/leases/<id>/renew", summary="Renew a lease", tags=TAGS)
def renew_lease(
    id: LeaseId,
    body: Annotated[RenewRequest | None, Body()] = None,
) -> Lease:
    """Push the lease's expiry to now + ``lease_seconds``; 404 once it was reclaimed."""
    request = body or RenewRequest()
    return get_stores().concurrency.renew(id, request.lease_seconds)


@router.delete("/concurrency_limits/leases/<id>", summary="Release a lease", tags=TAGS)
def release_lease(id: LeaseId) -> Released:
    """Give the slots back; ``released`` is False when the lease was already gone."""
    return Released(released=get_stores().concurrency.release(id))


# ----------------------------------------------------------------------------- limits


@router.post("/concurrency_limits", summary="Create a concurrency limit", tags=TAGS)
def create_limit(body: Annotated[ConcurrencyLimitCreate, Body()]) -> Response[ConcurrencyLimit]:
    """201; 409 ``already_exists`` when the name is taken."""
    return _json(201, get_stores().concurrency.create_limit(body))


@router.get("/concurrency_limits", summary="List concurrency limits", tags=TAGS)
def list_limits() -> Page[ConcurrencyLimit]:
    """Every limit, by name, with its active slots (one page)."""
    return Page[ConcurrencyLimit](items=get_stores().concurrency.list_limits())


@router.get("/concurrency_limits/<name>", summary="Read a concurrency limit", tags=TAGS)
def read_limit(name: LimitName) -> ConcurrencyLimit:
    """One limit with its active slot count."""
    return get_stores().concurrency.read_limit(name)


@router.patch("/concurrency_limits/<name>", summary="Resize a concurrency limit", tags=TAGS)
def update_limit(name: LimitName, body: Annotated[LimitUpdate, Body()]) -> ConcurrencyLimit:
    """Change the size, ``active`` flag or slot decay (the fields given); held slots stay held."""
    return get_stores().concurrency.update_limit(
        name, ConcurrencyLimitUpdate.model_validate(body.model_dump(exclude_unset=True))
    )


@router.delete("/concurrency_limits/<name>", summary="Delete a concurrency limit", tags=TAGS)
def delete_limit(name: LimitName) -> Response[None]:
    """204; leases on it are later released without effect."""
    get_stores().concurrency.delete_limit(name)
    return Response(status_code=204, content_type="application/json", body=None)
