"""``stratoflow flow``: the flows the API knows (those with runs or deployments)."""

from __future__ import annotations

from typing import Annotated

import typer

from sdk.cli._client import ApiUrl, Json, api_command, connect, paginate
from sdk.cli._output import print_json, print_table

app = typer.Typer(help="Flows: ls.", no_args_is_help=True)


@app.command("ls")
@api_command
def ls(
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many flows.")] = 50,
    json_output: Json = False,
    api_url: ApiUrl = None,
) -> None:
    """List flows that have runs or deployments."""
    client = connect(api_url)
    flows = paginate(lambda cursor: client.list_flows(limit=min(limit, 1000), cursor=cursor), limit)
    if json_output:
        print_json(flows)
        return
    print_table("Flows", ["NAME", "CREATED"], ([f.name, f.created] for f in flows))
