"""``GET /health``: the API is up (and, with ``?deep=true``, can reach its tables)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import Router

from handlers.deps import get_stores

router = Router()


@router.get("/health", summary="Health check")
def health(deep: Annotated[bool, Query()] = False) -> dict[str, Any]:
    """``{"status": "ok"}``; ``deep=true`` also reads one item from the runs table."""
    if deep:
        stores = get_stores()
        stores.db.get(stores.specs.runs.name, {"id": "00000000-0000-0000-0000-000000000000"})
    return {"status": "ok", "version": "0.1.0"}
