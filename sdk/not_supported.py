"""Prefect names Stratoflow does not have (yet): importing one says why and what to use.

Prefect code moved over by replacing ``prefect`` with ``sdk`` may import a module or a
name that Stratoflow does not provide. Instead of a bare ``ModuleNotFoundError`` (or
``cannot import name``), the import raises:

* :class:`PlannedFeatureError` for a feature a later phase of the plan brings
  (deployments and workers, schedules, blocks, variables, artifacts, events,
  automations), naming that phase;
* :class:`NotSupportedError` for a name that will not be supported (Prefect Cloud,
  Prefect's own server, profiles), saying what to use instead.

Both are ``ModuleNotFoundError`` subclasses, so ``except ImportError`` (and ``except
ModuleNotFoundError``) around an optional import keeps working.

Modules: a finder at the *end* of ``sys.meta_path`` answers only for ``sdk.*`` modules
that no file provides, so a real module added later (``sdk/blocks.py``) wins without
anything here changing. Names: a package's ``__getattr__`` built by
:func:`module_getattr` raises for the names listed for it and ``AttributeError``
for anything else.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = [
    "MODULES",
    "NAMES",
    "NotSupportedError",
    "PlannedFeatureError",
    "install",
    "module_getattr",
]


class NotSupportedError(ModuleNotFoundError):
    """A Prefect module or name Stratoflow does not support; the message says what to use."""


class PlannedFeatureError(NotSupportedError):
    """A Prefect module or name that a later phase of Stratoflow's plan brings."""


@dataclass(frozen=True)
class Gap:
    """Why a Prefect name is missing: ``phase`` for a planned one, ``instead`` otherwise."""

    what: str
    instead: str
    phase: str | None = None

    def error(self, name: str) -> NotSupportedError:
        """The error raised on importing ``name``."""
        if self.phase is not None:
            return PlannedFeatureError(
                f"{name} is not available yet: {self.what} arrive in {self.phase} of "
                f"Stratoflow's plan (see docs/prefect-api-map.md). {self.instead}",
                name=name,
            )
        return NotSupportedError(
            f"{name} is not supported by Stratoflow: {self.what}. Instead: {self.instead} "
            f"(see docs/prefect-api-map.md)",
            name=name,
        )


_PHASE_6 = "phase 6 (schedules)"
_LATER = "a later phase (after schedules)"

_DEPLOYMENTS = Gap(
    "Prefect's runner, worker classes, infrastructure, image and deployment-storage APIs",
    "deploy with flow.deploy() or `stratoflow deploy` (code goes to an S3 bundle, or "
    "image=/a path the worker has), serve with flow.serve() or sdk.serve(), run workers "
    "with `stratoflow worker start --pool NAME`, submit with "
    "sdk.deployments.run_deployment()",
)
_SCHEDULES = Gap(
    "schedules (Cron, Interval, RRule)",
    "Until then, run flows from your own scheduler (cron, EventBridge) calling the flow.",
    _PHASE_6,
)
_INPUT_MESSAGES = Gap(
    "flow-to-flow messages (send_input, receive_input, filter_flow_run_input)",
    "Until then, pass input on resume (resume_flow_run(id, run_input=...)) or use "
    "sdk.input.create_flow_run_input/read_flow_run_input with known keys.",
    _LATER,
)
_BLOCKS = Gap(
    "blocks (typed configuration and credentials held in Secrets Manager)",
    "Until then, read configuration from environment variables.",
    _LATER,
)
_VARIABLES = Gap("variables", "Until then, use environment variables.", _LATER)
_ARTIFACTS = Gap(
    "artifacts (markdown, table, link, progress)",
    "Until then, log the content with get_run_logger().",
    _LATER,
)
_EVENTS = Gap(
    "events (emit_event, the event feed) and automations",
    "Until then, use on_completion/on_failure hooks.",
    _LATER,
)
_ASSETS = Gap("assets and materializations", "Until then, use tasks.", _LATER)
_CLOUD = Gap(
    "it is Prefect Cloud's (workspaces, accounts, API keys, incidents, SLAs, webhooks)",
    "point STRATOFLOW_API_URL at your Stratoflow API; access is AWS IAM",
)
_SERVER = Gap(
    "there is no Prefect server (FastAPI over SQL); Stratoflow's API is API Gateway + "
    "Lambda over DynamoDB",
    "`stratoflow dev` for a local stack, sdk.get_client() for the API",
)
_SETTINGS = Gap(
    "Prefect's settings and profiles (PREFECT_* settings, temporary_settings)",
    "STRATOFLOW_* environment variables (STRATOFLOW_API_URL, STRATOFLOW_PREFIX, ...); "
    "in tests, sdk.testing.utilities.stratoflow_test_harness()",
)
_INTERNAL = Gap(
    "it is Prefect's engine internals",
    "call the flow or task (or use task.submit()/flow(return_state=True))",
)
_AGENTS = Gap(
    "agents and infrastructure blocks are Prefect 2's (removed in Prefect 3)",
    "work pools and workers (`stratoflow worker start --pool NAME`)",
)
_SCHEMAS = Gap(
    "Prefect's client filter and sort schemas (FlowRunFilter, FlowRunSort, ...) are not "
    "reproduced (sdk.client.schemas holds the global concurrency limit schemas only)",
    "pass filters as keywords, e.g. get_client(sync_client=True).read_flow_runs("
    "flow_name=..., state_types=[StateType.COMPLETED], tags=[...]); run records are "
    "runtime.models.FlowRun / TaskRun",
)
_SERIALIZERS = Gap(
    "serializer objects (JSONSerializer, PickleSerializer, CompressedSerializer) are not accepted",
    "result_serializer='json' or 'pickle' (pickles are authenticated with the installation's key)",
)
_TELEMETRY = Gap("Stratoflow sends no telemetry and has no plugin hooks", "nothing is needed")

MODULES: dict[str, Gap] = {
    "sdk.runner": _DEPLOYMENTS,
    "sdk.workers": _DEPLOYMENTS,
    "sdk.bundles": _DEPLOYMENTS,
    "sdk.docker": _DEPLOYMENTS,
    "sdk.schedules": _SCHEDULES,
    "sdk.blocks": _BLOCKS,
    "sdk.variables": _VARIABLES,
    "sdk.artifacts": _ARTIFACTS,
    "sdk.events": _EVENTS,
    "sdk.automations": _EVENTS,
    "sdk.assets": _ASSETS,
    "sdk.cloud": _CLOUD,
    "sdk.client.cloud": _CLOUD,
    "sdk.server": _SERVER,
    "sdk.main": _INTERNAL,
    "sdk.engine": _INTERNAL,
    "sdk.flow_engine": _INTERNAL,
    "sdk.task_engine": _INTERNAL,
    "sdk.settings": _SETTINGS,
    "sdk.agent": _AGENTS,
    "sdk.infrastructure": _AGENTS,
    "sdk.client.schemas.filters": _SCHEMAS,
    "sdk.client.schemas.sorting": _SCHEMAS,
    "sdk.serializers": _SERIALIZERS,
    "sdk.telemetry": _TELEMETRY,
    "sdk.plugins": _TELEMETRY,
}
"""Modules under ``sdk`` that no file provides, and why (a real file always wins)."""

NAMES: dict[str, dict[str, Gap]] = {
    "sdk": {
        "aserve": _DEPLOYMENTS,
        "deploy": _DEPLOYMENTS,
    },
    "sdk.filesystems": {
        "RemoteFileSystem": _BLOCKS,
        "SMB": _BLOCKS,
        "NullFileSystem": _BLOCKS,
        "ReadableFileSystem": _BLOCKS,
        "WritableFileSystem": _BLOCKS,
        "ReadableDeploymentStorage": _DEPLOYMENTS,
        "WritableDeploymentStorage": _DEPLOYMENTS,
    },
    "sdk.input": {
        "send_input": _INPUT_MESSAGES,
        "asend_input": _INPUT_MESSAGES,
        "receive_input": _INPUT_MESSAGES,
        "filter_flow_run_input": _INPUT_MESSAGES,
        "afilter_flow_run_input": _INPUT_MESSAGES,
        "GetInputHandler": _INPUT_MESSAGES,
    },
    "sdk.exceptions": {
        "FlowRunWaitTimeout": _DEPLOYMENTS,
        "FlowRunWatchError": _DEPLOYMENTS,
        "InfrastructureError": _DEPLOYMENTS,
        "InfrastructureNotFound": _DEPLOYMENTS,
        "InfrastructureNotAvailable": _DEPLOYMENTS,
        "MissingFlowError": _DEPLOYMENTS,
        "UnspecifiedFlowError": _DEPLOYMENTS,
        "ScriptError": _DEPLOYMENTS,
        "BlockMissingCapabilities": _BLOCKS,
        "ProtectedBlockError": _BLOCKS,
        "InvalidRepositoryURLError": _BLOCKS,
        "MissingProfileError": _SETTINGS,
        "PrefectHTTPStatusError": Gap(
            "the HTTP client raises Stratoflow's API errors, not httpx's",
            "catch sdk.api_errors.ApiError (it carries the status code and the error type)",
        ),
    },
}
"""Names missing from a module that exists, per module."""


def _gap_for(fullname: str) -> Gap | None:
    """The gap of ``fullname`` or of the nearest listed package above it."""
    parts = fullname.split(".")
    for end in range(len(parts), 1, -1):
        gap = MODULES.get(".".join(parts[:end]))
        if gap is not None:
            return gap
    return None


class _RaisingLoader(importlib.abc.Loader):
    """Fails the import with the gap's error (nothing is left in ``sys.modules``)."""

    def __init__(self, gap: Gap) -> None:
        self.gap = gap

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        raise self.gap.error(spec.name)

    def exec_module(self, module: ModuleType) -> None:  # pragma: no cover - never reached
        raise self.gap.error(module.__name__)


class _Finder(importlib.abc.MetaPathFinder):
    """Answers for the listed ``sdk.*`` modules that no other finder found."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("sdk."):
            return None
        gap = _gap_for(fullname)
        if gap is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _RaisingLoader(gap))


_FINDER = _Finder()


def install() -> None:
    """Put the finder last on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.append(_FINDER)


def module_getattr(module: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` raising the listed gap's error for ``module``'s missing names."""
    gaps = NAMES.get(module, {})

    def __getattr__(name: str) -> Any:
        gap = gaps.get(name)
        if gap is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        raise gap.error(f"{module}.{name}")

    return __getattr__
