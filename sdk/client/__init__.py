"""``get_client()``: read and manage runs, limits, logs and cache with Prefect's method names.

Works on every configuration: one client class, :class:`SyncClient`, over one
backend (:mod:`sdk.client_backends`): the embedded default and direct stores
(:class:`~sdk.client_backends.StoresBackend`), or the HTTP API when
``STRATOFLOW_API_URL`` is set or the engine writes through an ``ApiEngineClient``
(:class:`ApiSyncClient`: the same client over
:class:`~sdk.client_backends.HttpBackend` and :class:`sdk.http_client.StratoflowClient`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from runtime.engine.client import TAG_LIMIT_PREFIX, tag_limit_name
from runtime.errors import AlreadyExists, NotFound
from runtime.models import (
    CacheRecord,
    ConcurrencyLimit,
    ConcurrencyLimitCreate,
    FlowRun,
    FlowRunFilter,
    LogRecord,
    OrchestrationResult,
    Page,
    TaskRun,
    TaskRunFilter,
)
from runtime.states import State, StateType
from sdk.client_backends import ClientBackend, HttpBackend, StoresBackend

if TYPE_CHECKING:
    from runtime.stores import Stores
    from sdk.http_client import StratoflowClient


_T = TypeVar("_T")


def _collect(read: Callable[[int, str | None], Page[_T]], limit: int) -> list[_T]:
    """Up to ``limit`` items, following cursors.

    A listing may end a page early (its scan budget ran out under a selective filter)
    and hand back a cursor: the client keeps reading until it has ``limit`` items or
    the listing is exhausted, so a caller never gets fewer runs than exist.
    """
    items: list[_T] = []
    cursor: str | None = None
    while len(items) < limit:
        page = read(limit - len(items), cursor)
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    return items[:limit]


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
    """The synchronous client (``get_client(sync_client=True)``), over one :class:`ClientBackend`.

    ``SyncClient(stores)`` reads and writes the installation's stores directly;
    ``SyncClient(backend=...)`` takes any backend (:class:`ApiSyncClient` is this
    client over the HTTP API). Both backends give the same answers.
    """

    def __init__(
        self, stores: Stores | None = None, *, backend: ClientBackend | None = None
    ) -> None:
        if stores is not None and backend is None:
            backend = StoresBackend(stores)
        elif stores is not None or backend is None:
            raise TypeError("give the stores or a backend (one of them)")
        self.backend: ClientBackend = backend

    @property
    def stores(self) -> Stores:
        """The stores this client works on (AttributeError over the HTTP API)."""
        if not isinstance(self.backend, StoresBackend):
            raise AttributeError("this client works through the HTTP API, not the stores")
        return self.backend.stores

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
            self.backend.create_concurrency_limit,
            self.backend.update_concurrency_limit,
            ConcurrencyLimitCreate(name=tag_limit_name(tag), limit=concurrency_limit),
        )
        self._limits_changed()
        return limit

    def read_concurrency_limit_by_tag(self, tag: str) -> ConcurrencyLimit:
        """The limit on tasks tagged ``tag``, with its active slots."""
        try:
            return self.backend.read_concurrency_limit(tag_limit_name(tag))
        except NotFound:
            raise ObjectNotFound(f"no concurrency limit for tag {tag!r}") from None

    def read_concurrency_limits(self, limit: int = 200, offset: int = 0) -> list[ConcurrencyLimit]:
        """Every task-tag concurrency limit."""
        limits = [
            lim
            for lim in self.backend.read_all_concurrency_limits()
            if lim.name.startswith(TAG_LIMIT_PREFIX)
        ]
        return limits[offset : offset + limit]

    def delete_concurrency_limit_by_tag(self, tag: str) -> None:
        """Remove the limit on tasks tagged ``tag``."""
        try:
            self.backend.delete_concurrency_limit(tag_limit_name(tag))
        except NotFound:
            raise ObjectNotFound(f"no concurrency limit for tag {tag!r}") from None
        self._limits_changed()

    # -- runs ---------------------------------------------------------------------------
    def read_flow_run(self, flow_run_id: str) -> FlowRun:
        """One flow run."""
        try:
            return self.backend.read_flow_run(str(flow_run_id))
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
        return _collect(lambda n, cursor: self.backend.list_flow_runs(flt, n, cursor), limit)

    def read_flow_run_states(self, flow_run_id: str) -> list[State]:
        """Every state of a flow run, oldest first."""
        return self.backend.read_flow_run_states(str(flow_run_id))

    def set_flow_run_state(
        self, flow_run_id: str, state: State, force: bool = False
    ) -> OrchestrationResult:
        """Propose a state for a flow run (the rules decide unless ``force``)."""
        return self.backend.set_flow_run_state(str(flow_run_id), state, force)

    def read_task_run(self, task_run_id: str) -> TaskRun:
        """One task run."""
        try:
            return self.backend.read_task_run(str(task_run_id))
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
        return _collect(lambda n, cursor: self.backend.list_task_runs(flt, n, cursor), limit)

    def read_task_run_states(self, task_run_id: str) -> list[State]:
        """Every state of a task run, oldest first."""
        return self.backend.read_task_run_states(str(task_run_id))

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
        return list(self.backend.read_logs(str(flow_run_id), task_run_id, level_ge, limit).items)

    # -- cache --------------------------------------------------------------------------
    def read_cache_entries(
        self, task_key: str | None = None, limit: int = 100
    ) -> list[CacheRecord]:
        """Cache records (key, result reference, expiry), optionally for one task."""
        return self.backend.list_cache_records(task_key, limit)

    def clear_cache(self, key: str | None = None, task_key: str | None = None) -> int:
        """Delete one cache key, every key of a task, or (no arguments) the whole cache."""
        return self.backend.clear_cache(key, task_key)


class ApiSyncClient(SyncClient):
    """:class:`SyncClient` over the HTTP API: ``ApiSyncClient(StratoflowClient(url))``.

    Every other :class:`sdk.http_client.StratoflowClient` method (deployments, work
    pools, ...) is reachable on it too, and the API client itself is ``.api``.
    """

    def __init__(self, api: StratoflowClient) -> None:
        self.api = api
        super().__init__(backend=HttpBackend(api))

    def __getattr__(self, name: str) -> Any:
        if name == "api":  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.api, name)


class AsyncClient:
    """The same methods as :class:`SyncClient`, awaitable (``get_client()``)."""

    def __init__(self, sync: SyncClient) -> None:
        self._sync = sync

    def __getattr__(self, name: str) -> Any:
        """The sync client's method ``name`` as a coroutine function (other attributes as is)."""
        method = getattr(self._sync, name)
        if not callable(method):
            return method

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

    def _make(self) -> SyncClient:
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
