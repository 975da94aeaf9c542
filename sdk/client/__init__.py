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
from uuid import UUID

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
from sdk.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
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


class ObjectAlreadyExists(AlreadyExists):
    """An object with that name exists already (Prefect's ``ObjectAlreadyExists``)."""


class HelloResponse:
    """What ``client.hello()`` returns: ``status_code`` 200 and ``json()`` → ``"👋"``."""

    status_code = 200

    def json(self) -> str:
        """Prefect's greeting."""
        return "\N{WAVING HAND SIGN}"


def _page_all(
    read: Callable[[int, str | None], Page[_T]], limit: int | None, offset: int
) -> list[_T]:
    """``limit`` items after the first ``offset`` (every item from there when ``limit`` is None)."""
    if offset < 0 or (limit is not None and limit < 0):
        raise ValueError("limit and offset must be >= 0")
    if limit is None:
        items: list[_T] = []
        cursor: str | None = None
        while True:
            page = read(PAGE_SIZE, cursor)
            items.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                return items[offset:]
    return _collect(read, offset + limit)[offset:]


PAGE_SIZE = 200
"""Items asked for per page when a listing is read to its end (``limit=None``)."""


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

    def read_concurrency_limits(
        self, limit: int | None = 200, offset: int = 0
    ) -> list[ConcurrencyLimit]:
        """Task-tag concurrency limits (``.tag``, ``.concurrency_limit``); None: all of them."""
        limits = [
            lim
            for lim in self.backend.read_all_concurrency_limits()
            if lim.name.startswith(TAG_LIMIT_PREFIX)
        ]
        return limits[offset:] if limit is None else limits[offset : offset + limit]

    def delete_concurrency_limit_by_tag(self, tag: str) -> None:
        """Remove the limit on tasks tagged ``tag``."""
        try:
            self.backend.delete_concurrency_limit(tag_limit_name(tag))
        except NotFound:
            raise ObjectNotFound(f"no concurrency limit for tag {tag!r}") from None
        self._limits_changed()

    # -- global concurrency limits ----------------------------------------------------
    def create_global_concurrency_limit(
        self, concurrency_limit: GlobalConcurrencyLimitCreate
    ) -> UUID:
        """Create a global concurrency limit; its id. ObjectAlreadyExists if the name is taken."""
        try:
            created = self.backend.create_concurrency_limit(concurrency_limit.to_runtime())
        except AlreadyExists as exc:
            raise ObjectAlreadyExists(exc.message) from None
        self._limits_changed()
        return UUID(created.id)

    def update_global_concurrency_limit(
        self, name: str, concurrency_limit: GlobalConcurrencyLimitUpdate
    ) -> ConcurrencyLimit:
        """Change the fields set on ``concurrency_limit``; the limit as it is now.

        ObjectNotFound if there is no such limit. (Prefect returns the HTTP response.)
        """
        try:
            updated = self.backend.update_concurrency_limit(
                name, concurrency_limit.to_runtime(name)
            )
        except NotFound as exc:
            raise ObjectNotFound(exc.message) from None
        self._limits_changed()
        return updated

    def read_global_concurrency_limit_by_name(self, name: str) -> ConcurrencyLimit:
        """One global concurrency limit with its active slots; ObjectNotFound if absent."""
        try:
            return self.backend.read_concurrency_limit(name)
        except NotFound as exc:
            raise ObjectNotFound(exc.message) from None

    def read_global_concurrency_limits(
        self, limit: int | None = 10, offset: int = 0
    ) -> list[ConcurrencyLimit]:
        """Global concurrency limits by name (task-tag ones included, as in Prefect 3.4.19+).

        ``limit=None`` reads them all from ``offset`` on.
        """
        limits = sorted(self.backend.read_all_concurrency_limits(), key=lambda lim: lim.name)
        if offset < 0 or (limit is not None and limit < 0):
            raise ValueError("limit and offset must be >= 0")
        return limits[offset:] if limit is None else limits[offset : offset + limit]

    def delete_global_concurrency_limit_by_name(self, name: str) -> None:
        """Delete a global concurrency limit; ObjectNotFound if absent."""
        try:
            self.backend.delete_concurrency_limit(name)
        except NotFound as exc:
            raise ObjectNotFound(exc.message) from None
        self._limits_changed()

    def upsert_global_concurrency_limit_by_name(
        self, name: str, limit: int, slot_decay_per_second: float | None = None
    ) -> None:
        """Create the limit, or set its size (and decay) when it exists."""
        for _ in range(UPSERT_ATTEMPTS):
            try:
                self.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(
                        name=name, limit=limit, slot_decay_per_second=slot_decay_per_second or 0.0
                    )
                )
                return
            except ObjectAlreadyExists:
                pass
            try:
                self.update_global_concurrency_limit(
                    name,
                    GlobalConcurrencyLimitUpdate(
                        limit=limit, slot_decay_per_second=slot_decay_per_second
                    ),
                )
                return
            except ObjectNotFound:
                continue
        raise ObjectAlreadyExists(
            f"concurrency limit {name!r} changed during the upsert; try again"
        )

    # -- the API ------------------------------------------------------------------------
    def hello(self) -> HelloResponse:
        """Check the backend can be reached (Prefect's ``hello``): ``.json()`` is ``"👋"``."""
        self.backend.hello()
        return HelloResponse()

    @property
    def api_url(self) -> str | None:
        """The HTTP API this client talks to; None when it works on the stores directly."""
        return self.backend.api_url

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
        limit: int | None = 200,
        offset: int = 0,
    ) -> list[FlowRun]:
        """Flow runs, newest first, filtered by the given fields.

        ``limit`` runs after the first ``offset``; ``limit=None`` reads every page.
        """
        flt = FlowRunFilter(
            flow_name=flow_name,
            deployment_id=deployment_id,
            state_types=state_types,
            tags_all=tags,
            parent_flow_run_id=parent_flow_run_id,
        )
        return _page_all(
            lambda n, cursor: self.backend.list_flow_runs(flt, n, cursor), limit, offset
        )

    def read_flow_run_states(self, flow_run_id: str) -> list[State]:
        """Every state of a flow run, oldest first."""
        return self.backend.read_flow_run_states(str(flow_run_id))

    def set_flow_run_state(
        self, flow_run_id: str, state: State, force: bool = False
    ) -> OrchestrationResult:
        """Propose a state for a flow run (the rules decide unless ``force``)."""
        return self.backend.set_flow_run_state(str(flow_run_id), state, force)

    def resume_flow_run(
        self, flow_run_id: str | UUID, run_input: dict[str, Any] | None = None
    ) -> OrchestrationResult:
        """Resume a paused flow run (Prefect's ``client.resume_flow_run``).

        A Paused run goes back to Running (its process carries on), a Suspended one to
        Scheduled "Resuming" and back onto its work pool's queue. ``run_input`` is
        validated against the input the run waits for: a bad one raises InvalidInput
        naming the field and the run stays paused. A run that is not paused raises
        TransitionRejected; a pause that timed out comes back as a Failed state.
        """
        return self.backend.resume_flow_run(str(flow_run_id), run_input)

    def create_flow_run_input(
        self, flow_run_id: str | UUID, key: str, value: str, sender: str | None = None
    ) -> None:
        """Store a flow run input: ``value`` is JSON text, as Prefect's client takes it."""
        import json

        self.backend.create_flow_run_input(str(flow_run_id), key, json.loads(value), sender)

    def read_flow_run_input(self, flow_run_id: str | UUID, key: str) -> str:
        """A flow run input as JSON text (ObjectNotFound when absent), as Prefect's client."""
        import json

        try:
            value = self.backend.read_flow_run_input(str(flow_run_id), key)
        except NotFound as exc:
            raise ObjectNotFound(exc.message) from None
        return json.dumps(value)

    def delete_flow_run_input(self, flow_run_id: str | UUID, key: str) -> None:
        """Remove a flow run input."""
        self.backend.delete_flow_run_input(str(flow_run_id), key)

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
        limit: int | None = 200,
        offset: int = 0,
    ) -> list[TaskRun]:
        """Task runs, newest first, filtered by the given fields.

        ``limit`` runs after the first ``offset``; ``limit=None`` reads every page.
        """
        flt = TaskRunFilter(flow_run_id=flow_run_id, task_key=task_key, state_types=state_types)
        return _page_all(
            lambda n, cursor: self.backend.list_task_runs(flt, n, cursor), limit, offset
        )

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
