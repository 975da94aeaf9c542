"""Flow-run use cases: create one (and record its flow), propose a state, cancel.

Called by ``POST /flow_runs``, ``POST /flow_runs/{id}/set_state`` and
``POST /flow_runs/{id}/cancel``, by the direct engine client and by the SDK
client's store backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.models import FlowRun, FlowRunCreate, OrchestrationResult, RunKind
from runtime.services.references import must_exist
from runtime.services.transitions import raise_if_refused
from runtime.states import State

if TYPE_CHECKING:
    from runtime.stores import Stores

__all__ = [
    "cancel_flow_run",
    "check_flow_run_references",
    "create_flow_run",
    "set_run_state",
]


def check_flow_run_references(stores: Stores, request: FlowRunCreate) -> None:
    """The parent runs, deployment and work pool a new flow run names must exist.

    InvalidInput naming the first missing one (``parent_flow_run_id``,
    ``parent_task_run_id``, ``deployment_id``, ``work_pool_name``); nothing is written.
    """
    must_exist("parent_flow_run_id", request.parent_flow_run_id, stores.runs.read_flow_run)
    must_exist("parent_task_run_id", request.parent_task_run_id, stores.runs.read_task_run)
    must_exist("deployment_id", request.deployment_id, stores.registry.read_deployment)
    must_exist("work_pool_name", request.work_pool_name, stores.registry.read_work_pool)


def create_flow_run(
    stores: Stores,
    request: FlowRunCreate,
    *,
    check_references: bool = True,
    known_flows: set[str] | None = None,
) -> tuple[FlowRun, bool]:
    """Create a flow run and record its flow (``GET /flows`` lists flows that have runs).

    Returns ``(run, created)``: ``created`` is False when the idempotency key (or
    the client-chosen id) returned an existing run. ``check_references`` first
    checks what the request names (:func:`check_flow_run_references`); the engine
    turns it off, as the parent task run of its subflow may still be buffered.

    The flow is recorded when this call created the run; with ``known_flows`` (a
    set the caller keeps, e.g. one per engine process) it is recorded instead once
    per flow name the set does not hold yet, and the name is added.
    """
    if check_references:
        check_flow_run_references(stores, request)
    run, created = stores.runs.create_flow_run_once(request)
    _record_flow(stores, run.flow_name, created, known_flows)
    return run, created


def start_flow_run(
    stores: Stores, request: FlowRunCreate, *, known_flows: set[str] | None = None
) -> tuple[FlowRun, bool]:
    """Create a locally called flow run already RUNNING, where the rules allow, and record its flow.

    One conditional put instead of a create and a transition (``RunStore.start_flow_run``
    says when it applies: no deployment, no idempotency key, requested PENDING, and the
    flow rules accept PENDING -> RUNNING); otherwise the run is created as requested.
    Returns ``(run, started)``. References are not checked: only the engine calls
    this, and its subflow's parent task run may still be buffered. ``known_flows`` as
    for :func:`create_flow_run`.
    """
    run, started = stores.runs.start_flow_run(request)
    _record_flow(stores, run.flow_name, True, known_flows)
    return run, started


def _record_flow(stores: Stores, name: str, created: bool, known_flows: set[str] | None) -> None:
    """Record flow ``name`` when a run was created, or once per process with ``known_flows``."""
    if known_flows is None:
        if created:
            stores.registry.ensure_flow(name)
    elif name not in known_flows:
        stores.registry.ensure_flow(name)
        known_flows.add(name)


def set_run_state(
    stores: Stores,
    kind: RunKind,
    run_id: str,
    state: State,
    *,
    force: bool = False,
    expected_version: int | None = None,
    raise_on_reject: bool = False,
) -> OrchestrationResult:
    """Propose ``state`` for a flow or task run: what the orchestration rules decided.

    One conditional write when accepted; with ``expected_version`` (the version the
    caller holds) no read before it when this store holds that version. A refusal
    comes back as the REJECT or ABORT result (with the run's current state), or, with
    ``raise_on_reject``, as TransitionRejected.
    """
    result = stores.runs.set_state(
        kind, run_id, state, force=force, expected_version=expected_version
    )
    if kind == "flow_run" and result.accepted and result.state.details.pause_reschedule:
        from runtime.services.pauses import release_suspended

        release_suspended(stores, run_id)  # a suspended run holds no slot while it waits
    return raise_if_refused(result) if raise_on_reject else result


def cancel_flow_run(
    stores: Stores, run_id: str, *, raise_on_reject: bool = False
) -> OrchestrationResult:
    """Cancel a flow run: Cancelled if it has not started, Cancelling if it runs.

    Proposed through the normal rules (never forced): a final run, or one already
    Cancelling, is refused, which comes back as the REJECT result or, with
    ``raise_on_reject``, as TransitionRejected. NotFound if there is no such flow run.
    """
    result = stores.runs.cancel_flow_run(run_id)
    return raise_if_refused(result) if raise_on_reject else result
