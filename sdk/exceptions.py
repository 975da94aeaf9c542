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
    "UpstreamTaskError",
]
