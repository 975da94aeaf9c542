"""``stratoflow dev``: the whole local stack in one command.

A moto server on 127.0.0.1 (atomic DynamoDB, :class:`runtime.localaws.LockedMotoServer`),
or the endpoint already in ``AWS_ENDPOINT_URL`` (LocalStack), provisioned from the
resource specs; the local API on 127.0.0.1:PORT; then every background service of
:data:`sdk.cli._stack.DEV_SERVICES`. Prints the environment other shells export,
and shuts everything down in reverse order on Ctrl-C or SIGTERM (exit code 0).
"""

from __future__ import annotations

import os
import re
import shlex
from typing import Annotated, Any

import typer

from sdk.cli import _stack
from sdk.cli._output import fail, say, usage_error

PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,30}$")

#: Credentials the local stack uses when none are set (moto accepts anything).
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

#: The variables printed for other shells, in this order.
EXPORTED = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "STRATOFLOW_PREFIX",
    "STRATOFLOW_API_URL",
    "STRATOFLOW_API_TOKEN",
)


def check_prefix(prefix: str) -> str:
    """The prefix, or a usage error naming the accepted pattern."""
    if not PREFIX_PATTERN.match(prefix):
        usage_error(
            f"invalid prefix {prefix!r}: 2-31 characters, lowercase letters, digits and '-', "
            "starting with a letter"
        )
    return prefix


def export_line(env: dict[str, str]) -> str:
    """``export A=1 B=2`` (shell-quoted), the line other shells run."""
    parts = [f"{name}={shlex.quote(env[name])}" for name in EXPORTED if env.get(name)]
    return "export " + " ".join(parts)


def aws_environment(endpoint: str, *, own_server: bool) -> dict[str, str]:
    """The AWS variables of the stack: fake credentials for our own moto server.

    For an endpoint given in ``AWS_ENDPOINT_URL`` (LocalStack), credentials and region
    already set are kept; LocalStack's conventional ``test`` credentials otherwise.
    """
    if own_server:
        return {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID") or "test",
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY") or "test",
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    }


def connect_stores(prefix: str, *, provision: bool) -> Any:
    """The stores of ``prefix`` at the configured endpoint (settings for bucket and sizes)."""
    from runtime.settings import get_settings
    from runtime.stores import Stores

    settings = get_settings()
    return Stores.connect(
        prefix,
        results_bucket=settings.results_bucket,
        inline_result_max_bytes=settings.inline_result_max_bytes,
        provision_resources=provision,
    )


def port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (None when it can, or for port 0).

    Checked first because werkzeug reports a busy port by printing and exiting.
    """
    import socket

    if port == 0:
        return None
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def start_listening(
    group: _stack.ServiceGroup, service: Any, what: str, host: str, port: int
) -> None:
    """Start a server on ``host:port`` with a clear error when it cannot listen."""
    problem = port_problem(host, port)
    if problem is None:
        try:
            group.start(service)
            return
        except OSError as exc:
            problem = exc.strerror or str(exc)
        except SystemExit:  # werkzeug's reaction to a port taken meanwhile
            problem = "Address already in use"
    fail(f"cannot listen on {host}:{port} for {what}: {problem} (choose another port)")


def start_gateway(group: _stack.ServiceGroup, host: str, port: int, token: str | None) -> Any:
    """Start the local API gateway serving ``handlers.api``; a clear error if the port is taken."""
    from handlers.local_gateway import LocalGateway

    gateway = LocalGateway(host=host, port=port, token=token or None)
    start_listening(group, gateway, "the API (--port)", host, port)
    return gateway


def dev(
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port of the local API (0: a free one).")
    ] = 4200,
    moto_port: Annotated[
        int,
        typer.Option(min=0, max=65535, help="Port of the moto server (0: a free one)."),
    ] = 0,
    prefix: Annotated[
        str,
        typer.Option(envvar="STRATOFLOW_PREFIX", help="Prefix of every table and bucket name."),
    ] = "stratoflow",
    token: Annotated[
        str | None,
        typer.Option(
            envvar="STRATOFLOW_API_TOKEN",
            help="Require 'Authorization: Bearer TOKEN' on every API request.",
        ),
    ] = None,
) -> None:
    """Start the local stack: moto (or AWS_ENDPOINT_URL), provisioned tables, the API.

    Prints the environment to export in other shells; Ctrl-C stops everything.
    """
    from handlers.deps import set_stores
    from runtime.localaws import LockedMotoServer

    check_prefix(prefix)
    external = os.environ.get("AWS_ENDPOINT_URL") or None
    with _stack.stop_on_signals() as stopping, _stack.ServiceGroup() as group:
        if external is None:
            server = LockedMotoServer("127.0.0.1", moto_port)
            start_listening(group, server, "the moto server (--moto-port)", "127.0.0.1", moto_port)
            endpoint, backend = server.endpoint, "moto server, atomic DynamoDB"
        else:
            endpoint, backend = external, "from AWS_ENDPOINT_URL"
        env = {
            **aws_environment(endpoint, own_server=external is None),
            "STRATOFLOW_PREFIX": prefix,
        }
        _stack.set_environ(env)
        try:
            stores = connect_stores(prefix, provision=True)
        except Exception as exc:
            fail(f"cannot provision {prefix!r} at {endpoint}: {exc}")
        set_stores(stores)
        group.callback(lambda: set_stores(None))

        gateway = start_gateway(group, "127.0.0.1", port, token)
        env["STRATOFLOW_API_URL"] = gateway.url
        if token:
            env["STRATOFLOW_API_TOKEN"] = token
        context = _stack.StackContext(
            endpoint_url=endpoint,
            prefix=prefix,
            api_url=gateway.url,
            stores=stores,
            env=dict(env),
            stopping=stopping,
        )
        for factory in _stack.DEV_SERVICES:
            group.start(factory(context))

        say("[bold]Stratoflow local stack[/bold]")
        say(f"  AWS endpoint  {endpoint} ({backend})")
        say(f"  prefix        {prefix} (tables and bucket provisioned)")
        say(f"  API           {gateway.url}  (Swagger UI: {gateway.url}/docs)")
        say("")
        say("Use it from other shells (SDK, CLI, workers):")
        say("")
        # Plain print: the line must not be wrapped or styled, shells copy it verbatim.
        print(export_line(env), flush=True)
        print("", flush=True)
        say("Press Ctrl-C to stop.")
        _stack.wait_for(stopping)
        say("Stopping the local stack...")
    say("Stopped.")
