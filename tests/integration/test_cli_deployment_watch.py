"""``stratoflow deployment run --watch``: states and log lines streamed, exit code from the end.

Prefect's ``prefect deployment run --watch`` (docs/v3/api-ref/cli/deployment.mdx) waits
for the run and exits non-zero unless it completed. Until workers are merged on this
branch, a thread stands in for the worker: it drives the run through the API and writes
its log lines, as a worker's engine would. Stored text (log lines, state messages) is
printed escaped: no raw escape sequence or bidirectional override reaches the terminal.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from runtime.backoff import Backoff
from runtime.models import LogRecord, WorkPoolCreate
from runtime.states import Cancelled, Completed, Crashed, Failed, Pending, Running, State
from sdk.http_client import StratoflowClient
from tests.integration.test_cli import COMMAND_TIMEOUT, Result, make_deployment, run_cli

POLL = Backoff(base=0.02, cap=0.2, jitter=False)


@pytest.fixture
def cli(api: str) -> Any:
    """Run a CLI command against this test's API."""

    def invoke(*args: str) -> Result:
        return run_cli(*args, api_url=api)

    return invoke


@pytest.fixture
def client(api: str) -> Iterator[StratoflowClient]:
    """The HTTP client, to arrange what the commands then read."""
    with StratoflowClient(api) as c:
        yield c


HOSTILE = "\x1b[2J\x1b[31mred\u202eevil"


def pooled_deployment(client: StratoflowClient) -> Any:
    """A deployment on a pool of its own (a deployment runs only on an existing pool)."""
    pool = f"pool-{uuid.uuid4().hex[:6]}"
    client.create_work_pool(WorkPoolCreate(name=pool))
    return make_deployment(client, f"dep-{uuid.uuid4().hex[:6]}", work_pool_name=pool)


def stand_in_worker(client: StratoflowClient, deployment_id: str, final: State) -> threading.Thread:
    """Waits for the deployment's run, writes two log lines, then ends it in ``final``."""

    def work() -> None:
        deadline = time.monotonic() + COMMAND_TIMEOUT
        attempt = 0
        while time.monotonic() < deadline:
            runs = client.list_flow_runs(deployment_id=deployment_id).items
            if runs:
                break
            POLL.sleep(attempt)
            attempt += 1
        else:
            return
        run_id = runs[0].id
        for state in (Pending(), Running()):
            client.set_flow_run_state(run_id, state, force=True)
        client.write_logs(
            [
                LogRecord(flow_run_id=run_id, message="extracting rows", name="etl"),
                LogRecord(flow_run_id=run_id, message=f"payload {HOSTILE}", name="etl", level=30),
            ]
        )
        client.set_flow_run_state(run_id, final, force=True)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("final", "code"),
    [
        (Completed(), 0),
        (Failed(message=f"boom {HOSTILE}"), 1),
        (Crashed(message="No heartbeat from the run's worker"), 1),
        (Cancelled(message="Cancelled on request."), 1),
    ],
    ids=["completed", "failed", "crashed", "cancelled"],
)
def test_watch_streams_states_and_logs_and_exits_by_the_final_state(
    cli: Any, client: StratoflowClient, final: State, code: int
) -> None:
    deployment = pooled_deployment(client)
    worker = stand_in_worker(client, deployment.id, final)
    try:
        result = cli("deployment", "run", deployment.id, "--watch", "--watch-interval", "0.2")
    finally:
        worker.join(timeout=COMMAND_TIMEOUT)
    assert result.code == code, result
    assert "Traceback" not in result.err + result.out
    out = result.out
    assert "Running" in out
    assert final.name in out
    assert "extracting rows" in out
    # stored text is shown escaped, never raw
    assert "payload \\x1b[2J\\x1b[31mred\\u202eevil" in out
    assert "\x1b" not in out and "\u202e" not in out
    # each log line once, in time order
    assert out.count("extracting rows") == 1
    assert out.index("extracting rows") < out.index("payload")


def test_timeout_alias_gives_up_with_exit_1(cli: Any, client: StratoflowClient) -> None:
    """``--timeout`` (alias of ``--watch-timeout``): exit 1 naming the state; the run goes on."""
    deployment = pooled_deployment(client)
    result = cli(
        "deployment", "run", deployment.id, "--watch", "--watch-interval", "0.1", "--timeout", "0.5"
    )
    result.failed(1, "still")
    [run] = client.list_flow_runs(deployment_id=deployment.id).items
    assert not run.state.is_final()
