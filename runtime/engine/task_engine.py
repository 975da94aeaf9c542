"""The task engine: one task run from inputs to its final state.

Task runs are orchestrated in the process that runs them, with the same rules
the stores apply (``apply_transition``), and recorded in batches: a trivial
task costs no synchronous AWS request. Only what needs coordination talks to
AWS at once: concurrency slots (a transaction each way) and cache keys (a
conditional write).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from runtime.engine import transactions
from runtime.engine.calls import user_exc_info
from runtime.engine.client import EngineClient
from runtime.engine.context import (
    FlowRunContext,
    TaskRunContext,
    task_run_scope,
    with_current_tags,
)
from runtime.engine.driver import Blocking, Call, Instruction, Lifecycle, Outcome, Sleep
from runtime.engine.exceptions import (
    CacheKeyFailure,
    ConcurrencySlotAcquisitionError,
    UpstreamTaskError,
)
from runtime.engine.futures import PrefectFuture
from runtime.engine.inputs import resolve, upstream_run_ids
from runtime.engine.results import load_value, persist_value
from runtime.engine.return_states import mark_run_state, return_value_to_state
from runtime.engine.runlogs import setup_logging
from runtime.engine.signals import INTERRUPTS
from runtime.errors import LimitExceeded
from runtime.models import Lease, RetryPolicy, TaskRun, new_id
from runtime.orchestration.transition import apply_transition
from runtime.states import (
    AwaitingConcurrencySlot,
    Cached,
    Cancelled,
    Crashed,
    Failed,
    Pending,
    ResultRef,
    Running,
    State,
    StateType,
    TimedOut,
    utcnow,
)

if TYPE_CHECKING:
    from runtime.engine.tasks import Task

logger = logging.getLogger("stratoflow.task_runs")

_NOTHING: Any = object()


def cache_lock_seconds() -> float:
    """The lease of a cache compute lock (``STRATOFLOW_CACHE_LOCK_SECONDS``, 30 s).

    Its holder renews it every third of it while it computes; a killed holder's
    key is taken over by a waiter within about a second of the lease's end.
    """
    from runtime.settings import get_settings

    return get_settings().cache_lock_seconds


class TaskRunEngine:
    """Runs one call of a task: resolve inputs, cache, slots, attempts, hooks."""

    def __init__(
        self,
        task: Task[..., Any],
        parameters: dict[str, Any],
        *,
        wait_for: list[Any] | None,
        flow_ctx: FlowRunContext | None,
        client: EngineClient,
        future: PrefectFuture[Any] | None = None,
        task_run_id: str | None = None,
    ) -> None:
        setup_logging()
        self.task = task
        self.raw_parameters = parameters
        self.parameters: dict[str, Any] = {}
        self.wait_for = list(wait_for or [])
        self.flow_ctx = flow_ctx
        self.client = client
        self.future = future
        flow_run_id = flow_ctx.flow_run.id if flow_ctx else None
        dynamic_key = flow_ctx.next_dynamic_key(task.task_key) if flow_ctx else "0"
        run_id = task_run_id or new_id()
        upstream = {name: upstream_run_ids(value) for name, value in parameters.items()}
        if self.wait_for:
            upstream["wait_for"] = upstream_run_ids(self.wait_for)
        now = utcnow()
        self.run = TaskRun(
            id=run_id,
            name=task.render_run_name(parameters, dynamic_key),
            task_key=task.task_key,
            flow_run_id=flow_run_id,
            dynamic_key=dynamic_key,
            tags=with_current_tags(
                set(task.tags) | set(flow_ctx.flow_run.tags if flow_ctx else ())
            ),
            empirical_policy=RetryPolicy.model_construct(
                retries=task.retries,
                retry_delay_seconds=task.retry_delay_seconds,
                retry_jitter_factor=task.retry_jitter_factor,
            ),
            state=Pending(),
            created=now,
            updated=now,
            task_inputs={k: v for k, v in upstream.items() if v},
        )
        mark_run_state(self.run.state, run_id)
        self.returned: Any = _NOTHING
        """What the task's function returned, when that was a state (Prefect's direct call
        hands it back as it is)."""
        if future is not None:  # downstream errors and reprs name the run, not just the task
            future.name = self.run.name
        self.history: list[State] = [self.run.state]
        self.cache_key: str | None = None
        self.lease: Lease | None = None
        self._cache_owner = False
        self._cache_renewal: Any = None
        self.abandoned = False
        self.refusal: str | None = None
        """Why the rules refused the last proposal (None once one is accepted)."""
        self._propose_lock = threading.RLock()
        if flow_ctx is not None:
            flow_ctx.track(self)

    # ------------------------------------------------------------------ transitions

    def propose(self, state: State, *, force: bool = False) -> tuple[bool, State, float]:
        """Apply the task policy locally; record the run if accepted.

        Returns (accepted, the run's state now, seconds to wait when told to WAIT).
        """
        with self._propose_lock:
            if self.abandoned:  # the flow run ended without us: record nothing more
                return False, self.run.state, 0.0
            flow_state = self.flow_ctx.flow_run.state if self.flow_ctx else None
            result, new = apply_transition(self.run, state, force=force, flow_run_state=flow_state)
            if new is None:
                self.refusal = result.reason
                return False, self.run.state, result.delay_seconds
            self.refusal = None
            mark_run_state(new.state, new.id)
            self.run = new
            self.history.append(new.state)
            self.client.record_task_run(new, self.history)
            if self.future is not None:
                self.future._set_live_state(new.state)
            return True, new.state, 0.0

    def abandon(self, reason: str, *, crashed: bool = False) -> None:
        """The flow run ended while this task run was in flight: end it for good.

        Cancelled (the flow run timed out), or Crashed with ``crashed`` (the flow
        run crashed: interrupted, terminated, or its engine failed); its slots are
        released at once. Its thread cannot be stopped from outside; whatever it
        does later is not recorded (no state, no retries, no hooks).
        """
        if not self.run.state.is_final():
            final = Crashed(message=reason) if crashed else Cancelled(message=reason)
            self.propose(final, force=True)  # the flow run is over: nothing may refuse it
        with self._propose_lock:
            self.abandoned = True
            lease, self.lease = self.lease, None
        if lease is not None:
            self._release(lease)

    def _finish(self, state: State) -> State:
        accepted, current, _ = self.propose(state)
        if not accepted:
            logger.warning(
                "The final state %s was refused (%s); the task run stays %s",
                state.name,
                self.refusal,
                current.name,
                extra=self._log_extra(),
            )
        if state.has_data and not current.has_data:
            current.with_data(state.data)
        return current

    def _crash(self, error: BaseException) -> None:
        """End the run Crashed after ``error`` escaped the engine (then the caller re-raises)."""
        if self.abandoned or self.run.state.is_final():
            return
        if isinstance(error, INTERRUPTS):
            message = f"execution was interrupted: {type(error).__name__}"
        else:
            message = f"Task run crashed: {type(error).__name__}: {error}"
            logger.error(
                "The engine failed running this task run", exc_info=error, extra=self._log_extra()
            )
        state = Crashed(message=message)
        if isinstance(error, Exception):
            state.with_data(error)
        try:
            self._finish(state)
        except Exception as exc:  # nothing more can be done: the lease expires on its own
            logger.error("recording the crash failed: %r", exc, extra=self._log_extra())

    # ------------------------------------------------------------------ lifecycle

    def lifecycle(self) -> Lifecycle:
        """The task run's steps; driven by ``drive_sync`` or ``drive_async``.

        Whatever escapes the steps (an interrupt, a store failing for good, a bug)
        ends the run Crashed with the error's message, then is re-raised.
        """
        try:
            state = yield from self._lifecycle()
        except BaseException as exc:
            self._crash(exc)
            raise
        finally:
            if self.flow_ctx is not None:
                self.flow_ctx.untrack(self)
        if self.abandoned:
            return self.run.state
        logger.info(
            "Finished in state %r", state, extra={**self._log_extra(), "console_only": True}
        )
        return state

    def _lifecycle(self) -> Lifecycle:
        try:
            self.parameters = {name: resolve(v) for name, v in self.raw_parameters.items()}
            for item in self.wait_for:
                resolve(item)
        except UpstreamTaskError as exc:
            return self._finish(Failed(message=str(exc)).with_data(exc))

        try:
            if self.task.cache_policy is not None:
                cached = yield from self._check_cache()
                if cached is not None:
                    return cached
            limits = self.client.limits_for_tags(self.run.tags)
            if limits:
                try:
                    self.lease = yield Blocking(lambda: self._acquire(limits))
                except LimitExceeded as exc:
                    error = ConcurrencySlotAcquisitionError(exc.message)
                    return self._finish(Failed(message=exc.message).with_data(error))
            return (yield from self._attempts())
        finally:
            self._cleanup()

    def _acquire(self, limits: list[str]) -> Lease:
        def waiting() -> None:
            self.propose(
                AwaitingConcurrencySlot(message=f"waiting for a slot on {', '.join(limits)}")
            )

        return self.client.acquire_slots(limits, holder=self.run.id, on_wait=waiting)

    def _check_cache(self) -> Generator[Instruction, Any, State | None]:
        from runtime.cache_policies import CacheKeyContext, CacheKeyError

        task = self.task
        flow_params = self.flow_ctx.parameters if self.flow_ctx else {}
        key_ctx = CacheKeyContext(
            task_key=task.task_key,
            task_source=task.source_fingerprint,
            task_fn=task.fn,
            flow_run_id=self.run.flow_run_id,
            task_run_id=self.run.id,
            flow_parameters=flow_params,
            parameters=self.parameters,
        )
        assert task.cache_policy is not None
        try:
            key = task.cache_policy.compute_key(key_ctx, self.parameters, flow_params)
        except CacheKeyError as exc:
            failure = CacheKeyFailure(str(exc))
            failure.__cause__ = exc.__cause__ or exc
            state = Failed(message=str(exc))
            state.details.retriable = False
            return self._finish(state.with_data(failure))
        if key is None:
            return None
        self.cache_key = key
        cache = self.client.cache
        lock_seconds = cache_lock_seconds()
        refresh = bool(task.refresh_cache)
        announced: str | None = None
        while True:
            if not refresh:
                record = cache.read(key)
                if record is not None:
                    cached = self._cached(record)
                    if cached is not None:
                        return cached
                    refresh = True  # an unusable record: compute and replace it
            attempt = cache.try_lock(key, self.run.id, lock_seconds, refresh=refresh)
            if attempt.acquired:
                self._hold_cache_lock(key, lock_seconds)
                return None
            if attempt.holder is None:
                continue  # a record was written meanwhile: read it
            if attempt.holder != announced:  # say who computes it, once per holder
                announced = attempt.holder
                self._announce_cache_wait(key, attempt.holder)
            record = yield Blocking(lambda: cache.wait_for(key, timeout=lock_seconds))
            if record is not None:
                cached = self._cached(record)
                if cached is not None:
                    return cached
                refresh = True

    def _announce_cache_wait(self, key: str, holder: str) -> None:
        """Record this (Pending) task run and log which run holds the key it waits for."""
        self.client.record_task_run(self.run, self.history)
        logger.info(
            "Waiting for cache key %s: task run %s is computing it (its lock is renewed "
            "while it runs, and taken over if it dies)",
            key,
            holder,
            extra=self._log_extra(),
        )

    def _hold_cache_lock(self, key: str, lock_seconds: float) -> None:
        """This run computes ``key``: keep its lock alive until it writes or gives up."""
        from runtime.engine.cache_locks import KEEPER

        def lost() -> None:
            logger.warning(
                "lost the cache lock on %s to another run while computing; the result "
                "will not be cached by this run",
                key,
                extra=self._log_extra(),
            )

        self._cache_owner = True
        self._cache_renewal = KEEPER.keep(self.client.cache, key, self.run.id, lock_seconds, lost)

    def _stop_cache_renewal(self) -> None:
        if self._cache_renewal is not None:
            from runtime.engine.cache_locks import KEEPER

            KEEPER.release(self._cache_renewal)
            self._cache_renewal = None

    def _cached(self, record: Any) -> State | None:
        """The Cached state of a usable record; None (reported) for one that cannot be used.

        A pickle whose MAC fails (or is missing) is never unpickled: a warning in
        the run's logs names the key, and the run computes instead, as it does
        for a record whose result is gone or corrupt.
        """
        from runtime.errors import NotFound
        from runtime.payload_auth import PayloadAuthenticationError
        from runtime.serializers import SerializationError

        try:
            value = load_value(self.client, record.result)
        except PayloadAuthenticationError as exc:
            logger.warning(
                "cache record for key %s failed payload authentication and was not used "
                "(%s); computing instead",
                self.cache_key,
                exc.message,
                extra=self._log_extra(),
            )
            return None
        except (NotFound, SerializationError) as exc:
            logger.warning(
                "cache record for key %s cannot be loaded (%s); computing instead",
                self.cache_key,
                getattr(exc, "message", exc),
                extra=self._log_extra(),
            )
            return None
        state = Cached()
        state.details.cache_key = self.cache_key
        state.details.result = record.result
        state.details.cache_expiration = record.expires_at
        return self._finish(state.with_data(value))

    def _attempts(self) -> Lifecycle:
        task = self.task
        while True:
            accepted, state, delay = self.propose(Running())
            if not accepted:
                if delay > 0:
                    yield Sleep(delay)
                    continue
                return self._finish(
                    Failed(message=f"task run could not start: {state.name} ({self.refusal})")
                )
            if state.is_final():  # the flow run is being cancelled: the task never starts
                logger.info("Not started: %s", state.message, extra=self._log_extra())
                return state
            if task.on_running_hooks:  # every attempt, before the function runs (Prefect)
                self._run_hooks(task.on_running_hooks, state)
            outcome: Outcome = yield Call(task.timeout_seconds)
            self.returned = _NOTHING  # a retried attempt's returned state is not the outcome
            if self.abandoned:
                return self.run.state
            error = outcome.error
            if error is None:
                # a returned state decides the final state (Prefect's return_value_to_state)
                proposed, data = return_value_to_state(outcome.value)
                try:
                    result = self._persist(data)
                except Exception as exc:  # the result cannot be stored: the attempt failed
                    error = exc
                else:
                    proposed.details.result = result
                    if isinstance(outcome.value, State):
                        self.returned = outcome.value
                    if proposed.type is StateType.COMPLETED:
                        return self._complete(proposed, data)
                    final = self._returned_state(proposed)
                    if final is None:
                        continue  # a returned Failed state is retried like an exception
                    return final
            if isinstance(error, INTERRUPTS):
                raise error  # lifecycle() ends the run Crashed
            new_state = self._failure_state(error)
            accepted, state, _ = self.propose(new_state)
            if state.type is StateType.SCHEDULED:  # AwaitingRetry: the next Running waits
                logger.info(
                    "Failed (%s); retry %s of %s at %s",
                    new_state.message,
                    self.run.run_count,
                    task.retries,
                    state.details.scheduled_time,
                    extra=self._log_extra(),
                )
                continue
            if state.has_data is False:
                state.with_data(error)
            transactions.task_failed(self)
            self._run_hooks(task.on_failure_hooks, state)
            return state

    def _returned_state(self, proposed: State) -> State | None:
        """Propose the final state the function returned (not Completed); None: retry it."""
        task = self.task
        if proposed.type is StateType.FAILED:
            self._check_retry_condition(proposed)
        accepted, state, _ = self.propose(proposed)
        if accepted and state.type is StateType.SCHEDULED:
            logger.info(
                "Returned %r; retry %s of %s at %s",
                proposed,
                self.run.run_count,
                task.retries,
                state.details.scheduled_time,
                extra=self._log_extra(),
            )
            return None
        if not accepted:
            logger.warning(
                "The returned state %s was refused (%s); the task run stays %s",
                proposed.name,
                self.refusal,
                state.name,
                extra=self._log_extra(),
            )
        if proposed.has_data and not state.has_data:
            state.with_data(proposed.data)
        if state.type is StateType.FAILED:
            transactions.task_failed(self)
            self._run_hooks(task.on_failure_hooks, state)
        return state

    def _check_retry_condition(self, state: State) -> None:
        """Set ``state``'s retriable flag from the task's ``retry_condition_fn``."""
        condition = self.task.retry_condition_fn
        if condition is not None and self.run.run_count <= self.task.retries:
            try:
                state.details.retriable = bool(condition(self.task, self.run, state))
            except Exception as exc:
                logger.error(
                    "retry_condition_fn raised %r: not retrying", exc, extra=self._log_extra()
                )
                state.details.retriable = False

    def _failure_state(self, error: BaseException) -> State:
        if isinstance(error, TimeoutError):
            state = TimedOut(message=f"Task run {error}")
        else:
            state = Failed(
                message=f"Task run encountered an exception {type(error).__name__}: {error}"
            )
        state.with_data(error)
        logger.error(
            "Encountered exception during execution",
            exc_info=user_exc_info(error),
            extra=self._log_extra(),
        )
        self._check_retry_condition(state)
        return state

    def _persist(self, value: Any) -> ResultRef | None:
        """Store the result when the task persists results; None when it does not."""
        task = self.task
        if not task.should_persist:
            return None
        key = task.render_storage_key(self.parameters, self.run)
        flow_storage = (
            getattr(self.flow_ctx.flow, "result_storage", None) if self.flow_ctx else None
        )
        return persist_value(
            self.client,
            value,
            serializer=task.result_serializer,
            storage_key=key,
            storage=task.result_storage or flow_storage,
        )

    def _complete(self, state: State, value: Any) -> State:
        """Finish with ``state`` (COMPLETED, its result set), writing the cache record."""
        task = self.task
        if self.cache_key is not None and self._cache_owner and state.details.result is not None:
            from runtime.stores.cache import CacheLockLost, CacheRecord

            expires = datetime.now(UTC) + task.cache_expiration if task.cache_expiration else None
            state.details.cache_key = self.cache_key
            state.details.cache_expiration = expires
            record = CacheRecord(
                key=self.cache_key,
                result=state.details.result,
                task_key=task.task_key,
                task_run_id=self.run.id,
                created=utcnow(),
                expires_at=expires,
            )
            if not transactions.stage_task(self, value, record):  # not deferred to a commit
                self._stop_cache_renewal()
                try:
                    self.client.cache.write(self.cache_key, record, self.run.id)
                except CacheLockLost:  # our lock expired and another run took the key: keep its
                    logger.warning(
                        "cache key %s was taken over by another run; not overwriting it",
                        self.cache_key,
                        extra=self._log_extra(),
                    )
            self._cache_owner = False
        else:
            transactions.stage_task(self, value, None)
        final = self._finish(state.with_data(value))
        self._run_hooks(task.on_completion_hooks, final)
        return final

    def _run_hooks(self, hooks: list[Callable[..., Any]], state: State) -> None:
        for hook in hooks:
            try:
                hook(self.task, self.run, state)
            except Exception:
                logger.exception(
                    "state hook %s of task run %r raised",
                    getattr(hook, "__name__", hook),
                    self.run.name,
                    extra=self._log_extra(),
                )

    def _cleanup(self) -> None:
        """Give back slots and the cache lock; a failure is logged, never raised.

        Raising here would replace the task's own outcome; a lease that could not
        be released expires on its own.
        """
        self._stop_cache_renewal()  # first: nothing below may leave a lock renewed forever
        with self._propose_lock:
            lease, self.lease = self.lease, None
        if lease is not None:
            self._release(lease)
        if self._cache_owner and self.cache_key is not None:
            self._cache_owner = False
            try:
                self.client.cache.unlock(self.cache_key, self.run.id)
            except Exception as exc:
                logger.error(
                    "releasing the cache lock on %s failed (it expires on its own): %r",
                    self.cache_key,
                    exc,
                    extra=self._log_extra(),
                )

    def _release(self, lease: Lease) -> None:
        try:
            self.client.release_slots(lease)
        except Exception as exc:
            logger.error(
                "releasing concurrency slots on %s failed (lease %s expires on its own): %r",
                ", ".join(lease.limit_names),
                lease.id,
                exc,
                extra=self._log_extra(),
            )

    # ------------------------------------------------------------------ helpers

    def _log_extra(self) -> dict[str, Any]:
        return {
            "flow_run_id": self.run.flow_run_id,
            "task_run_id": self.run.id,
            "run_name": f"Task run {self.run.name!r}",
        }

    def context(self) -> TaskRunContext:
        """The context the user's function sees while it runs."""
        return TaskRunContext(
            task=self.task,
            task_run=self.run,
            parameters=self.parameters,
            flow_run_context=self.flow_ctx,
            log_prints=self.task.log_prints
            if self.task.log_prints is not None
            else bool(self.flow_ctx and self.flow_ctx.log_prints),
        )

    def call_user_function(self) -> Any:
        """Call the task's function with the resolved parameters, inside its run context."""
        from runtime.engine.calls import call_with_parameters

        with task_run_scope(self.context()):
            return call_with_parameters(self.task.call_target, self.parameters)

    async def call_user_function_async(self) -> Any:
        """Await the task's coroutine function with the resolved parameters, in its context."""
        from runtime.engine.calls import call_with_parameters

        with task_run_scope(self.context()):
            return await call_with_parameters(self.task.call_target, self.parameters)
