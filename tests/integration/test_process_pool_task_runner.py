"""``ProcessPoolTaskRunner``: submitted task runs run in ``spawn``ed worker processes.

The oracle is Prefect 3's ``prefect.task_runners.ProcessPoolTaskRunner``
(src/prefect/task_runners.py: "executes tasks in a separate process pool ... with
proper context propagation"; parameters and results travel with cloudpickle; the
spawn start method) and docs/v3/concepts/task-runners.mdx ("use isolated processes
to run tasks in parallel": ``.submit`` then ``wait``). A task run in a worker is
recorded exactly as one on a thread: its states, retries, cache, result, run logs
and concurrency slots. Workers reach the test's moto server (or the API) from the
configuration the flow's process sends them, and every cross-process handshake
goes through files, so nothing depends on timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.engine.backend import use_engine_client
from runtime.engine.client import DirectEngineClient, tag_limit_name
from runtime.engine.exceptions import CancelledRun
from runtime.engine.http_engine_client import ApiEngineClient
from runtime.models import ConcurrencyLimitCreate, FlowRun, FlowRunFilter, TaskRun, TaskRunFilter
from runtime.states import State, StateType
from runtime.stores import Stores
from sdk import allow_failure, flow, get_run_logger, task
from sdk.futures import as_completed, wait
from sdk.task_runners import ProcessPoolTaskRunner

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT = 120.0
"""Upper bound for anything a test waits on (a hang fails instead of blocking forever)."""


def wait_for_file(path: Path, timeout: float = WAIT) -> None:
    """Block until ``path`` exists (another process creates it)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)


def task_runs(engine: DirectEngineClient, flow_run_id: str) -> list[TaskRun]:
    engine.flush()
    runs = engine.stores.runs.list_task_runs(TaskRunFilter(flow_run_id=flow_run_id)).items
    return sorted(runs, key=lambda r: r.name)


def only_flow_run(stores: Stores) -> FlowRun:
    (run,) = stores.runs.list_flow_runs(FlowRunFilter()).items
    return run


@pytest.fixture
def fast_engine(stores: Stores) -> Iterator[DirectEngineClient]:
    client = DirectEngineClient(stores)
    with use_engine_client(client):
        yield client
    client.close()


def test_tasks_run_in_workers_with_their_run_context_logs_and_records(
    fast_engine: DirectEngineClient,
) -> None:
    """Each submitted task runs in another process that knows its flow run and task run.

    Prefect: ``get_run_logger()`` inside a process-pool task logs to its task run
    (the runner forwards worker logs); the future's state is the worker's final state.
    """

    @task(persist_result=True)
    def where(i: int) -> dict[str, object]:
        from runtime.engine.context import current_task_run

        ctx = current_task_run()
        assert ctx is not None
        get_run_logger().info("task %d in pid %d", i, os.getpid())
        return {"pid": os.getpid(), "flow_run_id": ctx.task_run.flow_run_id, "i": i}

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def spread() -> tuple[list[dict[str, object]], list[str]]:
        futures = where.map(range(4))
        done, not_done = wait(futures)
        assert not not_done and len(done) == 4
        states = [f.state.name for f in futures]
        return [f.result() for f in futures], states

    state = spread(return_state=True)
    assert state.type is StateType.COMPLETED
    values, future_states = state.result()
    run = only_flow_run(fast_engine.stores)
    assert future_states == ["Completed"] * 4
    assert [v["i"] for v in values] == [0, 1, 2, 3]
    assert all(v["pid"] != os.getpid() for v in values)
    assert {v["flow_run_id"] for v in values} == {run.id}

    runs = task_runs(fast_engine, run.id)
    assert [(r.name, r.state.type) for r in runs] == [
        (f"where-{i}", StateType.COMPLETED) for i in range(4)
    ]
    assert sorted(r.dynamic_key for r in runs) == ["0", "1", "2", "3"]
    for r in runs:
        history = fast_engine.stores.runs.read_state_history(r.id)
        assert [s.name for s in history] == ["Pending", "Running", "Completed"]
        assert r.state.details.result is not None  # persisted by the worker, readable here
        assert fast_engine.load_result(r.state.details.result)["i"] == int(r.dynamic_key)
    logs = fast_engine.stores.logs.read(run.id, limit=1000).items
    lines = {r.task_run_id: r.message for r in logs if r.message.startswith("task ")}
    assert set(lines) == {r.id for r in runs}
    assert all(f"pid {os.getpid()}" not in m for m in lines.values())


def test_retries_cache_and_upstream_futures_behave_as_with_threads(
    fast_engine: DirectEngineClient, tmp_path: Path
) -> None:
    """Retries, the cache and futures passed as arguments work across processes.

    Prefect (task-runners.mdx, "Submit tasks to a task runner"): a future passed to a
    task is waited for and replaced by its value; a failed upstream fails the
    downstream task unless wrapped in ``allow_failure``; ``as_completed`` yields each
    future once it is final.
    """
    attempts = tmp_path / "attempts"

    @task(retries=2, retry_delay_seconds=0)
    def flaky() -> int:
        with attempts.open("a") as f:
            f.write("x")
        if len(attempts.read_text()) < 2:
            raise ValueError("first attempt fails")
        return 10

    @task(cache_key_fn=lambda ctx, params: f"pp-{params['x']}")
    def cached(x: int) -> int:
        return x + len(attempts.read_text())

    @task
    def boom() -> int:
        raise RuntimeError("upstream exploded")

    @task
    def add(a: int, b: int) -> int:
        return a + b

    @task
    def describe(value: object) -> str:
        return type(value).__name__

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def pipeline() -> dict[str, object]:
        first = flaky.submit()
        total = add.submit(first, 5)  # an upstream future as an argument
        one = cached.submit(1)
        one.wait()
        again = cached.submit(1, wait_for=[one])
        bad = boom.submit()
        downstream = add.submit(bad, 1)
        tolerant = describe.submit(allow_failure(bad))
        finished = [f.result() for f in as_completed([total, one, again])]
        wait([downstream, tolerant])
        return {
            "total": total.result(),
            "cached": (one.result(), again.result(), again.state.name),
            "finished": sorted(finished),
            "downstream": downstream.state.type,
            "downstream_message": downstream.state.message,
            "tolerant": tolerant.result(),
        }

    out = pipeline()
    assert out["total"] == 15
    assert out["cached"] == (3, 3, "Cached")
    assert out["finished"] == [3, 3, 15]
    assert out["downstream"] is StateType.FAILED
    assert "boom-0" in str(out["downstream_message"])
    assert out["tolerant"] == "RuntimeError"

    run = only_flow_run(fast_engine.stores)
    by_name = {r.name: r for r in task_runs(fast_engine, run.id)}
    assert by_name["flaky-0"].run_count == 2
    history = [s.name for s in fast_engine.stores.runs.read_state_history(by_name["flaky-0"].id)]
    assert history == ["Pending", "Running", "AwaitingRetry", "Retrying", "Completed"]
    assert by_name["add-0"].task_inputs == {"a": [by_name["flaky-0"].id]}
    assert by_name["cached-1"].state.name == "Cached"
    assert by_name["cached-1"].task_inputs == {"wait_for": [by_name["cached-0"].id]}
    assert by_name["add-1"].state.type is StateType.FAILED


def test_a_tag_limit_holds_across_worker_processes(
    fast_engine: DirectEngineClient, tmp_path: Path
) -> None:
    """A tag concurrency limit of 1 lets one worker at a time run its tasks.

    Prefect: task-run concurrency limits apply wherever the task runs (the slot is
    taken by the task engine, here in the worker). Each task writes ``start`` and
    ``end`` to a shared file: with the limit they never interleave.
    """
    fast_engine.stores.concurrency.create_limit(
        ConcurrencyLimitCreate(name=tag_limit_name("pp-db"), limit=1)
    )
    fast_engine.invalidate_limits()
    journal = tmp_path / "journal"
    journal.touch()

    @task(tags=["pp-db"])
    def guarded(i: int) -> int:
        with journal.open("a") as f:
            f.write(f"start {i}\n")
        time.sleep(0.2)  # room for another worker to start if the limit did not hold
        with journal.open("a") as f:
            f.write(f"end {i}\n")
        return i

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def limited() -> list[int]:
        return guarded.map(range(4)).result()

    assert limited() == [0, 1, 2, 3]
    lines = journal.read_text().split()
    events = list(zip(lines[0::2], lines[1::2], strict=True))
    assert len(events) == 8
    for started, ended in zip(events[0::2], events[1::2], strict=True):
        assert started[0] == "start" and ended == ("end", started[1])
    limit = fast_engine.stores.concurrency.read_limit(tag_limit_name("pp-db"))
    assert limit.active_slots == 0


def test_a_killed_worker_crashes_its_task_run_and_the_flow_goes_on(
    fast_engine: DirectEngineClient,
) -> None:
    """SIGKILL of the worker running a task: the task run ends Crashed, nothing hangs.

    Prefect: a worker dying breaks the process pool (``BrokenProcessPool``) and the
    task run crashes; here later submits get a new pool, so the flow carries on.
    """

    @task
    def doomed() -> int:
        os.kill(os.getpid(), signal.SIGKILL)
        return 0

    @task
    def fine() -> int:
        return 7

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def survives() -> tuple[State, int]:
        lost = doomed.submit()
        lost.wait()
        return lost.state, fine.submit().result()

    lost_state, value = survives()
    assert value == 7
    assert lost_state.type is StateType.CRASHED
    assert "worker process" in (lost_state.message or "")
    run = only_flow_run(fast_engine.stores)
    assert run.state.type is StateType.COMPLETED
    by_name = {r.name: r for r in task_runs(fast_engine, run.id)}
    assert by_name["doomed-0"].state.type is StateType.CRASHED
    assert by_name["fine-0"].state.type is StateType.COMPLETED


def test_cancelling_the_flow_run_cancels_task_runs_not_yet_sent(
    fast_engine: DirectEngineClient, tmp_path: Path
) -> None:
    """A flow run cancelled while a worker runs a task: later task runs end Cancelled.

    As with threads (tests/functional/test_engine_cancellation.py) and Prefect: the
    running task run finishes, task runs not started are cancelled, the flow run ends
    Cancelled.
    """
    started, release = tmp_path / "started", tmp_path / "release"

    @task
    def step(i: int) -> int:
        if i == 0:
            started.touch()
            deadline = time.monotonic() + WAIT
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        return i

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def steps() -> list[int]:
        return step.map(range(3)).result()

    out: list[State] = []
    thread = threading.Thread(target=lambda: out.append(steps(return_state=True)))
    thread.start()
    try:
        wait_for_file(started)
        run = only_flow_run(fast_engine.stores)
        result = fast_engine.stores.runs.cancel_flow_run(run.id)
        assert result.accepted and result.state.type is StateType.CANCELLING
        # the engine notices within its poll interval; wait until it has
        deadline = time.monotonic() + WAIT
        while not _engine_saw_cancel(fast_engine, run.id) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        release.touch()
        thread.join(WAIT)
    assert not thread.is_alive()
    (state,) = out
    assert state.type is StateType.CANCELLED
    with pytest.raises(CancelledRun):
        state.result()
    runs = task_runs(fast_engine, run.id)
    assert [(r.name, r.state.type) for r in runs] == [
        ("step-0", StateType.COMPLETED),
        ("step-1", StateType.CANCELLED),
        ("step-2", StateType.CANCELLED),
    ]
    assert runs[1].run_count == 0 and runs[2].run_count == 0


def _engine_saw_cancel(engine: DirectEngineClient, flow_run_id: str) -> bool:
    engine.flush()
    logs = engine.stores.logs.read(flow_run_id, limit=1000).items
    return any("no new task runs start" in r.message for r in logs)


def test_a_flow_timeout_ends_its_worker_task_runs_and_does_not_hang(
    fast_engine: DirectEngineClient, tmp_path: Path
) -> None:
    """The flow run times out while a worker runs a task: the task run ends Cancelled.

    As with threads (the task engine's ``abandon``): the flow run is TimedOut, the
    task run still in flight is Cancelled, and its slot is given back at once; the
    worker process is terminated rather than left running.
    """
    fast_engine.stores.concurrency.create_limit(
        ConcurrencyLimitCreate(name=tag_limit_name("pp-slow"), limit=1)
    )
    fast_engine.invalidate_limits()
    started = tmp_path / "started"

    @task(tags=["pp-slow"])
    def forever() -> None:
        started.touch()
        time.sleep(3600)

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1), timeout_seconds=1)
    def too_slow() -> None:
        future = forever.submit()
        wait_for_file(started)
        future.wait()

    state = too_slow(return_state=True)
    assert state.type is StateType.FAILED and state.name == "TimedOut"
    run = only_flow_run(fast_engine.stores)
    (task_run,) = task_runs(fast_engine, run.id)
    assert task_run.state.type is StateType.CANCELLED
    assert "timed out" in (task_run.state.message or "")
    limit = fast_engine.stores.concurrency.read_limit(tag_limit_name("pp-slow"))
    assert limit.active_slots == 0


def test_unpicklable_arguments_fail_the_task_run_with_a_clear_error(
    fast_engine: DirectEngineClient,
) -> None:
    """A parameter that cannot be pickled cannot reach a worker: Failed, not retried."""

    @task(retries=3)
    def uses(lock: object) -> str:
        return "never"

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def sends_a_lock() -> tuple[StateType, str]:
        future = uses.submit(threading.Lock())
        future.wait()
        return future.state.type, future.state.message or ""

    # (returned as data: a returned failed state would fail the flow, as in Prefect)
    state_type, message = sends_a_lock()
    assert state_type is StateType.FAILED
    assert "cannot be pickled" in message
    run = only_flow_run(fast_engine.stores)
    (task_run,) = task_runs(fast_engine, run.id)
    assert task_run.state.type is StateType.FAILED
    assert task_run.run_count == 0


def test_workers_write_through_the_http_api_when_the_flow_does(stores: Stores, api: str) -> None:
    """Over the API the workers use the same API URL: records, results and logs arrive."""

    @task(persist_result=True, result_serializer="json")
    def double(x: int) -> int:
        get_run_logger().info("doubling %d", x)
        return x * 2

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def doubles() -> list[int]:
        return double.map([1, 2, 3]).result()

    client = ApiEngineClient(api)
    try:
        with use_engine_client(client):
            assert doubles() == [2, 4, 6]
    finally:
        client.close()
    run = only_flow_run(stores)
    runs = stores.runs.list_task_runs(TaskRunFilter(flow_run_id=run.id)).items
    assert sorted((r.name, r.state.type) for r in runs) == [
        (f"double-{i}", StateType.COMPLETED) for i in range(3)
    ]
    assert sorted(stores.results.load(r.state.details.result) for r in runs) == [2, 4, 6]  # type: ignore[arg-type]
    logs = stores.logs.read(run.id, limit=1000).items
    assert sorted(r.message for r in logs if r.message.startswith("doubling")) == [
        "doubling 1",
        "doubling 2",
        "doubling 3",
    ]


def test_the_docs_program_runs_on_the_embedded_default() -> None:
    """The task-runners page's process-pool program, run as a script on the embedded default.

    Its tasks are defined in ``__main__`` (pickled by value with cloudpickle) and the
    workers reach the script's own in-process moto server through its endpoint.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env = {k: v for k, v in env.items() if k not in ("STRATOFLOW_PREFIX", "STRATOFLOW_API_URL")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    program = REPO_ROOT / "examples/prefect_docs/task_runners__process_pool_compute.py"
    done = subprocess.run(
        [sys.executable, str(program)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for line in program.read_text().splitlines():
        if line.startswith("# expect: "):
            assert line.removeprefix("# expect: ") in done.stdout


def test_tags_blocks_reach_task_runs_in_workers(fast_engine: DirectEngineClient) -> None:
    """A ``tags("etl")`` block around a submit tags the worker's task run as on threads.

    Prefect: ``prefect.tags`` applies to every run created inside the block
    (src/prefect/context.py ``tags``); the process-pool runner propagates the
    context to its workers (src/prefect/task_runners.py, "proper context propagation").
    """
    from sdk import tags

    @task
    def tagged() -> list[str]:
        from runtime.engine.context import current_task_run

        ctx = current_task_run()
        assert ctx is not None
        return sorted(ctx.task_run.tags)

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def with_tags() -> list[str]:
        with tags("etl"):
            future = tagged.submit()
        return future.result()

    seen = with_tags()
    assert seen == ["etl"]
    (run,) = task_runs(fast_engine, only_flow_run(fast_engine.stores).id)
    assert run.tags == ["etl"]
