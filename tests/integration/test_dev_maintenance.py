"""``stratoflow dev`` runs the maintenance sweep in a loop (issue 10, item 7).

A Scheduled run whose start time passed is renamed Late by the dev stack's own loop
(Prefect's MarkLateRuns, src/prefect/server/services/late_runs.py), with nothing
else started: the loop is part of ``dev``. The grace period and the loop interval
are shortened through their settings.
"""

from __future__ import annotations

import signal
from datetime import timedelta

from runtime.models import FlowRunCreate
from runtime.states import Scheduled, utcnow
from sdk.http_client import StratoflowClient
from tests.integration.test_cli import Server, base_env, free_port, parse_exports


def test_dev_marks_late_runs_through_its_maintenance_loop(prefix: str) -> None:
    env = base_env(STRATOFLOW_SWEEP_INTERVAL_SECONDS="0.2", STRATOFLOW_LATE_AFTER_SECONDS="0")
    api_port, moto_port = free_port(), free_port()
    server = Server(
        ["dev", "--port", str(api_port), "--moto-port", str(moto_port), "--prefix", prefix], env
    )
    try:
        exports = parse_exports(server.wait_line("export "))
        assert any("maintenance" in line and "0.2 s" in line for line in server.seen)
        with StratoflowClient(exports["STRATOFLOW_API_URL"]) as client:
            run = client.create_flow_run(
                FlowRunCreate(
                    flow_name="etl", state=Scheduled(scheduled_time=utcnow() - timedelta(minutes=1))
                )
            )
            server.wait_line("stratoflow dev: maintenance sweep: late 1")
            assert client.read_flow_run(run.id).state.name == "Late"
        assert server.stop(signal.SIGINT) == 0, server.stderr
    finally:
        server.kill()
    assert "Traceback" not in server.stderr, server.stderr


def test_a_stopped_dev_stack_stops_its_loop_promptly(prefix: str) -> None:
    """The loop waits on the stop event, not a sleep of an hour: Ctrl-C still ends dev (exit 0)."""
    env = base_env(STRATOFLOW_SWEEP_INTERVAL_SECONDS="3600")
    server = Server(
        ["dev", "--port", str(free_port()), "--moto-port", str(free_port()), "--prefix", prefix],
        env,
    )
    try:
        server.wait_line("export ")
        assert server.stop(signal.SIGINT, timeout=30) == 0, server.stderr
    finally:
        server.kill()
