"""``sdk.exceptions``: what flow authors may catch (Prefect's ``prefect.exceptions``).

``PrefectException`` is Stratoflow's base exception under Prefect's name. Names of
features that later phases bring (deployments, blocks) raise a
:class:`~sdk.not_supported.PlannedFeatureError` on import that names the phase.
"""

from runtime.engine.exceptions import (
    CacheKeyFailure,
    CancelledRun,
    ConcurrencySlotAcquisitionError,
    CrashedRun,
    FailedRun,
    FlowPauseTimeout,
    MappingLengthMismatch,
    MappingMissingIterable,
    MissingResult,
    NotPausedError,
    ParameterBindError,
    ParameterTypeError,
    Pause,
    PausedRun,
    SignatureMismatchError,
    StratoflowException,
    UnfinishedRun,
    UpstreamTaskError,
)
from runtime.engine.runlogs import MissingContextError
from runtime.engine.signals import TerminationSignal
from runtime.errors import AlreadyExists as ObjectAlreadyExists
from sdk import not_supported as _not_supported
from sdk.client import ObjectNotFound

PrefectException = StratoflowException
"""Prefect's name for the base of the engine's exceptions."""

__getattr__ = _not_supported.module_getattr(__name__)

__all__ = [
    "CacheKeyFailure",
    "CancelledRun",
    "ConcurrencySlotAcquisitionError",
    "CrashedRun",
    "FailedRun",
    "FlowPauseTimeout",
    "MappingLengthMismatch",
    "MappingMissingIterable",
    "MissingContextError",
    "MissingResult",
    "NotPausedError",
    "ObjectAlreadyExists",
    "ObjectNotFound",
    "ParameterBindError",
    "ParameterTypeError",
    "Pause",
    "PausedRun",
    "PrefectException",
    "SignatureMismatchError",
    "StratoflowException",
    "TerminationSignal",
    "UnfinishedRun",
    "UpstreamTaskError",
]
