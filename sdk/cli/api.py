"""``stratoflow api serve``: the local API Gateway in front of the configured AWS endpoint."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from sdk.cli import _stack
from sdk.cli._output import fail, say
from sdk.cli.dev import check_prefix, connect_stores, start_gateway

app = typer.Typer(help="The Stratoflow HTTP API, served locally.", no_args_is_help=True)


def check_tables(stores: object, endpoint: str) -> None:
    """Fail clearly when the endpoint is unreachable or the installation is not provisioned."""
    from botocore.exceptions import BotoCoreError, ClientError

    specs = stores.specs  # type: ignore[attr-defined]
    client = stores.session.client("dynamodb")  # type: ignore[attr-defined]
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
) -> None:
    """Serve the API (handlers/api.py) over HTTP against AWS_ENDPOINT_URL / STRATOFLOW_PREFIX.

    Provisions nothing unless --provision. Ctrl-C or SIGTERM stops it.
    """
    from handlers.deps import set_stores

    check_prefix(prefix)
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
