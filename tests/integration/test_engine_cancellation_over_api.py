"""``stratoflow flow-run cancel`` on a flow running through the HTTP API ends it Cancelled.

The flow runs in a thread with the engine writing through the local gateway
(``ApiEngineClient``); the cancel is the real command, ``python -m sdk.cli
flow-run cancel ID``, in a subprocess talking to the same API. The test waits
for the engine's log line saying it saw the request before it lets the running
task finish, so nothing depends on timing.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

from runtime.engine.backend import use_engine_client
from runtime.engine.http_engine_client import ApiEngineClient
from runtime.models import FlowRunFilter, TaskRunFilter
from runtime.states import State, StateType
from runtime.stores import Stores
from sdk import flow, task

ROOT = Path(__file__).resolve().parents[2]
WAIT = 60.0


class _Seen(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "no new task runs start" in record.getMessage():
            self.event.set()


def test_flow_run_cancel_command_stops_a_flow_running_over_the_api(
    stores: Stores, api: str
) -> None:
    started, release = threading.Event(), threading.Event()

    @task
    def step(i: int) -> int:
        if i == 0:
            started.set()
            assert release.wait(WAIT)
        return i

    @flow
    def twelve_steps() -> list[int]:
        return [step(i) for i in range(12)]

    seen = _Seen()
    logging.getLogger("stratoflow.flow_runs").addHandler(seen)
    client = ApiEngineClient(api, record_interval=0.05, log_interval=0.05)
    out: list[State] = []
    try:
        with use_engine_client(client):
            thread = threading.Thread(target=lambda: out.append(twelve_steps(return_state=True)))
            thread.start()
            assert started.wait(WAIT)
            (run,) = stores.runs.list_flow_runs(FlowRunFilter()).items
            env = {k: v for k, v in os.environ.items() if not k.startswith("STRATOFLOW_")}
            env["STRATOFLOW_API_URL"] = api
            done = subprocess.run(
                [sys.executable, "-m", "sdk.cli", "flow-run", "cancel", run.id],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=WAIT,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            assert "Cancelling" in done.stdout
            assert seen.event.wait(WAIT), "the engine never noticed the cancellation"
            release.set()
            thread.join(WAIT)
            assert not thread.is_alive()
    finally:
        release.set()
        logging.getLogger("stratoflow.flow_runs").removeHandler(seen)
        client.close()

    assert out[0].type is StateType.CANCELLED
    assert stores.runs.read_flow_run(run.id).state.type is StateType.CANCELLED
    task_runs = stores.runs.list_task_runs(TaskRunFilter(flow_run_id=run.id)).items
    assert sorted((r.name, r.state.type) for r in task_runs) == [
        ("step-0", StateType.COMPLETED),
        ("step-1", StateType.CANCELLED),
    ]
