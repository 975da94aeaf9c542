"""The parts of ``ProcessPoolTaskRunner`` that need no process: options, pickling, keys.

Prefect's ``ProcessPoolTaskRunner(max_workers=None)`` (src/prefect/task_runners.py)
defaults ``max_workers`` to the CPU count and is accepted by ``@flow(task_runner=...)``
as an instance or a class, like ``ThreadPoolTaskRunner``.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
from dataclasses import dataclass
from typing import Any

import cloudpickle
import pytest

from runtime.engine.futures import PrefectFuture
from runtime.engine.process_pool import ProcessTaskExecutor, dumps_job
from runtime.engine.process_worker import Job, WorkerFlowRunContext
from runtime.models import FlowRun
from runtime.states import Completed, Failed, State
from sdk import flow
from sdk.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner


def test_flows_accept_the_process_pool_runner_as_an_instance_or_a_class() -> None:
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=3))
    def by_instance() -> None: ...

    @flow(task_runner=ProcessPoolTaskRunner)
    def by_class() -> None: ...

    assert isinstance(by_instance.task_runner, ProcessPoolTaskRunner)
    assert by_instance.task_runner.max_workers == 3
    assert isinstance(by_class.task_runner, ProcessPoolTaskRunner)
    assert isinstance(by_class.task_runner, TaskRunner)
    assert not isinstance(by_class.task_runner, ThreadPoolTaskRunner)
    assert repr(by_instance.task_runner) == "ProcessPoolTaskRunner(max_workers=3)"


@pytest.mark.parametrize("bad", [0, -1, True])
def test_max_workers_must_be_a_positive_count(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_workers must be >= 1"):
        ProcessPoolTaskRunner(max_workers=bad)


def test_the_executor_has_one_sending_thread_per_worker_process() -> None:
    executor = ProcessPoolTaskRunner().executor()
    try:
        assert isinstance(executor, ProcessTaskExecutor)
        assert executor.processes == (os.cpu_count() or 1)
    finally:
        executor.shutdown()
    two = ProcessPoolTaskRunner(max_workers=2).executor()
    try:
        assert isinstance(two, ProcessTaskExecutor) and two.processes == 2
    finally:
        two.shutdown()


@dataclass
class Holder:
    futures: dict[str, Any]


def _done(task_run_id: str, state: State) -> PrefectFuture[Any]:
    inner: cf.Future[State] = cf.Future()
    inner.set_result(state)
    return PrefectFuture(task_run_id, inner, name=f"run-{task_run_id}")


def test_futures_anywhere_in_a_job_arrive_as_final_futures() -> None:
    """Upstream futures, even inside objects, reach the worker as final ones (state kept)."""
    ok = _done("a", Completed().with_data(41))
    bad = _done("b", Failed(message="no").with_data(ValueError("no")))
    job = Job(
        task=None,
        parameters={"x": ok, "holder": Holder({"bad": bad}), "plain": [1, 2]},
        wait_for=[ok],
        task_run_id="t",
        dynamic_key="0",
        flow_run=FlowRun(id="fr", flow_name="f", name="n"),
        flow_parameters={},
        flow=cloudpickle.dumps(None),
        log_prints=False,
    )
    copy: Job = cloudpickle.loads(dumps_job(job))
    x = copy.parameters["x"]
    assert isinstance(x, PrefectFuture) and x.done()
    assert (x.task_run_id, x.name, x.result()) == ("a", "run-a", 41)
    inner_bad = copy.parameters["holder"].futures["bad"]
    assert inner_bad.state.type is Failed().type and inner_bad.state.message == "no"
    assert isinstance(inner_bad.result(raise_on_failure=False), ValueError)
    assert copy.parameters["plain"] == [1, 2]
    assert copy.wait_for is not None and copy.wait_for[0].result() == 41


def test_a_future_still_running_is_waited_for_before_it_is_sent() -> None:
    inner: cf.Future[State] = cf.Future()
    future: PrefectFuture[Any] = PrefectFuture("late", inner)
    threading.Timer(0.05, lambda: inner.set_result(Completed().with_data("done"))).start()
    sent = cloudpickle.loads(
        dumps_job(
            Job(
                None,
                {"f": future},
                None,
                "t",
                "0",
                FlowRun(id="fr", flow_name="f", name="n"),
                {},
                cloudpickle.dumps(None),
                False,
            )
        )
    )
    assert sent.parameters["f"].result() == "done"


def test_worker_dynamic_keys_are_the_sent_runs_then_unique_ones() -> None:
    """The sent task run keeps the key its flow chose; runs it submits get derived keys."""
    ctx = WorkerFlowRunContext(
        flow=None,  # type: ignore[arg-type]
        flow_run=FlowRun(id="fr", flow_name="f", name="n"),
        parameters={},
        client=None,  # type: ignore[arg-type]
        executor=None,  # type: ignore[arg-type]
        own_task_key="square-abc",
        own_dynamic_key="7",
        own_task_run_id="run1",
    )
    assert ctx.next_dynamic_key("square-abc") == "7"
    assert ctx.next_dynamic_key("square-abc") == "run1-0"
    assert ctx.next_dynamic_key("other-def") == "run1-0"
    assert ctx.next_dynamic_key("other-def") == "run1-1"
