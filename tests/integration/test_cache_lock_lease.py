"""Cache locks are leases: renewed while their holder computes, taken over once it dies.

Issue 7, item 13: a killed cache-lock holder stalled every other run of that key
for 5 minutes, silently (the waiter was not even recorded). Here the holder is a
real process killed with SIGKILL while it computes, against the session's moto
server; and a live holder computing longer than its lease is not computed twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.engine.client import DirectEngineClient
from runtime.engine.context import current_flow_run
from runtime.models import TaskRunFilter
from runtime.settings import get_settings
from runtime.states import State, StateType
from runtime.stores import Stores
from sdk import flow, task
from tests.conftest import Backend

REPO_ROOT = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent(
    """
    import sys
    import time
    from pathlib import Path

    from sdk import flow, task

    KEY, MARKER = sys.argv[1], Path(sys.argv[2])


    @task(cache_key_fn=lambda context, parameters: KEY)
    def expensive() -> str:
        MARKER.write_text("computing")
        time.sleep(3600)  # killed long before this ends
        return "never"


    @flow
    def holder() -> str:
        return expensive()


    holder()
    """
)


def wait_until(predicate: Any, what: str, limit: float = 60.0) -> Any:
    """Poll ``predicate`` until it returns something truthy (a guard, not a timing test)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def lock_item(stores: Stores, key: str) -> dict[str, Any] | None:
    return stores.db.get(stores.specs.cache.name, {"cache_key": key})


def run_in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:  # reported by the test
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


@pytest.fixture
def short_lease(monkeypatch: pytest.MonkeyPatch) -> Iterator[float]:
    """This process's cache locks last 1 s (renewed every third of a second)."""
    monkeypatch.setenv("STRATOFLOW_CACHE_LOCK_SECONDS", "1")
    get_settings.cache_clear()
    yield 1.0
    monkeypatch.delenv("STRATOFLOW_CACHE_LOCK_SECONDS")
    get_settings.cache_clear()


def test_a_killed_holders_key_is_taken_over_and_the_waiter_says_who_held_it(
    tmp_path: Path,
    aws_backend: Backend,
    prefix: str,
    stores: Stores,
    engine: DirectEngineClient,
) -> None:
    key = f"killed-holder-{prefix}"
    marker = tmp_path / "computing"
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    assert aws_backend.endpoint_url is not None
    env = dict(os.environ)
    env.update(
        {
            "AWS_ENDPOINT_URL": aws_backend.endpoint_url,
            "STRATOFLOW_PREFIX": prefix,
            "STRATOFLOW_CACHE_LOCK_SECONDS": "2",  # the holder's lease; it renews it
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p),
        }
    )
    env.pop("STRATOFLOW_API_URL", None)
    holder = subprocess.Popen(
        [sys.executable, str(script), key, str(marker)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until(lambda: marker.exists() or holder.poll() is not None, "the holder to compute")
        assert holder.poll() is None, holder.stderr.read().decode()[-3000:] if holder.stderr else ""
        item = lock_item(stores, key)
        assert item is not None and item["status"] == "pending"
        holder_run = str(item["owner"])
        first_until = float(item["lock_until"])
        # alive, it keeps its lease: a renewal pushes lock_until forward
        wait_until(
            lambda: float((lock_item(stores, key) or {}).get("lock_until", 0)) > first_until,
            "the holder to renew its lock",
        )
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        if holder.stderr:
            holder.stderr.close()
    assert holder.returncode == -signal.SIGKILL

    computed: list[int] = []

    @task(cache_key_fn=lambda context, parameters: key)
    def expensive() -> str:
        computed.append(1)
        return "computed by the waiter"

    @flow
    def waiter() -> tuple[str, State]:
        ctx = current_flow_run()
        assert ctx is not None
        return ctx.flow_run.id, expensive(return_state=True)

    thread, out = run_in_thread(waiter)
    thread.join(timeout=120)  # a guard: before the fix this waited 300 s
    assert not thread.is_alive(), "the waiter is still waiting for a dead holder's key"
    assert "error" not in out, out.get("error")
    flow_run_id, state = out["value"]
    assert state.type is StateType.COMPLETED and state.result() == "computed by the waiter"
    assert computed == [1]
    assert stores.cache.read(key) is not None  # the waiter's record

    engine.flush()
    (task_run,) = stores.runs.list_task_runs(TaskRunFilter(flow_run_id=flow_run_id)).items
    messages = [
        line.message for line in stores.logs.read(flow_run_id, task_run_id=task_run.id).items
    ]
    assert any(
        f"Waiting for cache key {key}: task run {holder_run} is computing it" in m for m in messages
    ), messages


def test_a_holder_computing_past_its_lease_is_not_computed_twice_and_the_waiter_is_recorded(
    stores: Stores, engine: DirectEngineClient, short_lease: float, prefix: str
) -> None:
    key = f"long-computation-{prefix}"
    release = threading.Event()
    computing = threading.Event()
    computed: list[str] = []

    @task(cache_key_fn=lambda context, parameters: key)
    def expensive(who: str) -> str:
        computed.append(who)
        computing.set()
        assert release.wait(60)
        return f"computed by {who}"

    @flow
    def run(who: str) -> tuple[str, State]:
        ctx = current_flow_run()
        assert ctx is not None
        return ctx.flow_run.id, expensive(who, return_state=True)

    first, first_out = run_in_thread(lambda: run("first"))
    assert computing.wait(60)
    item = lock_item(stores, key)
    assert item is not None and item["status"] == "pending"
    holder_run, first_until = str(item["owner"]), float(item["lock_until"])

    second, second_out = run_in_thread(lambda: run("second"))

    # the waiter is a recorded (Pending) task run whose log names the holder
    def waiter_recorded() -> Any:
        runs = stores.runs.list_task_runs(TaskRunFilter()).items
        return [
            r
            for r in runs
            if r.id != holder_run
            and r.name.startswith("expensive")
            and r.flow_run_id
            and r.state.type is StateType.PENDING
        ]

    (waiting_run,) = wait_until(waiter_recorded, "the waiter to be recorded")
    wait_until(
        lambda: any(
            f"task run {holder_run} is computing it" in line.message
            for line in stores.logs.read(
                str(waiting_run.flow_run_id), task_run_id=waiting_run.id
            ).items
        ),
        "the waiter's log line",
    )
    # the holder computes for longer than its lease: renewals keep the key its own
    wait_until(
        lambda: (
            float((lock_item(stores, key) or {}).get("lock_until", 0))
            > first_until + 2 * short_lease
        ),
        "the holder to keep its lock past several leases",
    )
    item = lock_item(stores, key)
    assert item is not None and item["owner"] == holder_run
    assert computed == ["first"]

    release.set()
    first.join(timeout=60)
    second.join(timeout=60)
    assert not first.is_alive() and not second.is_alive()
    assert "error" not in first_out and "error" not in second_out
    _, first_state = first_out["value"]
    second_flow_run, second_state = second_out["value"]
    assert first_state.name == "Completed"
    assert second_state.name == "Cached" and second_state.result() == "computed by first"
    assert computed == ["first"]
    assert second_flow_run == waiting_run.flow_run_id
