"""``get_client()``: read and manage runs, limits, logs and cache with Prefect's method names.

Works on every configuration: the embedded default and direct stores
(:class:`SyncClient`), and the HTTP API when ``STRATOFLOW_API_URL`` is set or the
engine writes through an ``ApiEngineClient`` (:class:`ApiSyncClient`, the same
methods over :class:`sdk.http_client.StratoflowClient`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

from runtime.engine.client import tag_limit_name
from runtime.errors import AlreadyExists, NotFound
from runtime.models import (
    ConcurrencyLimit,
    ConcurrencyLimitCreate,
    FlowRun,
    FlowRunFilter,
    LogRecord,
    OrchestrationResult,
    TaskRun,
    TaskRunFilter,
)
from runtime.states import State, StateType


class ObjectNotFound(NotFound):
    """The object asked for does not exist (Prefect's ``ObjectNotFound``)."""


#: Rounds of create-then-update before an upsert gives up (a limit deleted and
#: re-created by someone else between our two calls, again and again).
UPSERT_ATTEMPTS = 5


def upsert_limit(
    create: Callable[[ConcurrencyLimitCreate], ConcurrencyLimit],
    update: Callable[[str, int], ConcurrencyLimit],
    request: ConcurrencyLimitCreate,
) -> ConcurrencyLimit:
    """Create the limit, or resize it when it exists (Prefect's upsert semantics).

    Each step is one conditional write in the store: a concurrent create makes ours
    fail with AlreadyExists (then we resize), a concurrent delete makes the resize
    fail with NotFound (then we create again).
    """
    for _ in range(UPSERT_ATTEMPTS):
        try:
            return create(request)
        except AlreadyExists:
            pass
        try:
            return update(request.name, request.limit)
        except NotFound:
            continue
    raise AlreadyExists(f"concurrency limit {request.name!r} changed during the upsert; try again")


class SyncClient:
    """The synchronous client (``get_client(sync_client=True)``)."""

    def __init__(self, stores: Any) -> None:
        self.stores = stores

    def _limits_changed(self) -> None:
        from runtime.engine import backend

        invalidate = getattr(backend._client, "invalidate_limits", None)
        if invalidate is not None:
            invalidate()

    # -- concurrency limits (task tags) -----------------------------------------------
    def create_concurrency_limit(self, tag: str, concurrency_limit: int) -> ConcurrencyLimit:
        """Limit how many task runs tagged ``tag`` run at once (0 blocks them all).

        An existing limit for the tag is resized (an upsert, as in Prefect).
        """
        concurrency = self.stores.concurrency
        limit = upsert_limit(
            concurrency.create_limit,
            concurrency.update_limit,
            ConcurrencyLimitCreate(name=tag_limit_name(tag), limit=concurrency_limit),
        )
        self._limits_changed()
        return limit  # type: ignore[no-any-return]

    def read_concurrency_limit_by_tag(self, tag: str) -> ConcurrencyLimit:
        """The limit on tasks tagged ``tag``, with its active slots."""
        try:
            return self.stores.concurrency.read_limit(tag_limit_name(tag))  # type: ignore[no-any-return]
        except NotFound:
            raise ObjectNotFound(f"no concurrency limit for tag {tag!r}") from None

    def read_concurrency_limits(self, limit: int = 200, offset: int = 0) -> list[ConcurrencyLimit]:
        """Every task-tag concurrency limit."""
        limits = [
            lim for lim in self.stores.concurrency.list_limits() if lim.name.startswith("tag:")
        ]
        return limits[offset : offset + limit]

    def delete_concurrency_limit_by_tag(self, tag: str) -> None:
        """Remove the limit on tasks tagged ``tag``."""
        try:
            self.stores.concurrency.delete_limit(tag_limit_name(tag))
        except NotFound:
            raise ObjectNotFound(f"no concurrency limit for tag {tag!r}") from None
        self._limits_changed()

    # -- runs ---------------------------------------------------------------------------
    def read_flow_run(self, flow_run_id: str) -> FlowRun:
        """One flow run."""
        try:
            return self.stores.runs.read_flow_run(str(flow_run_id))  # type: ignore[no-any-return]
        except NotFound as exc:
            raise ObjectNotFound(exc.message) from None

    def read_flow_runs(
        self,
        *,
        flow_name: str | None = None,
        deployment_id: str | None = None,
        state_types: list[StateType] | None = None,
        tags: list[str] | None = None,
        parent_flow_run_id: str | None = None,
        limit: int = 200,
    ) -> list[FlowRun]:
        """Flow runs, newest first, filtered by the given fields."""
        flt = FlowRunFilter(
            flow_name=flow_name,
            deployment_id=deployment_id,
            state_types=state_types,
            tags_all=tags,
            parent_flow_run_id=parent_flow_run_id,
        )
        return list(self.stores.runs.list_flow_runs(flt, limit=limit).items)

    def read_flow_run_states(self, flow_run_id: str) -> list[State]:
        """Every state of a flow run, oldest first."""
        return self.stores.runs.read_state_history(str(flow_run_id))  # type: ignore[no-any-return]

    def set_flow_run_state(
        self, flow_run_id: str, state: State, force: bool = False
    ) -> OrchestrationResult:
        """Propose a state for a flow run (the rules decide unless ``force``)."""
        return self.stores.runs.set_state(  # type: ignore[no-any-return]
            "flow_run", str(flow_run_id), state, force=force
        )

    def read_task_run(self, task_run_id: str) -> TaskRun:
        """One task run."""
        try:
            return self.stores.runs.read_task_run(str(task_run_id))  # type: ignore[no-any-return]
        except NotFound as exc:
            raise ObjectNotFound(exc.message) from None

    def read_task_runs(
        self,
        *,
        flow_run_id: str | None = None,
        task_key: str | None = None,
        state_types: list[StateType] | None = None,
        limit: int = 200,
    ) -> list[TaskRun]:
        """Task runs, newest first, filtered by the given fields."""
        flt = TaskRunFilter(flow_run_id=flow_run_id, task_key=task_key, state_types=state_types)
        return list(self.stores.runs.list_task_runs(flt, limit=limit).items)

    def read_task_run_states(self, task_run_id: str) -> list[State]:
        """Every state of a task run, oldest first."""
        return self.stores.runs.read_state_history(str(task_run_id))  # type: ignore[no-any-return]

    # -- logs -----------------------------------------------------------------------------
    def read_logs(
        self,
        flow_run_id: str,
        *,
        task_run_id: str | None = None,
        level_ge: int | None = None,
        limit: int = 200,
    ) -> list[LogRecord]:
        """A flow run's log lines in time order (optionally only one task run's)."""
        page = self.stores.logs.read(
            str(flow_run_id), task_run_id=task_run_id, level_ge=level_ge, limit=limit
        )
        return list(page.items)

    # -- cache --------------------------------------------------------------------------
    def read_cache_entries(self, task_key: str | None = None, limit: int = 100) -> list[Any]:
        """Cache records (key, result reference, expiry), optionally for one task."""
        return self.stores.cache.list(task_key=task_key, limit=limit)  # type: ignore[no-any-return]

    def clear_cache(self, key: str | None = None, task_key: str | None = None) -> int:
        """Delete one cache key, every key of a task, or (no arguments) the whole cache."""
        return self.stores.cache.clear(key=key, task_key=task_key)  # type: ignore[no-any-return]


class ApiSyncClient:
    """:class:`SyncClient`'s methods over the HTTP API (same names, arguments and results).

    Every other :class:`sdk.http_client.StratoflowClient` method (deployments, work
    pools, ...) is reachable on it too, and the client itself is ``.api``.
    """

    def __init__(self, api: Any) -> None:
        self.api = api

    def __getattr__(self, name: str) -> Any:
        if name == "api":  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.api, name)

    def _limits_changed(self) -> None:
        from runtime.engine import backend

        invalidate = getattr(backend._client, "invalidate_limits", None)
        if invalidate is not None:
            invalidate()

    # -- concurrency limits (task tags) -----------------------------------------------
    def create_concurrency_limit(self, tag: str, concurrency_limit: int) -> ConcurrencyLimit:
        """Limit how many task runs tagged ``tag`` run at once (0 blocks them all).

        An existing limit for the tag is resized (an upsert, as in Prefect).
        """
        limit = upsert_limit(
            self.api.create_concurrency_limit,
            self.api.update_concurrency_limit,
            ConcurrencyLimitCreate(name=tag_limit_name(tag), limit=concurrency_limit),
        )
        self._limits_changed()
        return limit  # type: ignore[no-any-return]

    def read_concurrency_limit_by_tag(self, tag: str) -> ConcurrencyLimit:
        """The limit on tasks tagged ``tag``, with its active slots."""
        try:
            return self.api.read_concurrency_limit(tag_limit_name(tag))  # type: ignore[no-any-return]
        except NotFound:
            raise ObjectNotFound(f"no concurrency limit for tag {tag!r}") from None

    def read_concurrency_limits(self, limit: int = 200, offset: int = 0) -> list[ConcurrencyLimit]:
        """Every task-tag concurrency limit."""
        limits = [
            lim for lim in self.api.read_all_concurrency_limits() if lim.name.startswith("tag:")
        ]
        return limits[offset : offset + limit]

    def delete_concurrency_limit_by_tag(self, tag: str) -> None:
        """Remove the limit on tasks tagged ``tag``."""
        try:
            self.api.delete_concurrency_limit(tag_limit_name(tag))
        except NotFound:
            raise ObjectNotFound(f"no concurrency limit for tag {tag!r}") from None
        self._limits_changed()

    # -- runs ---------------------------------------------------------------------------
    def read_flow_run(self, flow_run_id: str) -> FlowRun:
        """One flow run."""
        try:
            return self.api.read_flow_run(str(flow_run_id))  # type: ignore[no-any-return]
        except NotFound as exc:
            raise ObjectNotFound(exc.message) from None

    def read_flow_runs(
        self,
        *,
        flow_name: str | None = None,
        deployment_id: str | None = None,
        state_types: list[StateType] | None = None,
        tags: list[str] | None = None,
        parent_flow_run_id: str | None = None,
        limit: int = 200,
    ) -> list[FlowRun]:
        """Flow runs, newest first, filtered by the given fields."""
        page = self.api.list_flow_runs(
            flow_name=flow_name,
            deployment_id=deployment_id,
            state_types=state_types,
            tags=tags,
            parent_flow_run_id=parent_flow_run_id,
            limit=limit,
        )
        return list(page.items)

    def read_flow_run_states(self, flow_run_id: str) -> list[State]:
        """Every state of a flow run, oldest first."""
        return self.api.read_flow_run_states(str(flow_run_id))  # type: ignore[no-any-return]

    def set_flow_run_state(
        self, flow_run_id: str, state: State, force: bool = False
    ) -> OrchestrationResult:
        """Propose a state for a flow run (the rules decide unless ``force``)."""
        return self.api.set_flow_run_state(  # type: ignore[no-any-return]
            str(flow_run_id), state, force=force
        )

    def read_task_run(self, task_run_id: str) -> TaskRun:
        """One task run."""
        try:
            return self.api.read_task_run(str(task_run_id))  # type: ignore[no-any-return]
        except NotFound as exc:
            raise ObjectNotFound(exc.message) from None

    def read_task_runs(
        self,
        *,
        flow_run_id: str | None = None,
        task_key: str | None = None,
        state_types: list[StateType] | None = None,
        limit: int = 200,
    ) -> list[TaskRun]:
        """Task runs, newest first, filtered by the given fields."""
        page = self.api.list_task_runs(
            flow_run_id=flow_run_id, task_key=task_key, state_types=state_types, limit=limit
        )
        return list(page.items)

    def read_task_run_states(self, task_run_id: str) -> list[State]:
        """Every state of a task run, oldest first."""
        return self.api.read_task_run_states(str(task_run_id))  # type: ignore[no-any-return]

    # -- logs -----------------------------------------------------------------------------
    def read_logs(
        self,
        flow_run_id: str,
        *,
        task_run_id: str | None = None,
        level_ge: int | None = None,
        limit: int = 200,
    ) -> list[LogRecord]:
        """A flow run's log lines in time order (optionally only one task run's)."""
        page = self.api.read_logs(
            str(flow_run_id), task_run_id=task_run_id, level_ge=level_ge, limit=limit
        )
        return list(page.items)

    # -- cache --------------------------------------------------------------------------
    def read_cache_entries(self, task_key: str | None = None, limit: int = 100) -> list[Any]:
        """Cache records (key, result reference, expiry), optionally for one task."""
        return self.api.list_cache_records(task_key=task_key, limit=limit)  # type: ignore[no-any-return]

    def clear_cache(self, key: str | None = None, task_key: str | None = None) -> int:
        """Delete one cache key, every key of a task, or (no arguments) the whole cache."""
        return self.api.clear_cache(key=key, task_key=task_key)  # type: ignore[no-any-return]


class AsyncClient:
    """The same methods as :class:`SyncClient`, awaitable (``get_client()``)."""

    def __init__(self, sync: SyncClient | ApiSyncClient) -> None:
        self._sync = sync

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._sync, name)
        if not callable(method):
            return method  # type: ignore[no-any-return]

        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return call

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class _ClientContext:
    """What ``get_client()`` returns: usable with ``with`` (sync) or ``async with``."""

    def __init__(self, sync_client: bool) -> None:
        self.sync_client = sync_client

    def _make(self) -> SyncClient | ApiSyncClient:
        from runtime.engine import backend
        from runtime.engine.http_engine_client import ApiEngineClient
        from runtime.http.transport import ApiTransport
        from runtime.settings import get_settings
        from sdk.http_client import StratoflowClient

        engine = backend._client
        if isinstance(engine, ApiEngineClient):  # the engine's API, with its auth
            return ApiSyncClient(StratoflowClient(transport=engine.api.transport))
        stores = getattr(engine, "stores", None)  # the engine's stores, when it has them
        if stores is not None:
            return SyncClient(stores)
        if get_settings().backend() == "api":
            return ApiSyncClient(StratoflowClient(transport=ApiTransport()))
        return SyncClient(backend.connect_stores())

    def __enter__(self) -> Any:
        client = self._make()
        return client if self.sync_client else AsyncClient(client)

    def __exit__(self, *exc: object) -> None:
        return None

    async def __aenter__(self) -> AsyncClient:
        return AsyncClient(await asyncio.to_thread(self._make))

    async def __aexit__(self, *exc: object) -> None:
        return None


def get_client(sync_client: bool = False) -> Any:
    """A client for the configured backend, as a context manager.

    ``with get_client(sync_client=True) as client:`` gives :class:`SyncClient`
    (:class:`ApiSyncClient` when the API is configured); ``async with get_client()
    as client:`` gives :class:`AsyncClient` over either.
    """
    return _ClientContext(sync_client)
