"""Pausing, suspending and resuming flow runs, and their run inputs (Prefect's model).

A flow run that pauses proposes a PAUSED state (``Paused``: the process waits;
``Suspended``: the process exits and a worker starts the run again). When it waits
for input, the JSON schema of that input is stored as the run input
``<paused|suspended>-<pause key>-schema`` and the state names the keys in
``run_input_keyset`` (Prefect's ``keyset_from_paused_state``).

:func:`resume_flow_run` is the one way back: the run must be PAUSED; the input is
validated against the stored schema *before* anything is written (a bad input is
InvalidInput and the run stays paused), then stored as ``...-response``, then the
run moves through the rules: a Paused run to Running (its process notices), a
Suspended one to Scheduled "Resuming" and, with a work pool, back onto the pool's
queue (``runtime.services.dispatch.enqueue_flow_run``). A pause whose timeout has
passed cannot resume: the rules fail the run instead.

Called by ``POST /flow_runs/{id}/resume``, the SDK client's store backend and
``stratoflow flow-run resume``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from runtime.errors import InvalidInput, NotFound, TransitionRejected
from runtime.models import FlowRun, OrchestrationResult
from runtime.states import Resuming, Running, State, StateType, utcnow
from runtime.stores.run_inputs import RunInputStore

if TYPE_CHECKING:
    from runtime.stores import Stores

__all__ = [
    "create_flow_run_input",
    "delete_flow_run_input",
    "keyset_from_base_key",
    "keyset_from_paused_state",
    "read_flow_run_input",
    "release_suspended",
    "resume_flow_run",
    "run_inputs",
    "validate_run_input",
]


def keyset_from_base_key(base_key: str) -> dict[str, str]:
    """The ``description``, ``response`` and ``schema`` keys of one input (Prefect's)."""
    return {
        "description": f"{base_key}-description",
        "response": f"{base_key}-response",
        "schema": f"{base_key}-schema",
    }


def keyset_from_paused_state(state: State) -> dict[str, str]:
    """The input keys of a Paused or Suspended state: ``<name>-<pause key>-...``."""
    if state.type is not StateType.PAUSED:
        raise ValueError(f"{state.type.value!r} is unsupported: only PAUSED states take input")
    return keyset_from_base_key(f"{state.name.lower()}-{state.details.pause_key}")


def run_inputs(stores: Stores) -> RunInputStore:
    """The run input store of ``stores`` (its items live in the runs table)."""
    return RunInputStore(stores.db, stores.specs.runs, retention_days=stores.runs.retention_days)


def _dump(value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"value: not JSON: {exc}", field="value") from None


def create_flow_run_input(
    stores: Stores, flow_run_id: str, key: str, value: Any, *, sender: str | None = None
) -> bool:
    """Store the JSON ``value`` as the flow run's input ``key`` (the run must exist).

    True if written; False if the same value was there (a retry). A different
    value under the key is AlreadyExists: inputs are written once.
    """
    stores.runs.read_flow_run(flow_run_id)  # NotFound
    return run_inputs(stores).create(flow_run_id, key, _dump(value), sender=sender)


def read_flow_run_input(stores: Stores, flow_run_id: str, key: str) -> Any:
    """The decoded input ``key`` of the flow run; NotFound when there is none."""
    text = run_inputs(stores).read(flow_run_id, key)
    if text is None:
        raise NotFound(f"flow run {flow_run_id} has no input {key!r}", id=flow_run_id, key=key)
    return json.loads(text)


def delete_flow_run_input(stores: Stores, flow_run_id: str, key: str) -> None:
    """Remove the flow run's input ``key`` (nothing happens when there is none)."""
    run_inputs(stores).delete(flow_run_id, key)


def validate_run_input(run_input: Any, schema: dict[str, Any]) -> None:
    """InvalidInput naming the first field of ``run_input`` that ``schema`` refuses."""
    import jsonschema

    validator_cls = jsonschema.validators.validator_for(schema, jsonschema.Draft202012Validator)
    try:
        validator_cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidInput(f"the run's input schema is not valid: {exc.message}") from None
    errors = sorted(validator_cls(schema).iter_errors(run_input), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in ("run_input", *first.absolute_path))
        raise InvalidInput(f"{where}: {first.message}", field=where)


def _not_paused(run: FlowRun) -> TransitionRejected:
    reason = "Cannot resume a flow run that is not paused."
    return TransitionRejected(
        f"{reason} Flow run {run.id} is {run.state.name} ({run.state.type.value}).",
        status="ABORT",
        reason=reason,
        state=run.state.model_dump(mode="json"),
    )


def resume_flow_run(
    stores: Stores, flow_run_id: str, run_input: dict[str, Any] | None = None
) -> OrchestrationResult:
    """Resume a PAUSED flow run with an optional input (see the module docstring).

    NotFound for no such run; TransitionRejected (ABORT) when it is not paused;
    InvalidInput when ``run_input`` fails the schema the run waits with (nothing
    written). Returns the transition's result: ACCEPT with Running or Resuming, or
    ACCEPT with Failed when the pause timed out; REJECT when another party changed
    the run first.
    """
    run = stores.runs.read_flow_run(flow_run_id)
    state = run.state
    if state.type is not StateType.PAUSED:
        raise _not_paused(run)
    keyset = state.details.run_input_keyset
    inputs = run_inputs(stores)
    if keyset:
        run_input = run_input or {}
        schema_text = inputs.read(run.id, keyset["schema"])
        if schema_text is None:
            raise InvalidInput("Run input schema not found.", field="run_input")
        validate_run_input(run_input, json.loads(schema_text))
        inputs.create(run.id, keyset["response"], _dump(run_input))
    elif run_input:
        raise InvalidInput(
            "run_input: the flow run is not waiting for input (it paused without wait_for_input)",
            field="run_input",
        )
    reschedule = state.details.pause_reschedule
    proposed = Resuming(scheduled_time=utcnow()) if reschedule else Running()
    result = stores.runs.set_state("flow_run", run.id, proposed, expected_version=run.state_version)
    if result.accepted and result.state.type is StateType.SCHEDULED and run.work_pool_name:
        _enqueue(stores, run.id)
    return result


def release_suspended(stores: Stores, flow_run_id: str) -> None:
    """A run that just became Suspended gives its pool's and deployment's slots back.

    Its process has let go of it; the claim that starts it again after the resume
    takes them anew (``runtime.services.claims``).
    """
    from runtime.services.claims import release_run_lease

    run = stores.runs.read_flow_run(flow_run_id)
    if run.state.type is StateType.PAUSED and run.state.details.pause_reschedule:
        release_run_lease(stores, run)


def _enqueue(stores: Stores, flow_run_id: str) -> None:
    """Put a resumed suspended run back on its pool's queue (the pools' dispatch)."""
    from runtime.services import dispatch

    dispatch.enqueue_flow_run(stores, flow_run_id)
