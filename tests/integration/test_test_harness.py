"""``sdk.testing.utilities.stratoflow_test_harness`` (and ``prefect_test_harness``).

The oracle is Prefect 3's docs (how-to-guides/workflows/test-workflows.mdx): the harness
runs flows "against an isolated, temporary backend", restores the previous configuration
on exit, works as a session-scoped pytest fixture (the compat program
``examples/prefect_docs/testing__session_fixture.py`` runs that form under pytest), and
``caplog`` captures run logs inside it. Here the backend is a new moto server on
127.0.0.1 with a new installation prefix.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from runtime.engine import backend
from runtime.engine.client import DirectEngineClient
from sdk import flow, get_client, get_run_logger, task
from sdk.testing.utilities import prefect_test_harness, stratoflow_test_harness


@flow
def my_favorite_flow() -> int:
    return 42


def flow_run_count() -> int:
    with get_client(sync_client=True) as client:
        return len(client.read_flow_runs())


def test_each_harness_is_a_fresh_installation_and_the_previous_backend_returns(
    engine: DirectEngineClient,
) -> None:
    """Runs inside go to the harness's own installation only; on exit the engine client
    that was configured before (here the test's) is back."""
    assert my_favorite_flow() == 42
    assert flow_run_count() == 1
    endpoints = []
    with stratoflow_test_harness():
        inner = backend._client
        assert isinstance(inner, DirectEngineClient) and inner is not engine
        assert flow_run_count() == 0
        assert my_favorite_flow() == 42
        assert flow_run_count() == 1
        endpoints.append(inner.stores.endpoint_url)  # type: ignore[attr-defined]
    assert backend._client is engine
    assert flow_run_count() == 1
    with prefect_test_harness():
        assert flow_run_count() == 0
        endpoints.append(backend._client.stores.endpoint_url)  # type: ignore[union-attr]
    assert endpoints[0] != endpoints[1]  # a moto server per harness


def test_the_payload_key_file_is_private_to_the_harness_and_removed() -> None:
    """Pickled results inside are sealed with the harness's key, named by
    ``STRATOFLOW_PAYLOAD_KEY_FILE`` for child processes; the previous value returns and
    the key file is deleted on exit."""
    before = os.environ.get("STRATOFLOW_PAYLOAD_KEY_FILE")

    @task(persist_result=True)
    def pickled() -> set[int]:
        return {1, 2}

    @flow
    def f() -> set[int]:
        return pickled()

    with stratoflow_test_harness():
        key_file = Path(os.environ["STRATOFLOW_PAYLOAD_KEY_FILE"])
        assert key_file.is_file() and key_file != Path(before or "")
        assert f() == {1, 2}
    assert os.environ.get("STRATOFLOW_PAYLOAD_KEY_FILE") == before
    assert not key_file.exists()


@task
def log_message() -> None:
    get_run_logger().info("Logging from task")


@flow
def parent_flow() -> None:
    get_run_logger().info("Logging from flow")
    log_message()


def test_caplog_captures_run_logs_inside_the_harness(caplog: pytest.LogCaptureFixture) -> None:
    """test-workflows.mdx "Capture log output in tests": ``caplog.messages`` holds the
    flow's and the task's log lines."""
    with stratoflow_test_harness():
        caplog.set_level(logging.INFO)
        parent_flow()
    assert "Logging from flow" in caplog.messages
    assert "Logging from task" in caplog.messages
    assert logging.getLogger("stratoflow").propagate is False


def test_the_previous_backend_returns_even_when_the_block_raises(
    engine: DirectEngineClient,
) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), stratoflow_test_harness():
        raise Boom
    assert backend._client is engine
