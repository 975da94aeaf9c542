"""``stratoflow work-pool``: create, list, inspect, pause, resume, limit and delete work pools.

A work pool is an SQS queue (and its dead-letter queue): ``inspect`` shows its
backlog, ``delete`` refuses while runs wait unless ``--force``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from sdk.cli._client import ApiUrl, Json, api_command, connect, paginate
from sdk.cli._output import print_fields, print_json, print_table, say

if TYPE_CHECKING:
    from runtime.models import WorkPool, WorkPoolStatus

app = typer.Typer(
    help="Work pools: create, ls, inspect, pause, resume, set/clear-concurrency-limit, delete.",
    no_args_is_help=True,
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
    """Show one work pool, its queue's backlog, its runs and its slots."""
    status = connect(api_url).read_work_pool_status(name)
    if json_output:
        print_json(status)
        return
    print_fields(f"Work pool {status.name}", status_fields(status))
    show_workers(status)


def status_fields(status: WorkPoolStatus) -> list[tuple[str, Any]]:
    """The pool's fields, then its queue, backlog, runs and slots."""
    backlog = status.backlog
    limit = status.concurrency_limit
    return [
        *pool_fields(status),
        ("queue", status.queue_name),
        ("dead-letter queue", status.dlq_name),
        ("messages visible", backlog.visible),
        ("messages in flight", backlog.in_flight),
        ("messages delayed", backlog.delayed),
        ("dead letters", backlog.dead_letters),
        ("runs waiting", status.runs_waiting),
        ("runs running", status.runs_running),
        ("slots in use", "-" if limit is None else f"{status.active_slots or 0} of {limit}"),
    ]


def show_workers(status: WorkPoolStatus) -> None:
    """The workers polling the pool, as the worker registry reports them."""
    if not status.workers:
        say("Workers: none registered.")
        return
    columns = sorted({key for worker in status.workers for key in worker})
    print_table(
        "Workers",
        [c.upper() for c in columns],
        ([worker.get(c, "-") for c in columns] for worker in status.workers),
    )


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


@app.command("set-concurrency-limit")
@api_command
def set_concurrency_limit(
    name: PoolName,
    limit: Annotated[
        int, typer.Argument(min=0, help="Most flow runs of the pool running at once.")
    ],
    json_output: Json = False,
    api_url: ApiUrl = None,
) -> None:
    """Cap the pool's flow runs in progress (as `prefect work-pool set-concurrency-limit`)."""
    pool = connect(api_url).update_work_pool(name, concurrency_limit=limit)
    show(pool, json_output, f"Set the concurrency limit of work pool {pool.name!r} to {limit}.")


@app.command("clear-concurrency-limit")
@api_command
def clear_concurrency_limit(
    name: PoolName, json_output: Json = False, api_url: ApiUrl = None
) -> None:
    """Remove the pool's concurrency limit (as `prefect work-pool clear-concurrency-limit`)."""
    pool = connect(api_url).update_work_pool(name, concurrency_limit=None)
    show(pool, json_output, f"Cleared the concurrency limit of work pool {pool.name!r}.")


@app.command("delete")
@api_command
def delete(
    name: PoolName,
    force: Annotated[
        bool,
        typer.Option("--force", help="Delete even with runs waiting (they are cancelled)."),
    ] = False,
    api_url: ApiUrl = None,
) -> None:
    """Delete a work pool and its queues (refused while it has runs, unless --force)."""
    connect(api_url).delete_work_pool(name, force=force)
    say(f"Deleted work pool {name!r}.")
