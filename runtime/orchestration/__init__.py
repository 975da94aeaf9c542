"""Orchestration rules: pure functions deciding whether a proposed state transition happens.

A policy is an ordered list of small rule classes, each declaring the FROM and TO
state types it governs (Prefect's ``core_policy`` is the model). ``orchestrate``
runs a policy over an :class:`OrchestrationContext` and returns a
:class:`Decision`; the stores compile that decision into one DynamoDB
conditional write. Nothing in this package does I/O.
"""

from runtime.orchestration.policies import (
    FLOW_POLICY,
    FORCE_POLICY,
    TASK_POLICY,
    orchestrate,
    run_field_updates,
)
from runtime.orchestration.rules import (
    Decision,
    OrchestrationContext,
    Rule,
    RunView,
    Status,
)

__all__ = [
    "FLOW_POLICY",
    "FORCE_POLICY",
    "TASK_POLICY",
    "Decision",
    "OrchestrationContext",
    "Rule",
    "RunView",
    "Status",
    "orchestrate",
    "run_field_updates",
]
