"""Real flows with the engine writing through the HTTP API (``ApiEngineClient``).

The same flow (retries, a cache hit, a tag concurrency limit, run logs, persisted
results inline and in S3, a subflow) runs once per engine client, both writing
to this test's stores: directly (``DirectEngineClient``), or through the local
gateway serving ``handlers.api`` (``ApiEngineClient``). What the stores recorded
is summarised and must be the same either way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.engine import backend
from runtime.engine.backend import use_engine_client
from runtime.engine.client import DirectEngineClient, EngineClient
from runtime.engine.context import current_flow_run
from runtime.engine.http_engine_client import ApiCache, ApiEngineClient
from runtime.models import FlowRunFilter, TaskRunFilter
from runtime.states import StateType
from runtime.stores import Stores
from sdk import flow, get_client, get_run_logger, task
from sdk.client import ApiSyncClient, SyncClient
from sdk.exceptions import ConcurrencySlotAcquisitionError

REPO_ROOT = Path(__file__).resolve().parents[2]


class Gauge:
    """How many callers are inside at once, and the most there ever were."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = self.max = self.entered = 0

    def __enter__(self) -> Gauge:
        with self._lock:
            self.current += 1
            self.entered += 1
            self.max = max(self.max, self.current)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.current -= 1


def make_engine(kind: str, stores: Stores, api_url: str) -> EngineClient:
    if kind == "direct":
        return DirectEngineClient(stores)
    return ApiEngineClient(api_url, record_interval=0.05, log_interval=0.05)


@pytest.fixture(params=["direct", "api"])
def engine(request: pytest.FixtureRequest, stores: Stores, api: str) -> Iterator[EngineClient]:
    """The engine client under test, writing to this test's stores either way."""
    client = make_engine(request.param, stores, api)
    with use_engine_client(client):
        yield client
    client.close()


# ----------------------------------------------------------------------------- the flow


def the_flow() -> tuple[Any, dict[str, int], Gauge]:
    """A fresh flow (fresh counters) that exercises everything the engine writes."""
    calls = {"flaky": 0, "square": 0}
    gauge = Gauge()

    @task(retries=2, retry_delay_seconds=0.01, persist_result=True)
    def flaky(x: int) -> int:
        calls["flaky"] += 1
        if calls["flaky"] == 1:
            raise ValueError("first attempt fails")
        return x + 1

    @task(cache_key_fn=lambda ctx, params: f"square-{params['n']}", persist_result=True)
    def square(n: int) -> int:
        calls["square"] += 1
        return n * n

    @task(tags=["over-api"])
    def limited(i: int) -> int:
        with gauge:
            time.sleep(0.05)
        return i

    @task(persist_result=True)
    def big() -> str:
        return "z" * 40_000

    @flow(name="child-flow", persist_result=True)
    def child(n: int) -> int:
        get_run_logger().info("child got %d", n)
        return n * 10

    @flow(name="over-api", log_prints=True, persist_result=True, result_serializer="json")
    def parent() -> dict[str, Any]:
        ctx = current_flow_run()
        assert ctx is not None
        print("printed in the flow")
        get_run_logger().warning("a warning")
        limits = [f.result() for f in limited.map(range(4))]
        return {
            "id": ctx.flow_run.id,
            "flaky": flaky(1),
            "squares": [square(3), square(3)],
            "limits": sorted(limits),
            "big": len(big()),
            "child": child(4),
        }

    return parent, calls, gauge


def summary(stores: Stores, flow_run_id: str) -> dict[str, Any]:
    """What the stores hold about a run of :func:`the_flow`, without ids and times."""
    runs = stores.runs
    parent = runs.read_flow_run(flow_run_id)
    tasks = runs.list_task_runs(TaskRunFilter(flow_run_id=flow_run_id), limit=1000).items
    by_name = {t.name: t for t in tasks}
    (child,) = runs.list_flow_runs(FlowRunFilter(parent_flow_run_id=flow_run_id)).items
    logs = stores.logs.read(flow_run_id, limit=1000).items
    child_logs = stores.logs.read(child.id, limit=1000).items

    def history(run_id: str) -> list[str]:
        return [s.name for s in runs.read_state_history(run_id)]

    return {
        "parent": (parent.state.name, history(parent.id), parent.run_count),
        "parent_result": parent.state.result(),
        "child": (child.flow_name, child.state.name, history(child.id)),
        "child_result": child.state.result(),
        "tasks": sorted(
            (name, history(t.id), t.run_count)
            for name, t in by_name.items()
            if not name.startswith("limited-")
        ),
        "limited": sorted(
            (t.state.name, t.run_count) for t in tasks if t.name.startswith("limited-")
        ),
        "results": {
            name: by_name[name].state.result()
            for name in ("flaky-0", "square-0", "square-1", "child-flow-0")
        },
        "big_in_s3": (by_name["big-0"].state.details.result.storage_key or "").startswith("s3://"),  # type: ignore[union-attr]
        "cached_from": by_name["square-1"].state.details.cache_key,
        "logs": sorted(
            r.message for r in logs if r.message in ("printed in the flow", "a warning")
        ),
        "warnings": sorted(r.message.splitlines()[0] for r in logs if r.level >= 30),
        "child_logs": [r.message for r in child_logs if r.message.startswith("child got")],
        "finished_logged": any(r.message.startswith("Finished in state Completed") for r in logs),
        # the default policy's keys include the flow run id: only named ones compare
        "cache_keys": sorted(
            r.key if r.key.startswith("square") else "<default>" for r in stores.cache.list()
        ),
        "active_slots": stores.concurrency.read_limit("tag:over-api").active_slots,
    }


EXPECTED_TASKS = [
    ("big-0", ["Pending", "Running", "Completed"], 1),
    ("child-flow-0", ["Pending", "Running", "Completed"], 0),
    ("flaky-0", ["Pending", "Running", "AwaitingRetry", "Retrying", "Completed"], 2),
    ("square-0", ["Pending", "Running", "Completed"], 1),
    ("square-1", ["Pending", "Cached"], 0),
]


def run_the_flow(stores: Stores) -> tuple[dict[str, Any], dict[str, Any], dict[str, int], Gauge]:
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="over-api", concurrency_limit=1)
    parent, calls, gauge = the_flow()
    result = parent()
    return result, summary(stores, result["id"]), calls, gauge


def check(result: dict[str, Any], got: dict[str, Any], calls: dict[str, int], gauge: Gauge) -> None:
    assert result["flaky"] == 2 and result["squares"] == [9, 9] and result["child"] == 40
    assert result["limits"] == [0, 1, 2, 3] and result["big"] == 40_000
    assert calls == {"flaky": 2, "square": 1}  # one retry; the second square is a cache hit
    assert gauge.entered == 4 and gauge.max == 1  # the tag limit held
    assert got["parent"] == ("Completed", ["Pending", "Running", "Completed"], 1)
    assert got["parent_result"] == result
    assert got["child"] == ("child-flow", "Completed", ["Pending", "Running", "Completed"])
    assert got["child_result"] == 40
    # the subflow's task run mirrors the child's states, without runs of its own
    assert [t for t in got["tasks"] if t[0] != "child-flow-0"] == [
        t for t in EXPECTED_TASKS if t[0] != "child-flow-0"
    ]
    (mirror,) = [t for t in got["tasks"] if t[0] == "child-flow-0"]
    assert mirror[1][-1] == "Completed"
    assert got["limited"] == [("Completed", 1)] * 4
    assert got["results"] == {"flaky-0": 2, "square-0": 9, "square-1": 9, "child-flow-0": 40}
    assert got["big_in_s3"] and got["cached_from"] == "square-3"
    assert got["logs"] == ["a warning", "printed in the flow"]
    assert got["warnings"] == ["Encountered exception during execution", "a warning"]
    assert got["child_logs"] == ["child got 4"]
    assert got["finished_logged"]
    # persisted tasks are also cached by the default policy: flaky and big
    assert got["cache_keys"] == ["<default>", "<default>", "square-3"]
    assert got["active_slots"] == 0  # every lease was released


# ----------------------------------------------------------------------------- tests


def test_a_real_flow_is_recorded(engine: EngineClient, stores: Stores) -> None:
    result, got, calls, gauge = run_the_flow(stores)
    check(result, got, calls, gauge)
    # someone waited for the tag's slot, and said so
    limited = stores.runs.list_task_runs(TaskRunFilter(task_key=None, flow_run_id=result["id"]))
    waits = [
        s.name
        for t in limited.items
        if t.name.startswith("limited-")
        for s in stores.runs.read_state_history(t.id)
    ]
    assert "AwaitingConcurrencySlot" in waits


def test_both_paths_record_the_same(stores: Stores, api: str, prefix: str) -> None:
    """The flow through the API and directly (another installation): the same records."""
    other = Stores.connect(f"{prefix}-d", provision_resources=True)
    summaries = []
    for kind, target in (("api", stores), ("direct", other)):
        client = make_engine(kind, target, api)
        with use_engine_client(client):
            result, got, calls, gauge = run_the_flow(target)
        client.close()
        check(result, got, calls, gauge)
        got.pop("parent_result")  # holds the run's own id
        summaries.append(got)
    assert summaries[0] == summaries[1]


def test_a_limit_of_zero_fails_the_task(engine: EngineClient) -> None:
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag="never", concurrency_limit=0)

    @task(tags=["never"])
    def blocked() -> int:
        return 1

    @flow
    def run() -> Any:
        return blocked(return_state=True)

    # a returned run state is the flow state's data (Prefect's return_value_to_state)
    state = run(return_state=True).result(raise_on_failure=False)
    assert state.type is StateType.FAILED
    with pytest.raises(ConcurrencySlotAcquisitionError):
        state.result()


def test_concurrent_runs_of_one_cache_key_compute_once(engine: EngineClient) -> None:
    computed = []
    lock = threading.Lock()

    @task(cache_key_fn=lambda ctx, params: "shared-key", persist_result=True)
    def slow(i: int) -> str:
        with lock:
            computed.append(i)
        time.sleep(0.3)
        return "value"

    @flow
    def run() -> list[str]:
        return [f.result() for f in slow.map(range(4))]

    assert run() == ["value"] * 4
    assert len(computed) == 1


def test_a_failing_cache_owner_hands_the_key_over(stores: Stores, api: str) -> None:
    """ApiCache.wait_for returns None while the key stays unwritten, so waiters retry the lock."""
    client = ApiEngineClient(api)
    cache = client.cache
    assert isinstance(cache, ApiCache)
    cache.probe = 0.2
    assert cache.lock("k", "owner-a", 60)
    assert not cache.lock("k", "owner-b", 60)
    started = time.monotonic()
    assert cache.wait_for("k", timeout=600) is None  # gives up after the probe, not 600 s
    assert time.monotonic() - started < 5
    assert cache.unlock("k", "owner-a")
    assert cache.lock("k", "owner-b", 60)  # the waiter takes over
    client.close()


def test_engine_and_get_client_follow_stratoflow_api_url(
    api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.settings import get_settings

    monkeypatch.setenv("STRATOFLOW_API_URL", api)
    monkeypatch.setattr(backend, "_client", None)
    get_settings.cache_clear()
    try:
        engine = backend.get_engine_client()
        assert isinstance(engine, ApiEngineClient) and engine.api_url == api
        with get_client(sync_client=True) as client:
            assert isinstance(client, ApiSyncClient)
            assert client.read_flow_runs(flow_name="nothing-here") == []
        monkeypatch.setattr(backend, "_client", None)  # no engine yet: from the setting alone
        with get_client(sync_client=True) as client:
            assert isinstance(client, ApiSyncClient)
        engine.close()
    finally:
        get_settings.cache_clear()
    monkeypatch.delenv("STRATOFLOW_API_URL")
    assert not isinstance(backend._client, ApiEngineClient)


def test_get_client_over_the_api_matches_the_stores(engine: EngineClient, stores: Stores) -> None:
    """Prefect's method names give the same answers over the API as over the stores."""

    @task(persist_result=True)
    def one() -> int:
        get_run_logger().info("one")
        return 1

    @flow(name="names-flow")
    def run() -> str:
        one()
        ctx = current_flow_run()
        assert ctx is not None
        return ctx.flow_run.id

    flow_run_id = run()
    answers = []
    with get_client(sync_client=True) as client:
        kind = ApiSyncClient if isinstance(engine, ApiEngineClient) else SyncClient
        assert isinstance(client, kind)
        for c in (client, SyncClient(stores)):
            (task_run,) = c.read_task_runs(flow_run_id=flow_run_id)
            answers.append(
                (
                    c.read_flow_run(flow_run_id).state.name,
                    [r.id for r in c.read_flow_runs(flow_name="names-flow")],
                    [s.name for s in c.read_flow_run_states(flow_run_id)],
                    [s.name for s in c.read_task_run_states(task_run.id)],
                    c.read_task_run(task_run.id).state.result(),
                    [r.message for r in c.read_logs(flow_run_id, task_run_id=task_run.id)],
                )
            )
    assert answers[0] == answers[1]
    assert answers[0][4] == 1 and "one" in answers[0][5]


SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    from sdk import flow, get_run_logger, task
    from runtime.engine.backend import get_engine_client

    @task(retries=1, retry_delay_seconds=0.01, persist_result=True)
    def flaky(state={"n": 0}) -> int:
        state["n"] += 1
        if state["n"] == 1:
            raise RuntimeError("once")
        return 7

    @flow(name="subprocess-over-api", persist_result=True)
    def main() -> int:
        get_run_logger().info("from the subprocess")
        return flaky()

    state = main(return_state=True)
    print("RESULT=" + json.dumps({
        "client": type(get_engine_client()).__name__,
        "state": state.name,
        "value": state.result(),
    }))
    """
)


def test_a_flow_in_a_subprocess_configured_only_by_the_api_url(
    tmp_path: Path, api: str, stores: Stores
) -> None:
    script = tmp_path / "over_api.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    env.pop("STRATOFLOW_PREFIX", None)
    env["STRATOFLOW_API_URL"] = api
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("RESULT=")]
    assert json.loads(line.removeprefix("RESULT=")) == {
        "client": "ApiEngineClient",
        "state": "Completed",
        "value": 7,
    }
    (run,) = stores.runs.list_flow_runs(FlowRunFilter(flow_name="subprocess-over-api")).items
    assert run.state.name == "Completed" and run.state.result() == 7
    (task_run,) = stores.runs.list_task_runs(TaskRunFilter(flow_run_id=run.id)).items
    assert task_run.run_count == 2 and task_run.state.result() == 7
    assert [r.message for r in stores.logs.read(run.id).items if r.message == "from the subprocess"]
