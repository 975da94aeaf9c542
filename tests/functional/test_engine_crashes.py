"""Runs never left Running: engine failures end runs Crashed; decorator mistakes fail early.

Each engine failure here is a real store operation made to fail (the store
method is replaced by one raising what boto3 raises when retries are exhausted),
inside a real flow against moto in-process. The flow and task runs are then
read back from the stores: none may be left Pending or Running.
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runtime.engine.client import DirectEngineClient
from runtime.engine.task_runners import ThreadPoolTaskRunner
from runtime.models import ConcurrencyLimitCreate, FlowRun, FlowRunFilter, TaskRun, TaskRunFilter
from runtime.states import Crashed, StateType
from sdk import flow, task
from sdk.cache_policies import INPUTS


def store_unavailable(*args: Any, **kwargs: Any) -> Any:
    """What a store call raises once boto3 gave up retrying."""
    raise ClientError(
        {"Error": {"Code": "ServiceUnavailable", "Message": "the store is unavailable"}},
        "TransactWriteItems",
    )


def the_flow_run(engine: DirectEngineClient) -> FlowRun:
    runs = list(engine.stores.runs.list_flow_runs(FlowRunFilter()).items)
    assert len(runs) == 1, runs
    run: FlowRun = runs[0]
    return run


def the_task_runs(engine: DirectEngineClient, flow_run_id: str) -> list[TaskRun]:
    flt = TaskRunFilter(flow_run_id=flow_run_id)
    return list(engine.stores.runs.list_task_runs(flt).items)


# ---------------------------------------------------------------------- decoration time


def _fn() -> None:
    return None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cache_expiration": 3600}, "timedelta for 'cache_expiration'; got int 3600"),
        ({"cache_policy": "inputs"}, "CachePolicy for 'cache_policy'.*got str"),
        ({"log_prints": "yes"}, "bool .or None. for 'log_prints'; got str"),
        ({"retries": "3"}, "int for 'retries'; got str"),
        ({"retries": -1}, "retries must be >= 0"),
        ({"retry_delay_seconds": "5"}, "Invalid `retry_delay_seconds` provided"),
        ({"retry_delay_seconds": [1, "2"]}, "numbers in 'retry_delay_seconds'; got str"),
        ({"timeout_seconds": "10"}, "number of seconds for 'timeout_seconds'; got str"),
        ({"retry_jitter_factor": "0.5"}, "number for 'retry_jitter_factor'; got str"),
        ({"task_run_name": 5}, "Expected string or callable for 'task_run_name'; got int"),
        ({"retry_condition_fn": "no"}, "Expected `retry_condition_fn` to be callable, got str"),
        ({"on_failure": print}, "Expected a list of callables in 'on_failure'"),
        ({"on_completion": ["x"]}, "Expected callables in 'on_completion'; got str"),
        ({"refresh_cache": "no"}, "bool .or None. for 'refresh_cache'; got str"),
    ],
)
def test_task_arguments_are_checked_when_decorating(options: dict[str, Any], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        task(**options)(_fn)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"task_runner": "threads"}, "task runner for 'task_runner'.*got str"),
        ({"task_runner": ThreadPoolExecutor}, "task runner for 'task_runner'.*got type"),
        ({"log_prints": "yes"}, "bool .or None. for 'log_prints'; got str"),
        ({"retries": 2.5}, "int for 'retries'; got float"),
        ({"retry_delay_seconds": "5"}, "number of seconds for 'retry_delay_seconds'; got str"),
        ({"timeout_seconds": "10"}, "number of seconds for 'timeout_seconds'; got str"),
        ({"persist_result": "yes"}, "bool .or None. for 'persist_result'; got str"),
        ({"on_crashed": [1]}, "Expected callables in 'on_crashed'; got int"),
        ({"flow_run_name": 5}, "Expected string or callable for 'flow_run_name'; got int"),
    ],
)
def test_flow_arguments_are_checked_when_decorating(options: dict[str, Any], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        flow(**options)(_fn)


def test_valid_arguments_still_pass() -> None:
    t = task(
        cache_policy=INPUTS,
        cache_expiration=timedelta(hours=1),
        retries=2,
        retry_delay_seconds=[1, 2.5],
        timeout_seconds=5,
        log_prints=None,
    )(_fn)
    assert t.cache_expiration == timedelta(hours=1)
    f = flow(task_runner=ThreadPoolTaskRunner, retries=1, retry_delay_seconds=1)(_fn)
    assert isinstance(f.task_runner, ThreadPoolTaskRunner)  # a class is instantiated
    with pytest.raises(TypeError, match="cache_expiration"):
        t.with_options(cache_expiration=60)


# ---------------------------------------------------------------------- engine failures


def test_a_task_runner_that_fails_crashes_the_flow_run(engine: DirectEngineClient) -> None:
    class BrokenRunner(ThreadPoolTaskRunner):
        def executor(self) -> ThreadPoolExecutor:
            raise RuntimeError("no threads left")

    @flow(task_runner=BrokenRunner())
    def broken() -> int:
        return 1

    with pytest.raises(RuntimeError, match="no threads left"):
        broken()
    run = the_flow_run(engine)
    assert run.state.type is StateType.CRASHED
    assert run.state.message is not None and "RuntimeError: no threads left" in run.state.message


def test_a_store_failure_inside_a_task_crashes_the_task_run(
    engine: DirectEngineClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.stores.concurrency.create_limit(ConcurrencyLimitCreate(name="tag:db", limit=2))
    monkeypatch.setattr(engine.stores.concurrency, "acquire", store_unavailable)

    @task(tags=["db"])
    def query() -> int:
        return 1

    @flow
    def uses_db() -> int:
        return query()

    with pytest.raises(ClientError, match="the store is unavailable"):
        uses_db()
    flow_run = the_flow_run(engine)
    assert flow_run.state.is_final(), flow_run.state
    (task_run,) = the_task_runs(engine, flow_run.id)
    assert task_run.state.type is StateType.CRASHED
    assert task_run.state.message is not None
    assert "the store is unavailable" in task_run.state.message


def test_a_store_failure_recording_task_runs_crashes_the_flow_run(
    engine: DirectEngineClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    @task
    def one() -> int:
        return 1

    @flow
    def records() -> int:
        return one()

    with monkeypatch.context() as broken:
        broken.setattr(engine.stores.runs, "write_task_run_records", store_unavailable)
        with pytest.raises(ClientError, match="the store is unavailable"):
            records()
    run = the_flow_run(engine)
    assert run.state.type is StateType.CRASHED
    assert run.state.message is not None and "the store is unavailable" in run.state.message


def test_a_failing_slot_release_is_logged_not_raised(
    engine: DirectEngineClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    engine.stores.concurrency.create_limit(ConcurrencyLimitCreate(name="tag:db", limit=2))
    monkeypatch.setattr(engine.stores.concurrency, "release", store_unavailable)

    @task(tags=["db"])
    def query() -> int:
        return 7

    @flow
    def uses_db() -> int:
        return query()

    with caplog.at_level(logging.ERROR, logger="stratoflow.task_runs"):
        assert uses_db() == 7
    flow_run = the_flow_run(engine)
    assert flow_run.state.type is StateType.COMPLETED
    (task_run,) = the_task_runs(engine, flow_run.id)
    assert task_run.state.type is StateType.COMPLETED
    assert any("releasing" in r.getMessage() for r in caplog.records), caplog.records


def test_a_standalone_task_whose_record_cannot_be_flushed_returns_its_value(
    engine: DirectEngineClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    @task
    def alone() -> int:
        return 3

    with monkeypatch.context() as broken, caplog.at_level(logging.ERROR, "stratoflow.task_runs"):
        broken.setattr(engine.stores.runs, "write_task_run_records", store_unavailable)
        assert alone() == 3
    assert any("the store is unavailable" in r.getMessage() for r in caplog.records)


def test_a_final_state_refused_by_the_rules_is_not_forced(
    engine: DirectEngineClient, caplog: pytest.LogCaptureFixture
) -> None:
    @flow
    def marked_crashed_meanwhile() -> int:
        from runtime.engine.context import current_flow_run

        ctx = current_flow_run()
        assert ctx is not None
        # what the maintenance sweep does to a run whose heartbeat expired
        engine.stores.runs.set_state(
            "flow_run", ctx.flow_run.id, Crashed(message="heartbeat expired"), force=True
        )
        return 1

    with caplog.at_level(logging.WARNING, logger="stratoflow.flow_runs"):
        state = marked_crashed_meanwhile(return_state=True)
    run = the_flow_run(engine)
    assert run.state.type is StateType.CRASHED
    assert state.type is StateType.CRASHED
    history = [s.name for s in engine.stores.runs.read_state_history(run.id)]
    assert history == ["Pending", "Running", "Crashed"]
    assert any(
        "refused" in r.getMessage() and "terminal state" in r.getMessage() for r in caplog.records
    ), [r.getMessage() for r in caplog.records]


class _Announced(logging.Handler):
    """Sets ``event`` on the task engine's "retry ... at" log line."""

    def __init__(self) -> None:
        super().__init__()
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "retry 1 of 1" in record.getMessage():
            self.event.set()


def test_an_interrupt_during_a_retry_delay_crashes_the_task_run(
    engine: DirectEngineClient,
) -> None:
    announced = _Announced()
    log = logging.getLogger("stratoflow.task_runs")
    log.addHandler(announced)

    @task(retries=1, retry_delay_seconds=300)
    def flaky() -> None:
        raise ValueError("first attempt fails")

    @flow
    def interrupted() -> None:
        flaky()

    def interrupt_when_waiting() -> None:  # Ctrl-C while the engine sleeps before the retry
        if announced.event.wait(60):
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    # Ctrl-C raises KeyboardInterrupt only under Python's default handler; pytest-xdist's
    # worker processes ignore SIGINT, so the test puts the default one back while it runs.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupter = threading.Thread(target=interrupt_when_waiting)
    interrupter.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            interrupted()
    finally:
        announced.event.set()
        interrupter.join()
        log.removeHandler(announced)
        signal.signal(signal.SIGINT, previous)
    flow_run = the_flow_run(engine)
    assert flow_run.state.type is StateType.CRASHED
    (task_run,) = the_task_runs(engine, flow_run.id)
    assert task_run.state.type is StateType.CRASHED
    assert task_run.state.message == "execution was interrupted: KeyboardInterrupt"
