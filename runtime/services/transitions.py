"""What a refused transition means to a caller that wants an error instead of a result."""

from __future__ import annotations

from runtime.errors import TransitionRejected
from runtime.models import OrchestrationResult

__all__ = ["raise_if_refused"]


def raise_if_refused(result: OrchestrationResult) -> OrchestrationResult:
    """``result`` when the rules accepted (or asked to wait); TransitionRejected otherwise.

    The error's details hold ``status`` (REJECT or ABORT), ``reason`` and the run's
    current ``state`` (as JSON), so the caller can tell what the run is doing now.
    """
    if result.status in ("ACCEPT", "WAIT"):
        return result
    reason = result.reason or f"transition {result.status.lower()}ed"
    raise TransitionRejected(
        reason,
        status=result.status,
        reason=result.reason,
        state=result.state.model_dump(mode="json"),
    )
