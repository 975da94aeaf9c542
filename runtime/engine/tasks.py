"""``@task`` and :class:`Task`: Prefect 3's task decorator and its keywords."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from functools import update_wrapper
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

from runtime.engine import options
from runtime.engine.calls import bind_parameters
from runtime.engine.exceptions import MappingLengthMismatch, MappingMissingIterable
from runtime.engine.futures import PrefectFuture, PrefectFutureList
from runtime.engine.inputs import unmapped
from runtime.engine.methods import bound_copy, unwrap_method
from runtime.models import new_id
from runtime.names import escape_unprintable
from runtime.states import State

if TYPE_CHECKING:
    from runtime.cache_policies import CachePolicy
    from runtime.models import TaskRun

P = ParamSpec("P")
R = TypeVar("R")

SERIALIZERS = ("json", "pickle")


class _NotSet:
    def __repr__(self) -> str:
        return "NotSet"


NotSet: Any = _NotSet()


def exponential_backoff(backoff_factor: float) -> Callable[[int], list[float]]:
    """Retry delays ``backoff_factor * 2**n`` (Prefect's ``exponential_backoff``)."""
    if backoff_factor < 0:
        raise ValueError("backoff_factor must be >= 0")

    def retry_backoff_callable(retries: int) -> list[float]:
        return [backoff_factor * 2**n for n in range(min(retries, 50))]

    return retry_backoff_callable


def _resolve_delays(
    retries: int, delays: float | list[float] | Callable[[int], list[float]] | None
) -> float | list[float]:
    if delays is None:
        return 0.0
    if callable(delays):
        delays = list(delays(retries))
    if isinstance(delays, list | tuple):
        if len(delays) > 50:
            raise ValueError("retry_delay_seconds: at most 50 delays may be given")
        if any(d < 0 for d in delays):
            raise ValueError("retry_delay_seconds: delays must be >= 0")
        return [float(d) for d in delays]
    if delays < 0:
        raise ValueError("retry_delay_seconds must be >= 0")
    return float(delays)


def source_fingerprint(fn: Callable[..., Any]) -> str:
    """The task's source fingerprint: :func:`runtime.cache_policies.task_source_hash`.

    One fingerprint for the task key and ``TASK_SOURCE``: the source text, or for a
    function without one (a REPL, ``exec``) its bytecode, names and constants, so
    two such tasks differing only in a constant never share a key. A callable with
    neither source nor code object (a C function) is fingerprinted by its repr.
    """
    from runtime.cache_policies import CacheKeyError, task_source_hash

    try:
        return task_source_hash(fn)
    except CacheKeyError:
        return hashlib.sha256(b"repr:" + repr(fn).encode()).hexdigest()


class Task(Generic[P, R]):
    """A function whose calls become recorded, retried, cached, limited task runs."""

    def __init__(
        self,
        fn: Callable[P, R],
        name: str | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        version: str | None = None,
        cache_policy: CachePolicy | Any = NotSet,
        cache_key_fn: Callable[..., str | None] | None = None,
        cache_expiration: timedelta | None = None,
        task_run_name: str | Callable[[], str] | None = None,
        retries: int | None = None,
        retry_delay_seconds: float | list[float] | Callable[[int], list[float]] | None = None,
        retry_jitter_factor: float | None = None,
        persist_result: bool | None = None,
        result_serializer: str | None = None,
        result_storage_key: str | None = None,
        result_storage: Any = None,
        timeout_seconds: float | None = None,
        log_prints: bool | None = None,
        refresh_cache: bool | None = None,
        on_completion: list[Callable[..., Any]] | None = None,
        on_failure: list[Callable[..., Any]] | None = None,
        retry_condition_fn: Callable[..., bool] | None = None,
        on_running: list[Callable[..., Any]] | None = None,
        on_commit: list[Callable[..., Any]] | None = None,
        on_rollback: list[Callable[..., Any]] | None = None,
    ) -> None:
        fn, self.method_kind = unwrap_method(fn)
        if not callable(fn):
            raise TypeError("@task must decorate a function")
        update_wrapper(self, fn)  # type: ignore[arg-type]
        self.fn = fn
        self.call_target: Callable[..., Any] = fn
        """What is called: ``fn``, or ``fn`` bound to an instance or class (``__get__``)."""
        self.bound_to: Any = None
        self.isasync = inspect.iscoroutinefunction(fn)
        self.name = name or fn.__name__
        self.description = description or inspect.getdoc(fn)
        self.tags = sorted(set(tags or []))
        self.version = version
        self.retries = options.check_count("retries", retries)
        self._retry_delay_input = retry_delay_seconds
        options.check_delays(retry_delay_seconds)
        self.retry_delay_seconds = _resolve_delays(self.retries, retry_delay_seconds)
        options.check_number("retry_jitter_factor", retry_jitter_factor, what="a number")
        self.retry_jitter_factor = retry_jitter_factor
        options.check_callable("retry_condition_fn", retry_condition_fn)
        self.retry_condition_fn = retry_condition_fn
        options.check_number("timeout_seconds", timeout_seconds, positive=True)
        self.timeout_seconds = timeout_seconds
        options.check_name_template("task_run_name", task_run_name)
        self.task_run_name = task_run_name
        options.check_bool("log_prints", log_prints)
        self.log_prints = log_prints
        options.check_bool("refresh_cache", refresh_cache)
        self.refresh_cache = refresh_cache
        options.check_timedelta("cache_expiration", cache_expiration)
        self.cache_expiration = cache_expiration
        self.on_completion_hooks = options.check_hooks("on_completion", on_completion)
        self.on_failure_hooks = options.check_hooks("on_failure", on_failure)
        self.on_running_hooks = options.check_hooks("on_running", on_running)
        self.on_commit_hooks = options.check_hooks("on_commit", on_commit)
        self.on_rollback_hooks = options.check_hooks("on_rollback", on_rollback)
        options.check_bool("persist_result", persist_result)
        options.check_cache_policy(cache_policy, NotSet)
        if result_serializer is not None and result_serializer not in SERIALIZERS:
            raise ValueError(
                f"result_serializer must be one of {SERIALIZERS}, not {result_serializer!r}"
            )
        self.result_serializer = result_serializer or "pickle"
        self.result_storage_key = result_storage_key
        options.check_result_storage(result_storage)
        self.result_storage = result_storage
        # Prefect: a result_storage, result_storage_key or result_serializer turns
        # persistence on (unless persist_result=False)
        storage_options = (result_storage, result_storage_key, result_serializer)
        persist = (
            True
            if persist_result is None and any(o is not None for o in storage_options)
            else persist_result
        )
        self._options: dict[str, Any] = {
            "name": name,
            "description": description,
            "tags": tags,
            "version": version,
            "cache_policy": cache_policy,
            "cache_key_fn": cache_key_fn,
            "cache_expiration": cache_expiration,
            "task_run_name": task_run_name,
            "retries": retries,
            "retry_delay_seconds": retry_delay_seconds,
            "retry_jitter_factor": retry_jitter_factor,
            "persist_result": persist_result,
            "result_serializer": result_serializer,
            "result_storage_key": result_storage_key,
            "result_storage": result_storage,
            "timeout_seconds": timeout_seconds,
            "log_prints": log_prints,
            "refresh_cache": refresh_cache,
            "on_completion": on_completion,
            "on_failure": on_failure,
            "retry_condition_fn": retry_condition_fn,
            "on_running": on_running,
            "on_commit": on_commit,
            "on_rollback": on_rollback,
        }
        self.cache_policy = self._resolve_cache_policy(cache_policy, cache_key_fn, persist)
        # Caching needs a persisted result, so caching a task turns persistence on.
        self.should_persist = bool(persist) or self.cache_policy is not None
        self.source_fingerprint = source_fingerprint(fn)
        self.task_key = f"{fn.__qualname__}-{self.source_fingerprint[:8]}"

    @staticmethod
    def _resolve_cache_policy(
        cache_policy: Any, cache_key_fn: Callable[..., str | None] | None, persist: bool | None
    ) -> CachePolicy | None:
        from runtime.cache_policies import DEFAULT, NO_CACHE, CacheKeyFnPolicy

        if cache_key_fn is not None and cache_policy is not NotSet:
            raise ValueError("give cache_key_fn or cache_policy, not both")
        if cache_key_fn is not None:
            policy: CachePolicy | None = CacheKeyFnPolicy(cache_key_fn)
        elif cache_policy is NotSet or cache_policy is None:
            policy = DEFAULT if persist else None
        else:
            policy = cache_policy
        if policy is NO_CACHE:
            return None
        if policy is not None and persist is False:
            raise ValueError(
                "persist_result=False cannot be combined with caching: a cache hit must "
                "return a persisted result (drop persist_result or use cache_policy=NO_CACHE)"
            )
        return policy

    # ------------------------------------------------------------------ options

    def with_options(self, **options: Any) -> Task[P, R]:
        """A copy of this task with some keywords changed."""
        unknown = set(options) - set(self._options)
        if unknown:
            raise TypeError(f"with_options() got unknown option(s): {', '.join(sorted(unknown))}")
        merged = {**self._options, **options}
        if "cache_policy" in options and "cache_key_fn" not in options:
            merged["cache_key_fn"] = None
        if "cache_key_fn" in options and "cache_policy" not in options:
            merged["cache_policy"] = NotSet
        new: Task[P, R] = Task(self.fn, **merged)
        new.method_kind, new.call_target, new.bound_to = (
            self.method_kind,
            self.call_target,
            self.bound_to,
        )
        return new

    # ------------------------------------------------------------------ methods and hooks

    def __get__(self, instance: Any, owner: Any) -> Task[P, R]:
        """On a class: bound to the instance (or the class for a classmethod), as in Prefect."""
        return bound_copy(self, instance, owner)

    def _add_hook(self, kind: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add a hook of ``kind`` (decorator form); ``with_options()`` copies keep it."""
        hooks: list[Callable[..., Any]] = getattr(self, f"{kind}_hooks")
        hooks.append(options.check_hook(kind, fn))
        self._options[kind] = list(hooks)
        return fn

    def on_completion(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: add ``fn(task, task_run, state)`` as a hook on Completed."""
        return self._add_hook("on_completion", fn)

    def on_failure(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: add ``fn(task, task_run, state)`` as a hook on Failed."""
        return self._add_hook("on_failure", fn)

    def on_running(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: add ``fn(task, task_run, state)`` as a hook on Running (each attempt)."""
        return self._add_hook("on_running", fn)

    def on_commit(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: add ``fn(transaction)`` to run when this task's transaction commits."""
        return self._add_hook("on_commit", fn)

    def on_rollback(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: add ``fn(transaction)`` to run when this task's transaction rolls back."""
        return self._add_hook("on_rollback", fn)

    def render_run_name(self, parameters: dict[str, Any], dynamic_key: str) -> str:
        """The task run's name: ``task_run_name`` formatted with the parameters, or ``name-N``."""
        template = self.task_run_name
        if template is None:
            return f"{self.name}-{dynamic_key}"
        if callable(template):
            return escape_unprintable(str(template()))
        try:
            return escape_unprintable(template.format(**parameters))
        except (KeyError, IndexError, AttributeError) as exc:
            raise ValueError(f"task_run_name {template!r} cannot be formatted: {exc}") from None

    def render_storage_key(self, parameters: dict[str, Any], run: TaskRun) -> str | None:
        """``result_storage_key`` formatted with ``parameters`` and ``task_run``."""
        if self.result_storage_key is None:
            return None
        try:
            return self.result_storage_key.format(parameters=parameters, task_run=run)
        except (KeyError, IndexError, AttributeError) as exc:
            raise ValueError(
                f"result_storage_key {self.result_storage_key!r} cannot be formatted: {exc}"
            ) from None

    # ------------------------------------------------------------------ calling

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...
    @overload
    def __call__(self, *args: Any, return_state: Literal[True], **kwargs: Any) -> State: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task now and return its value (or its final state with ``return_state``)."""
        return_state = bool(kwargs.pop("return_state", False))
        wait_for = kwargs.pop("wait_for", None)
        parameters = bind_parameters(self.call_target, args, kwargs)
        if self.isasync:
            return self._call_async(parameters, wait_for, return_state)
        engine = self._engine(parameters, wait_for, None, None)
        state = self._drive(engine)
        return self._outcome(engine, state, return_state)

    @staticmethod
    def _outcome(engine: Any, state: State, return_state: bool) -> Any:
        """What a direct call gives: the state, the state the function returned, or the value.

        As in Prefect, a function that returned a state hands that state back as it is.
        """
        if return_state:
            return state
        from runtime.engine.task_engine import _NOTHING

        if engine.returned is not _NOTHING:
            return engine.returned
        return state.result()

    async def _call_async(
        self, parameters: dict[str, Any], wait_for: Any, return_state: bool
    ) -> Any:
        from runtime.engine.driver import drive_async

        engine = self._engine(parameters, wait_for, None, None)
        state = await drive_async(engine.lifecycle(), engine.call_user_function_async)
        self._flush_if_standalone(engine)
        return self._outcome(engine, state, return_state)

    def _engine(
        self,
        parameters: dict[str, Any],
        wait_for: Any,
        future: PrefectFuture[Any] | None,
        task_run_id: str | None,
    ) -> Any:
        from runtime.engine.backend import get_engine_client
        from runtime.engine.context import current_flow_run
        from runtime.engine.task_engine import TaskRunEngine

        flow_ctx = current_flow_run()
        client = flow_ctx.client if flow_ctx else get_engine_client()
        return TaskRunEngine(
            self,
            parameters,
            wait_for=wait_for,
            flow_ctx=flow_ctx,
            client=client,
            future=future,
            task_run_id=task_run_id,
        )

    def _run(
        self,
        parameters: dict[str, Any],
        wait_for: Any,
        future: PrefectFuture[Any] | None,
        task_run_id: str | None = None,
    ) -> State:
        return self._drive(self._engine(parameters, wait_for, future, task_run_id))

    def _drive(self, engine: Any) -> State:
        """Run an engine's lifecycle to its final state (and flush a standalone run)."""
        from runtime.engine.driver import drive_async, drive_sync

        if self.isasync:
            state = asyncio.run(drive_async(engine.lifecycle(), engine.call_user_function_async))
        else:
            state = drive_sync(engine.lifecycle(), engine.call_user_function)
        self._flush_if_standalone(engine)
        return state

    @staticmethod
    def _flush_if_standalone(engine: Any) -> None:
        """No flow will flush a standalone run's record: make it durable before returning.

        A failure is logged, not raised: it must not replace the task's own outcome
        (the record stays queued and is written again by the recorder).
        """
        if engine.flow_ctx is None:
            try:
                engine.client.flush()
            except Exception as exc:
                logging.getLogger("stratoflow.task_runs").error(
                    "recording task run %r failed (it is retried in the background): %s",
                    engine.run.name,
                    exc,
                )

    def submit(self, *args: Any, **kwargs: Any) -> PrefectFuture[R]:
        """Run the task concurrently on the flow's task runner; returns a future."""

        from runtime.engine.context import current_flow_run
        from runtime.engine.process_pool import run_submitted

        if kwargs.pop("return_state", False):
            raise TypeError("submit() returns a future; use future.state for the state")
        wait_for = kwargs.pop("wait_for", None)
        parameters = bind_parameters(self.call_target, args, kwargs)
        flow_ctx = current_flow_run()
        executor = flow_ctx.executor if flow_ctx else _standalone_executor()
        task_run_id = new_id()
        inner: Future[State] = Future()
        future: PrefectFuture[R] = PrefectFuture(task_run_id, inner, name=self.name)

        def work() -> None:
            if not inner.set_running_or_notify_cancel():
                return
            try:
                inner.set_result(
                    run_submitted(executor, self, parameters, wait_for, future, task_run_id)
                )
            except BaseException as exc:
                inner.set_exception(exc)

        import contextvars

        ctx = contextvars.copy_context()
        executor.submit(ctx.run, work)
        return future

    def apply_async(
        self,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        wait_for: Iterable[PrefectFuture[Any]] | None = None,
        dependencies: dict[str, Any] | None = None,
    ) -> PrefectFuture[R]:
        """Create a task run for a task worker (``sdk.task_worker.serve``); returns its future.

        Prefect's background tasks: the run waits SCHEDULED on the task-run queue until a
        task worker serving this task claims it; ``future.result()`` waits for its final
        state and loads its (always persisted) result. ``dependencies`` is accepted for
        Prefect's signature and not used.
        """
        from runtime.engine.background.submit import submit_background

        parameters = bind_parameters(self.call_target, tuple(args or ()), dict(kwargs or {}))
        return submit_background(self, parameters, wait_for)

    def delay(self, *args: Any, **kwargs: Any) -> PrefectFuture[R]:
        """``apply_async(args, kwargs)`` with the task's own calling convention."""
        return self.apply_async(args, kwargs)

    def map(self, *args: Any, **kwargs: Any) -> PrefectFutureList[R]:
        """Submit one run per element of the iterable arguments (``unmapped`` ones repeat)."""
        if kwargs.pop("return_state", False):
            raise TypeError("map() returns futures; use future.state for the states")
        wait_for = kwargs.pop("wait_for", None)
        parameters = bind_parameters(self.call_target, args, kwargs)
        iterables: dict[str, list[Any]] = {}
        static: dict[str, Any] = {}
        for name, value in parameters.items():
            if isinstance(value, unmapped):
                static[name] = value.value
            elif isinstance(value, str | bytes | dict) or not isinstance(value, Iterable):
                static[name] = value
            else:
                iterables[name] = list(value)
        if not iterables:
            raise MappingMissingIterable(
                f"map() of task {self.name!r} needs at least one iterable argument"
            )
        lengths = {name: len(values) for name, values in iterables.items()}
        if len(set(lengths.values())) > 1:
            raise MappingLengthMismatch(f"map() arguments have different lengths: {lengths}")
        count = next(iter(lengths.values()))
        futures: PrefectFutureList[R] = PrefectFutureList()
        signature = inspect.signature(self.call_target)
        for i in range(count):
            call = {**static, **{name: values[i] for name, values in iterables.items()}}
            ordered = {name: call[name] for name in signature.parameters if name in call}
            futures.append(self.submit(**ordered, wait_for=wait_for))
        return futures

    def __repr__(self) -> str:
        return f"Task(name={self.name!r}, key={self.task_key!r})"


_EXECUTOR: ThreadPoolExecutor | None = None


def _standalone_executor() -> ThreadPoolExecutor:
    """The executor for ``submit()`` outside a flow."""
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = ThreadPoolExecutor(thread_name_prefix="stratoflow-task")
    return _EXECUTOR


@overload
def task(__fn: Callable[P, R]) -> Task[P, R]: ...
@overload
def task(__fn: None = None, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(__fn: Callable[P, R] | None = None, **options: Any) -> Any:
    """Turn a function into a :class:`Task` (bare ``@task`` or ``@task(retries=3, ...)``)."""
    if __fn is not None:
        return Task(__fn, **options)
    return lambda fn: Task(fn, **options)
