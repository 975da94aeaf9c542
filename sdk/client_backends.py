"""What ``get_client()``'s client reads and writes through: :class:`ClientBackend`.

Two implementations, with the same answers: :class:`StoresBackend` (the
installation's stores, through the use cases of :mod:`runtime.services`: the
embedded default and direct AWS access) and :class:`HttpBackend` (the HTTP API,
through :class:`sdk.http_client.StratoflowClient`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from runtime.models import (
    CacheRecord,
    ConcurrencyLimit,
    ConcurrencyLimitCreate,
    ConcurrencyLimitUpdate,
    FlowRun,
    FlowRunFilter,
    LogRecord,
    OrchestrationResult,
    Page,
    TaskRun,
    TaskRunFilter,
)
from runtime.services import flow_runs, pages, pauses
from runtime.states import State

if TYPE_CHECKING:
    from runtime.stores import Stores
    from sdk.http_client import StratoflowClient

__all__ = ["ClientBackend", "HttpBackend", "StoresBackend"]


class ClientBackend(Protocol):
    """The operations behind the SDK client (each one store call or one API route)."""

    def create_concurrency_limit(self, request: ConcurrencyLimitCreate) -> ConcurrencyLimit:
        """Create a limit (AlreadyExists if it exists)."""

    def update_concurrency_limit(
        self, name: str, limit: int | ConcurrencyLimitUpdate
    ) -> ConcurrencyLimit:
        """Resize a limit, or change the fields of an update (NotFound if absent)."""

    def hello(self) -> None:
        """Reach the backend (raises when it cannot be reached)."""

    @property
    def api_url(self) -> str | None:
        """The HTTP API this backend talks to (None: the stores directly)."""

    def read_concurrency_limit(self, name: str) -> ConcurrencyLimit:
        """One limit with its active slots (NotFound if absent)."""

    def read_all_concurrency_limits(self) -> list[ConcurrencyLimit]:
        """Every concurrency limit."""

    def delete_concurrency_limit(self, name: str) -> None:
        """Delete a limit (NotFound if absent)."""

    def read_flow_run(self, flow_run_id: str) -> FlowRun:
        """One flow run (NotFound if absent)."""

    def list_flow_runs(
        self, flt: FlowRunFilter, limit: int, cursor: str | None = None
    ) -> Page[FlowRun]:
        """One page of flow runs matching ``flt``, newest first (from ``cursor``)."""

    def read_flow_run_states(self, flow_run_id: str) -> list[State]:
        """Every state of a flow run, oldest first."""

    def set_flow_run_state(
        self, flow_run_id: str, state: State, force: bool
    ) -> OrchestrationResult:
        """Propose a flow-run state: what the rules decided (a refusal is a result)."""

    def resume_flow_run(
        self, flow_run_id: str, run_input: dict[str, Any] | None
    ) -> OrchestrationResult: ...

    def create_flow_run_input(
        self, flow_run_id: str, key: str, value: Any, sender: str | None
    ) -> None: ...

    def read_flow_run_input(self, flow_run_id: str, key: str) -> Any: ...

    def delete_flow_run_input(self, flow_run_id: str, key: str) -> None: ...

    def read_task_run(self, task_run_id: str) -> TaskRun:
        """One task run (NotFound if absent)."""

    def list_task_runs(
        self, flt: TaskRunFilter, limit: int, cursor: str | None = None
    ) -> Page[TaskRun]:
        """One page of task runs matching ``flt``, newest first (from ``cursor``)."""

    def read_task_run_states(self, task_run_id: str) -> list[State]:
        """Every state of a task run, oldest first."""

    def read_logs(
        self, flow_run_id: str, task_run_id: str | None, level_ge: int | None, limit: int
    ) -> Page[LogRecord]:
        """The first page of a flow run's log lines in time order (NotFound if no such run)."""

    def list_cache_records(self, task_key: str | None, limit: int) -> list[CacheRecord]:
        """Live cache records, newest first."""

    def clear_cache(self, key: str | None, task_key: str | None) -> int:
        """Delete one key, every key of a task, or everything; how many were deleted."""


class StoresBackend:
    """:class:`ClientBackend` over the installation's stores (and :mod:`runtime.services`)."""

    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    def create_concurrency_limit(self, request: ConcurrencyLimitCreate) -> ConcurrencyLimit:
        """Create a limit (AlreadyExists if it exists)."""
        return self.stores.concurrency.create_limit(request)

    def update_concurrency_limit(
        self, name: str, limit: int | ConcurrencyLimitUpdate
    ) -> ConcurrencyLimit:
        """Resize a limit, or change the fields of an update (NotFound if absent)."""
        return self.stores.concurrency.update_limit(name, limit)

    def hello(self) -> None:
        """One read of the runs table."""
        runs = self.stores.specs.runs.name
        self.stores.db.get(runs, {"id": "00000000-0000-0000-0000-000000000000"})

    @property
    def api_url(self) -> str | None:
        """None: this client reads and writes the stores directly."""
        return None

    def read_concurrency_limit(self, name: str) -> ConcurrencyLimit:
        """One limit with its active slots (NotFound if absent)."""
        return self.stores.concurrency.read_limit(name)

    def read_all_concurrency_limits(self) -> list[ConcurrencyLimit]:
        """Every concurrency limit."""
        return list(self.stores.concurrency.list_limits())

    def delete_concurrency_limit(self, name: str) -> None:
        """Delete a limit (NotFound if absent)."""
        self.stores.concurrency.delete_limit(name)

    def read_flow_run(self, flow_run_id: str) -> FlowRun:
        """One flow run (NotFound if absent)."""
        return self.stores.runs.read_flow_run(flow_run_id)

    def list_flow_runs(
        self, flt: FlowRunFilter, limit: int, cursor: str | None = None
    ) -> Page[FlowRun]:
        """One page of flow runs matching ``flt``, newest first (from ``cursor``)."""
        return pages.list_flow_runs(self.stores, flt, limit=limit, cursor=cursor)

    def read_flow_run_states(self, flow_run_id: str) -> list[State]:
        """Every state of a flow run, oldest first."""
        return self.stores.runs.read_state_history(flow_run_id)

    def set_flow_run_state(
        self, flow_run_id: str, state: State, force: bool
    ) -> OrchestrationResult:
        """Propose a flow-run state: what the rules decided (a refusal is a result)."""
        return flow_runs.set_run_state(self.stores, "flow_run", flow_run_id, state, force=force)

    def resume_flow_run(
        self, flow_run_id: str, run_input: dict[str, Any] | None
    ) -> OrchestrationResult:
        """Resume a paused flow run (``runtime.services.pauses``)."""
        return pauses.resume_flow_run(self.stores, flow_run_id, run_input)

    def create_flow_run_input(
        self, flow_run_id: str, key: str, value: Any, sender: str | None
    ) -> None:
        """Store one flow run input (written once per key)."""
        pauses.create_flow_run_input(self.stores, flow_run_id, key, value, sender=sender)

    def read_flow_run_input(self, flow_run_id: str, key: str) -> Any:
        """One flow run input, decoded (NotFound when absent)."""
        return pauses.read_flow_run_input(self.stores, flow_run_id, key)

    def delete_flow_run_input(self, flow_run_id: str, key: str) -> None:
        """Remove one flow run input."""
        pauses.delete_flow_run_input(self.stores, flow_run_id, key)

    def read_task_run(self, task_run_id: str) -> TaskRun:
        """One task run (NotFound if absent)."""
        return self.stores.runs.read_task_run(task_run_id)

    def list_task_runs(
        self, flt: TaskRunFilter, limit: int, cursor: str | None = None
    ) -> Page[TaskRun]:
        """One page of task runs matching ``flt``, newest first (from ``cursor``)."""
        return pages.list_task_runs(self.stores, flt, limit=limit, cursor=cursor)

    def read_task_run_states(self, task_run_id: str) -> list[State]:
        """Every state of a task run, oldest first."""
        return self.stores.runs.read_state_history(task_run_id)

    def read_logs(
        self, flow_run_id: str, task_run_id: str | None, level_ge: int | None, limit: int
    ) -> Page[LogRecord]:
        """The first page of a flow run's log lines in time order (NotFound if no such run)."""
        return pages.read_logs(
            self.stores, flow_run_id, task_run_id=task_run_id, level_ge=level_ge, limit=limit
        )

    def list_cache_records(self, task_key: str | None, limit: int) -> list[CacheRecord]:
        """Live cache records, newest first."""
        return self.stores.cache.list(task_key=task_key, limit=limit)

    def clear_cache(self, key: str | None, task_key: str | None) -> int:
        """Delete one key, every key of a task, or everything; how many were deleted."""
        return self.stores.cache.clear(key=key, task_key=task_key)


class HttpBackend:
    """:class:`ClientBackend` over the HTTP API (``api`` is the full API client)."""

    def __init__(self, api: StratoflowClient) -> None:
        self.api = api

    def create_concurrency_limit(self, request: ConcurrencyLimitCreate) -> ConcurrencyLimit:
        """``POST /concurrency_limits``."""
        return self.api.create_concurrency_limit(request)

    def update_concurrency_limit(
        self, name: str, limit: int | ConcurrencyLimitUpdate
    ) -> ConcurrencyLimit:
        """``PATCH /concurrency_limits/{name}``."""
        return self.api.update_concurrency_limit(name, limit)

    def hello(self) -> None:
        """``GET /health?deep=true``."""
        self.api.health(deep=True)

    @property
    def api_url(self) -> str | None:
        """The API's URL."""
        return self.api.api_url

    def read_concurrency_limit(self, name: str) -> ConcurrencyLimit:
        """``GET /concurrency_limits/{name}``."""
        return self.api.read_concurrency_limit(name)

    def read_all_concurrency_limits(self) -> list[ConcurrencyLimit]:
        """``GET /concurrency_limits``, every page."""
        return self.api.read_all_concurrency_limits()

    def delete_concurrency_limit(self, name: str) -> None:
        """``DELETE /concurrency_limits/{name}``."""
        self.api.delete_concurrency_limit(name)

    def read_flow_run(self, flow_run_id: str) -> FlowRun:
        """``GET /flow_runs/{id}``."""
        return self.api.read_flow_run(flow_run_id)

    def list_flow_runs(
        self, flt: FlowRunFilter, limit: int, cursor: str | None = None
    ) -> Page[FlowRun]:
        """``GET /flow_runs`` with the filter's fields as query parameters."""
        return self.api.list_flow_runs(
            flow_name=flt.flow_name,
            deployment_id=flt.deployment_id,
            parent_flow_run_id=flt.parent_flow_run_id,
            work_pool_name=flt.work_pool_name,
            state_types=flt.state_types,
            state_names=flt.state_names,
            tags=flt.tags_all,
            created_after=flt.created_after,
            created_before=flt.created_before,
            limit=limit,
            cursor=cursor,
        )

    def read_flow_run_states(self, flow_run_id: str) -> list[State]:
        """``GET /flow_runs/{id}/states``."""
        return self.api.read_flow_run_states(flow_run_id)

    def set_flow_run_state(
        self, flow_run_id: str, state: State, force: bool
    ) -> OrchestrationResult:
        """``POST /flow_runs/{id}/set_state`` (a 409 refusal comes back as the result)."""
        return self.api.set_flow_run_state(flow_run_id, state, force=force)

    def resume_flow_run(
        self, flow_run_id: str, run_input: dict[str, Any] | None
    ) -> OrchestrationResult:
        """``POST /flow_runs/{id}/resume``."""
        return self.api.resume_flow_run(flow_run_id, run_input)

    def create_flow_run_input(
        self, flow_run_id: str, key: str, value: Any, sender: str | None
    ) -> None:
        """``POST /flow_runs/{id}/input``."""
        self.api.create_flow_run_input(flow_run_id, key, value, sender)

    def read_flow_run_input(self, flow_run_id: str, key: str) -> Any:
        """``GET /flow_runs/{id}/input/{key}``."""
        return self.api.read_flow_run_input(flow_run_id, key)

    def delete_flow_run_input(self, flow_run_id: str, key: str) -> None:
        """``DELETE /flow_runs/{id}/input/{key}``."""
        self.api.delete_flow_run_input(flow_run_id, key)

    def read_task_run(self, task_run_id: str) -> TaskRun:
        """``GET /task_runs/{id}``."""
        return self.api.read_task_run(task_run_id)

    def list_task_runs(
        self, flt: TaskRunFilter, limit: int, cursor: str | None = None
    ) -> Page[TaskRun]:
        """``GET /task_runs`` with the filter's fields as query parameters."""
        return self.api.list_task_runs(
            flow_run_id=flt.flow_run_id,
            task_key=flt.task_key,
            state_types=flt.state_types,
            state_names=flt.state_names,
            tags=flt.tags_all,
            created_after=flt.created_after,
            created_before=flt.created_before,
            limit=limit,
            cursor=cursor,
        )

    def read_task_run_states(self, task_run_id: str) -> list[State]:
        """``GET /task_runs/{id}/states``."""
        return self.api.read_task_run_states(task_run_id)

    def read_logs(
        self, flow_run_id: str, task_run_id: str | None, level_ge: int | None, limit: int
    ) -> Page[LogRecord]:
        """``GET /flow_runs/{id}/logs``."""
        return self.api.read_logs(
            flow_run_id, task_run_id=task_run_id, level_ge=level_ge, limit=limit
        )

    def list_cache_records(self, task_key: str | None, limit: int) -> list[CacheRecord]:
        """``GET /cache``."""
        return self.api.list_cache_records(task_key=task_key, limit=limit)

    def clear_cache(self, key: str | None, task_key: str | None) -> int:
        """``DELETE /cache``."""
        return self.api.clear_cache(key=key, task_key=task_key)
