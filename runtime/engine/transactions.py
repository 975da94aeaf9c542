"""Transactions: groups of task runs that commit together or roll back together.

Prefect 3's ``prefect.transactions`` model (``src/prefect/transactions.py``),
on this project's result cache:

* A transaction with a ``key`` keeps its record in the cache store (the
  DynamoDB ``CacheStore``, or the API's cache routes): BEGIN reads the key (a
  live record means the transaction is already COMMITTED), COMMIT writes the
  record with the store's conditional write (``CacheStore.write`` replaces the
  writer's own compute lock, and fails if another owner took the key).
* ``SERIALIZABLE`` isolation takes the key's compute lock at BEGIN -- the same
  lease tasks take while they compute a cached result, renewed by
  ``runtime.engine.cache_locks.KEEPER`` while the transaction runs -- so a second
  transaction on the key waits for the first to commit and then finds the
  record. ``READ_COMMITTED`` (the default) only reads at BEGIN and takes the lock
  for the moment of the write at COMMIT, overwriting a record written meanwhile.
* A task run that completes inside a transaction stages a child transaction
  (its on_commit / on_rollback hooks, and its cache record, which is written
  when the child commits: with its parent, for the default LAZY commit mode).
  A task run that fails for good rolls the enclosing transaction back: every
  staged task's on_rollback hooks run, newest first.
"""

from __future__ import annotations

import copy
import enum
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from runtime.models import CacheRecord, new_id
from runtime.states import utcnow

if TYPE_CHECKING:
    from runtime.engine.cache_backend import CacheBackend
    from runtime.engine.cache_locks import LockRenewal
    from runtime.engine.client import EngineClient
    from runtime.engine.task_engine import TaskRunEngine

__all__ = [
    "CommitMode",
    "IsolationLevel",
    "Transaction",
    "TransactionState",
    "TransactionStore",
    "get_transaction",
    "transaction",
]

log = logging.getLogger("stratoflow.transactions")

TRANSACTION_TASK_KEY = "transaction"
"""The ``task_key`` of a record written by a keyed ``transaction()`` block."""


class IsolationLevel(enum.Enum):
    """How concurrent transactions on one key see each other (Prefect's names)."""

    READ_COMMITTED = "READ_COMMITTED"
    SERIALIZABLE = "SERIALIZABLE"


class CommitMode(enum.Enum):
    """When a transaction commits: at its own exit, with its parent, or never."""

    EAGER = "EAGER"
    LAZY = "LAZY"
    OFF = "OFF"


class TransactionState(enum.Enum):
    """A transaction's lifecycle stage."""

    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    STAGED = "STAGED"
    COMMITTED = "COMMITTED"
    ROLLED_BACK = "ROLLED_BACK"


class _Unset:
    def __repr__(self) -> str:
        return "NotSet"


_UNSET: Any = _Unset()


class TransactionStore:
    """Where a keyed transaction keeps its record: a cache backend and the client
    that persists the staged value (``transaction(store=...)``, resolved by
    :func:`resolve_store`)."""

    def __init__(self, cache: CacheBackend, client: EngineClient | None) -> None:
        self.cache = cache
        self.client = client

    def exists(self, key: str) -> bool:
        """Whether a live record is stored under ``key``."""
        return self.cache.read(key) is not None

    def read_value(self, key: str) -> Any:
        """The value committed under ``key`` (None when there is none)."""
        record = self.cache.read(key)
        if record is None or self.client is None:
            return None
        return self.client.load_result(record.result)

    def lock_seconds(self) -> float:
        """The lease of a compute lock (renewed while held)."""
        from runtime.settings import get_settings

        return get_settings().cache_lock_seconds

    def acquire(self, key: str, holder: str, *, overwrite: bool) -> bool:
        """Take the key's lock (waiting for another holder to finish).

        True when ``holder`` holds it; False when a live record was found instead
        (the key is committed and ``overwrite`` is off).
        """
        seconds = self.lock_seconds()
        while True:
            attempt = self.cache.try_lock(key, holder, seconds, refresh=overwrite)
            if attempt.acquired:
                return True
            if attempt.holder is None:
                if self.exists(key):
                    return False
                continue  # the record expired meanwhile: try again
            record = self.cache.wait_for(key, timeout=seconds)
            if record is not None and not overwrite:
                return False

    def write(self, key: str, value: Any, holder: str, task_run_id: str | None) -> None:
        """Persist ``value`` and record it under ``key`` by a conditional write."""
        if self.client is None:
            raise RuntimeError("this transaction store cannot persist values")
        ref = self.client.persist_result(value, serializer="pickle")
        record = CacheRecord(
            key=key,
            result=ref,
            task_key=TRANSACTION_TASK_KEY,
            task_run_id=task_run_id,
            created=utcnow(),
        )
        self.cache.write(key, record, holder)

    def release(self, key: str, holder: str) -> None:
        """Give up ``holder``'s lock on ``key`` (a no-op once its record replaced it)."""
        self.cache.unlock(key, holder)


def _is_cache_backend(value: Any) -> bool:
    return all(callable(getattr(value, name, None)) for name in ("read", "try_lock", "write"))


def resolve_store(store: Any) -> TransactionStore:
    """What ``transaction(store=...)`` accepts, as a :class:`TransactionStore`.

    * None: the result cache of the current run's client (or of the process's
      default backend outside a run);
    * a ``TransactionStore``;
    * a cache backend (``runtime.stores.cache.CacheStore``, the API's cache, or
      ``get_client()``'s cache): records go there, values through the current client;
    * an engine client: its cache and its result storage;
    * a Prefect-style result store (any object with a ``lock_manager`` or
      ``result_storage`` attribute, e.g. one holding an ``sdk.locking`` lock
      manager): the default cache -- every lock manager maps onto its locks.
    """
    if isinstance(store, TransactionStore):
        return store
    client = _current_client()
    if store is None or hasattr(store, "lock_manager") or hasattr(store, "result_storage"):
        return TransactionStore(client.cache, client)
    if _is_cache_backend(store):
        return TransactionStore(store, client)
    if callable(getattr(store, "persist_result", None)) and hasattr(store, "cache"):
        return TransactionStore(store.cache, store)
    raise TypeError(
        "transaction(store=...) takes None (the result cache), a cache store, an engine "
        f"client or a result store with a lock manager; got {type(store).__name__}"
    )


def _current_client() -> EngineClient:
    from runtime.engine.backend import get_engine_client
    from runtime.engine.context import current_flow_run

    ctx = current_flow_run()
    return ctx.client if ctx is not None else get_engine_client()


_current: ContextVar[Transaction | None] = ContextVar("stratoflow_transaction", default=None)


def get_transaction() -> Transaction | None:
    """The innermost transaction of the calling code, if any."""
    return _current.get()


Hook = Callable[["Transaction"], Any]


class Transaction:
    """One transaction: a key and store (optional), hooks, children, staged value.

    Used through :func:`transaction`; attributes and methods as Prefect's
    ``Transaction``.
    """

    def __init__(
        self,
        key: str | None = None,
        store: Any = None,
        commit_mode: CommitMode | None = None,
        isolation_level: IsolationLevel | None = None,
        overwrite: bool = False,
        write_on_commit: bool = True,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError(f"transaction key must be a non-empty string, not {key!r}")
        if commit_mode is not None and not isinstance(commit_mode, CommitMode):
            raise TypeError(f"commit_mode must be a CommitMode, not {commit_mode!r}")
        if isolation_level is not None and not isinstance(isolation_level, IsolationLevel):
            raise TypeError(f"isolation_level must be an IsolationLevel, not {isolation_level!r}")
        self.key = key
        self.store: TransactionStore | None = resolve_store(store) if key or store else None
        self.commit_mode = commit_mode
        self.isolation_level = isolation_level
        self.overwrite = overwrite
        self.write_on_commit = write_on_commit
        self.logger = logger or log
        self.state = TransactionState.PENDING
        self.children: list[Transaction] = []
        self.on_commit_hooks: list[Hook] = []
        self.on_rollback_hooks: list[Hook] = []
        self.task_run_id: str | None = None
        self._stored_values: dict[str, Any] = {}
        self._staged_value: Any = None
        self._holder = new_id()
        self._parent: Transaction | None = None
        self._token: Token[Transaction | None] | None = None
        self._locked = False
        self._renewal: LockRenewal | None = None
        self._commit_action: Callable[[], None] | None = None
        self._release_action: Callable[[], None] | None = None

    def __repr__(self) -> str:
        return f"Transaction(key={self.key!r}, state={self.state.name})"

    # ------------------------------------------------------------------ values

    def set(self, name: str, value: Any) -> None:
        """Store a value for the rest of the transaction (its hooks and children)."""
        self._stored_values[name] = value

    def get(self, name: str, default: Any = _UNSET) -> Any:
        """A stored value (a copy), looked up in the parents when not set here."""
        if name in self._stored_values:
            return copy.deepcopy(self._stored_values[name])
        parent = self.get_parent()
        if parent is not None:
            return parent.get(name, default)
        if default is not _UNSET:
            return default
        raise ValueError(f"Could not retrieve value for unknown key: {name}")

    # ------------------------------------------------------------------ state

    def is_committed(self) -> bool:
        """Whether the transaction committed (or found its key's record at BEGIN)."""
        return self.state is TransactionState.COMMITTED

    def is_rolled_back(self) -> bool:
        """Whether the transaction was rolled back."""
        return self.state is TransactionState.ROLLED_BACK

    def is_staged(self) -> bool:
        """Whether a value is staged, waiting for the commit."""
        return self.state is TransactionState.STAGED

    def is_pending(self) -> bool:
        """Whether the transaction has not begun."""
        return self.state is TransactionState.PENDING

    def is_active(self) -> bool:
        """Whether the transaction has begun and nothing is staged yet."""
        return self.state is TransactionState.ACTIVE

    def get_parent(self) -> Transaction | None:
        """The enclosing transaction, if any."""
        return self._parent

    def add_child(self, child: Transaction) -> None:
        """Make ``child`` commit and roll back with this transaction."""
        self.children.append(child)

    # ------------------------------------------------------------------ lifecycle

    def _prepare(self, parent: Transaction | None) -> None:
        if self.state is not TransactionState.PENDING:
            raise RuntimeError("a transaction can be entered only once")
        self._parent = parent
        if self.commit_mode is None:
            self.commit_mode = parent.commit_mode if parent else CommitMode.LAZY
        if self.isolation_level is None:
            self.isolation_level = parent.isolation_level if parent else None
        if self.isolation_level is None:
            self.isolation_level = IsolationLevel.READ_COMMITTED
        self.state = TransactionState.ACTIVE

    def begin(self) -> None:
        """Take the key's lock (SERIALIZABLE) and look its record up."""
        if self.store is None or self.key is None:
            return
        if self.isolation_level is IsolationLevel.SERIALIZABLE:
            self.logger.debug("Acquiring lock for transaction %r", self.key)
            if self.store.acquire(self.key, self._holder, overwrite=self.overwrite):
                self._keep_lock()
                return
            self.state = TransactionState.COMMITTED  # the record exists: nothing to lock
            return
        if not self.overwrite and self.store.exists(self.key):
            self.state = TransactionState.COMMITTED

    def _keep_lock(self) -> None:
        from runtime.engine.cache_locks import KEEPER

        assert self.store is not None and self.key is not None
        self._locked = True
        self._renewal = KEEPER.keep(
            self.store.cache, self.key, self._holder, self.store.lock_seconds()
        )

    def _release_lock(self) -> None:
        from runtime.engine.cache_locks import KEEPER

        if self._renewal is not None:
            KEEPER.release(self._renewal)
            self._renewal = None
        if self._locked and self.store is not None and self.key is not None:
            self._locked = False
            try:
                self.store.release(self.key, self._holder)
            except Exception as exc:  # the lease expires on its own
                self.logger.error("releasing the lock of transaction %r failed: %r", self.key, exc)
        if self._release_action is not None:
            action, self._release_action = self._release_action, None
            action()

    def stage(
        self,
        value: Any,
        on_rollback_hooks: list[Hook] | None = None,
        on_commit_hooks: list[Hook] | None = None,
    ) -> None:
        """Stage ``value`` (and hooks) for the commit; ignored once committed."""
        if self.state is TransactionState.COMMITTED:
            return
        self._staged_value = value
        self.on_rollback_hooks += list(on_rollback_hooks or [])
        self.on_commit_hooks += list(on_commit_hooks or [])
        self.state = TransactionState.STAGED

    def read(self) -> Any:
        """The value committed under the key (None without a key or record)."""
        if self.store is None or self.key is None:
            return None
        return self.store.read_value(self.key)

    def commit(self) -> bool:
        """Commit the children, run the on_commit hooks, write the record.

        False when already committed or rolled back, or when committing failed
        (then the transaction is rolled back).
        """
        if self.state in (TransactionState.ROLLED_BACK, TransactionState.COMMITTED):
            self._release_lock()
            return False
        try:
            for child in self.children:
                child.commit()
            for hook in self.on_commit_hooks:
                self._run_hook(hook, "commit")
            if self._commit_action is not None:
                action, self._commit_action = self._commit_action, None
                self._release_action = None
                action()
            elif self.store is not None and self.key is not None and self.write_on_commit:
                if not self._locked:  # READ_COMMITTED: hold the key for the write only
                    self.store.acquire(self.key, self._holder, overwrite=True)
                    self._locked = True
                self._stop_renewal()
                self.store.write(self.key, self._staged_value, self._holder, self.task_run_id)
            self.state = TransactionState.COMMITTED
            self._release_lock()
            return True
        except Exception:
            self.logger.exception(
                "An error was encountered while committing transaction %r", self.key
            )
            self.rollback()
            return False

    def _stop_renewal(self) -> None:
        from runtime.engine.cache_locks import KEEPER

        if self._renewal is not None:
            KEEPER.release(self._renewal)
            self._renewal = None

    def rollback(self) -> bool:
        """Run the on_rollback hooks (newest first), then roll the children back.

        False when already committed or rolled back, or when a hook raised.
        """
        if self.state in (TransactionState.ROLLED_BACK, TransactionState.COMMITTED):
            return False
        try:
            for hook in reversed(self.on_rollback_hooks):
                self._run_hook(hook, "rollback")
            self.state = TransactionState.ROLLED_BACK
            for child in reversed(self.children):
                child.rollback()
            return True
        except Exception:
            self.logger.exception(
                "An error was encountered while rolling back transaction %r", self.key
            )
            return False
        finally:
            self._release_lock()

    def _run_hook(self, hook: Hook, kind: str) -> None:
        name = getattr(hook, "__name__", repr(hook))
        quiet = getattr(hook, "log_on_run", True) is False
        if not quiet:
            self.logger.info("Running %s hook %r", kind, name)
        try:
            hook(self)
        except Exception:
            if not quiet:
                self.logger.error("An error was encountered while running %s hook %r", kind, name)
            raise
        if not quiet:
            self.logger.info("%s hook %r finished running successfully", kind.capitalize(), name)

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> Transaction:
        self._prepare(get_transaction())
        try:
            self.begin()
        except BaseException:
            self.state = TransactionState.PENDING
            raise
        self._token = _current.set(self)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._token is None:
            raise RuntimeError("Asymmetric use of context. Context exit called without an enter.")
        if exc_type is not None:
            self.rollback()
            self._reset()
            return  # the error propagates
        if self.commit_mode is CommitMode.EAGER:
            self.commit()
        if self._parent is not None:  # the parent takes responsibility
            self._reset()
            return
        if self.commit_mode is CommitMode.OFF:
            self.rollback()
        elif self.commit_mode is CommitMode.LAZY:
            self.commit()
        self._reset()

    def _reset(self) -> None:
        parent = self._parent
        if parent is not None:
            parent.add_child(self)
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
        if parent is not None and self.state is TransactionState.ROLLED_BACK:
            parent.rollback()


@contextmanager
def transaction(
    key: str | None = None,
    store: Any = None,
    commit_mode: CommitMode | None = None,
    isolation_level: IsolationLevel | None = None,
    overwrite: bool = False,
    write_on_commit: bool = True,
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
) -> Iterator[Transaction]:
    """Open a transaction for the block (Prefect's ``prefect.transactions.transaction``).

    ``key``: the record's key; a second transaction with the key finds the
    committed record (``txn.is_committed()``) unless ``overwrite``. ``store``: see
    :func:`resolve_store`. ``commit_mode``: LAZY by default (inherited when nested),
    ``isolation_level``: READ_COMMITTED by default.
    """
    with Transaction(
        key=key,
        store=store,
        commit_mode=commit_mode,
        isolation_level=isolation_level,
        overwrite=overwrite,
        write_on_commit=write_on_commit,
        logger=logger,
    ) as txn:
        yield txn


# ---------------------------------------------------------------------- the task engine's calls


def stage_task(engine: TaskRunEngine, value: Any, record: CacheRecord | None) -> bool:
    """A task run completed: stage its transaction (hooks, cache record).

    Inside a transaction the task's child transaction joins it and is committed
    with it (or at once in EAGER mode): its cache ``record`` is written then,
    its compute lock kept alive until then. Outside any transaction it commits
    at once. Returns True when the record write was taken over (deferred), so
    the engine must neither write the record nor release its lock.
    """
    parent = get_transaction()
    task = engine.task
    commit_hooks = list(getattr(task, "on_commit_hooks", []))
    rollback_hooks = list(getattr(task, "on_rollback_hooks", []))
    if parent is None and not commit_hooks:
        return False  # nothing to stage: the engine writes its record as it always did
    child = Transaction(key=engine.cache_key, commit_mode=None if parent else CommitMode.EAGER)
    child.task_run_id = engine.run.id
    child._prepare(parent)
    deferred = parent is not None and record is not None
    if deferred:
        assert record is not None
        _take_record_write(engine, child, record)
    child.stage(
        value,
        on_rollback_hooks=[_rolled_back_hook(engine), *rollback_hooks],
        on_commit_hooks=commit_hooks,
    )
    if parent is None or child.commit_mode is CommitMode.EAGER:
        child.commit()
    if parent is not None:
        parent.add_child(child)
    return deferred


def _take_record_write(engine: TaskRunEngine, child: Transaction, record: CacheRecord) -> None:
    """Move the engine's cache lock (and its renewal) and record write to ``child``."""
    from runtime.engine.cache_locks import KEEPER
    from runtime.stores.cache import CacheLockLost

    cache = engine.client.cache
    owner = engine.run.id
    renewal = engine._cache_renewal
    engine._cache_renewal = None

    def stop() -> None:
        if renewal is not None:
            KEEPER.release(renewal)

    def write() -> None:
        stop()
        try:
            cache.write(record.key, record, owner)
        except CacheLockLost:
            log.warning(
                "cache key %s was taken over by another run; not overwriting it", record.key
            )

    def release() -> None:
        stop()
        try:
            cache.unlock(record.key, owner)
        except Exception as exc:  # the lease expires on its own
            log.error("releasing the cache lock on %s failed: %r", record.key, exc)

    child._commit_action = write
    child._release_action = release


def _rolled_back_hook(engine: TaskRunEngine) -> Hook:
    def note_rollback(txn: Transaction) -> None:
        log.info(
            "Task run %r rolled back as part of transaction",
            engine.run.name,
            extra=engine._log_extra(),
        )

    note_rollback.log_on_run = False  # type: ignore[attr-defined]
    return note_rollback


def task_failed(engine: TaskRunEngine) -> None:
    """A task run failed for good: roll back the transaction it ran in."""
    parent = get_transaction()
    if parent is not None:
        parent.rollback()
