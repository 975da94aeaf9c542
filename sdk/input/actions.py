"""Reading and writing flow run inputs (Prefect's ``prefect.input.actions``).

Values are any JSON; ``flow_run_id`` defaults to the current flow run. They go
through ``get_client()``, so they work on the embedded default, direct stores and
the HTTP API alike.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

import pydantic

from runtime.engine.context import current_flow_run
from sdk.client import get_client

__all__ = [
    "acreate_flow_run_input",
    "acreate_flow_run_input_from_model",
    "adelete_flow_run_input",
    "aread_flow_run_input",
    "create_flow_run_input",
    "create_flow_run_input_from_model",
    "delete_flow_run_input",
    "ensure_flow_run_id",
    "read_flow_run_input",
]


def ensure_flow_run_id(flow_run_id: str | UUID | None = None) -> str:
    """``flow_run_id``, or the current flow run's id (RuntimeError outside a flow run)."""
    if flow_run_id is not None:
        return str(flow_run_id)
    ctx = current_flow_run()
    if ctx is None:
        raise RuntimeError("provide flow_run_id: there is no current flow run")
    return ctx.flow_run.id


def create_flow_run_input(
    key: str, value: Any, flow_run_id: str | UUID | None = None, sender: str | None = None
) -> None:
    """Store ``value`` (any JSON) as the flow run's input ``key`` (written once per key)."""
    run_id = ensure_flow_run_id(flow_run_id)
    with get_client(sync_client=True) as client:
        client.create_flow_run_input(run_id, key, json.dumps(value), sender=sender)


def create_flow_run_input_from_model(
    key: str,
    model_instance: pydantic.BaseModel,
    flow_run_id: str | UUID | None = None,
    sender: str | None = None,
) -> None:
    """Store a pydantic model instance as the flow run's input ``key`` (as JSON)."""
    create_flow_run_input(
        key, model_instance.model_dump(mode="json"), flow_run_id=flow_run_id, sender=sender
    )


def read_flow_run_input(key: str, flow_run_id: str | UUID | None = None) -> Any:
    """The flow run's input ``key``, decoded; None when there is none (as in Prefect)."""
    from runtime.errors import NotFound

    run_id = ensure_flow_run_id(flow_run_id)
    with get_client(sync_client=True) as client:
        try:
            return json.loads(client.read_flow_run_input(run_id, key))
        except NotFound:
            return None


def delete_flow_run_input(key: str, flow_run_id: str | UUID | None = None) -> None:
    """Remove the flow run's input ``key``."""
    run_id = ensure_flow_run_id(flow_run_id)
    with get_client(sync_client=True) as client:
        client.delete_flow_run_input(run_id, key)


async def acreate_flow_run_input(
    key: str, value: Any, flow_run_id: str | UUID | None = None, sender: str | None = None
) -> None:
    """:func:`create_flow_run_input`, awaitable."""
    run_id = ensure_flow_run_id(flow_run_id)
    await asyncio.to_thread(create_flow_run_input, key, value, run_id, sender)


async def acreate_flow_run_input_from_model(
    key: str,
    model_instance: pydantic.BaseModel,
    flow_run_id: str | UUID | None = None,
    sender: str | None = None,
) -> None:
    """:func:`create_flow_run_input_from_model`, awaitable."""
    run_id = ensure_flow_run_id(flow_run_id)
    await asyncio.to_thread(create_flow_run_input_from_model, key, model_instance, run_id, sender)


async def aread_flow_run_input(key: str, flow_run_id: str | UUID | None = None) -> Any:
    """:func:`read_flow_run_input`, awaitable."""
    run_id = ensure_flow_run_id(flow_run_id)
    return await asyncio.to_thread(read_flow_run_input, key, run_id)


async def adelete_flow_run_input(key: str, flow_run_id: str | UUID | None = None) -> None:
    """:func:`delete_flow_run_input`, awaitable."""
    run_id = ensure_flow_run_id(flow_run_id)
    await asyncio.to_thread(delete_flow_run_input, key, run_id)
