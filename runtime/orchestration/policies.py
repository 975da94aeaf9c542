"""The concrete rules and the ordered policies for flow runs and task runs.

Each rule is a small class with FROM/TO state types. ``FLOW_POLICY`` and
``TASK_POLICY`` list them in the order they run; the first rule that rejects,
delays or aborts ends orchestration. ``FORCE_POLICY`` is what ``force=True``
uses: it keeps only the rules that protect data.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from runtime.orchestration.rules import (
    Decision,
    OrchestrationContext,
    Rule,
)
from runtime.states import (
    TERMINAL_TYPES,
    AwaitingRetry,
    Cancelled,
    Failed,
    State,
    StateType,
)

S = StateType


def _label(state: State | None) -> str:
    return "no state" if state is None else f"{state.name} ({state.type.value})"


class PreventDuplicateTransitions(Rule):
    """A retried request (same ``transition_id`` as the current state) changes nothing."""

    def before_transition(self, ctx: OrchestrationContext) -> None:
        tid = ctx.proposed.details.transition_id
        if ctx.initial is not None and tid is not None and tid == ctx.initial.details.transition_id:
            ctx.reject(f"duplicate transition {tid}: the run is already {_label(ctx.initial)}")


class HandleTerminalStateTransitions(Rule):
    """Terminal states are final, except a rerun of a failed, crashed or cancelled run.

    COMPLETED never changes without ``force`` (its result would be lost). FAILED,
    CRASHED and CANCELLED runs may be sent back to SCHEDULED to run again (a manual
    retry); any other move out of a terminal state is rejected.
    """

    FROM_STATES = TERMINAL_TYPES
    TO_STATES = tuple(StateType)

    def before_transition(self, ctx: OrchestrationContext) -> None:
        assert ctx.initial is not None
        if ctx.initial.type is not S.COMPLETED and ctx.proposed_type is S.SCHEDULED:
            return
        ctx.reject(f"run is already in terminal state {_label(ctx.initial)}")


class EnforceCancellingToCancelled(Rule):
    """A CANCELLING run may only end: CANCELLED, or a terminal state it reached itself."""

    FROM_STATES = (S.CANCELLING,)
    TO_STATES = tuple(t for t in StateType if t not in TERMINAL_TYPES)

    def before_transition(self, ctx: OrchestrationContext) -> None:
        ctx.reject(
            f"run is Cancelling: it may only move to a terminal state, not {_label(ctx.proposed)}"
        )


class PreventPendingTransitions(Rule):
    """Only one party may submit a run: PENDING is entered once, from SCHEDULED or nothing."""

    FROM_STATES = (S.PENDING, S.RUNNING, S.CANCELLING, S.PAUSED)
    TO_STATES = (S.PENDING,)

    def before_transition(self, ctx: OrchestrationContext) -> None:
        ctx.reject(f"run is already {_label(ctx.initial)}: it cannot become Pending again")


class PreventDuplicateClaims(Rule):
    """Only one party may start a run: RUNNING -> RUNNING is a second claim, rejected."""

    FROM_STATES = (S.RUNNING,)
    TO_STATES = (S.RUNNING,)

    def before_transition(self, ctx: OrchestrationContext) -> None:
        ctx.reject(f"run is already {_label(ctx.initial)}: another party claimed it")


class EnsureOnlyScheduledMarkedLate(Rule):
    """Only a SCHEDULED run can be marked Late."""

    TO_STATES = (S.SCHEDULED,)

    def before_transition(self, ctx: OrchestrationContext) -> None:
        if ctx.proposed.name == "Late" and ctx.initial_type is not S.SCHEDULED:
            ctx.reject(f"only Scheduled runs can be marked Late, not {_label(ctx.initial)}")


class HandlePausing(Rule):
    """Only a RUNNING run may pause, once per pause key; only a deployment's top run suspends.

    Prefect's ``HandlePausingFlows``: no state yet aborts; a run not RUNNING is
    rejected; a key the run has paused on already is rejected ("has already fired":
    a suspended run started again from the beginning passes its pause); a Suspended
    state (``pause_reschedule``) aborts for a subflow or a run without a deployment,
    since only a worker can start the run again.
    """

    TO_STATES = (S.PAUSED,)

    def before_transition(self, ctx: OrchestrationContext) -> None:
        verb = "suspend" if ctx.proposed.name == "Suspended" else "pause"
        if ctx.initial is None:
            ctx.abort(f"Cannot {verb} flows with no state.")
            return
        if ctx.initial_type is not S.RUNNING:
            ctx.reject(f"Cannot {verb} flows that are not currently running.")
            return
        key = ctx.proposed.details.pause_key
        if key is not None and key in ctx.run.pause_keys:
            ctx.reject(f"This {verb} has already fired.")
            return
        if ctx.proposed.details.pause_reschedule and ctx.run.kind == "flow_run":
            if ctx.run.is_subflow:
                ctx.abort(f"Cannot {verb} subflows.")
            elif not ctx.run.has_deployment:
                ctx.abort(f"Cannot {verb} flows without a deployment.")


class HandleResuming(Rule):
    """How a PAUSED run leaves (Prefect's ``HandleResumingPausedFlows``).

    Only to RUNNING, SCHEDULED or a final state; Paused resumes to RUNNING (in the
    process that paused it), Suspended to SCHEDULED (Resuming: a worker starts it
    again), and only with a deployment. A pause whose timeout has passed cannot
    resume: the run is failed instead.
    """

    FROM_STATES = (S.PAUSED,)
    TO_STATES = tuple(t for t in StateType if t not in TERMINAL_TYPES)

    def before_transition(self, ctx: OrchestrationContext) -> None:
        assert ctx.initial is not None
        if ctx.proposed_type not in (S.RUNNING, S.SCHEDULED, S.PENDING):
            ctx.reject(
                f"This run cannot transition to the {ctx.proposed_type.value} state from "
                f"the {ctx.initial.type.value} state."
            )
            return
        details = ctx.initial.details
        label = ctx.initial.name.lower()
        if details.pause_reschedule and ctx.run.kind == "flow_run" and not ctx.run.has_deployment:
            ctx.reject(f"Cannot reschedule a {label} flow run without a deployment.")
            return
        if details.pause_timeout is not None and details.pause_timeout <= ctx.now:
            ctx.rewrite(
                Failed(message=f"The flow was {label} and never resumed."),
                "the pause timed out and can no longer resume",
            )
            return
        if details.pause_reschedule and ctx.proposed_type is not S.SCHEDULED:
            ctx.reject("a Suspended run resumes by being rescheduled (propose Resuming)")
        elif not details.pause_reschedule and ctx.proposed_type is not S.RUNNING:
            ctx.reject("a Paused run resumes to Running in the process that paused it")


class PreventRunningTasksFromStoppedFlows(Rule):
    """A task may only start while its flow run is RUNNING."""

    TO_STATES = (S.RUNNING,)

    def before_transition(self, ctx: OrchestrationContext) -> None:
        flow_state = ctx.run.flow_run_state
        if flow_state is None or flow_state.type is S.RUNNING:
            return
        if flow_state.type in (S.CANCELLING, S.CANCELLED):
            ctx.rewrite(
                Cancelled(message=f"The flow run is {flow_state.name}: the task was cancelled."),
                "flow run cancelled",
            )
        else:
            ctx.abort(f"the flow run is {_label(flow_state)}, not Running: the task cannot start")


class CopyScheduledTime(Rule):
    """Leaving SCHEDULED for PENDING keeps the scheduled time on the new state."""

    FROM_STATES = (S.SCHEDULED,)
    TO_STATES = (S.PENDING,)

    def before_transition(self, ctx: OrchestrationContext) -> None:
        assert ctx.initial is not None
        if ctx.proposed.details.scheduled_time is None:
            ctx.proposed.details.scheduled_time = ctx.initial.details.scheduled_time


class WaitForScheduledTime(Rule):
    """A SCHEDULED run does not start before its scheduled time."""

    FROM_STATES = (S.SCHEDULED,)
    TO_STATES = (S.PENDING, S.RUNNING)

    def before_transition(self, ctx: OrchestrationContext) -> None:
        assert ctx.initial is not None
        when = ctx.initial.details.scheduled_time
        if when is not None and when > ctx.now:
            delay = (when - ctx.now).total_seconds()
            ctx.wait(delay, f"scheduled to start at {when.isoformat()}, {delay:.3f}s from now")


def retry_delay(ctx: OrchestrationContext) -> float:
    """Seconds before the next attempt: the configured delay for this attempt, with jitter.

    A list of delays is indexed by attempt (the last one repeats). Jitter spreads
    the delay uniformly within ``delay * (1 +/- factor)``, never below zero.
    """
    policy = ctx.run
    delays = policy.retry_delay_seconds
    if isinstance(delays, list):
        base = float(delays[min(max(policy.run_count - 1, 0), len(delays) - 1)]) if delays else 0.0
    else:
        base = float(delays)
    if policy.retry_jitter_factor:
        base *= 1 + policy.retry_jitter_factor * (2 * ctx.jitter_sample - 1)
    return max(0.0, base)


class RetryFailedRuns(Rule):
    """RUNNING -> FAILED with retries left becomes AwaitingRetry at the retry delay."""

    FROM_STATES = (S.RUNNING,)
    TO_STATES = (S.FAILED,)

    def before_transition(self, ctx: OrchestrationContext) -> None:
        if not ctx.proposed.details.retriable or ctx.run.run_count > ctx.run.retries:
            return
        delay = retry_delay(ctx)
        retry = AwaitingRetry(
            scheduled_time=ctx.now + timedelta(seconds=delay),
            message=ctx.proposed.message,
            retry_count=ctx.run.run_count,
        )
        ctx.rewrite(retry, f"retry {ctx.run.run_count} of {ctx.run.retries} in {delay:.3f}s")


class RenameReruns(Rule):
    """A run entering RUNNING after an earlier attempt is named Retrying (a resume is not)."""

    FROM_STATES = (S.SCHEDULED, S.PENDING)
    TO_STATES = (S.RUNNING,)

    def before_transition(self, ctx: OrchestrationContext) -> None:
        if ctx.run.run_count > 0 and not ctx.run.resuming and ctx.proposed.name == "Running":
            ctx.proposed.name = "Retrying"


FLOW_POLICY: tuple[type[Rule], ...] = (
    PreventDuplicateTransitions,
    HandleTerminalStateTransitions,
    EnforceCancellingToCancelled,
    PreventPendingTransitions,
    PreventDuplicateClaims,
    EnsureOnlyScheduledMarkedLate,
    HandlePausing,
    HandleResuming,
    CopyScheduledTime,
    WaitForScheduledTime,
    RetryFailedRuns,
    RenameReruns,
)
"""The rules for flow runs, in order."""

TASK_POLICY: tuple[type[Rule], ...] = (
    PreventDuplicateTransitions,
    HandleTerminalStateTransitions,
    EnforceCancellingToCancelled,
    PreventPendingTransitions,
    PreventDuplicateClaims,
    PreventRunningTasksFromStoppedFlows,
    EnsureOnlyScheduledMarkedLate,
    HandlePausing,
    HandleResuming,
    CopyScheduledTime,
    WaitForScheduledTime,
    RetryFailedRuns,
    RenameReruns,
)
"""The rules for task runs, in order."""

FORCE_POLICY: tuple[type[Rule], ...] = (PreventDuplicateTransitions,)
"""``force=True``: any transition is written, except a replayed duplicate."""


def orchestrate(policy: tuple[type[Rule], ...], ctx: OrchestrationContext) -> Decision:
    """Run the rules of ``policy`` that apply, in order, and return the decision.

    A rule may rewrite the proposed state; later rules then see the rewritten one.
    The first rule that rejects, delays or aborts ends orchestration.
    """
    for rule_cls in policy:
        if rule_cls.applies(ctx):
            rule_cls().before_transition(ctx)
            if ctx.decided:
                break
    return Decision(
        status=ctx.status, state=ctx.proposed, reason=ctx.reason, delay_seconds=ctx.delay_seconds
    )


_GlobalFields = dict[str, Any]


def run_field_updates(
    initial: State | None,
    accepted: State,
    now: datetime,
    start_time: datetime | None,
    resuming: bool = False,
) -> _GlobalFields:
    """Run fields that change with an accepted transition (Prefect's global transforms).

    Entering RUNNING increments ``run_count`` and sets ``start_time`` on the first
    run, except when a paused or suspended run resumes (a resume is not a new
    attempt, so it uses up no retry); a terminal state sets ``end_time`` and a
    rerun out of one clears it; leaving RUNNING adds the elapsed time to
    ``total_run_time``; entering Resuming sets the ``resuming`` flag that the next
    RUNNING clears; entering PAUSED records the pause key. Returns the fields to set
    (``run_count`` as an increment).
    """
    updates: _GlobalFields = {}
    if accepted.type is S.RUNNING:
        if resuming or (initial is not None and initial.type is S.PAUSED):
            updates["resuming"] = False
        else:
            updates["run_count_increment"] = 1
        if start_time is None:
            updates["start_time"] = now
    if accepted.name == "Resuming":
        updates["resuming"] = True
    if accepted.type in TERMINAL_TYPES:
        updates["end_time"] = now
    elif initial is not None and initial.type in TERMINAL_TYPES:
        updates["end_time"] = None
    if initial is not None and initial.type is S.RUNNING and accepted.type is not S.RUNNING:
        updates["run_time_increment"] = max(0.0, (now - initial.timestamp).total_seconds())
    if accepted.type is S.SCHEDULED:
        updates["next_scheduled_start_time"] = accepted.details.scheduled_time
    if accepted.type is S.PAUSED and accepted.details.pause_key is not None:
        updates["pause_key"] = accepted.details.pause_key
    return updates
