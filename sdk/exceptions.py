"""``sdk.exceptions``: what flow authors may catch (Prefect's ``prefect.exceptions``)."""

from runtime.engine.exceptions import (
    CacheKeyFailure,
    CancelledRun,
    ConcurrencySlotAcquisitionError,
    CrashedRun,
    FailedRun,
    MissingResult,
    ParameterTypeError,
    StratoflowException,
    UpstreamTaskError,
)
from runtime.engine.runlogs import MissingContextError
from runtime.engine.signals import TerminationSignal

__all__ = [
    "CacheKeyFailure",
    "CancelledRun",
    "ConcurrencySlotAcquisitionError",
    "CrashedRun",
    "FailedRun",
    "MissingContextError",
    "MissingResult",
    "ParameterTypeError",
    "StratoflowException",
    "TerminationSignal",
    "UpstreamTaskError",
]
