"""``stratoflow work-pool``: create, list, inspect, pause, resume and delete work pools."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from sdk.cli._client import ApiUrl, Json, api_command, connect, paginate
from sdk.cli._output import print_fields, print_json, print_table, say

if TYPE_CHECKING:
    from runtime.models import WorkPool

app = typer.Typer(
    help="Work pools: create, ls, inspect, pause, resume, delete.", no_args_is_help=True
)

PoolName = Annotated[str, typer.Argument(metavar="NAME", help="The work pool's name.")]


def pool_fields(pool: WorkPool) -> list[tuple[str, Any]]:
    return [
        ("name", pool.name),
        ("type", pool.type),
        ("description", pool.description),
        (
            "concurrency limit",
            "unlimited" if pool.concurrency_limit is None else pool.concurrency_limit,
        ),
        ("paused", pool.paused),
        ("base job template", pool.base_job_template),
        ("created", pool.created),
        ("updated", pool.updated),
    ]


def show(pool: WorkPool, json_output: bool, message: str) -> None:
    if json_output:
        print_json(pool)
    else:
        say(message)


@app.command("create")
@api_command
def create(
    name: PoolName,
    pool_type: Annotated[
        str, typer.Option("--type", help="Worker type that serves the pool.")
    ] = "process",
    concurrency_limit: Annotated[
        int | None, typer.Option(min=0, help="Most flow runs of the pool running at once.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="What the pool is for.")] = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    json_output: Json = False,
    api_url: ApiUrl = None,
) -> None:
    """Create a work pool."""
    from runtime.models import WorkPoolCreate

    pool = connect(api_url).create_work_pool(
        WorkPoolCreate(
            name=name,
            type=pool_type,
            concurrency_limit=concurrency_limit,
            description=description,
            paused=paused,
        )
    )
    show(pool, json_output, f"Created work pool {pool.name!r} (type {pool.type}).")


@app.command("ls")
@api_command
def ls(json_output: Json = False, api_url: ApiUrl = None) -> None:
    """List work pools."""
    client = connect(api_url)
    pools = paginate(lambda cursor: client.list_work_pools(cursor=cursor))
    if json_output:
        print_json(pools)
        return
    print_table(
        "Work pools",
        ["NAME", "TYPE", "CONCURRENCY LIMIT", "PAUSED", "CREATED"],
        (
            [
                p.name,
                p.type,
                "-" if p.concurrency_limit is None else p.concurrency_limit,
                p.paused,
                p.created,
            ]
            for p in pools
        ),
    )


@app.command("inspect")
@api_command
def inspect(name: PoolName, json_output: Json = False, api_url: ApiUrl = None) -> None:
    """Show one work pool."""
    pool = connect(api_url).read_work_pool(name)
    if json_output:
        print_json(pool)
        return
    print_fields(f"Work pool {pool.name}", pool_fields(pool))


@app.command("pause")
@api_command
def pause(name: PoolName, json_output: Json = False, api_url: ApiUrl = None) -> None:
    """Pause a work pool: its workers take no new runs."""
    pool = connect(api_url).pause_work_pool(name)
    show(pool, json_output, f"Paused work pool {pool.name!r}.")


@app.command("resume")
@api_command
def resume(name: PoolName, json_output: Json = False, api_url: ApiUrl = None) -> None:
    """Resume a paused work pool."""
    pool = connect(api_url).resume_work_pool(name)
    show(pool, json_output, f"Resumed work pool {pool.name!r}.")


@app.command("delete")
@api_command
def delete(name: PoolName, api_url: ApiUrl = None) -> None:
    """Delete a work pool."""
    connect(api_url).delete_work_pool(name)
    say(f"Deleted work pool {name!r}.")
