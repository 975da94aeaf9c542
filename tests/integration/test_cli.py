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
    WorkPoolCreate,
)
from runtime.states import Completed, Running, Scheduled
from sdk.http_client import StratoflowClient

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
    result = run_cli("work-pool", "ls", "--api-url", dead, api_url=None)
    result.failed(1, "cannot reach the Stratoflow API", dead, "stratoflow dev")
    assert len(result.err.strip().splitlines()) == 1, result.err


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
    if "work_pool_name" not in fields:  # a deployment runs on a work pool (Phase 5)
        if "cli-pool" not in {p.name for p in client.paginate(client.list_work_pools)}:
            client.create_work_pool(WorkPoolCreate(name="cli-pool"))
        fields["work_pool_name"] = "cli-pool"
    return client.create_deployment(
        DeploymentCreate(flow_name=flow, name="nightly", parameters={"n": 1}, **fields)
    )


def test_deployment_ls_and_inspect(cli: Any, client: StratoflowClient) -> None:
    flow = f"dep-{uuid.uuid4().hex[:6]}"
    if "pool-a" not in {p.name for p in client.paginate(client.list_work_pools)}:
        cli("work-pool", "create", "pool-a").ok()
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
    assert doc["state"]["type"] == "PENDING"  # due now: queued on its pool (Phase 5)
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
    ).failed(1, "still Pending")  # queued on its pool (Phase 5), nobody polls it


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
    # an existing tag's limit is resized, as `prefect concurrency-limit create` does
    assert cli("concurrency-limit", "create", tag, "3", "--json").json()["limit"] == 3

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
        if external is None:
            assert exports["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{moto_port}"
            # moto's fake credentials are no secret: printed so other shells can copy them
            assert exports["AWS_ACCESS_KEY_ID"] == exports["AWS_SECRET_ACCESS_KEY"] == "testing"
        else:
            assert exports["AWS_ENDPOINT_URL"] == external
            # credentials from this shell are named, never printed
            assert "AWS_SECRET_ACCESS_KEY" not in exports

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
        server = Server(
            ["dev", "--port", str(port), "--moto-port", str(free_port()), "--prefix", prefix],
            base_env(),
        )
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


# ----------------------------------------------------------------------------- issue 7


def read_until(server: Server, prefix: str) -> list[str]:
    """Every stdout line up to and including the first starting with ``prefix``."""
    start = len(server.seen)
    server.wait_line(prefix)
    return server.seen[start:]


def test_dev_never_prints_secrets_from_the_environment(aws_backend: Any, prefix: str) -> None:
    """Item 2: credentials and the API token in this shell are named, not printed."""
    secret = f"secret-{uuid.uuid4().hex}"
    token = f"token-{uuid.uuid4().hex}"
    assert aws_backend.endpoint_url  # dev reuses the given endpoint, as with LocalStack
    env = base_env(
        AWS_ENDPOINT_URL=aws_backend.endpoint_url,
        AWS_ACCESS_KEY_ID="AKIAEXAMPLEKEYID",
        AWS_SECRET_ACCESS_KEY=secret,
        STRATOFLOW_API_TOKEN=token,
    )
    api_port = free_port()
    server = Server(["dev", "--port", str(api_port), "--prefix", prefix], env)
    try:
        lines = read_until(server, "Press Ctrl-C")
        exports = parse_exports(next(line for line in lines if line.startswith("export ")))
        assert exports["AWS_ENDPOINT_URL"] == aws_backend.endpoint_url
        assert exports["STRATOFLOW_API_URL"] == f"http://127.0.0.1:{api_port}"
        assert not {"AWS_SECRET_ACCESS_KEY", "STRATOFLOW_API_TOKEN"} & exports.keys()
        text = "\n".join(lines)
        assert "AWS_SECRET_ACCESS_KEY" in text and "STRATOFLOW_API_TOKEN" in text

        # the stack works for a shell that has the same credentials and token
        shell = {**env, **exports}
        listed = subprocess.run(
            [sys.executable, "-m", "sdk.cli", "work-pool", "ls", "--json"],
            env=shell,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert server.stop(signal.SIGTERM) == 0, server.stderr
    finally:
        server.kill()
    everything = "\n".join(server.seen) + server.stderr
    assert secret not in everything
    assert token not in everything


def test_dev_with_its_own_moto_never_prints_the_token(prefix: str) -> None:
    token = f"token-{uuid.uuid4().hex}"
    env = base_env(STRATOFLOW_API_TOKEN=token)
    env.pop("AWS_ENDPOINT_URL", None)
    args = ["dev", "--port", str(free_port()), "--moto-port", str(free_port()), "--prefix", prefix]
    server = Server(args, env)
    try:
        lines = read_until(server, "Press Ctrl-C")
        assert server.stop(signal.SIGTERM) == 0, server.stderr
    finally:
        server.kill()
    assert token not in "\n".join(server.seen) + server.stderr
    assert any("STRATOFLOW_API_TOKEN" in line for line in lines)


def test_cli_output_escapes_control_characters_and_markup(
    cli: Any, client: StratoflowClient
) -> None:
    """Item 3: stored text reaches the terminal escaped, never interpreted."""
    markup = "[bold red]boom[/bold red]"
    run = client.create_flow_run(FlowRunCreate(flow_name="escape-me", name=markup))
    nasty = "title\x1b]0;pwned\x07 \x1b[31mred\x1b[0m \u202eevil\x00end\rover"
    client.write_logs([LogRecord(flow_run_id=run.id, level=20, message=nasty)])

    for args in (
        ("flow-run", "inspect", run.id),
        ("flow-run", "ls", "--flow-name", "escape-me"),
        ("flow-run", "logs", run.id),
        ("flow-run", "logs", run.id, "--json"),
    ):
        out = cli(*args).ok().out
        for raw in ("\x1b", "\x07", "\x00", "\u202e", "\r"):
            assert raw not in out, (args, raw, out)
    human_logs = cli("flow-run", "logs", run.id).ok().out
    assert "\\x1b[31mred" in human_logs and "\\u202eevil" in human_logs
    assert "\\x00end\\x0dover" in human_logs
    # rich markup in a stored name is shown literally, not applied
    assert markup in cli("flow-run", "ls", "--flow-name", "escape-me").ok().out
    assert markup in cli("flow-run", "inspect", run.id).ok().out


def test_cli_errors_and_warnings_are_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    """Item 3: an error message that echoes stored or given text cannot drive the terminal."""
    from sdk.cli._output import error, warn

    error("flow run '\x1b[2J\u202egone' not found")
    warn("pool \x07[bold]x[/bold]")
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\u202e" not in err and "\x07" not in err
    assert "\\x1b[2J\\u202egone" in err and "\\x07[bold]x[/bold]" in err


def test_api_serve_on_a_public_address_requires_a_token(aws_backend: Any) -> None:
    """Item 4: `api serve --host 0.0.0.0` without a token refuses, before binding anything."""
    env = base_env(STRATOFLOW_PREFIX=f"sf-{uuid.uuid4().hex[:8]}")
    env.pop("STRATOFLOW_API_TOKEN", None)
    server = Server(["api", "serve", "--host", "0.0.0.0", "--port", str(free_port())], env)
    try:
        code = server.finish(timeout=STARTUP_TIMEOUT)
    finally:
        server.kill()
    assert code == 2, (server.seen, server.stderr)
    assert "token" in server.stderr and "--insecure" in server.stderr
    assert "Traceback" not in server.stderr

    # --insecure passes the check (then stops at the unprovisioned installation, unbound)
    server = Server(
        ["api", "serve", "--host", "0.0.0.0", "--port", str(free_port()), "--insecure"], env
    )
    try:
        code = server.finish(timeout=STARTUP_TIMEOUT)
    finally:
        server.kill()
    assert code == 1
    assert "without a token" in server.stderr and "--provision" in server.stderr


def test_is_loopback() -> None:
    from sdk.cli.api import is_loopback

    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "example.com"]))


def test_deployment_run_rejects_broken_json_params(cli: Any, client: StratoflowClient) -> None:
    """Item 14: a VALUE starting with [ { or " must be JSON; NaN/Infinity are refused."""
    flow = f"dep-{uuid.uuid4().hex[:6]}"
    deployment = make_deployment(client, flow, enforce_parameter_schema=False)
    for bad in ("x=[1,", "x={", 'x="open', "x=NaN", "x=1e999999", "x=[Infinity]"):
        cli("deployment", "run", deployment.id, "--param", bad).failed(2, "--param x")
    cli("deployment", "run", deployment.id, "--params", '{"x": NaN}').failed(2, "--params")
    deep = "[" * 20_000 + "]" * 20_000
    cli("deployment", "run", deployment.id, "--param", f"x={deep}").failed(2, "--param x")
    assert client.list_flow_runs(deployment_id=deployment.id).items == []  # nothing sent

    doc = cli(
        "deployment",
        "run",
        deployment.id,
        "--param",
        'q="[1,"',
        "--param",
        "s=plain text",
        "--param",
        "n=1.5",
        "--json",
    ).json()
    assert doc["parameters"] == {"n": 1.5, "q": "[1,", "s": "plain text"}


def test_dev_default_ports_are_fixed() -> None:
    """Item 16: the API on 4200 and moto on 4201 unless told otherwise (exports stay valid)."""
    import typer.main

    from sdk.cli import app

    command = typer.main.get_command(app).commands["dev"]  # type: ignore[attr-defined]
    defaults = {param.name: param.default for param in command.params}
    assert (defaults["port"], defaults["moto_port"]) == (4200, 4201)
    assert defaults["state_dir"] is None  # ephemeral by default


def test_dev_busy_moto_port_is_a_clear_error(prefix: str) -> None:
    env = base_env()
    env.pop("AWS_ENDPOINT_URL", None)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = Server(
            ["dev", "--port", str(free_port()), "--moto-port", str(port), "--prefix", prefix], env
        )
        try:
            code = server.finish(timeout=STARTUP_TIMEOUT)
        finally:
            server.kill()
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port} for the moto server" in server.stderr
    assert "Traceback" not in server.stderr


def start_dev(state_dir: Path, prefix: str, api_port: int, moto_port: int) -> Server:
    env = base_env()
    env.pop("AWS_ENDPOINT_URL", None)
    args = ["dev", "--port", str(api_port), "--moto-port", str(moto_port), "--prefix", prefix]
    return Server([*args, "--state-dir", str(state_dir)], env)


def test_dev_state_dir_keeps_the_stack_across_restarts(tmp_path: Path, prefix: str) -> None:
    """Item 16: runs, logs, limits and results written before SIGTERM are there after restart."""
    state_dir = tmp_path / "state"
    api_port, moto_port = free_port(), free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    server = start_dev(state_dir, prefix, api_port, moto_port)
    try:
        read_until(server, "Press Ctrl-C")
        with StratoflowClient(api_url) as client:
            run = client.create_flow_run(FlowRunCreate(flow_name="persisted", parameters={"n": 7}))
            client.set_flow_run_state(run.id, Running())
            client.write_logs([LogRecord(flow_run_id=run.id, message="before restart")])
            client.create_concurrency_limit(ConcurrencyLimitCreate(name="tag:kept", limit=4))
            big = {"rows": "x" * 40_000}  # past the inline limit: an S3 object
            ref = client.persist_result(big, serializer="json")
            assert ref.inline is None
        assert server.stop(signal.SIGTERM) == 0, server.stderr
    finally:
        server.kill()
    assert (state_dir / "moto-state.pickle").is_file()
    assert any("Saved the local stack's state" in line for line in server.seen), server.seen

    server = start_dev(state_dir, prefix, api_port, moto_port)
    try:
        lines = read_until(server, "Press Ctrl-C")
        assert any("restored" in line for line in lines), lines
        with StratoflowClient(api_url) as client:
            again = client.read_flow_run(run.id)
            assert (again.state.name, again.parameters) == ("Running", {"n": 7})
            logs = client.read_logs(run.id).items
            assert [r.message for r in logs] == ["before restart"]
            assert client.read_concurrency_limit("tag:kept").limit == 4
            assert client.load_result(ref) == big
            # and the restored stack takes new writes
            client.set_flow_run_state(run.id, Completed())
        assert server.stop(signal.SIGINT) == 0, server.stderr
    finally:
        server.kill()
    assert "Traceback" not in server.stderr


def test_dev_state_dir_with_a_broken_file_is_a_clear_error(tmp_path: Path, prefix: str) -> None:
    (tmp_path / "moto-state.pickle").write_bytes(b"not a pickle")
    server = start_dev(tmp_path, prefix, free_port(), free_port())
    try:
        code = server.finish(timeout=STARTUP_TIMEOUT)
    finally:
        server.kill()
    assert code == 1
    assert "moto-state.pickle" in server.stderr and "move it away" in server.stderr
    assert "Traceback" not in server.stderr


def test_create_concurrency_limit_is_an_upsert(api: str, stores: Any) -> None:
    """Item 17: get_client().create_concurrency_limit on an existing tag resizes it."""
    from sdk.client import ApiSyncClient, SyncClient

    for client, tag in (
        (SyncClient(stores), f"direct-{uuid.uuid4().hex[:6]}"),
        (ApiSyncClient(StratoflowClient(api)), f"api-{uuid.uuid4().hex[:6]}"),
    ):
        assert client.create_concurrency_limit(tag=tag, concurrency_limit=2).limit == 2
        assert client.create_concurrency_limit(tag=tag, concurrency_limit=5).limit == 5
        assert client.read_concurrency_limit_by_tag(tag).limit == 5


@pytest.mark.timeout(400)
def test_the_demo_runs_twice_against_the_api(api: str) -> None:
    """Item 17: re-running examples/etl_demo.py against a dev stack does not crash."""
    env = base_env(STRATOFLOW_API_URL=api, PYTHONPATH=str(ROOT))
    for attempt in (1, 2):
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "etl_demo.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            cwd=ROOT,
            check=False,
        )
        assert result.returncode == 0, (attempt, result.stderr[-3000:])
        assert "run 2: etl() returned 30" in result.stdout


def test_deployment_run_warns_when_no_worker_polls(cli: Any, client: StratoflowClient) -> None:
    """Item 18: --watch says at once that nothing polls the pool (no silent hang)."""
    pool = f"pool-{uuid.uuid4().hex[:6]}"
    cli("work-pool", "create", pool).ok()
    deployment = make_deployment(client, f"dep-{uuid.uuid4().hex[:6]}", work_pool_name=pool)
    watched = cli(
        "deployment",
        "run",
        deployment.id,
        "--watch",
        "--watch-interval",
        "0.1",
        "--watch-timeout",
        "0.3",
    )
    watched.failed(1, "still Pending")  # queued on the pool (Phase 5), nobody polls it
    assert f"no worker has been seen polling work pool '{pool}'" in watched.err

    gone = f"gone-{uuid.uuid4().hex[:6]}"  # a deployment's pool must exist when it is saved
    cli("work-pool", "create", gone).ok()
    missing = make_deployment(client, f"dep-{uuid.uuid4().hex[:6]}", work_pool_name=gone)
    cli("work-pool", "delete", gone).ok()
    # Phase 5: a run needs its pool's queue; refused, and nothing is created
    cli("deployment", "run", missing.id, "--json").failed(1, f"work pool '{gone}'")
    assert client.list_flow_runs(deployment_id=missing.id).items == []


def test_version_flag() -> None:
    from importlib.metadata import version

    result = run_cli("--version", api_url=None).ok()
    assert result.out.strip() == f"stratoflow {version('stratoflow')}"


def test_flow_ls(cli: Any, client: StratoflowClient) -> None:
    flow = f"listed-{uuid.uuid4().hex[:6]}"
    client.create_flow_run(FlowRunCreate(flow_name=flow))
    assert flow in [f["name"] for f in cli("flow", "ls", "--limit", "1000", "--json").json()]
    assert flow in cli("flow", "ls", "--limit", "1000").ok().out


def make_task_runs(client: StratoflowClient) -> tuple[Any, Any, Any]:
    """A flow run with two task runs: one Completed, one Failed, each with a log line."""
    from runtime.models import TaskRunCreate
    from runtime.states import Completed, Failed

    run = client.create_flow_run(FlowRunCreate(flow_name=f"tasks-{uuid.uuid4().hex[:6]}"))
    extract = client.create_task_run(
        TaskRunCreate(flow_run_id=run.id, task_key="extract", name="extract-0")
    )
    load = client.create_task_run(TaskRunCreate(flow_run_id=run.id, task_key="load", name="load-0"))
    for task_run, final in ((extract, Completed()), (load, Failed(message="db down"))):
        client.set_task_run_state(task_run.id, Running())
        client.set_task_run_state(task_run.id, final)
    client.write_logs(
        [
            LogRecord(flow_run_id=run.id, message="flow starts"),
            LogRecord(flow_run_id=run.id, task_run_id=extract.id, message="extracted 5 rows"),
            LogRecord(flow_run_id=run.id, task_run_id=load.id, level=40, message="load failed"),
        ]
    )
    return run, extract, load


def test_task_run_ls_inspect_logs(cli: Any, client: StratoflowClient) -> None:
    """Item 19: Prefect's `task-run ls / inspect / logs`."""
    run, extract, load = make_task_runs(client)
    listed = cli("task-run", "ls", "--flow-run-id", run.id, "--json").json()
    assert {t["id"] for t in listed} == {extract.id, load.id}
    failed = cli("task-run", "ls", "--flow-run-id", run.id, "--state", "FAILED", "--json").json()
    assert [t["id"] for t in failed] == [load.id]
    table = cli("task-run", "ls", "--flow-run-id", run.id).ok().out
    assert "extract-0" in table and "Completed" in table and "Failed" in table

    doc = cli("task-run", "inspect", load.id, "--json").json()
    assert (doc["flow_run_id"], doc["state"]["message"]) == (run.id, "db down")
    assert "db down" in cli("task-run", "inspect", load.id).ok().out
    cli("task-run", "inspect", str(uuid.uuid4())).failed(1, "not found")

    logs = cli("task-run", "logs", extract.id).ok().out
    assert "extracted 5 rows" in logs and "load failed" not in logs and "flow starts" not in logs
    records = cli("task-run", "logs", load.id, "--json").json()
    assert [r["message"] for r in records] == ["load failed"]


def test_flow_run_inspect_lists_task_runs_and_logs_name_them(
    cli: Any, client: StratoflowClient
) -> None:
    """Item 19: inspect shows the task runs with their states; logs say which task run."""
    run, _, _ = make_task_runs(client)
    inspected = cli("flow-run", "inspect", run.id).ok().out
    lines = inspected.splitlines()
    assert any("extract-0" in line and "Completed" in line for line in lines), inspected
    assert any("load-0" in line and "Failed" in line for line in lines), inspected

    logs = cli("flow-run", "logs", run.id).ok().out.splitlines()
    by_message = {
        m: line for line in logs for m in ("flow starts", "extracted", "load failed") if m in line
    }
    assert "task run extract-0" in by_message["extracted"]
    assert "task run load-0" in by_message["load failed"]
    assert "flow run" in by_message["flow starts"] and "task run" not in by_message["flow starts"]


SDK_SCRIPT = """
from sdk import flow

@flow
def hello() -> int:
    return 1

hello()
"""


def run_sdk_script(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SDK_SCRIPT],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("runtime.stores.connection.AwsUnavailable: "), result.stderr
    for fragment in fragments:
        assert fragment in last, (fragment, last)
    assert "botocore" not in result.stderr, result.stderr  # no botocore traceback at all


def test_sdk_configuration_errors_are_one_clear_line(aws_backend: Any) -> None:
    """Item 19: unreachable endpoint, no region, unprovisioned tables: one line with the fix."""
    dead = f"http://127.0.0.1:{free_port()}"
    assert_one_clear_line(run_sdk_script(base_env(AWS_ENDPOINT_URL=dead)), dead, "stratoflow dev")

    no_region = base_env(AWS_ENDPOINT_URL=dead)
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        no_region.pop(name, None)
    assert_one_clear_line(run_sdk_script(no_region), "AWS_DEFAULT_REGION")

    unprovisioned = base_env(STRATOFLOW_PREFIX=f"sf-{uuid.uuid4().hex[:8]}")
    assert unprovisioned.get("AWS_ENDPOINT_URL")
    assert_one_clear_line(run_sdk_script(unprovisioned), "does not exist", "not provisioned")


def test_sdk_over_an_unreachable_api_is_one_clear_line() -> None:
    """Item 19: STRATOFLOW_API_URL pointing at nothing: no chain of urllib3 tracebacks."""
    dead = f"http://127.0.0.1:{free_port()}"
    result = run_sdk_script(base_env(STRATOFLOW_API_URL=dead))
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("runtime.http.errors.ApiConnectionError: "), result.stderr
    assert f"cannot reach the Stratoflow API at {dead}" in last and "stratoflow dev" in last
    assert "urllib3" not in result.stderr, result.stderr


def test_api_over_an_unreachable_endpoint_is_a_503_with_the_fix(tmp_path: Path) -> None:
    """Item 19: the API answers 503 naming the endpoint; the CLI prints that one line."""
    from handlers.deps import set_stores
    from handlers.local_gateway import LocalGateway
    from runtime.stores import Stores

    dead = f"http://127.0.0.1:{free_port()}"
    stores = Stores.connect(f"sf-{uuid.uuid4().hex[:8]}", endpoint_url=dead)
    set_stores(stores)
    try:
        with LocalGateway() as gateway:
            result = run_cli("flow-run", "ls", api_url=gateway.url)
    finally:
        set_stores(None)
    result.failed(1, "cannot reach the AWS endpoint", dead)
    assert len(result.err.strip().splitlines()) == 1, result.err


def test_api_serve_without_a_region_says_how_to_set_one(aws_backend: Any) -> None:
    """Item 19: the CLI's configuration errors name the fix, in one line."""
    env = base_env(STRATOFLOW_PREFIX=f"sf-{uuid.uuid4().hex[:8]}")
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        env.pop(name, None)
    result = Server(["api", "serve", "--port", str(free_port())], env)
    try:
        code = result.finish(timeout=STARTUP_TIMEOUT)
    finally:
        result.kill()
    assert code == 1
    assert "no AWS region configured: set AWS_DEFAULT_REGION" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
