"""``stratoflow api serve``: the local API Gateway in front of the configured AWS endpoint."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from sdk.cli import _stack
from sdk.cli._output import fail, say, usage_error, warn
from sdk.cli.dev import check_prefix, connect_stores, start_gateway

if TYPE_CHECKING:
    from runtime.stores import Stores

app = typer.Typer(help="The Stratoflow HTTP API, served locally.", no_args_is_help=True)


def check_tables(stores: Stores, endpoint: str) -> None:
    """Fail clearly when the endpoint is unreachable or the installation is not provisioned."""
    from botocore.exceptions import BotoCoreError, ClientError

    specs = stores.specs
    client = stores.session.client("dynamodb")
    try:
        client.describe_table(TableName=specs.runs.name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            fail(
                f"table {specs.runs.name!r} does not exist at {endpoint}: "
                "pass --provision to create the installation's tables and bucket"
            )
        fail(f"cannot use {endpoint}: {exc}")
    except BotoCoreError as exc:
        fail(f"cannot reach {endpoint}: {exc}")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: only this machine can connect."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: a free one).")] = 4200,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="STRATOFLOW_API_TOKEN",
            help="Require 'Authorization: Bearer TOKEN' on every request.",
        ),
    ] = None,
    prefix: Annotated[
        str,
        typer.Option(envvar="STRATOFLOW_PREFIX", help="Installation (table name prefix)."),
    ] = "stratoflow",
    provision: Annotated[
        bool, typer.Option("--provision", help="Create missing tables and bucket first.")
    ] = False,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Serve a non-loopback --host without a token (anyone who can connect "
            "may run flows and read results).",
        ),
    ] = False,
) -> None:
    """Serve the API (handlers/api.py) over HTTP against AWS_ENDPOINT_URL / STRATOFLOW_PREFIX.

    Provisions nothing unless --provision. On an address other than loopback a
    token is required (or --insecure). Ctrl-C or SIGTERM stops it.
    """
    from handlers.deps import set_stores

    check_prefix(prefix)
    if not token and not insecure and not is_loopback(host):
        usage_error(
            f"--host {host} accepts connections from other machines: set a token "
            "(--token or STRATOFLOW_API_TOKEN) so that only its holders can use the API, "
            "or pass --insecure to serve it without one"
        )
    if not token and not is_loopback(host):
        warn(f"serving the API on {host} without a token (--insecure): anyone can use it")
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or "AWS (boto3 default endpoint)"
    with _stack.stop_on_signals() as stopping, _stack.ServiceGroup() as group:
        try:
            stores = connect_stores(prefix, provision=provision)
        except Exception as exc:
            fail(f"cannot connect to {endpoint}: {exc}")
        check_tables(stores, endpoint)
        set_stores(stores)
        group.callback(lambda: set_stores(None))
        gateway = start_gateway(group, host, port, token)
        say(f"Stratoflow API on {gateway.url} (AWS endpoint: {endpoint}, prefix: {prefix})")
        say(f"Swagger UI: {gateway.url}/docs. Press Ctrl-C to stop.")
        print(f"export STRATOFLOW_API_URL={gateway.url}", flush=True)
        _stack.wait_for(stopping)
    say("Stopped.")
