"""The orchestration rules of ``runtime.orchestration.policies``, tested as tables.

One test class per rule. Each class holds a table of ``initial -> proposed`` rows
with two expected outcomes: the rule on its own (``Rule.applies`` +
``before_transition``; ``None`` when the rule does not govern the transition)
and the full ``orchestrate`` over ``FLOW_POLICY`` / ``TASK_POLICY``, where the
order of the rules decides which one answers. Everything runs at a fixed
``NOW`` with an explicit ``jitter_sample`` so the tables are deterministic.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runtime import states
from runtime.orchestration import policies
from runtime.orchestration.policies import (
    FLOW_POLICY,
    FORCE_POLICY,
    TASK_POLICY,
    CopyScheduledTime,
    EnforceCancellingToCancelled,
    EnsureOnlyScheduledMarkedLate,
    HandlePausing,
    HandleResuming,
    HandleTerminalStateTransitions,
    PreventDuplicateClaims,
    PreventDuplicateTransitions,
    PreventPendingTransitions,
    PreventRunningTasksFromStoppedFlows,
    RenameReruns,
    RetryFailedRuns,
    WaitForScheduledTime,
    orchestrate,
    retry_delay,
    run_field_updates,
)
from runtime.orchestration.rules import (
    Decision,
    OrchestrationContext,
    Rule,
    RunView,
    Status,
)
from runtime.states import STATE_NAMES, TERMINAL_TYPES, State, StateType

S = StateType
NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
STATE_AGE = timedelta(seconds=30)
"""Every built state is stamped ``NOW - STATE_AGE`` (so leaving RUNNING adds 30s of run time)."""


def at(seconds: float) -> datetime:
    """``NOW`` shifted by ``seconds``."""
    return NOW + timedelta(seconds=seconds)


# --------------------------------------------------------------------------- state specs

_CONSTRUCTORS: dict[str, Any] = {
    "Scheduled": states.Scheduled,
    "Late": states.Late,
    "AwaitingRetry": states.AwaitingRetry,
    "AwaitingConcurrencySlot": states.AwaitingConcurrencySlot,
    "Resuming": states.Resuming,
    "Pending": states.Pending,
    "NotReady": states.NotReady,
    "Running": states.Running,
    "Retrying": states.Retrying,
    "Completed": states.Completed,
    "Cached": states.Cached,
    "Failed": states.Failed,
    "TimedOut": states.TimedOut,
    "Crashed": states.Crashed,
    "Cancelling": states.Cancelling,
    "Cancelled": states.Cancelled,
    "Paused": states.Paused,
    "Suspended": states.Suspended,
}

ONE_PER_TYPE: dict[StateType, str] = {
    S.SCHEDULED: "Scheduled",
    S.PENDING: "Pending",
    S.RUNNING: "Running",
    S.COMPLETED: "Completed",
    S.FAILED: "Failed",
    S.CANCELLED: "Cancelled",
    S.CANCELLING: "Cancelling",
    S.CRASHED: "Crashed",
    S.PAUSED: "Paused",
}
NON_TERMINAL_NAMES = [n for t, n in ONE_PER_TYPE.items() if t not in TERMINAL_TYPES]
TERMINAL_NAMES = ["Completed", "Cached", "Failed", "TimedOut", "Crashed", "Cancelled"]


@dataclass(frozen=True)
class St:
    """An immutable spec of a state; :meth:`build` makes a fresh :class:`State` each time.

    Rules mutate the states they see (RenameReruns, CopyScheduledTime), so table rows
    hold specs, never State objects.
    """

    name: str
    at: float | None = None
    """scheduled_time = NOW + at. SCHEDULED states default to -60 (due a minute ago)."""
    no_time: bool = False
    """A SCHEDULED state with no scheduled_time at all."""
    timeout: float | None = None
    """pause_timeout = NOW + timeout (PAUSED states)."""
    tid: str | None = None
    retriable: bool = True
    key: str | None = None
    """pause_key (PAUSED states)."""

    @property
    def type(self) -> StateType:
        return STATE_NAMES[self.name]

    def build(self) -> State:
        ctor = _CONSTRUCTORS[self.name]
        if self.type is S.SCHEDULED:
            state = ctor(scheduled_time=at(-60 if self.at is None else self.at))
            if self.no_time:
                state.details.scheduled_time = None
        else:
            state = ctor()
            if self.at is not None:
                state.details.scheduled_time = at(self.at)
        state.timestamp = NOW - STATE_AGE
        if self.timeout is not None:
            state.details.pause_timeout = at(self.timeout)
        state.details.transition_id = self.tid
        state.details.retriable = self.retriable
        if self.key is not None:
            state.details.pause_key = self.key
        assert state.name == self.name and state.type is self.type
        return state

    def __str__(self) -> str:
        extra = []
        if self.no_time:
            extra.append("no-time")
        elif self.at is not None:
            extra.append(f"at{self.at:+g}s")
        if self.timeout is not None:
            extra.append(f"timeout{self.timeout:+g}s")
        if self.tid is not None:
            extra.append(f"tid={self.tid}")
        if not self.retriable:
            extra.append("not-retriable")
        return self.name + (f"[{','.join(extra)}]" if extra else "")


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Outcome:
    """What a rule or policy should decide; the written state is checked when ``name`` is set."""

    status: Status
    name: str | None = None
    """The written (possibly rewritten) state's name; its type is checked via STATE_NAMES."""
    at: float | None = None
    """The written state's scheduled_time, as an offset from NOW."""
    delay: float | None = None
    """WAIT: the delay in seconds."""
    reason: str | None = None
    """A substring of the reason (shows which rule answered)."""


def accepted(name: str | None = None, *, at: float | None = None) -> Outcome:
    return Outcome(Status.ACCEPT, name=name, at=at)


def rejected(reason: str | None = None) -> Outcome:
    return Outcome(Status.REJECT, reason=reason)


def aborted(reason: str | None = None) -> Outcome:
    return Outcome(Status.ABORT, reason=reason)


def waits(delay: float, name: str | None = None) -> Outcome:
    return Outcome(Status.WAIT, name=name, delay=delay)


def assert_outcome(
    status: Status, state: State, reason: str | None, delay: float, expected: Outcome
) -> None:
    assert status is expected.status, f"{status} ({reason})"
    if expected.name is not None:
        assert (state.name, state.type) == (expected.name, STATE_NAMES[expected.name]), reason
    if expected.at is not None:
        when = state.details.scheduled_time
        assert when is not None
        assert (when - NOW).total_seconds() == pytest.approx(expected.at)
    if expected.delay is not None:
        assert delay == pytest.approx(expected.delay)
    if expected.reason is not None:
        assert reason is not None and expected.reason in reason


# --------------------------------------------------------------------------- running rules

POLICIES = [pytest.param(FLOW_POLICY, id="flow"), pytest.param(TASK_POLICY, id="task")]
FIELDS = ("initial", "proposed", "alone", "expected", "run")


def row(
    initial: St | None,
    proposed: St,
    alone: Outcome | None,
    expected: Outcome,
    *,
    id: str | None = None,
    **run: Any,
) -> Any:
    """A table row: ``alone`` is the rule's own outcome (None: it does not apply),
    ``expected`` the full policy's. ``run`` holds RunView fields, plus ``flow`` (the
    enclosing flow run's state spec) and ``jitter`` (the jitter sample)."""
    return pytest.param(initial, proposed, alone, expected, run, id=id or f"{initial}->{proposed}")


def make_ctx(
    initial: St | None,
    proposed: St,
    run: dict[str, Any] | None = None,
    *,
    task: bool = False,
    force: bool = False,
) -> OrchestrationContext:
    fields = dict(run or {})
    jitter = fields.pop("jitter", 0.5)
    flow: St | None = fields.pop("flow", St("Running") if task else None)
    view = RunView(
        kind="task_run" if task else "flow_run",
        flow_run_state=flow.build() if flow is not None else None,
        **fields,
    )
    return OrchestrationContext(
        initial=initial.build() if initial is not None else None,
        proposed=proposed.build(),
        run=view,
        now=NOW,
        force=force,
        jitter_sample=jitter,
    )


def check_rule_alone(
    rule: type[Rule], initial: St | None, proposed: St, alone: Outcome | None, run: dict[str, Any]
) -> OrchestrationContext:
    ctx = make_ctx(initial, proposed, run, task=run.get("flow") is not None)
    if alone is None:
        assert not rule.applies(ctx), f"{rule.__name__} should not govern {initial}->{proposed}"
        return ctx
    assert rule.applies(ctx), f"{rule.__name__} should govern {initial}->{proposed}"
    rule().before_transition(ctx)
    assert_outcome(ctx.status, ctx.proposed, ctx.reason, ctx.delay_seconds, alone)
    return ctx


def check_policy(
    policy: tuple[type[Rule], ...],
    initial: St | None,
    proposed: St,
    expected: Outcome,
    run: dict[str, Any],
) -> Decision:
    ctx = make_ctx(initial, proposed, run, task=policy is TASK_POLICY)
    decision = orchestrate(policy, ctx)
    assert_outcome(
        decision.status, decision.state, decision.reason, decision.delay_seconds, expected
    )
    assert decision.accepted is (expected.status is Status.ACCEPT)
    if not decision.accepted:
        assert decision.reason
    return decision


# =========================================================================== the rules


class TestPreventDuplicateTransitions:
    RULE = PreventDuplicateTransitions
    CASES = [
        row(St("Pending", tid="t1"), St("Running", tid="t1"), rejected("duplicate"),
            rejected("duplicate")),
        row(St("Pending", tid="t1"), St("Running", tid="t2"), accepted(), accepted("Running")),
        row(St("Pending"), St("Running"), accepted(), accepted("Running"), id="no-tids"),
        row(St("Pending", tid="t1"), St("Running"), accepted(), accepted("Running")),
        row(St("Pending"), St("Running", tid="t1"), accepted(), accepted("Running")),
        row(None, St("Pending", tid="t1"), accepted(), accepted("Pending")),
        # It runs first: the duplicate answers before the terminal / claim rules would.
        row(St("Completed", tid="t1"), St("Completed", tid="t1"), rejected("duplicate"),
            rejected("duplicate")),
        row(St("Running", tid="t1"), St("Running", tid="t1"), rejected("duplicate"),
            rejected("duplicate")),
        row(St("Running", tid="t1"), St("Failed", tid="t1"), rejected("duplicate"),
            rejected("duplicate"), run_count=1, retries=3),
    ]  # fmt: skip

    @pytest.mark.parametrize(FIELDS, CASES)
    def test_rule_alone(self, initial, proposed, alone, expected, run):
        check_rule_alone(self.RULE, initial, proposed, alone, run)

    @pytest.mark.parametrize(FIELDS, CASES)
    @pytest.mark.parametrize("policy", POLICIES)
    def test_policy(self, policy, initial, proposed, alone, expected, run):
        check_policy(policy, initial, proposed, expected, run)

    @pytest.mark.parametrize(FIELDS, CASES)
    def test_force_policy_keeps_only_this_rule(self, initial, proposed, alone, expected, run):
        ctx = make_ctx(initial, proposed, run, force=True)
        decision = orchestrate(FORCE_POLICY, ctx)
        assert decision.status is alone.status
        if decision.accepted:
            assert decision.state.name == proposed.name


def _terminal_cases() -> list[Any]:
    cases = []
    for initial in TERMINAL_NAMES:
        for proposed in [*ONE_PER_TYPE.values(), "AwaitingRetry", "Cached", "TimedOut"]:
            rerun = STATE_NAMES[initial] is not S.COMPLETED and STATE_NAMES[proposed] is S.SCHEDULED
            outcome = accepted(proposed) if rerun else rejected("terminal state")
            cases.append(row(St(initial), St(proposed), outcome, outcome))
    return cases


class TestHandleTerminalStateTransitions:
    RULE = HandleTerminalStateTransitions
    CASES = [
        *_terminal_cases(),
        # The rule allows a rerun; the Late rule still refuses to call it Late.
        row(St("Failed"), St("Late"), accepted(), rejected("Late")),
        row(St("Crashed"), St("Resuming", at=3600), accepted(), accepted("Resuming", at=3600)),
        # Non-terminal initial states are not this rule's business.
        *[
            row(St(name), St("Completed"), None, accepted("Completed"))
            for name in ["Scheduled", "Pending", "Running", "Cancelling", "Paused"]
        ],
        row(None, St("Completed"), None, accepted("Completed")),
    ]

    @pytest.mark.parametrize(FIELDS, CASES)
    def test_rule_alone(self, initial, proposed, alone, expected, run):
        check_rule_alone(self.RULE, initial, proposed, alone, run)

    @pytest.mark.parametrize(FIELDS, CASES)
    @pytest.mark.parametrize("policy", POLICIES)
    def test_policy(self, policy, initial, proposed, alone, expected, run):
        check_policy(policy, initial, proposed, expected, run)

    @pytest.mark.parametrize("initial", TERMINAL_NAMES)
    @pytest.mark.parametrize("proposed", [*ONE_PER_TYPE.values(), "Late", "Suspended"])
    def test_force_accepts_anything(self, initial, proposed):
        ctx = make_ctx(St(initial), St(proposed), force=True)
        decision = orchestrate(FORCE_POLICY, ctx)
        assert decision.status is Status.ACCEPT
        assert decision.state.name == proposed

    @pytest.mark.parametrize("initial", TERMINAL_NAMES)
    def test_force_still_rejects_a_duplicate_transition(self, initial):
        ctx = make_ctx(St(initial, tid="t1"), St("Scheduled", tid="t1"), force=True)
        decision = orchestrate(FORCE_POLICY, ctx)
        assert decision.status is Status.REJECT
        assert "duplicate" in (decision.reason or "")


class TestEnforceCancellingToCancelled:
    RULE = EnforceCancellingToCancelled
    CASES = [
        *[
            row(St("Cancelling"), St(name), rejected("Cancelling"), rejected("Cancelling"))
            for name in [*NON_TERMINAL_NAMES, "Suspended", "AwaitingRetry", "Retrying"]
        ],
        # Ending is fine; a Failed from Cancelling is not retried (retries left or not).
        *[
            row(St("Cancelling"), St(name), None, accepted(name), run_count=1, retries=3)
            for name in ["Cancelled", "Completed", "Failed", "TimedOut", "Crashed"]
        ],
    ]

    @pytest.mark.parametrize(FIELDS, CASES)
    def test_rule_alone(self, initial, proposed, alone, expected, run):
        check_rule_alone(self.RULE, initial, proposed, alone, run)

    @pytest.mark.parametrize(FIELDS, CASES)
    @pytest.mark.parametrize("policy", POLICIES)
    def test_policy(self, policy, initial, proposed, alone, expected, run):
        check_policy(policy, initial, proposed, expected, run)


class TestPreventPendingTransitions:
    RULE = PreventPendingTransitions
    CASES = [
        row(None, St("Pending"), None, accepted("Pending")),
        row(St("Scheduled"), St("Pending"), None, accepted("Pending")),
        row(St("Late"), St("Pending"), None, accepted("Pending")),
        row(St("Pending"), St("Pending"), rejected("Pending again"), rejected("Pending again")),
        row(St("NotReady"), St("Pending"), rejected(), rejected("Pending again")),
        row(St("Pending"), St("NotReady"), rejected(), rejected("Pending again")),
        row(St("Running"), St("Pending"), rejected(), rejected("Pending again")),
        row(St("Retrying"), St("Pending"), rejected(), rejected("Pending again")),
        row(St("Paused"), St("Pending"), rejected(), rejected("Pending again")),
        row(St("Suspended"), St("Pending"), rejected(), rejected("Pending again")),
        # Earlier rules answer first for Cancelling and terminal runs.
        row(St("Cancelling"), St("Pending"), rejected(), rejected("Cancelling")),
        row(St("Completed"), St("Pending"), None, rejected("terminal")),
        row(St("Failed"), St("Pending"), None, rejected("terminal")),
        row(St("Pending"), St("Running"), None, accepted("Running")),
    ]

    @pytest.mark.parametrize(FIELDS, CASES)
    def test_rule_alone(self, initial, proposed, alone, expected, run):
        check_rule_alone(self.RULE, initial, proposed, alone, run)

    @pytest.mark.parametrize(FIELDS, CASES)
    @pytest.mark.parametrize("policy", POLICIES)
    def test_policy(self, policy, initial, proposed, alone, expected, run):
        check_policy(policy, initial, proposed, expected, run)


class TestPreventDuplicateClaims:
    RULE = PreventDuplicateClaims
    CASES = [
        row(St("Running"), St("Running"), rejected("claimed"), rejected("claimed")),
        row(St("Running"), St("Retrying"), rejected("claimed"), rejected("claimed")),
        row(St("Retrying"), St("Running"), rejected("claimed"), rejected("claimed")),
        row(St("Pending"), St("Running"), None, accepted("Running")),
        row(St("Scheduled"), St("Running"), None, accepted("Running")),
        row(None, St("Running"), None, accepted("Running")),
        row(St("Running"), St("Completed"), None, accepted("Completed")),
    ]

    @pytest.mark.parametrize(FIELDS, CASES)
    def test_rule_alone(self, initial, proposed, alone, expected, run):
        check_rule_alone(self.RULE, initial, proposed, alone, run)

    @pytest.mark.parametrize(FIELDS, CASES)
    @pytest.mark.parametrize("policy", POLICIES)
    def test_policy(self, policy, initial, proposed, alone, expected, run):
        check_policy(policy, initial, proposed, expected, run)


class TestEnsureOnlyScheduledMarkedLate:
    RULE = EnsureOnlyScheduledMarkedLate
    CASES = [
        row(St("Scheduled"), St("Late"), accepted("Late"), accepted("Late")),
        row(St("Scheduled", at=3600), St("Late"), accepted("Late"), accepted("Late")),
        row(St("AwaitingRetry"), St("Late"), accepted("Late"), accepted("Late")),
        row(St("Late"), St("Late"), accepted("Late"), accepted("Late")),
        row(None, St("Late"), rejected("Late"), rejected("Late")),
        row(St("Pending"), St("Late"), rejected("Late"), rejected("Late")),
        row(St("Running"), St("Late"), rejected("Late"), rejected("Late")),
        row(St("Paused"), St("Late"), rejected("Late"), rejected("Late")),
        row(St("Suspended"), St("Late"), rejected("Late"), rejected("Late")),
        row(St("Failed"), St("Late"), rejected("Late"), rejected("Late")),
        row(St("Crashed"), St("Late"), rejected("Late"), rejected("Late")),
        row(St("Completed"), St("Late"), rejected("Late"), rejected("terminal")),
        row(St("Cancelling"), St("Late"), rejected("Late"), rejected("Cancelling")),
        # Other SCHEDULED names pass this rule.
        row(St("Running"), St("AwaitingRetry"), accepted(), accepted("AwaitingRetry")),
        row(St("Pending"), St("Scheduled"), accepted(), accepted("Scheduled")),
        row(St("Scheduled"), St("Pending"), None, accepted("Pending")),
    ]

    @pytest.mark.parametrize(FIELDS, CASES)
    def test_rule_alone(self, initial, proposed, alone, expected, run):
        check_rule_alone(self.RULE, initial, proposed, alone, run)

    @pytest.mark.parametrize(FIELDS, CASES)
    @pytest.mark.parametrize("policy", POLICIES)
    def test_policy(self, policy, initial, proposed, alone, expected, run):
        check_policy(policy, initial, proposed, expected, run)


class TestHandlePausing:
    RULE = HandlePausing
    CASES = [
        row(St("Running"), St("Paused"), accepted(), accepted("Paused")),
        row(St("Running"), St("Suspended"), accepted(), accepted("Suspended"), has_deployment=True),
        row(St("Retrying"), St("Paused"), accepted(), accepted("Paused")),
        # Prefect's HandlePausingFlows: no state aborts (core_policy.py)
        row(None, St("Paused"), aborted("no state"), aborted("no state")),
        # a pause key fires once: a suspended run started again passes its pause
        row(
            St("Running"),
            St("Paused", key="1"),
            rejected("already fired"),
            rejected("already fired"),
            pause_keys=frozenset({"1"}),
        ),
        row(
            St("Running"),
            St("Paused", key="2"),
            accepted(),
            accepted("Paused"),
            pause_keys=frozenset({"1"}),
        ),
        row(
            St("Running"),
            St("Suspended", key="1"),
            rejected("already fired"),
            rejected("already fired"),
            pause_keys=frozenset({"1"}),
            has_deployment=True,
        ),
        row(St("Scheduled"), St("Paused"), rejected("pause"), rejected("pause")),
        row(St("Pending"), St("Paused"), rejected("pause"), rejected("pause")),
        row(St("Paused"), St("Paused"), rejected("pause"), rejected("pause")),
        row(St("Suspended"), St("Suspended"), rejected("suspend"), rejected("suspend")),
        row(St("Cancelling"), St("Paused"), rejected("pause"), rejected("Cancelling")),
        row(St("Completed"), St("Paused"), rejected("pause"), rejected("terminal")),
        row(St("Running"), St("Completed"), None, accepted("Completed")),
    ]

    @pytest.mark.parametrize(FIELDS, CASES)
    def test_rule_alone(self, initial, proposed, alone, expected, run):
        check_rule_alone(self.RULE, initial, proposed, alone, run)

    @pytest.mark.parametrize(FIELDS, CASES)
    @pytest.mark.parametrize("policy", POLICIES)
    def test_policy(self, policy, initial, proposed, alone, expected, run):
        check_policy(policy, initial, proposed, expected, run)


class TestHandleResuming:
    RULE = HandleResuming
    # run_count=1 throughout: a resumed Paused run stays "Running" (RenameReruns skips PAUSED).
    CASES = [
        row(St("Paused"), St("Running"), accepted("Running"), accepted("Running"), run_count=1),
        row(St("Paused", timeout=60), St("Running"), accepted("Running"), accepted("Running"),
            run_count=1),
        row(St("Paused"), St("Resuming"), rejected("Running"), rejected("Running"), run_count=1),
        row(St("Paused"), St("Scheduled"), rejected("Running"), rejected("Running"),
            run_count=1),
        row(St("Suspended"), St("Resuming"), accepted("Resuming"), accepted("Resuming"),
            run_count=1, has_deployment=True),
        row(St("Suspended", timeout=60), St("Resuming", at=30), accepted("Resuming", at=30),
            accepted("Resuming", at=30), run_count=1, has_deployment=True),
        row(St("Suspended"), St("Running"), rejected("rescheduled"), rejected("rescheduled"),
            run_count=1, has_deployment=True),
        # An expired pause cannot resume: the run is failed instead (timeout == now is expired).
        row(St("Paused", timeout=-1), St("Running"), accepted("Failed"), accepted("Failed"),
            run_count=1),
        row(St("Paused", timeout=0), St("Running"), accepted("Failed"), accepted("Failed"),
            run_count=1),
        row(St("Suspended", timeout=-1), St("Resuming"), accepted("Failed"), accepted("Failed"),
            run_count=1, has_deployment=True),
        row(St("Suspended", timeout=-1), St("Running"), accepted("Failed"), accepted("Failed"),
            run_count=1, retries=3, has_deployment=True),
        # PAUSED -> PENDING: PreventPendingTransitions answers before this rule.
        row(St("Paused"), St("Pending"), rejected("Running"), rejected("Pending again"),
            run_count=1),
        row(St("Paused", timeout=-1), St("Pending"), accepted("Failed"),
            rejected("Pending again"), run_count=1),
        # Late is refused by the Late rule, which runs earlier.
        row(St("Paused"), St("Late"), rejected("Running"), rejected("Late"), run_count=1),
        # only to RUNNING, SCHEDULED or a final state
        row(St("Paused"), St("Cancelling"), rejected("cannot transition"),
            rejected("cannot transition"), run_count=1),
        # Ending a paused run is not resuming.
        row(St("Paused"), St("Cancelled"), None, accepted("Cancelled"), run_count=1),
        row(St("Paused", timeout=-1), St("Cancelled"), None, accepted("Cancelled"), run_count=1),
        row(St("Suspended"), St("Completed"), None, accepted("Completed"), run_count=1),
    ]  # fmt: skip

    @pytest.mark.parametrize(FIELDS, CASES)
    def test_rule_alone(self, initial, proposed, alone, expected, run):
        check_rule_alone(self.RULE, initial, proposed, alone, run)

    @pytest.mark.parametrize(FIELDS, CASES)
    @pytest.mark.parametrize("policy", POLICIES)
    def test_policy(self, policy, initial, proposed, alone, expected, run):
        check_policy(policy, initial, proposed, expected, run)


class TestSuspendNeedsADeployment:
    """Flow runs only (core_policy.py HandlePausingFlows / HandleResumingPausedFlows):
    only a worker can start a suspended run again, so suspending (and resuming a
    suspended run) needs a deployment, and a subflow cannot suspend."""

    CASES = [
        row(St("Running"), St("Suspended"), aborted("without a deployment"),
            aborted("without a deployment"), id="suspend-no-deployment"),
        row(St("Running"), St("Suspended"), aborted("subflows"), aborted("subflows"),
            has_deployment=True, is_subflow=True, id="suspend-subflow"),
        row(St("Suspended"), St("Resuming"), rejected("without a deployment"),
            rejected("without a deployment"), run_count=1, id="resume-no-deployment"),
    ]  # fmt: skip

    @pytest.mark.parametrize(FIELDS, CASES)
    def test_flow_policy(self, initial, proposed, alone, expected, run):
        rule = HandleResuming if initial.type is S.PAUSED else HandlePausing
        check_rule_alone(rule, initial, proposed, alone, run)
        check_policy(FLOW_POLICY, initial, proposed, expected, run)


def _flow_state_cases() -> list[Any]:
    cases: list[Any] = [
        row(St("Pending"), St("Running"), accepted("Running"), accepted("Running"),
            id="no-flow-run", flow=None),
        row(St("Pending"), St("Running"), accepted("Running"), accepted("Running"),
            id="flow-Running", flow=St("Running")),
        row(St("Pending"), St("Running"), accepted("Running"), accepted("Running"),
            id="flow-Retrying", flow=St("Retrying")),
    ]  # fmt: skip
    for name in ["Paused", "Suspended", "Scheduled", "Pending", "Completed", "Failed", "Crashed"]:
        label = f"{name} ({STATE_NAMES[name].value})"
        outcome = aborted(label)
        cases.append(
            row(St("Pending"), St("Running"), outcome, outcome, id=f"flow-{name}", flow=St(name))
        )
    for name in ["Cancelling", "Cancelled"]:
        outcome = accepted("Cancelled")
        cases.append(
            row(St("Pending"), St("Running"), outcome, outcome, id=f"flow-{name}", flow=St(name))
        )
    return cases


class TestPreventRunningTasksFromStoppedFlows:
    RULE = PreventRunningTasksFromStoppedFlows
    CASES = _flow_state_cases()
    ORDER_CASES = [
        # Duplicate claims and terminal states answer before the flow-state check.
        row(St("Running"), St("Running"), aborted("Paused"), rejected("claimed"),
            flow=St("Paused")),
        row(St("Completed"), St("Running"), accepted("Cancelled"), rejected("terminal"),
            flow=St("Cancelled")),
        # The cancellation rewrite comes before waiting for the scheduled time ...
        row(St("Scheduled", at=60), St("Running"), accepted("Cancelled"), accepted("Cancelled"),
            flow=St("Cancelling")),
        row(St("Scheduled", at=60), St("Running"), accepted("Running"), waits(60),
            flow=St("Running")),
        # ... and before the rerun rename.
        row(St("AwaitingRetry"), St("Running"), accepted("Running"), accepted("Retrying"),
            flow=St("Running"), run_count=1),
        row(St("AwaitingRetry"), St("Running"), accepted("Cancelled"), accepted("Cancelled"),
            flow=St("Cancelling"), run_count=1),
        # Only starting is checked: a task may still finish in a stopped flow.
        row(St("Running"), St("Completed"), None, accepted("Completed"), flow=St("Paused")),
        row(St("Running"), St("Failed"), None, accepted("Failed"), flow=St("Cancelled"),
            run_count=1, retries=0),
    ]  # fmt: skip

    @pytest.mark.parametrize(FIELDS, CASES + ORDER_CASES)
    def test_rule_alone(self, initial, proposed, alone, expected, run):
        check_rule_alone(self.RULE, initial, proposed, alone, run)

    @pytest.mark.parametrize(FIELDS, CASES + ORDER_CASES)
    def test_task_policy(self, initial, proposed, alone, expected, run):
        check_policy(TASK_POLICY, initial, proposed, expected, run)

    @pytest.mark.parametrize(FIELDS, CASES)
    def test_flow_policy_ignores_it(self, initial, proposed, alone, expected, run):
        check_policy(FLOW_POLICY, initial, proposed, accepted("Running"), run)


class TestCopyScheduledTime:
    RULE = CopyScheduledTime
    # Columns: initial, proposed, rule applies, scheduled_time on the proposed state
    # after the rule (offset from NOW, None: unset), policy outcome.
    CASES = [
        pytest.param(St("Scheduled", at=-60), St("Pending"), True, -60, accepted("Pending"),
                     id="Scheduled-due->Pending"),
        pytest.param(St("Late", at=-600), St("Pending"), True, -600, accepted("Pending"),
                     id="Late->Pending"),
        pytest.param(St("AwaitingRetry", at=-1), St("Pending"), True, -1, accepted("Pending"),
                     id="AwaitingRetry->Pending"),
        pytest.param(St("Scheduled", at=60), St("Pending"), True, 60, waits(60),
                     id="Scheduled-future->Pending-waits"),
        pytest.param(St("Scheduled", at=-60), St("Pending", at=-5), True, -5,
                     accepted("Pending"), id="proposed-time-kept"),
        pytest.param(St("Scheduled", no_time=True), St("Pending"), True, None,
                     accepted("Pending"), id="no-time-to-copy"),
        pytest.param(St("Scheduled", at=-60), St("Running"), False, None, accepted("Running"),
                     id="Scheduled->Running-not-copied"),
        pytest.param(None, St("Pending"), False, None, accepted("Pending"), id="None->Pending"),
    ]  # fmt: skip

    @pytest.mark.parametrize(("initial", "proposed", "applies", "copied", "expected"), CASES)
    def test_rule_alone(self, initial, proposed, applies, copied, expected):
        ctx = make_ctx(initial, proposed)
        assert self.RULE.applies(ctx) is applies
        if applies:
            self.RULE().before_transition(ctx)
            assert ctx.status is Status.ACCEPT
        got = ctx.proposed.details.scheduled_time
        assert got == (None if copied is None else at(copied))

    @pytest.mark.parametrize(("initial", "proposed", "applies", "copied", "expected"), CASES)
    @pytest.mark.parametrize("policy", POLICIES)
    def test_policy(self, policy, initial, proposed, applies, copied, expected):
        decision = check_policy(policy, initial, proposed, expected, {})
        if decision.accepted:
            got = decision.state.details.scheduled_time
            assert got == (None if copied is None else at(copied))


class TestWaitForScheduledTime:
    RULE = WaitForScheduledTime
    CASES = [
        row(St("Scheduled", at=90), St("Pending"), waits(90), waits(90)),
        row(St("Scheduled", at=90), St("Running"), waits(90), waits(90)),
        row(St("Scheduled", at=0.25), St("Running"), waits(0.25), waits(0.25)),
        row(St("Scheduled", at=86400), St("Pending"), waits(86400), waits(86400)),
        row(St("AwaitingRetry", at=30), St("Running"), waits(30), waits(30), run_count=1),
        row(St("Resuming", at=10), St("Pending"), waits(10), waits(10)),
        row(St("AwaitingConcurrencySlot", at=5), St("Running"), waits(5), waits(5)),
        row(St("Scheduled", at=0), St("Running"), accepted(), accepted("Running")),
        row(St("Scheduled", at=-60), St("Pending"), accepted(), accepted("Pending")),
        row(St("Late", at=-600), St("Running"), accepted(), accepted("Running")),
        row(St("Scheduled", no_time=True), St("Running"), accepted(), accepted("Running")),
        # Leaving SCHEDULED any other way does not wait.
        row(St("Scheduled", at=90), St("Cancelled"), None, accepted("Cancelled")),
        row(St("Scheduled", at=90), St("Late"), None, accepted("Late")),
        row(St("Scheduled", at=90), St("Crashed"), None, accepted("Crashed")),
        row(St("Pending", at=90), St("Running"), None, accepted("Running")),
    ]

    @pytest.mark.parametrize(FIELDS, CASES)
    def test_rule_alone(self, initial, proposed, alone, expected, run):
        check_rule_alone(self.RULE, initial, proposed, alone, run)

    @pytest.mark.parametrize(FIELDS, CASES)
    @pytest.mark.parametrize("policy", POLICIES)
    def test_policy(self, policy, initial, proposed, alone, expected, run):
        check_policy(policy, initial, proposed, expected, run)


RUN = St("Running")


def _retry(delay: float) -> Outcome:
    return accepted("AwaitingRetry", at=delay)


class TestRetryFailedRuns:
    RULE = RetryFailedRuns
    CASES = [
        row(RUN, St("Failed"), _retry(10), _retry(10), run_count=1, retries=1,
            retry_delay_seconds=10, id="retry-1-of-1"),
        row(RUN, St("Failed"), _retry(0), _retry(0), run_count=1, retries=3, id="no-delay"),
        row(RUN, St("Failed"), accepted("Failed"), accepted("Failed"), run_count=2, retries=1,
            retry_delay_seconds=10, id="exhausted"),
        row(RUN, St("Failed"), accepted("Failed"), accepted("Failed"), run_count=1, retries=0,
            id="no-retries"),
        row(RUN, St("TimedOut"), _retry(5), _retry(5), run_count=1, retries=2,
            retry_delay_seconds=5, id="timed-out-retried"),
        row(St("Retrying"), St("Failed"), _retry(5), _retry(5), run_count=2, retries=2,
            retry_delay_seconds=5, id="from-Retrying"),
        row(RUN, St("Failed", retriable=False), accepted("Failed"), accepted("Failed"),
            run_count=1, retries=3, id="not-retriable"),
        # A list of delays is indexed by attempt; the last one repeats.
        *[
            row(RUN, St("Failed"), _retry(d), _retry(d), run_count=n, retries=5,
                retry_delay_seconds=[1, 10, 100], id=f"list-attempt-{n}")
            for n, d in [(1, 1), (2, 10), (3, 100), (4, 100), (5, 100)]
        ],
        row(RUN, St("Failed"), _retry(0), _retry(0), run_count=1, retries=1,
            retry_delay_seconds=[], id="empty-list"),
        row(RUN, St("Failed"), _retry(2.5), _retry(2.5), run_count=3, retries=3,
            retry_delay_seconds=[2.5], id="single-item-list"),
        # Jitter: delay * (1 + factor * (2 * sample - 1)), never below zero.
        row(RUN, St("Failed"), _retry(50), _retry(50), run_count=1, retries=1,
            retry_delay_seconds=100, retry_jitter_factor=0.5, jitter=0.0, id="jitter-low"),
        row(RUN, St("Failed"), _retry(100), _retry(100), run_count=1, retries=1,
            retry_delay_seconds=100, retry_jitter_factor=0.5, jitter=0.5, id="jitter-mid"),
        row(RUN, St("Failed"), _retry(149.9), _retry(149.9), run_count=1, retries=1,
            retry_delay_seconds=100, retry_jitter_factor=0.5, jitter=0.999, id="jitter-high"),
        row(RUN, St("Failed"), _retry(10), _retry(10), run_count=2, retries=2,
            retry_delay_seconds=[5, 20], retry_jitter_factor=0.5, jitter=0.0,
            id="jitter-on-list"),
        row(RUN, St("Failed"), _retry(0), _retry(0), run_count=1, retries=1,
            retry_delay_seconds=100, retry_jitter_factor=2.0, jitter=0.0,
            id="jitter-clamped-at-zero"),
        # Only RUNNING -> FAILED is retried.
        row(RUN, St("Crashed"), None, accepted("Crashed"), run_count=1, retries=3,
            id="crash-not-retried"),
        row(St("Pending"), St("Failed"), None, accepted("Failed"), run_count=1, retries=3,
            id="Pending->Failed"),
        row(None, St("Failed"), None, accepted("Failed"), run_count=0, retries=3,
            id="None->Failed"),
    ]  # fmt: skip

    @pytest.mark.parametrize(FIELDS, CASES)
    def test_rule_alone(self, initial, proposed, alone, expected, run):
        check_rule_alone(self.RULE, initial, proposed, alone, run)

    @pytest.mark.parametrize(FIELDS, CASES)
    @pytest.mark.parametrize("policy", POLICIES)
    def test_policy(self, policy, initial, proposed, alone, expected, run):
        check_policy(policy, initial, proposed, expected, run)

    @pytest.mark.parametrize("policy", POLICIES)
    def test_retry_state_carries_count_message_and_data(self, policy):
        ctx = make_ctx(
            St("Running"),
            St("Failed"),
            {"run_count": 2, "retries": 3, "retry_delay_seconds": 7},
            task=policy is TASK_POLICY,
        )
        error = ValueError("boom")
        ctx.proposed.message = "boom happened"
        ctx.proposed.with_data(error)
        decision = orchestrate(policy, ctx)
        assert decision.accepted
        state = decision.state
        assert (state.type, state.name) == (S.SCHEDULED, "AwaitingRetry")
        assert state.details.retry_count == 2
        assert state.details.scheduled_time == at(7)
        assert state.message == "boom happened"
        assert state.data is error
        assert decision.reason is not None and "retry 2 of 3" in decision.reason

    @pytest.mark.parametrize("factor", [0.1, 0.5, 1.0])
    @pytest.mark.parametrize("delay", [10.0, 60.0])
    def test_jitter_bounds(self, factor, delay):
        def delay_for(sample: float) -> float:
            ctx = make_ctx(
                St("Running"),
                St("Failed"),
                {
                    "run_count": 1,
                    "retries": 1,
                    "retry_delay_seconds": delay,
                    "retry_jitter_factor": factor,
                    "jitter": sample,
                },
            )
            return retry_delay(ctx)

        low, high = delay_for(0.0), delay_for(0.999)
        assert low == pytest.approx(delay * (1 - factor))
        assert low <= delay <= high <= delay * (1 + factor)
        assert high == pytest.approx(delay * (1 + factor), rel=2e-3)


class TestRenameReruns:
    RULE = RenameReruns
    CASES = [
        row(St("AwaitingRetry"), St("Running"), accepted("Retrying"), accepted("Retrying"),
            run_count=1),
        row(St("AwaitingRetry"), St("Running"), accepted("Running"), accepted("Running"),
            run_count=0),
        row(St("Scheduled"), St("Running"), accepted("Retrying"), accepted("Retrying"),
            run_count=2),
        row(St("Pending"), St("Running"), accepted("Retrying"), accepted("Retrying"),
            run_count=1),
        row(St("Pending"), St("Running"), accepted("Running"), accepted("Running"),
            run_count=0),
        row(St("Pending"), St("Retrying"), accepted("Retrying"), accepted("Retrying"),
            run_count=0),
        # Waiting for the retry time ends orchestration before the rename.
        row(St("AwaitingRetry", at=30), St("Running"), accepted("Retrying"),
            waits(30, name="Running"), run_count=1),
        # A resumed pause is the same attempt, not a rerun.
        row(St("Paused"), St("Running"), None, accepted("Running"), run_count=1),
        row(None, St("Running"), None, accepted("Running"), run_count=1),
        row(St("Running"), St("Running"), None, rejected("claimed"), run_count=1),
    ]  # fmt: skip

    @pytest.mark.parametrize(FIELDS, CASES)
    def test_rule_alone(self, initial, proposed, alone, expected, run):
        check_rule_alone(self.RULE, initial, proposed, alone, run)

    @pytest.mark.parametrize(FIELDS, CASES)
    @pytest.mark.parametrize("policy", POLICIES)
    def test_policy(self, policy, initial, proposed, alone, expected, run):
        check_policy(policy, initial, proposed, expected, run)


# =========================================================================== run fields


class TestRunFieldUpdates:
    """``run_field_updates``: Prefect's global transforms on an accepted transition."""

    START = at(-3600)

    @pytest.mark.parametrize(
        ("initial", "accepted_state", "start_time", "expected"),
        [
            pytest.param(None, St("Running"), None, {"run_count_increment": 1, "start_time": NOW},
                         id="first-run-sets-start"),
            pytest.param(St("Pending"), St("Running"), None,
                         {"run_count_increment": 1, "start_time": NOW}, id="Pending->Running"),
            pytest.param(St("AwaitingRetry"), St("Retrying"), START, {"run_count_increment": 1},
                         id="rerun-keeps-start"),
            pytest.param(St("Running"), St("Completed"), START,
                         {"end_time": NOW, "run_time_increment": 30.0}, id="Running->Completed"),
            pytest.param(St("Running"), St("Failed"), START,
                         {"end_time": NOW, "run_time_increment": 30.0}, id="Running->Failed"),
            pytest.param(St("Running"), St("AwaitingRetry", at=10), START,
                         {"run_time_increment": 30.0, "next_scheduled_start_time": at(10)},
                         id="Running->AwaitingRetry"),
            pytest.param(St("Running"), St("Paused", key="k"), START,
                         {"run_time_increment": 30.0, "pause_key": "k"}, id="Running->Paused"),
            pytest.param(St("Pending"), St("Crashed"), None, {"end_time": NOW},
                         id="Pending->Crashed"),
            pytest.param(St("Cancelling"), St("Cancelled"), START, {"end_time": NOW},
                         id="Cancelling->Cancelled"),
            pytest.param(None, St("Scheduled", at=600), None,
                         {"next_scheduled_start_time": at(600)}, id="None->Scheduled"),
            pytest.param(St("Scheduled"), St("Pending"), None, {}, id="Scheduled->Pending"),
        ],
    )  # fmt: skip
    def test_updates(self, initial, accepted_state, start_time, expected):
        init = initial.build() if initial is not None else None
        assert run_field_updates(init, accepted_state.build(), NOW, start_time) == expected

    def test_run_time_never_negative(self):
        running = St("Running").build()
        running.timestamp = at(5)  # clock skew: the state looks newer than now
        updates = run_field_updates(running, St("Completed").build(), NOW, self.START)
        assert updates["run_time_increment"] == 0.0

    def test_full_cycle(self):
        """Orchestrate a flow run through a retry, applying the field updates as a store would."""
        run: dict[str, Any] = {"run_count": 0, "start_time": None, "total": 0.0}
        current: State | None = None

        def step(proposed: State, now: datetime) -> Decision:
            nonlocal current
            view = RunView(kind="flow_run", run_count=run["run_count"], retries=1,
                           retry_delay_seconds=60)  # fmt: skip
            ctx = OrchestrationContext(current, proposed, view, now=now, jitter_sample=0.5)
            decision = orchestrate(FLOW_POLICY, ctx)
            if decision.accepted:
                written = decision.state
                written.timestamp = now
                updates = run_field_updates(current, written, now, run["start_time"])
                run["run_count"] += updates.get("run_count_increment", 0)
                run["start_time"] = updates.get("start_time", run["start_time"])
                run["total"] += updates.get("run_time_increment", 0.0)
                current = written
            return decision

        assert step(states.Scheduled(scheduled_time=at(0)), at(-10)).accepted
        assert step(states.Pending(), at(0)).accepted
        assert step(states.Running(), at(1)).state.name == "Running"
        assert step(states.Failed(), at(11)).state.name == "AwaitingRetry"
        assert step(states.Running(), at(12)).status is Status.WAIT
        assert step(states.Running(), at(71)).state.name == "Retrying"
        assert step(states.Failed(), at(81)).state.name == "Failed"
        assert run == {"run_count": 2, "start_time": at(1), "total": 20.0}

    def test_resuming_a_pause_is_not_a_new_run(self):
        updates = run_field_updates(St("Paused").build(), St("Running").build(), NOW, self.START)
        assert "run_count_increment" not in updates

    def test_suspended_resume_is_not_a_new_run_nor_a_retry(self):
        to_resuming = run_field_updates(
            St("Suspended").build(), states.Resuming(scheduled_time=NOW), NOW, self.START
        )
        assert to_resuming["resuming"] is True
        to_running = run_field_updates(
            states.Pending(), states.Running(), NOW, self.START, resuming=True
        )
        assert "run_count_increment" not in to_running
        assert to_running["resuming"] is False
        ctx = OrchestrationContext(
            initial=states.Pending(),
            proposed=states.Running(),
            run=RunView(kind="flow_run", run_count=1, resuming=True),
            now=NOW,
        )
        assert orchestrate(FLOW_POLICY, ctx).state.name == "Running"

    def test_rerun_out_of_a_terminal_state_clears_end_time(self):
        updates = run_field_updates(states.Failed(), states.Scheduled(), NOW, self.START)
        assert updates["end_time"] is None


# =========================================================================== policies


class TestPolicies:
    def test_task_policy_is_flow_policy_plus_the_flow_state_check(self):
        assert [r for r in TASK_POLICY if r is not PreventRunningTasksFromStoppedFlows] == list(
            FLOW_POLICY
        )
        position = TASK_POLICY.index(PreventRunningTasksFromStoppedFlows)
        assert TASK_POLICY[position - 1] is PreventDuplicateClaims

    def test_force_policy_only_prevents_duplicates(self):
        assert (PreventDuplicateTransitions,) == FORCE_POLICY

    def test_every_rule_is_in_a_policy_and_has_a_test_class(self):
        rules = {
            obj
            for obj in vars(policies).values()
            if inspect.isclass(obj) and issubclass(obj, Rule) and obj is not Rule
        }
        assert rules == set(FLOW_POLICY) | set(TASK_POLICY)
        tested = {
            getattr(cls, "RULE", None)
            for name, cls in globals().items()
            if name.startswith("Test") and inspect.isclass(cls)
        }
        assert rules <= tested, sorted(r.__name__ for r in rules - tested)

    @pytest.mark.parametrize("policy", POLICIES)
    @pytest.mark.parametrize(
        ("initial", "proposed", "expected"),
        [
            pytest.param(None, St("Scheduled", at=60), accepted("Scheduled"), id="create"),
            pytest.param(None, St("Pending"), accepted("Pending"), id="None->Pending"),
            pytest.param(St("Scheduled"), St("Pending"), accepted("Pending"), id="submit"),
            pytest.param(St("Pending"), St("Running"), accepted("Running"), id="claim"),
            pytest.param(St("Running"), St("Completed"), accepted("Completed"), id="finish"),
            pytest.param(St("Running"), St("Cancelling"), accepted("Cancelling"), id="cancel"),
            pytest.param(St("Pending"), St("Cancelling"), accepted("Cancelling"),
                         id="cancel-pending"),
            pytest.param(St("Scheduled"), St("Cancelled"), accepted("Cancelled"),
                         id="cancel-scheduled"),
        ],
    )  # fmt: skip
    def test_happy_path(self, policy, initial, proposed, expected):
        check_policy(policy, initial, proposed, expected, {})
