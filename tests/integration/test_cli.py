"""The ``stratoflow`` command line through its real entry points.

Every command runs in a subprocess (``python -m sdk.cli`` or the installed
``stratoflow`` script) against the ``api`` fixture: the local API gateway
serving ``handlers.api`` for this test's stores, which talk HTTP to the
session's moto server. ``--json`` output is parsed; errors are checked for their
exit code (1: the API refused, 2: bad usage), their message on stderr and the
absence of a traceback. ``stratoflow dev`` and ``stratoflow api serve`` are
started as long-running subprocesses and stopped with a signal.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from runtime.models import (
    ConcurrencyLimitCreate,
    DeploymentCreate,
    FlowRunCreate,
    LogRecord,
)
from runtime.states import Running, Scheduled
from sdk.api_client import StratoflowClient

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("stratoflow")
COMMAND_TIMEOUT = 60.0
STARTUP_TIMEOUT = 60.0


# ----------------------------------------------------------------------------- helpers


@dataclass
class Result:
    """One CLI invocation: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout parsed as JSON (fails if anything else was printed)."""
        assert self.code == 0, self
        return json.loads(self.out)

    def ok(self) -> Result:
        assert self.code == 0, self
        assert "Traceback" not in self.err, self.err
        return self

    def failed(self, code: int, *fragments: str) -> Result:
        """Assert a clean failure: exit ``code``, ``Error:`` and each fragment on stderr."""
        assert self.code == code, self
        assert "Traceback" not in self.err + self.out, self
        assert "Error" in self.err, self.err
        for fragment in fragments:
            assert fragment.lower() in self.err.lower(), (fragment, self.err)
        return self


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATOFLOW_")}
    env["COLUMNS"] = "250"  # rich tables: no folded ids
    env.update(extra)
    return env


def run_cli(*args: str, api_url: str | None, script: bool = False) -> Result:
    """``python -m sdk.cli ARGS`` (or the ``stratoflow`` script) with STRATOFLOW_API_URL."""
    env = base_env(**({"STRATOFLOW_API_URL": api_url} if api_url else {}))
    argv = [str(SCRIPT)] if script else [sys.executable, "-m", "sdk.cli"]
    proc = subprocess.run(
        [*argv, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli(api: str) -> Any:
    """Run a CLI command against this test's API."""

    def invoke(*args: str, script: bool = False) -> Result:
        return run_cli(*args, api_url=api, script=script)

    return invoke


@pytest.fixture
def client(api: str) -> Iterator[StratoflowClient]:
    """The HTTP client, to arrange what the commands then read."""
    with StratoflowClient(api) as c:
        yield c


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A long-running CLI subprocess; stdout and stderr are read on threads.

    stdout lines go to a queue (``wait_line``) as they arrive; nothing else reads
    the pipes, so no line is lost between the reader and the final wait.
    """

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sdk.cli", *args],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._err.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def wait_line(self, prefix: str, timeout: float = STARTUP_TIMEOUT) -> str:
        """The first stdout line starting with ``prefix`` (fails on exit or deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line {prefix!r} within {timeout}s: {self.seen}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.finish(timeout=5)
                raise AssertionError(
                    f"exited ({self.proc.returncode}) before {prefix!r}: {self.seen} {self.stderr}"
                )
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def finish(self, timeout: float) -> int:
        """Wait for the exit (bounded), then for the readers to drain both pipes."""
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.seen.append(line)
        return int(code)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        self.proc.send_signal(sig)
        return self.finish(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def parse_exports(line: str) -> dict[str, str]:
    assert line.startswith("export ")
    return dict(part.split("=", 1) for part in line.removeprefix("export ").split())


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


# ----------------------------------------------------------------------------- basics


def test_help_lists_every_command_group() -> None:
    result = run_cli("--help", api_url=None).ok()
    for group in ("flow-run", "deployment", "work-pool", "concurrency-limit", "api", "dev"):
        assert group in result.out


def test_console_script_entry_point(cli: Any, client: StratoflowClient) -> None:
    assert SCRIPT.exists(), "make test installs the `stratoflow` console script"
    run = client.create_flow_run(FlowRunCreate(flow_name="script-flow"))
    listed = cli("flow-run", "ls", "--flow-name", "script-flow", "--json", script=True).json()
    assert [r["id"] for r in listed] == [run.id]


def test_without_an_api_url_is_a_usage_error() -> None:
    run_cli("flow-run", "ls", api_url=None).failed(2, "STRATOFLOW_API_URL", "--api-url")


def test_unreachable_api_is_an_error_not_a_traceback() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    run_cli("work-pool", "ls", "--api-url", dead, api_url=None).failed(1, "cannot reach the API")


def test_unknown_option_is_a_usage_error(cli: Any) -> None:
    result = cli("flow-run", "ls", "--no-such-option")
    assert result.code == 2
    assert "Traceback" not in result.err


# ----------------------------------------------------------------------------- flow-run


def test_flow_run_ls_filters_and_json(cli: Any, client: StratoflowClient) -> None:
    flow = f"etl-{uuid.uuid4().hex[:6]}"
    first = client.create_flow_run(FlowRunCreate(flow_name=flow))
    second = client.create_flow_run(FlowRunCreate(flow_name=flow))
    client.create_flow_run(FlowRunCreate(flow_name="other"))
    client.set_flow_run_state(second.id, Running())

    listed = cli("flow-run", "ls", "--flow-name", flow, "--json").json()
    assert {r["id"] for r in listed} == {first.id, second.id}
    assert all(r["flow_name"] == flow for r in listed)

    running = cli("flow-run", "ls", "--flow-name", flow, "--state", "RUNNING", "--json").json()
    assert [r["id"] for r in running] == [second.id]
    pending = cli("flow-run", "ls", "--flow-name", flow, "--state", "pending", "--json").json()
    assert [r["id"] for r in pending] == [first.id]
    assert len(cli("flow-run", "ls", "--limit", "1", "--json").json()) == 1

    table = cli("flow-run", "ls", "--flow-name", flow).ok()
    assert first.id in table.out and second.id in table.out and "Running" in table.out

    cli("flow-run", "ls", "--state", "Bogus").failed(2, "unknown state 'Bogus'")
    empty = cli("flow-run", "ls", "--flow-name", "no-such-flow").ok()
    assert "No flow runs found" in empty.out


def test_flow_run_inspect(cli: Any, client: StratoflowClient) -> None:
    run = client.create_flow_run(
        FlowRunCreate(flow_name="inspect-me", parameters={"n": 3}, tags=["nightly"])
    )
    doc = cli("flow-run", "inspect", run.id, "--json").json()
    assert doc["id"] == run.id
    assert doc["parameters"] == {"n": 3}
    assert doc["state"]["type"] == "PENDING"

    human = cli("flow-run", "inspect", run.id).ok()
    assert "inspect-me" in human.out and "nightly" in human.out and "Pending" in human.out

    missing = cli("flow-run", "inspect", str(uuid.uuid4()), "--json").failed(1, "not found")
    assert missing.out == ""


def test_flow_run_logs(cli: Any, client: StratoflowClient) -> None:
    run = client.create_flow_run(FlowRunCreate(flow_name="logged"))
    client.write_logs(
        [
            LogRecord(flow_run_id=run.id, level=20, message="extracting"),
            LogRecord(flow_run_id=run.id, level=30, message="slow source"),
            LogRecord(flow_run_id=run.id, level=40, message="retrying load"),
        ]
    )
    out = cli("flow-run", "logs", run.id).ok().out
    assert out.index("extracting") < out.index("slow source") < out.index("retrying load")
    assert "WARNING" in out

    records = cli("flow-run", "logs", run.id, "--level", "WARNING", "--json").json()
    assert [r["message"] for r in records] == ["slow source", "retrying load"]
    assert len(cli("flow-run", "logs", run.id, "--limit", "1", "--json").json()) == 1

    cli("flow-run", "logs", run.id, "--level", "LOUD").failed(2, "unknown log level")
    cli("flow-run", "logs", str(uuid.uuid4())).failed(1, "not found")


def test_flow_run_set_state(cli: Any, client: StratoflowClient) -> None:
    run = client.create_flow_run(FlowRunCreate(flow_name="stateful"))
    cli("flow-run", "set-state", run.id, "Running", "--message", "by hand").ok()
    current = client.read_flow_run(run.id).state
    assert (current.name, current.message) == ("Running", "by hand")

    # Running -> Running is a duplicate transition: rejected, nothing changes
    cli("flow-run", "set-state", run.id, "running").failed(1, "reject", "Running")

    doc = cli("flow-run", "set-state", run.id, "completed", "--json").json()
    assert doc["status"] == "ACCEPT" and doc["state"]["name"] == "Completed"

    # a terminal run only moves with --force
    cli("flow-run", "set-state", run.id, "Failed").failed(1, "Completed")
    cli("flow-run", "set-state", run.id, "Failed", "--force").ok()
    assert client.read_flow_run(run.id).state.name == "Failed"

    cli("flow-run", "set-state", run.id, "Exploded").failed(2, "unknown state")


def test_flow_run_cancel(cli: Any, client: StratoflowClient) -> None:
    waiting = client.create_flow_run(FlowRunCreate(flow_name="cancel-me", state=Scheduled()))
    result = cli("flow-run", "cancel", waiting.id).ok()
    assert "Cancelled" in result.out
    assert client.read_flow_run(waiting.id).state.name == "Cancelled"

    # already final: refused
    cli("flow-run", "cancel", waiting.id).failed(1)

    running = client.create_flow_run(FlowRunCreate(flow_name="cancel-me"))
    client.set_flow_run_state(running.id, Running())
    doc = cli("flow-run", "cancel", running.id, "--json").json()
    assert doc["state"]["type"] == "CANCELLING"


# ----------------------------------------------------------------------------- deployment


def make_deployment(client: StratoflowClient, flow: str, **fields: Any) -> Any:
    return client.create_deployment(
        DeploymentCreate(flow_name=flow, name="nightly", parameters={"n": 1}, **fields)
    )


def test_deployment_ls_and_inspect(cli: Any, client: StratoflowClient) -> None:
    flow = f"dep-{uuid.uuid4().hex[:6]}"
    deployment = make_deployment(client, flow, work_pool_name="pool-a", tags=["etl"])

    listed = cli("deployment", "ls", "--flow-name", flow, "--json").json()
    assert [d["id"] for d in listed] == [deployment.id]
    table = cli("deployment", "ls", "--flow-name", flow).ok()
    assert f"{flow}/nightly" in table.out

    by_id = cli("deployment", "inspect", deployment.id, "--json").json()
    by_name = cli("deployment", "inspect", f"{flow}/nightly", "--json").json()
    assert by_id == by_name
    assert by_id["work_pool_name"] == "pool-a"
    human = cli("deployment", "inspect", f"{flow}/nightly").ok()
    assert "pool-a" in human.out and deployment.id in human.out

    cli("deployment", "inspect", f"{flow}/missing").failed(1, "not found")
    cli("deployment", "inspect", "/nightly").failed(2, "FLOW_NAME/DEPLOYMENT_NAME")


def test_deployment_run_with_params(cli: Any, client: StratoflowClient) -> None:
    flow = f"dep-{uuid.uuid4().hex[:6]}"
    deployment = make_deployment(client, flow, enforce_parameter_schema=False)
    doc = cli(
        "deployment",
        "run",
        f"{flow}/nightly",
        "--param",
        "n=5",
        "--param",
        "label=hello",
        "--param",
        'items=["a", 2]',
        "--json",
    ).json()
    assert doc["deployment_id"] == deployment.id
    assert doc["parameters"] == {"n": 5, "label": "hello", "items": ["a", 2]}
    assert doc["state"]["type"] == "SCHEDULED"
    assert client.read_flow_run(doc["id"]).parameters["n"] == 5

    human = cli("deployment", "run", deployment.id).ok()
    assert "Created flow run" in human.out

    cli("deployment", "run", deployment.id, "--param", "novalue").failed(2, "KEY=VALUE")
    cli("deployment", "run", deployment.id, "--params", "[1]").failed(2, "JSON object")


def test_deployment_run_watch_waits_for_the_final_state(cli: Any, client: StratoflowClient) -> None:
    """A stand-in worker drives the run to Completed; --watch returns then with exit 0."""
    flow = f"dep-{uuid.uuid4().hex[:6]}"
    deployment = make_deployment(client, flow)
    stop = threading.Event()
    driven: list[str] = []

    def worker() -> None:
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while not stop.is_set() and time.monotonic() < deadline:
            runs = client.list_flow_runs(deployment_id=deployment.id).items
            if runs:
                from runtime.states import Completed, Pending

                run_id = runs[0].id
                for state in (Pending(), Running(), Completed()):
                    client.set_flow_run_state(run_id, state, force=True)
                driven.append(run_id)
                return
            stop.wait(0.05)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        doc = cli(
            "deployment", "run", deployment.id, "--watch", "--watch-interval", "0.1", "--json"
        ).json()
    finally:
        stop.set()
        thread.join(timeout=10)
    assert driven == [doc["id"]]
    assert doc["state"]["name"] == "Completed"


def test_deployment_run_watch_timeout(cli: Any, client: StratoflowClient) -> None:
    deployment = make_deployment(client, f"dep-{uuid.uuid4().hex[:6]}")
    cli(
        "deployment",
        "run",
        deployment.id,
        "--watch",
        "--watch-interval",
        "0.1",
        "--watch-timeout",
        "0.3",
    ).failed(1, "still Scheduled")


# ----------------------------------------------------------------------------- work-pool


def test_work_pool_lifecycle(cli: Any, client: StratoflowClient) -> None:
    name = f"pool-{uuid.uuid4().hex[:6]}"
    created = cli(
        "work-pool", "create", name, "--type", "process", "--concurrency-limit", "3", "--json"
    ).json()
    assert created["name"] == name
    assert created["concurrency_limit"] == 3
    assert created["paused"] is False

    cli("work-pool", "create", name).failed(1, "exists")

    assert name in [p["name"] for p in cli("work-pool", "ls", "--json").json()]
    assert name in cli("work-pool", "ls").ok().out
    assert cli("work-pool", "inspect", name, "--json").json()["type"] == "process"
    assert "concurrency limit" in cli("work-pool", "inspect", name).ok().out

    assert cli("work-pool", "pause", name, "--json").json()["paused"] is True
    assert client.read_work_pool(name).paused is True
    assert "Resumed" in cli("work-pool", "resume", name).ok().out
    assert client.read_work_pool(name).paused is False

    cli("work-pool", "delete", name).ok()
    cli("work-pool", "inspect", name).failed(1, "not found")
    cli("work-pool", "delete", name).failed(1, "not found")


def test_work_pool_create_rejects_bad_input(cli: Any) -> None:
    cli("work-pool", "create", "p1", "--concurrency-limit", "-1").failed(2)


# ----------------------------------------------------------------------------- concurrency-limit


def test_concurrency_limit_lifecycle(cli: Any, client: StratoflowClient) -> None:
    tag = f"db-{uuid.uuid4().hex[:6]}"
    created = cli("concurrency-limit", "create", tag, "3", "--json").json()
    assert created["name"] == f"tag:{tag}"
    assert created["limit"] == 3
    assert client.read_concurrency_limit(f"tag:{tag}").limit == 3
    cli("concurrency-limit", "create", tag, "5").failed(1, "exists")

    client.create_concurrency_limit(ConcurrencyLimitCreate(name=f"global-{tag}", limit=1))
    tags = cli("concurrency-limit", "ls", "--json").json()
    names = {lim["name"] for lim in tags}
    assert f"tag:{tag}" in names and f"global-{tag}" not in names
    everything = {lim["name"] for lim in cli("concurrency-limit", "ls", "--all", "--json").json()}
    assert {f"tag:{tag}", f"global-{tag}"} <= everything
    assert tag in cli("concurrency-limit", "ls").ok().out

    lease = client.acquire_lease([f"tag:{tag}"])
    assert lease is not None
    doc = cli("concurrency-limit", "inspect", tag, "--json").json()
    assert (doc["limit"], doc["active_slots"]) == (3, 1)
    assert "active slots" in cli("concurrency-limit", "inspect", tag).ok().out

    cli("concurrency-limit", "delete", tag).ok()
    cli("concurrency-limit", "inspect", tag).failed(1, "not found")
    cli("concurrency-limit", "delete", tag).failed(1, "not found")
    cli("concurrency-limit", "create", tag, "-2").failed(2)
    cli("concurrency-limit", "create", tag, "many").failed(2)


# ----------------------------------------------------------------------------- servers


def test_dev_starts_the_stack_and_stops_cleanly_on_sigint(prefix: str) -> None:
    """`stratoflow dev`: exports printed, API healthy and usable, exit 0 on Ctrl-C."""
    api_port, moto_port = free_port(), free_port()
    env = base_env()
    external = env.get("AWS_ENDPOINT_URL")  # LocalStack mode: dev uses it, starts no moto
    server = Server(
        ["dev", "--port", str(api_port), "--moto-port", str(moto_port), "--prefix", prefix], env
    )
    try:
        exports = parse_exports(server.wait_line("export "))
        api_url = f"http://127.0.0.1:{api_port}"
        assert exports["STRATOFLOW_API_URL"] == api_url
        assert exports["STRATOFLOW_PREFIX"] == prefix
        assert exports["AWS_DEFAULT_REGION"]
        assert exports["AWS_ACCESS_KEY_ID"] and exports["AWS_SECRET_ACCESS_KEY"]
        if external is None:
            assert exports["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{moto_port}"
        else:
            assert exports["AWS_ENDPOINT_URL"] == external

        assert get_json(f"{api_url}/health")["status"] == "ok"

        shell = {**base_env(), **exports}
        argv = [sys.executable, "-m", "sdk.cli"]
        pool = f"pool-{uuid.uuid4().hex[:6]}"
        created = subprocess.run(
            [*argv, "work-pool", "create", pool, "--json"],
            env=shell,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        listed = subprocess.run(
            [*argv, "work-pool", "ls", "--json"],
            env=shell,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert pool in [p["name"] for p in json.loads(listed.stdout)]

        assert server.stop(signal.SIGINT) == 0, server.stderr
    finally:
        server.kill()
    assert "Traceback" not in server.stderr, server.stderr
    assert any("Stopped" in line for line in server.seen), server.seen


def test_dev_port_in_use_is_a_clear_error(prefix: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = Server(["dev", "--port", str(port), "--prefix", prefix], base_env())
        try:
            code = server.finish(timeout=STARTUP_TIMEOUT)
        finally:
            server.kill()
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in server.stderr
    assert "Traceback" not in server.stderr


def test_dev_rejects_a_bad_prefix() -> None:
    result = run_cli("dev", "--prefix", "Not_Valid", api_url=None)
    result.failed(2, "invalid prefix")


def test_api_serve_against_the_configured_endpoint(stores: Any, prefix: str) -> None:
    """`stratoflow api serve` uses AWS_ENDPOINT_URL + STRATOFLOW_PREFIX; SIGTERM exits 0."""
    port = free_port()
    env = base_env(STRATOFLOW_PREFIX=prefix)
    assert env.get("AWS_ENDPOINT_URL")  # the session moto server (or LocalStack)
    server = Server(["api", "serve", "--port", str(port)], env)
    try:
        line = server.wait_line("export STRATOFLOW_API_URL=")
        api_url = line.split("=", 1)[1]
        assert api_url == f"http://127.0.0.1:{port}"
        assert get_json(f"{api_url}/health?deep=true")["status"] == "ok"
        pool = f"pool-{uuid.uuid4().hex[:6]}"
        run_cli("work-pool", "create", pool, api_url=api_url).ok()
        # the pool landed in this test's installation, at the configured endpoint
        with StratoflowClient(api_url) as client:
            assert client.read_work_pool(pool).name == pool
        assert server.stop(signal.SIGTERM) == 0, server.stderr
    finally:
        server.kill()
    assert "Traceback" not in server.stderr


def test_api_serve_refuses_an_unprovisioned_installation(aws_backend: Any) -> None:
    env = base_env(STRATOFLOW_PREFIX=f"sf-{uuid.uuid4().hex[:8]}")
    server = Server(["api", "serve", "--port", str(free_port())], env)
    try:
        code = server.finish(timeout=STARTUP_TIMEOUT)
    finally:
        server.kill()
    assert code == 1
    assert "--provision" in server.stderr
    assert "Traceback" not in server.stderr
