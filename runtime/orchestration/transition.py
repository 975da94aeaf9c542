"""Apply a proposed state to a run snapshot: orchestrate, then the run-field updates. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from runtime.models import FlowRun, OrchestrationResult, TaskRun
from runtime.orchestration.policies import (
    FLOW_POLICY,
    FORCE_POLICY,
    TASK_POLICY,
    orchestrate,
    run_field_updates,
)
from runtime.orchestration.rules import OrchestrationContext, RunView
from runtime.states import State, utcnow

R = TypeVar("R", FlowRun, TaskRun)


def apply_transition(
    run: R,
    proposed: State,
    *,
    force: bool = False,
    now: datetime | None = None,
    flow_run_state: State | None = None,
    jitter_sample: float | None = None,
) -> tuple[OrchestrationResult, R | None]:
    """Decide ``run.state -> proposed`` and return the result and the updated run copy.

    The copy is None unless the transition was accepted; ``run`` itself is never
    modified. Both the stores (which then persist the copy with a conditional
    write) and the task engine (which records task runs locally) call this, so
    every path runs the same rules.
    """
    now = now or utcnow()
    ctx = OrchestrationContext(
        initial=run.state,
        proposed=proposed.fresh_copy(timestamp=now),
        run=RunView(
            kind=run.kind,
            run_count=run.run_count,
            retries=run.empirical_policy.retries,
            retry_delay_seconds=run.empirical_policy.retry_delay_seconds,
            retry_jitter_factor=run.empirical_policy.retry_jitter_factor,
            flow_run_state=flow_run_state,
            has_deployment=isinstance(run, FlowRun) and run.deployment_id is not None,
            is_subflow=isinstance(run, FlowRun)
            and (run.parent_flow_run_id or run.parent_task_run_id) is not None,
            pause_keys=frozenset(run.pause_keys) if isinstance(run, FlowRun) else frozenset(),
            resuming=run.resuming,
        ),
        now=now,
        force=force,
    )
    if jitter_sample is not None:
        ctx.jitter_sample = jitter_sample
    policy = FORCE_POLICY if force else (FLOW_POLICY if run.kind == "flow_run" else TASK_POLICY)
    decision = orchestrate(policy, ctx)
    if not decision.accepted:
        rejected = OrchestrationResult.model_construct(
            status=decision.status.value,
            state=run.state,
            reason=decision.reason,
            delay_seconds=decision.delay_seconds,
            run_count=run.run_count,
            state_version=run.state_version,
        )
        return rejected, None
    state = decision.state
    updates = run_field_updates(run.state, state, now, run.start_time, run.resuming)
    new = run.model_copy()
    new.state = state
    new.state_version = run.state_version + 1
    new.updated = now
    new.run_count += updates.get("run_count_increment", 0)
    new.start_time = updates.get("start_time", new.start_time)
    new.end_time = updates.get("end_time", new.end_time)
    new.resuming = updates.get("resuming", new.resuming)
    new.total_run_time += updates.get("run_time_increment", 0.0)
    pause_key = updates.get("pause_key")
    if pause_key is not None and isinstance(run, FlowRun):
        new.pause_keys = [*run.pause_keys, pause_key]  # type: ignore[union-attr]
    if "next_scheduled_start_time" in updates:
        new.next_scheduled_start_time = updates["next_scheduled_start_time"]
    accepted = OrchestrationResult.model_construct(
        status="ACCEPT",
        state=state,
        reason=decision.reason,
        run_count=new.run_count,
        state_version=new.state_version,
    )
    return accepted, new
