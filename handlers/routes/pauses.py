"""Resuming paused flow runs and flow run inputs: ``/flow_runs/<id>/resume`` and ``.../input``.

Thin routes over :mod:`runtime.services.pauses`:

* ``POST /flow_runs/<id>/resume`` with ``{"run_input": {...}}`` (optional): 200 with the
  orchestration result (Running, Resuming, or Failed when the pause timed out);
  404 for no such run; 409 ``transition_rejected`` when the run is not paused;
  422 naming the field when the input fails the schema the run waits with — the
  run stays paused and nothing is written.
* ``POST /flow_runs/<id>/input`` ``{"key", "value", "sender"}``: 201 (200 for the same
  value again); 409 when the key holds another value.
* ``GET /flow_runs/<id>/input/<key>``: ``{"key", "value"}``; 404 when absent.
* ``DELETE /flow_runs/<id>/input/<key>``: 204.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import Router
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from handlers.deps import get_stores
from runtime.models import OrchestrationResult
from runtime.services import pauses
from runtime.stores.run_inputs import INPUT_KEY_MAX

router = Router()


def _uuid_text(value: str) -> str:
    try:
        uuid.UUID(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a UUID") from None
    return value


RunId = Annotated[str, Path(description="The flow run's id (a UUID)"), AfterValidator(_uuid_text)]
InputKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=INPUT_KEY_MAX, pattern=r"^[^#]+$"),
]


class ResumeRequest(BaseModel):
    """``POST /flow_runs/<id>/resume``: the input the paused run waits for, if any."""

    model_config = ConfigDict(extra="forbid")

    run_input: dict[str, Any] | None = Field(
        default=None, description="Validated against the input schema the run paused with"
    )


class FlowRunInputCreate(BaseModel):
    """``POST /flow_runs/<id>/input``: one input value (any JSON)."""

    model_config = ConfigDict(extra="forbid")

    key: InputKey
    value: Any = Field(description="Any JSON value")
    sender: Annotated[str, StringConstraints(max_length=200)] | None = None


class FlowRunInput(BaseModel):
    """One flow run input."""

    flow_run_id: str
    key: str
    value: Any


@router.post("/flow_runs/<id>/resume", summary="Resume a paused flow run", tags=["flow runs"])
def resume_flow_run(
    id: RunId, body: Annotated[ResumeRequest | None, Body()] = None
) -> OrchestrationResult:
    """Running (Paused) or Resuming and back on its pool's queue (Suspended); 422 on bad input."""
    run_input = body.run_input if body is not None else None
    return pauses.resume_flow_run(get_stores(), id, run_input)


@router.post("/flow_runs/<id>/input", summary="Create a flow run input", tags=["flow runs"])
def create_flow_run_input(
    id: RunId, body: Annotated[FlowRunInputCreate, Body()]
) -> Response[FlowRunInput]:
    """Store one input (written once: another value under the key is a 409)."""
    written = pauses.create_flow_run_input(
        get_stores(), id, body.key, body.value, sender=body.sender
    )
    out = FlowRunInput(flow_run_id=id, key=body.key, value=body.value)
    return Response(status_code=201 if written else 200, content_type="application/json", body=out)


@router.get("/flow_runs/<id>/input/<key>", summary="Read a flow run input", tags=["flow runs"])
def read_flow_run_input(id: RunId, key: Annotated[InputKey, Path()]) -> FlowRunInput:
    """The input ``key`` of the flow run (404 when there is none)."""
    value = pauses.read_flow_run_input(get_stores(), id, key)
    return FlowRunInput(flow_run_id=id, key=key, value=value)


@router.delete("/flow_runs/<id>/input/<key>", summary="Delete a flow run input", tags=["flow runs"])
def delete_flow_run_input(id: RunId, key: Annotated[InputKey, Path()]) -> Response[None]:
    """Remove the input ``key`` (204 whether or not it existed)."""
    pauses.delete_flow_run_input(get_stores(), id, key)
    return Response(status_code=204)
