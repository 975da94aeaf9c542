"""Tag concurrency limits, run logs and durability on return, against moto in-process.

Flows called here write through the ``engine`` fixture; ``get_client(sync_client=True)``
reads and manages the same installation. Waits are Events and deadline loops.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from runtime.engine.client import DirectEngineClient
from runtime.engine.context import current_flow_run, current_task_run
from runtime.errors import NotFound
from runtime.models import LogRecord, TaskRun, TaskRunFilter
from runtime.states import State, StateType
from sdk import flow, get_client, get_run_logger, task
from sdk.client import ObjectNotFound
from sdk.exceptions import ConcurrencySlotAcquisitionError, MissingContextError

# ---------------------------------------------------------------------- helpers


def flow_run_id() -> str:
    ctx = current_flow_run()
    assert ctx is not None
    return ctx.flow_run.id


def task_run_id() -> str:
    ctx = current_task_run()
    assert ctx is not None
    return ctx.task_run.id


def task_runs(engine: DirectEngineClient, flow_run: str) -> list[TaskRun]:
    page = engine.stores.runs.list_task_runs(TaskRunFilter(flow_run_id=flow_run), limit=1000)
    return list(page.items)


def history_names(engine: DirectEngineClient, run_id: str) -> list[str]:
    return [s.name for s in engine.stores.runs.read_state_history(run_id)]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def read_logs(flow_run: str, **kwargs: Any) -> list[LogRecord]:
    with get_client(sync_client=True) as client:
        return client.read_logs(flow_run, limit=1000, **kwargs)  # type: ignore[no-any-return]


class Gauge:
    """How many callers are inside at once, and the most there ever were."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = 0
        self.max = 0
        self.entered = 0

    def __enter__(self) -> Gauge:
        with self._lock:
            self.current += 1
            self.entered += 1
            self.max = max(self.max, self.current)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.current -= 1


def create_limit(tag: str, limit: int) -> None:
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag=tag, concurrency_limit=limit)


def active_slots(tag: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_concurrency_limit_by_tag(tag).active_slots  # type: ignore[no-any-return]


# ====================================================================== tag concurrency


class TestTagConcurrency:
    def test_mapped_tasks_never_exceed_the_limit(self, engine: DirectEngineClient) -> None:
        create_limit("db", 3)
        gauge = Gauge()
        go = threading.Event()

        @task(tags=["db"])
        def query(i: int) -> int:
            with gauge:
                assert go.wait(10)
            return i * i

        @flow
        def run() -> tuple[str, list[int], list[str]]:
            futures = query.map(range(20))
            # 3 hold the slots and block; the other 17 must be waiting for one
            wait_until(
                lambda: sum(f.state.name == "AwaitingConcurrencySlot" for f in futures) == 17
            )
            assert gauge.current == 3
            go.set()
            return flow_run_id(), [f.result() for f in futures], [f.task_run_id for f in futures]

        fr, values, ids = run()
        assert values == [i * i for i in range(20)]
        assert gauge.max == 3
        assert gauge.entered == 20
        runs = {r.id: r for r in task_runs(engine, fr)}
        assert set(runs) == set(ids)
        assert all(r.state.name == "Completed" for r in runs.values())
        histories = [history_names(engine, i) for i in ids]
        waited = [h for h in histories if "AwaitingConcurrencySlot" in h]
        assert len(waited) == 17
        for h in waited:
            assert h == ["Pending", "AwaitingConcurrencySlot", "Running", "Completed"]
        for h in histories:
            if h not in waited:
                assert h == ["Pending", "Running", "Completed"]
        assert active_slots("db") == 0

    def test_flow_tags_apply_to_its_tasks(self, engine: DirectEngineClient) -> None:
        create_limit("etl", 1)
        gauge = Gauge()

        @task
        def step(i: int) -> int:
            with gauge:
                time.sleep(0.005)
            return i

        @flow(tags=["etl"])
        def run() -> list[int]:
            return step.map(range(5)).result()

        assert run() == list(range(5))
        assert gauge.max == 1
        assert active_slots("etl") == 0

    def test_limit_of_zero_fails_without_running(self, engine: DirectEngineClient) -> None:
        create_limit("frozen", 0)
        ran: list[int] = []

        @task(tags=["frozen"])
        def blocked() -> None:
            ran.append(1)

        @flow
        def run() -> tuple[str, State]:
            return flow_run_id(), blocked(return_state=True)

        fr, state = run()
        assert ran == []
        assert state.type is StateType.FAILED
        assert "tag:frozen" in (state.message or "")
        assert "is 0" in (state.message or "")
        error = state.result(raise_on_failure=False)
        assert isinstance(error, ConcurrencySlotAcquisitionError)
        assert "tag:frozen" in str(error)
        (tr,) = task_runs(engine, fr)
        assert tr.state.type is StateType.FAILED
        assert history_names(engine, tr.id) == ["Pending", "Failed"]
        assert active_slots("frozen") == 0

        @flow
        def raising() -> None:
            blocked()

        with pytest.raises(ConcurrencySlotAcquisitionError, match="tag:frozen"):
            raising()

    def test_slots_released_on_success_failure_and_timeout(
        self, engine: DirectEngineClient
    ) -> None:
        create_limit("db", 1)
        stop = threading.Event()
        slots_after: list[int] = []

        @task(tags=["db"])
        def ok() -> str:
            return "ok"

        @task(tags=["db"])
        def failing() -> None:
            raise ValueError("task error")

        @task(tags=["db"], retries=1, retry_delay_seconds=0.01)
        def failing_with_retry() -> None:
            raise ValueError("task error again")

        @task(tags=["db"], timeout_seconds=0.05)
        def hanging() -> None:
            while not stop.is_set():  # interruptible: a bytecode boundary every 5 ms
                time.sleep(0.005)

        @flow
        def run() -> list[State]:
            states = []
            for tsk in (ok, failing, failing_with_retry, hanging, ok):
                states.append(tsk(return_state=True))
                slots_after.append(active_slots("db"))
            return states

        try:
            states = run()
        finally:
            stop.set()
        assert [s.name for s in states] == [
            "Completed",
            "Failed",
            "Failed",
            "TimedOut",
            "Completed",
        ]
        assert slots_after == [0, 0, 0, 0, 0]
        assert active_slots("db") == 0

    def test_slots_released_after_concurrent_failures(self, engine: DirectEngineClient) -> None:
        create_limit("db", 2)

        @task(tags=["db"])
        def sometimes(i: int) -> int:
            if i % 3 == 0:
                raise ValueError(f"bad {i}")
            return i

        @flow
        def run() -> list[State]:
            futures = sometimes.map(range(9))
            futures.wait()
            return [f.state for f in futures]

        states = run()
        assert sum(s.type is StateType.FAILED for s in states) == 3
        assert sum(s.type is StateType.COMPLETED for s in states) == 6
        assert active_slots("db") == 0

    def test_read_list_delete_and_not_found(self, engine: DirectEngineClient) -> None:
        with get_client(sync_client=True) as client:
            created = client.create_concurrency_limit(tag="api", concurrency_limit=2)
            assert (created.name, created.limit, created.active_slots) == ("tag:api", 2, 0)
            read = client.read_concurrency_limit_by_tag("api")
            assert (read.limit, read.active_slots, read.available) == (2, 0, 2)
            # an existing tag's limit is resized (Prefect's upsert)
            assert client.create_concurrency_limit(tag="api", concurrency_limit=5).limit == 5
            assert client.read_concurrency_limit_by_tag("api").limit == 5
            assert [lim.name for lim in client.read_concurrency_limits()] == ["tag:api"]
            client.delete_concurrency_limit_by_tag("api")
            with pytest.raises(ObjectNotFound, match="'api'"):
                client.read_concurrency_limit_by_tag("api")
            with pytest.raises(NotFound):  # ObjectNotFound is a NotFound
                client.delete_concurrency_limit_by_tag("api")
            assert client.read_concurrency_limits() == []
            with pytest.raises(ValidationError, match="limit"):
                client.create_concurrency_limit(tag="neg", concurrency_limit=-1)

    def test_created_and_deleted_limits_take_effect_at_once(
        self, engine: DirectEngineClient
    ) -> None:
        calls: list[int] = []

        @task(tags=["svc"])
        def call() -> int:
            calls.append(1)
            return len(calls)

        @flow
        def run() -> State:
            return call(return_state=True)

        assert run().name == "Completed"  # no limit on the tag yet
        create_limit("svc", 0)
        # the new limit applies to the next run (its failed state is the flow state's data)
        assert run(return_state=True).result(raise_on_failure=False).type is StateType.FAILED
        with get_client(sync_client=True) as client:
            client.delete_concurrency_limit_by_tag("svc")
        assert run().name == "Completed"  # and its deletion too
        assert calls == [1, 1]


# ====================================================================== run logs


class TestRunLogs:
    def test_flow_and_task_logs_in_order(self, engine: DirectEngineClient) -> None:
        task_ids: list[str] = []

        @task
        def step(x: int) -> int:
            task_ids.append(task_run_id())
            get_run_logger().info("task says %s", x)
            return x

        @flow
        def run() -> str:
            logger = get_run_logger()
            logger.info("flow starts")
            step(1)
            logger.warning("flow ends")
            return flow_run_id()

        before = time.time()
        fr = run()
        logs = read_logs(fr)  # right after the flow returned: no waiting
        mine = [r for r in logs if r.message in {"flow starts", "task says 1", "flow ends"}]
        assert [r.message for r in mine] == ["flow starts", "task says 1", "flow ends"]
        assert [r.level for r in mine] == [logging.INFO, logging.INFO, logging.WARNING]
        assert [r.task_run_id for r in mine] == [None, task_ids[0], None]
        assert all(r.flow_run_id == fr for r in logs)
        assert all(r.timestamp.tzinfo is not None for r in logs)
        assert all(r.timestamp.timestamp() >= before - 1 for r in logs)
        stamps = [r.timestamp for r in logs]
        assert stamps == sorted(stamps)
        assert mine[0].name == "stratoflow.flow_runs"
        assert mine[1].name == "stratoflow.task_runs"
        # the engine's own lines are there too, the final state last
        assert logs[0].message.startswith("Created flow run")
        assert logs[-1].message.startswith("Finished in state Completed")
        # filters
        only_task = [r.message for r in read_logs(fr, task_run_id=task_ids[0])]
        # a task's "Finished in state ..." line goes to the console only: its state
        # history already holds that fact, and storing it would double a task's writes
        assert only_task == ["task says 1"]
        warnings = read_logs(fr, level_ge=logging.WARNING)
        assert [r.message for r in warnings] == ["flow ends"]

    def test_extra_fields_and_many_lines_are_all_stored(self, engine: DirectEngineClient) -> None:
        @task
        def chatty(n: int) -> None:
            logger = get_run_logger()
            for i in range(n):
                logger.debug("line %03d", i)

        @flow
        def run() -> str:
            chatty(250)
            return flow_run_id()

        fr = run()
        lines = [r.message for r in read_logs(fr) if r.message.startswith("line ")]
        assert lines == [f"line {i:03d}" for i in range(250)]
        assert {r.level for r in read_logs(fr) if r.message.startswith("line ")} == {logging.DEBUG}

    def test_log_prints_captures_flow_and_task_prints(
        self, engine: DirectEngineClient, capsys: pytest.CaptureFixture[str]
    ) -> None:
        task_ids: list[str] = []

        @task
        def noisy(x: int) -> None:
            task_ids.append(task_run_id())
            print("from the task", x)

        @task(log_prints=False)
        def quiet() -> None:
            print("task opted out")

        @flow(log_prints=True)
        def run() -> str:
            print("from the flow")
            print("to stderr", file=sys.stderr)
            noisy(7)
            quiet()
            return flow_run_id()

        fr = run()
        logs = read_logs(fr)
        by_message = {r.message: r for r in logs}
        assert by_message["from the flow"].task_run_id is None
        assert by_message["from the flow"].level == logging.INFO
        assert by_message["from the task 7"].task_run_id == task_ids[0]
        assert "to stderr" not in by_message
        assert "task opted out" not in by_message
        out = capsys.readouterr()
        assert "task opted out" in out.out
        assert "to stderr" in out.err

    def test_prints_not_captured_without_log_prints(
        self, engine: DirectEngineClient, capsys: pytest.CaptureFixture[str]
    ) -> None:
        @task
        def noisy() -> None:
            print("plain task print")

        @task(log_prints=True)
        def opted_in() -> None:
            print("task opted in")

        @flow
        def run() -> str:
            print("plain flow print")
            noisy()
            opted_in()
            return flow_run_id()

        fr = run()
        messages = {r.message for r in read_logs(fr)}
        assert "plain flow print" not in messages
        assert "plain task print" not in messages
        assert "task opted in" in messages
        out = capsys.readouterr().out
        assert "plain flow print" in out and "plain task print" in out

    def test_unhandled_exceptions_are_logged_with_traceback(
        self, engine: DirectEngineClient
    ) -> None:
        ids: dict[str, str] = {}

        @task
        def broken() -> None:
            ids["task"] = task_run_id()
            raise ZeroDivisionError("task kaboom")

        @flow
        def run() -> None:
            ids["flow"] = flow_run_id()
            broken(return_state=True)
            raise KeyError("flow kaboom")

        with pytest.raises(KeyError, match="flow kaboom"):
            run()
        logs = read_logs(ids["flow"])
        task_errors = [r for r in logs if r.task_run_id == ids["task"] and r.level == 40]
        assert any(
            "Traceback" in r.message and "ZeroDivisionError: task kaboom" in r.message
            for r in task_errors
        )
        flow_errors = [r for r in logs if r.task_run_id is None and r.level == 40]
        assert any(
            "Traceback" in r.message and "flow kaboom" in r.message and "in run" in r.message
            for r in flow_errors
        )
        assert logs[-1].message.startswith("Finished in state Failed")

    def test_logger_exception_in_user_code_keeps_traceback(
        self, engine: DirectEngineClient
    ) -> None:
        @flow
        def run() -> str:
            try:
                raise RuntimeError("handled")
            except RuntimeError:
                get_run_logger().exception("caught it")
            return flow_run_id()

        fr = run()
        (line,) = [r for r in read_logs(fr) if r.message.startswith("caught it")]
        assert line.level == logging.ERROR
        assert "Traceback" in line.message and "RuntimeError: handled" in line.message

    def test_get_run_logger_outside_a_run(self, engine: DirectEngineClient) -> None:
        with pytest.raises(MissingContextError, match="outside a flow or task run"):
            get_run_logger()

    def test_get_run_logger_in_an_unrelated_thread(self, engine: DirectEngineClient) -> None:
        errors: list[BaseException] = []

        def other_thread() -> None:
            try:
                get_run_logger()
            except BaseException as exc:
                errors.append(exc)

        @flow
        def run() -> None:
            thread = threading.Thread(target=other_thread)  # no copied context
            thread.start()
            thread.join(10)

        run()
        assert len(errors) == 1 and isinstance(errors[0], MissingContextError)


# ====================================================================== durability


class TestDurableOnReturn:
    def test_everything_is_readable_when_the_flow_returns(self, engine: DirectEngineClient) -> None:
        @task(persist_result=True)
        def work(i: int) -> dict[str, int]:
            logger = get_run_logger()
            for line in range(3):
                logger.info("task %d line %d", i, line)
            return {"i": i}

        @flow
        def run() -> tuple[str, list[str]]:
            get_run_logger().info("submitting")
            futures = work.map(range(10))  # not waited for: the flow waits before it ends
            return flow_run_id(), [f.task_run_id for f in futures]

        fr, ids = run()
        # no sleep, no polling: everything is in the store already
        runs = {r.id: r for r in task_runs(engine, fr)}
        assert set(runs) == set(ids)
        for n, run_id in enumerate(ids):
            stored = engine.stores.runs.read_task_run(run_id)
            assert stored.state.name == "Completed"
            assert stored.end_time is not None
            assert history_names(engine, run_id) == ["Pending", "Running", "Completed"]
            assert stored.state.result() == {"i": n}
        flow_run = engine.stores.runs.read_flow_run(fr)
        assert flow_run.state.name == "Completed"
        logs = read_logs(fr)
        task_lines = [r for r in logs if r.message.startswith("task ")]
        assert len(task_lines) == 30
        assert {r.task_run_id for r in task_lines} == set(ids)
        for n, run_id in enumerate(ids):
            mine = [r.message for r in task_lines if r.task_run_id == run_id]
            assert mine == [f"task {n} line {line}" for line in range(3)]
        assert logs[-1].message.startswith("Finished in state Completed")

    def test_failed_flow_is_durable_too(self, engine: DirectEngineClient) -> None:
        ids: dict[str, Any] = {}

        @task
        def fails(i: int) -> None:
            get_run_logger().error("about to fail %d", i)
            raise ValueError(f"fail {i}")

        @flow
        def run() -> None:
            ids["flow"] = flow_run_id()
            ids["tasks"] = [f.task_run_id for f in fails.map(range(3))]
            raise RuntimeError("the flow fails while its tasks run")

        with pytest.raises(RuntimeError):
            run()
        for run_id in ids["tasks"]:
            assert engine.stores.runs.read_task_run(run_id).state.type is StateType.FAILED
        messages = [r.message for r in read_logs(ids["flow"])]
        assert sum(m.startswith("about to fail") for m in messages) == 3
        assert engine.stores.runs.read_flow_run(ids["flow"]).state.type is StateType.FAILED
