"""The flow engine: one flow run from creation to its final state.

Flow-run transitions are conditional writes through the engine client (others
can see and race them: a worker's claim, a cancellation). Before the final
state is proposed, every buffered task-run record and log line is flushed, so
when the flow call returns everything it did is durable.
"""

from __future__ import annotations

import logging
from types import GeneratorType
from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python

from runtime.engine.calls import user_exc_info
from runtime.engine.cancellation import CancellationWatcher
from runtime.engine.client import EngineClient
from runtime.engine.context import (
    FlowRunContext,
    current_flow_run,
    flow_run_scope,
    with_current_tags,
)
from runtime.engine.driver import Call, Lifecycle, Sleep, drive_async, drive_sync
from runtime.engine.exceptions import Pause
from runtime.engine.inputs import resolve
from runtime.engine.results import persist_value
from runtime.engine.return_states import (
    mark_run_state,
    resolve_futures_to_states,
    return_value_to_state,
)
from runtime.engine.runlogs import setup_logging
from runtime.engine.signals import (
    INTERRUPTS,
    terminate_on_sigterm,
    terminate_on_sigterm_async,
)
from runtime.models import FlowRun, FlowRunCreate, TaskRun, new_id
from runtime.states import (
    Cancelled,
    Crashed,
    Failed,
    Pending,
    Running,
    State,
    StateType,
    TimedOut,
    utcnow,
)

if TYPE_CHECKING:
    from runtime.engine.flows import Flow  # annotations only: flows calls the engine

logger = logging.getLogger("stratoflow.flow_runs")

_NOTHING: Any = object()


def _jsonable(parameters: dict[str, Any]) -> dict[str, Any]:
    """Parameters as stored: JSON values (anything else by its repr)."""
    return to_jsonable_python(parameters, fallback=repr)  # type: ignore[no-any-return]


class FlowRunEngine:
    """Runs one call of a flow: create the run, attempts with retries, final state, hooks."""

    def __init__(
        self,
        flow: Flow[..., Any],
        parameters: dict[str, Any],
        *,
        client: EngineClient,
        parent: FlowRunContext | None,
        wait_for: list[Any] | None = None,
        claimed: FlowRun | None = None,
    ) -> None:
        setup_logging()
        self.flow = flow
        self.parameters = parameters
        self.client = client
        self.parent = parent
        self.wait_for = list(wait_for or [])
        self.claimed = claimed
        """An existing run (a worker claimed it), executed instead of creating one."""
        self.flow_run: FlowRun | None = None
        self.ctx: FlowRunContext | None = None
        self.parent_task_run: TaskRun | None = None
        self._parent_history: list[State] = []
        self._refusal: str | None = None
        self._ended = False
        """True once a final state was proposed: nothing is proposed after it."""
        self._cancel_requested: State | None = None
        self._watcher: CancellationWatcher | None = None
        self._started = False
        """True when the run was created RUNNING (its first attempt needs no proposal)."""
        self.returned: Any = _NOTHING
        """The last attempt's return value (futures turned into states) when it completed
        the function; a direct call hands it back unless it is a state (Prefect's rule)."""

    # ------------------------------------------------------------------ helpers

    def _extra(self) -> dict[str, Any]:
        run = self.flow_run
        return {
            "flow_run_id": run.id if run else None,
            "task_run_id": None,
            "run_name": f"Flow run {run.name!r}" if run else None,
        }

    def _propose(self, state: State, *, force: bool = False) -> tuple[bool, State, float]:
        assert self.flow_run is not None
        if self.claimed is not None and state.is_final():
            lost = self._claimed_by_another()
            if lost is not None:  # never end the run another worker now executes
                self._refusal = "another worker claimed the flow run since"
                return False, lost, 0.0
        result = self.client.set_flow_run_state(
            self.flow_run.id, state, force=force, expected_version=self.flow_run.state_version
        )
        self._refusal = None if result.accepted else result.reason
        mark_run_state(result.state, self.flow_run.id)
        if result.accepted:
            self.flow_run = self.flow_run.model_copy(
                update={
                    "state": result.state,
                    "run_count": result.run_count,
                    "state_version": result.state_version,
                }
            )
            if self.ctx is not None:
                self.ctx.flow_run = self.flow_run
            self._mirror_in_parent(result.state)
        return result.accepted, result.state, result.delay_seconds

    def _claimed_by_another(self) -> State | None:
        """A worker's run: its current state if another worker claimed it since, else None.

        (One read before a final state: the sweep may have crashed the run while this
        process was stalled, and another worker claimed its retry.)
        """
        assert self.flow_run is not None and self.claimed is not None
        try:
            run = self.client.read_flow_run(self.flow_run.id)
        except Exception:  # the proposal decides (and fails the same way if the store is down)
            return None
        return run.state if run.worker_id != self.claimed.worker_id else None

    def _mirror_in_parent(self, state: State) -> None:
        """Keep the parent's task run that stands for this subflow in step with it."""
        if self.parent is None or self.flow_run is None:
            return
        mirror = state.model_copy(deep=True)
        if self.parent_task_run is None:  # created with the child's first state, not its own
            now = utcnow()
            key = f"subflow:{self.flow.name}"
            self.parent_task_run = TaskRun(
                id=new_id(),
                name=f"{self.flow.name}-{self.parent.next_dynamic_key(key)}",
                task_key=key,
                flow_run_id=self.parent.flow_run.id,
                state=mirror,
                created=now,
                updated=now,
                task_inputs={"__subflow_run_id": [self.flow_run.id]},
            )
            self._parent_history = []
        self.parent_task_run = self.parent_task_run.model_copy(  # each snapshot newer (records)
            update={"state": mirror, "state_version": len(self._parent_history)}
        )
        self._parent_history.append(mirror)
        self.parent.client.record_task_run(self.parent_task_run, self._parent_history)

    # ------------------------------------------------------------------ lifecycle

    def _create(self) -> None:
        flow = self.flow
        if self.claimed is not None:  # a worker's run: already RUNNING (its claim), or to start
            self.flow_run = self.claimed
            self._started = self.claimed.state.type is StateType.RUNNING
            logger.info(
                "Executing flow run %r of flow %r",
                self.claimed.name,
                flow.name,
                extra=self._extra(),
            )
            return
        request = FlowRunCreate(
            flow_name=flow.name,
            name=flow.render_run_name(self.parameters),
            parameters=_jsonable(self.parameters),
            tags=with_current_tags(flow.tags),  # and the enclosing tags(...) blocks'
            parent_flow_run_id=self.parent.flow_run.id if self.parent else None,
            empirical_policy=flow.retry_policy(),
            state=Pending(),
        )
        if self.wait_for:  # its upstreams are resolved while it is Pending
            self.flow_run = self.client.create_flow_run(request)
        else:  # one request: created and started, where the rules allow
            self.flow_run, self._started = self.client.start_flow_run(request)
        logger.info(
            "Created flow run %r for flow %r", self.flow_run.name, flow.name, extra=self._extra()
        )

    def lifecycle(self) -> Lifecycle:
        """The flow run's steps; driven by ``drive_sync`` or ``drive_async``.

        Whatever escapes the steps (an interrupt or SIGTERM, a store failing for
        good, a bug in the engine) ends the flow run, and the task runs still in
        flight, Crashed with the error's message; then it is re-raised.
        """
        self._create()
        try:
            return (yield from self._attempts())
        except BaseException as exc:
            self._crash(exc)
            raise
        finally:
            self._stop_watching()

    def _attempts(self) -> Lifecycle:
        flow = self.flow
        assert self.flow_run is not None
        if self.parent is not None:
            if self._started:  # the mirror gets the Pending state its child was created in
                self._mirror_in_parent(Pending())
            self._mirror_in_parent(self.flow_run.state)
        try:
            for item in self.wait_for:
                resolve(item)
        except Exception as exc:
            return self._end(Failed(message=str(exc)).with_data(exc))
        while True:
            if self._started:
                self._started = False
                accepted, state, delay = True, self.flow_run.state, 0.0
            else:
                accepted, state, delay = self._propose(Running())
            if not accepted:
                if delay > 0:
                    yield Sleep(delay)
                    continue
                logger.warning(
                    "The flow run could not start (%s); it stays %s",
                    self._refusal,
                    state.name,
                    extra=self._extra(),
                )
                return state
            executor = flow.task_runner.executor()
            self.ctx = FlowRunContext(
                flow=flow,
                flow_run=self.flow_run,
                parameters=self.parameters,
                client=self.client,
                executor=executor,
                log_prints=flow.log_prints,
            )
            self._watch_for_cancellation()
            self.returned = _NOTHING
            if flow.on_running_hooks:
                self._run_hooks(flow.on_running_hooks, state)
            try:
                outcome = yield Call(flow.timeout_seconds)
            except BaseException:
                executor.shutdown(wait=False, cancel_futures=True)
                raise
            error = outcome.error
            if isinstance(error, Pause):  # suspended: the run stays Suspended, nothing proposed
                executor.shutdown(wait=True)
                self._stop_watching()
                self._ended = True
                self._flush_quietly()
                raise error
            if isinstance(error, INTERRUPTS):
                executor.shutdown(wait=False, cancel_futures=True)
                raise error  # lifecycle() crashes the run and its task runs
            # submitted tasks finish before the flow's state is decided (not after a timeout)
            timed_out = flow.timeout_seconds is not None and isinstance(outcome.error, TimeoutError)
            executor.shutdown(wait=not timed_out)
            self._stop_watching()
            if timed_out:
                self.ctx.abandon_active(
                    f"the flow run timed out after {flow.timeout_seconds:g}s before this "
                    "task run finished"
                )
            if error is None and self._cancel_requested is None:
                try:  # a returned state (or futures' states) decides: return_value_to_state
                    value = resolve_futures_to_states(outcome.value)
                    returned_state, data = return_value_to_state(value)
                    result = (
                        persist_value(
                            self.client,
                            data,
                            serializer=flow.result_serializer,
                            storage=flow.result_storage,
                        )
                        if flow.persist_result
                        else None
                    )
                except Exception as exc:  # the result cannot be stored
                    error = exc
            candidate: Any = _NOTHING
            if self._cancel_requested is not None:
                proposed = Cancelled(
                    message="The flow run was cancelled while it ran "
                    f"({self._cancel_requested.name}): task runs not started were cancelled."
                )
                if error is not None:
                    proposed.with_data(error)
            elif error is not None:
                proposed = self._failure_state(error)
            else:
                proposed = returned_state
                proposed.details.result = result
                candidate = data if isinstance(value, GeneratorType) else value
            # task runs are durable before the final state (log lines are shipped once, after)
            self.client.flush_task_runs()  # a store failing here crashes the run (lifecycle())
            accepted, state, _ = self._propose(proposed)
            if accepted and state.type is StateType.SCHEDULED:
                logger.info(
                    "Flow run %r failed; retry %s of %s at %s",
                    self.flow_run.name,
                    self.flow_run.run_count,
                    flow.retries,
                    state.details.scheduled_time,
                    extra=self._extra(),
                )
                continue
            self._ended = True
            if accepted:
                self.returned = candidate
            else:
                self._log_refusal(proposed, state)
            if proposed.has_data and not state.has_data:
                state.with_data(proposed.data)
            logger.info("Finished in state %r", state, extra=self._extra())
            self._hooks(state)
            self._flush_quietly()
            return state

    # ------------------------------------------------------------------ cancellation

    def _watch_for_cancellation(self) -> None:
        assert self.flow_run is not None
        self._stop_watching()
        parent = self.parent
        self._watcher = CancellationWatcher(
            self.client,
            self.flow_run.id,
            self._on_cancel_requested,
            parent_state=(lambda: parent.flow_run.state) if parent is not None else None,
        ).start()

    def _stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    def _on_cancel_requested(self, state: State) -> None:
        """The run was asked to cancel: no task run starts from now on (they end Cancelled).

        Task runs already running finish; the flow run ends Cancelled once its
        function returns (or raises, typically when it reads a cancelled task's result).
        """
        if self.flow_run is None:
            return
        self._cancel_requested = state
        self.flow_run = self.flow_run.model_copy(update={"state": state})
        if self.ctx is not None:
            self.ctx.flow_run = self.flow_run  # what task runs check before they start
        logger.warning(
            "Flow run %r is %s: no new task runs start, running ones finish; "
            "the flow run ends Cancelled",
            self.flow_run.name,
            state.name,
            extra=self._extra(),
        )

    # ------------------------------------------------------------------ ending

    def _log_refusal(self, proposed: State, current: State) -> None:
        logger.warning(
            "The final state %s was refused (%s); the flow run stays %s",
            proposed.name,
            self._refusal,
            current.name,
            extra=self._extra(),
        )

    def _flush_quietly(self) -> None:
        try:
            self.client.flush()
        except Exception as exc:
            logger.error("writing task runs and logs failed: %r", exc, extra=self._extra())

    def _crash(self, error: BaseException) -> None:
        """End the run (and its task runs in flight) Crashed after ``error`` escaped.

        A worker's run stopped from outside (its worker's SIGTERM) ends Cancelled when
        it was being cancelled, and is left alone when its worker handed it back.
        """
        if self._ended or self.flow_run is None or self.flow_run.state.is_final():
            return
        if self.claimed is not None and isinstance(error, INTERRUPTS) and self._stopped_by_worker():
            return
        if isinstance(error, INTERRUPTS):
            message = f"execution was interrupted: {type(error).__name__}"
        else:
            message = f"Flow run crashed: {type(error).__name__}: {error}"
            logger.error(
                "The engine failed running this flow run", exc_info=error, extra=self._extra()
            )
        if self.ctx is not None:
            self.ctx.abandon_active(f"the flow run crashed ({message})", crashed=True)
        state = Crashed(message=message)
        if isinstance(error, Exception):
            state.with_data(error)
        try:
            final = self._end(state)
        except Exception as exc:  # the run's heartbeat expires and the sweep crashes it
            logger.error("recording the crash failed: %r", exc, extra=self._extra())
            return
        self._hooks(final)

    def _stopped_by_worker(self) -> bool:
        """After an interrupt of a worker's run: True when its worker stopped it on purpose.

        Claimed by another worker since: left alone (its task runs in flight end).
        CANCELLING: the run ends Cancelled (its task runs in flight too). SCHEDULED
        (AwaitingRetry): its worker handed it back on shutdown; another worker runs it
        again, so only the task runs in flight end (Crashed). Otherwise False: a crash.
        """
        assert self.flow_run is not None and self.claimed is not None
        try:
            run = self.client.read_flow_run(self.flow_run.id)
        except Exception as exc:
            logger.error("reading the flow run failed: %r", exc, extra=self._extra())
            return False
        current = run.state
        if run.worker_id != self.claimed.worker_id:  # another worker claimed it since
            if self.ctx is not None:
                self.ctx.abandon_active("another worker took the flow run over", crashed=True)
            self._ended = True
            self._flush_quietly()
            logger.warning(
                "Flow run %r was claimed by another worker: this process leaves it alone",
                self.flow_run.name,
                extra=self._extra(),
            )
            return True
        if current.type is StateType.CANCELLING:
            if self.ctx is not None:
                self.ctx.abandon_active("the flow run was cancelled")
            try:
                final = self._end(
                    Cancelled(message="The flow run was cancelled: its worker stopped its process.")
                )
            except Exception as exc:  # the worker ends it Cancelled after the process exits
                logger.error("recording the cancellation failed: %r", exc, extra=self._extra())
                return True
            self._hooks(final)
            return True
        if current.type is StateType.SCHEDULED:
            if self.ctx is not None:
                self.ctx.abandon_active(
                    "its worker shut down and handed the flow run back", crashed=True
                )
            self._ended = True
            self._flush_quietly()
            logger.warning(
                "The worker shut down: flow run %r was handed back (%s) to run again",
                self.flow_run.name,
                current.name,
                extra=self._extra(),
            )
            return True
        return False

    def _failure_state(self, error: BaseException) -> State:
        if isinstance(error, TimeoutError) and self.flow.timeout_seconds is not None:
            state = TimedOut(message=f"Flow run {error}")
        else:
            state = Failed(
                message=f"Flow run encountered an exception {type(error).__name__}: {error}"
            )
        logger.error(
            "Flow run %r failed",
            self.flow_run.name if self.flow_run else "?",
            exc_info=user_exc_info(error),
            extra=self._extra(),
        )
        return state.with_data(error)

    def _end(self, state: State) -> State:
        """Propose a final state (the rules may refuse it: then say why, and keep theirs)."""
        self._flush_quietly()
        accepted, current, _ = self._propose(state)
        self._ended = True
        if not accepted:
            self._log_refusal(state, current)
        if state.has_data and not current.has_data:
            current.with_data(state.data)
        self._flush_quietly()
        return current

    def _hooks(self, state: State) -> None:
        hooks = {
            StateType.COMPLETED: self.flow.on_completion_hooks,
            StateType.FAILED: self.flow.on_failure_hooks,
            StateType.CANCELLED: self.flow.on_cancellation_hooks,
            StateType.CRASHED: self.flow.on_crashed_hooks,
        }.get(state.type, [])
        self._run_hooks(hooks, state)

    def _run_hooks(self, hooks: list[Any], state: State) -> None:
        """Call each ``hook(flow, flow_run, state)``; one that raises is logged, not raised."""
        for hook in hooks:
            try:
                hook(self.flow, self.flow_run, state)
            except Exception:
                logger.exception(
                    "state hook %s of flow run raised",
                    getattr(hook, "__name__", hook),
                    extra=self._extra(),
                )

    def call_user_function(self) -> Any:
        """Call the flow's function inside its run context."""
        from runtime.engine.calls import call_with_parameters

        assert self.ctx is not None
        with flow_run_scope(self.ctx):
            return call_with_parameters(self.flow.call_target, self.parameters)

    async def call_user_function_async(self) -> Any:
        """Await the flow's coroutine function inside its run context."""
        from runtime.engine.calls import call_with_parameters

        assert self.ctx is not None
        with flow_run_scope(self.ctx):
            return await call_with_parameters(self.flow.call_target, self.parameters)


def _engine(flow: Flow[..., Any], parameters: dict[str, Any], wait_for: Any) -> FlowRunEngine:
    from runtime.engine.backend import get_engine_client

    parent = current_flow_run()
    client = parent.client if parent else get_engine_client()
    return FlowRunEngine(flow, parameters, client=client, parent=parent, wait_for=wait_for)


def run_flow(
    flow: Flow[..., Any],
    parameters: dict[str, Any],
    *,
    wait_for: Any = None,
    return_state: bool = False,
) -> Any:
    """Run a sync flow to its final state; return its value, raise its error, or the state."""
    engine = _engine(flow, parameters, wait_for)
    with terminate_on_sigterm():
        state = drive_sync(engine.lifecycle(), engine.call_user_function)
    return _outcome(engine, state, return_state)


async def run_flow_async(
    flow: Flow[..., Any],
    parameters: dict[str, Any],
    *,
    wait_for: Any = None,
    return_state: bool = False,
) -> Any:
    """Run an async flow to its final state (see :func:`run_flow`)."""
    engine = _engine(flow, parameters, wait_for)
    async with terminate_on_sigterm_async():
        state = await drive_async(engine.lifecycle(), engine.call_user_function_async)
    return _outcome(engine, state, return_state)


def run_claimed_flow(
    flow: Flow[..., Any],
    flow_run: FlowRun,
    parameters: dict[str, Any],
    *,
    client: EngineClient,
) -> State:
    """Execute an existing flow run (a worker claimed it) to its final state; return the state.

    ``flow_run`` is the run as claimed: RUNNING (its first attempt needs no
    proposal) or, when it was not claimed first, PENDING/SCHEDULED (then it is
    proposed RUNNING as a local run's is). ``parameters`` are the Python values
    the flow is called with. Retries happen in this process, as for a local run.
    SIGTERM ends it Crashed, or Cancelled when it is being cancelled (see
    ``FlowRunEngine._stopped_by_worker``), and is then honoured.
    """
    engine = FlowRunEngine(flow, parameters, client=client, parent=None, claimed=flow_run)
    if flow.isasync:
        import asyncio

        async def drive() -> State:
            async with terminate_on_sigterm_async():
                return await drive_async(engine.lifecycle(), engine.call_user_function_async)

        return asyncio.run(drive())
    with terminate_on_sigterm():
        return drive_sync(engine.lifecycle(), engine.call_user_function)


def _outcome(engine: FlowRunEngine, state: State, return_state: bool) -> Any:
    """What a flow call gives (Prefect's ``FlowRunEngine.result``).

    The final state with ``return_state``; else what the function returned when it
    returned normally and that was not a state (futures in it turned into states,
    even when those failed the run); else the final state's result (raising its
    exception).
    """
    if return_state:
        return state
    returned = engine.returned
    if returned is not _NOTHING and not isinstance(returned, State) and state.is_final():
        return returned
    return state.result()
